"""The ``transactions`` table and its audit trail ``transitions``: intents and compare-and-set moves.

A transaction's intent is committed in its kind's initial state before anything else happens
(:meth:`TransactionTable.record_intent`).  After that its state changes only by an event of
the kind's machine (:func:`misbridge.core.kinds.next_state`), compare-and-set on the state the
caller saw, with one ``transitions`` row per change in the same commit
(:func:`compare_and_set_in_transaction`, the one place a state is written).  A trigger refuses
any change to a transaction in a final state (:mod:`misbridge.journal.schema`).

A transaction belongs to the lane of the journal view that recorded its intent (schema v8,
:meth:`~misbridge.journal.connection.JournalBase.for_lane`); :meth:`TransactionTable.list_by_states`
sees only the view's lane, while reads and moves by traceNo are journal-wide.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from misbridge.core.kinds import TABLES, next_state
from misbridge.core.machine import TxnState, kind_of
from misbridge.ebuy import jsonio
from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal.calls import barred_as
from misbridge.journal.connection import JournalBase
from misbridge.journal.errors import BarredTraceNoError, DuplicateTraceNoError, StateConflictError
from misbridge.journal.lanes import LaneFilter, lane_clause
from misbridge.journal.records import TransactionRecord, TransitionRecord, iso_utc, storable
from misbridge.journal.rows import load_dict, response_json
from misbridge.journal.schema import FINAL_STATES, immediate_transaction

__all__ = [
    "Change",
    "CommittedMove",
    "Intake",
    "TransactionTable",
    "TransitionObserver",
    "compare_and_set_in_transaction",
    "insert_transition",
    "to_record",
]

_INTENT_EVENT: Final = "intent"


@dataclass(frozen=True)
class Change:
    """One compare-and-set move of ``trace_no``: ``from_state`` by ``event``, what it learned, when."""

    trace_no: str
    from_state: str
    event: str
    at: str
    masked_pan: str | None
    card_type: str | None
    response_json: str | None
    return_code: str | None
    detail: str


@dataclass(frozen=True)
class CommittedMove:
    """A state change the journal committed, as its observer hears of it.

    Only what a cashier's screen may show: no request, no response body, the PAN masked as the
    pad gave it.
    """

    trace_no: str
    from_state: str
    event: str
    to_state: TxnState
    masked_pan: str | None
    card_type: str | None
    return_code: str | None


@dataclass(frozen=True)
class Intake:
    """What :meth:`~misbridge.journal.reversals.ReversalQueue.open_intent` did, in one journal hop.

    At most one of ``existing`` and ``voids_due`` is set; when neither is, the intent was
    committed (:attr:`recorded`).

    Attributes:
        existing: the journal already holds the traceNo (a repeat): this is its row; nothing
            was written.
        voids_due: a void is due on this journal's lane: nothing was written, the voids go
            first (the reversal queue's drain before a new sale), then the intent.
    """

    existing: TransactionRecord | None = None
    voids_due: bool = False

    @property
    def recorded(self) -> bool:
        """The intent is committed (durable): neither a repeat nor voids due."""
        return self.existing is None and not self.voids_due


#: Told of every committed move of a transaction, on the event loop, right after its COMMIT.
#: It must not raise and must not block: the move is durable already, and the caller waits.
TransitionObserver = Callable[[CommittedMove], None]


class TransactionTable(JournalBase):
    """Intents, state changes and reads of ``transactions`` and ``transitions``.

    Attributes:
        observer: told of every committed move (:data:`TransitionObserver`), or None. It is the
            one place every state change passes, the reversal queue's and the operator's
            included, so a progress feed needs no hook in each caller.
    """

    observer: TransitionObserver | None = None

    async def record_intent(self, record: TransactionRecord) -> None:
        """Insert a new transaction and its first transitions row (``"" -> state``, ``intent``).

        Returns only after the COMMIT: the intent is durable. The row's ``lane`` is this
        journal's :attr:`lane_column` (a lane view's name, else ``NULL``); ``record.lane`` must be
        ``None`` or that same value.

        Raises:
            DuplicateTraceNoError: ``record.trace_no`` is already in the journal.
            BarredTraceNoError: the backend has already seen ``record.trace_no`` in another
                request (a :class:`DuplicateTraceNoError` too).
            InvalidTransition: ``record.action`` has no state machine, or ``record.state`` is
                not the initial state of its kind (a transaction starts where its machine does).
            JournalError: ``record.lane`` is another lane's, or the write failed.
        """
        await self._run("record_intent", _insert_intent, record, self._intent_lane(record))

    def _intent_lane(self, record: TransactionRecord) -> str | None:
        """The ``lane`` column of ``record``'s intent, after the checks every intent passes.

        Raises:
            InvalidTransition: ``record.state`` is not the initial state of its kind.
            JournalError: ``record.lane`` is another lane's.
        """
        initial = TABLES[kind_of(record.action)].initial
        if record.state != initial:
            raise InvalidTransition(f"a {record.action} starts in {initial.value!r}, not {record.state!r}")
        lane = self.lane_column
        if record.lane is not None and record.lane != lane:
            raise JournalError(
                f"journal record_intent {record.trace_no!r}: the record is lane {record.lane!r}'s, not {lane!r}'s"
            )
        return lane

    async def record_transition(
        self,
        trace_no: str,
        from_state: str,
        event: str,
        *,
        masked_pan: str | None = None,
        card_type: str | None = None,
        response: dict[str, Any] | None = None,
        return_code: str | None = None,
        detail: str = "",
    ) -> TxnState:
        """Move ``trace_no`` from ``from_state`` by ``event`` (compare-and-set) and log it.

        The target is the state machine's: ``next_state(kind, from_state, event)``, the kind
        read from the row's action.  The optional columns are changed only when given (not
        ``None``).  The update and its transitions row are one transaction; this returns the
        new state after the COMMIT.

        Raises:
            StateConflictError: the transaction is not in ``from_state`` (or does not exist).
            InvalidTransition: the machine of the transaction's kind does not allow ``event``
                in ``from_state``; nothing is written.
            JournalError: the write failed.
        """
        change = self._change(
            trace_no,
            from_state,
            event,
            masked_pan=masked_pan,
            card_type=card_type,
            response=response,
            return_code=return_code,
            detail=detail,
        )
        to_state = await self._run("record_transition", _compare_and_set, change)
        self._committed(change, to_state)
        return to_state

    async def get(self, trace_no: str) -> TransactionRecord | None:
        """The transaction ``trace_no``, or ``None`` if the journal has no intent for it.

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        return await self._run("get", _select_transaction, trace_no)

    async def transitions(self, trace_no: str) -> list[TransitionRecord]:
        """The state changes of ``trace_no``, oldest first (empty if unknown).

        Raises:
            JournalError: the read failed.
        """
        return await self._run("transitions", _select_transitions, trace_no)

    async def list_by_states(self, states: Iterable[str]) -> list[TransactionRecord]:
        """Every transaction in one of ``states``, oldest first (e.g. for start-up recovery).

        On a lane view, only the lane's transactions.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        wanted = tuple(str(s) for s in states)
        return await self._run("list_by_states", _select_by_states, wanted, self.lane_filter)

    async def followers(self, original_trace_no: str, actions: Iterable[str]) -> list[TransactionRecord]:
        """The ``actions`` transactions (voids, refunds) whose request names ``original_trace_no``, oldest first.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("followers", _select_followers, original_trace_no, tuple(actions))

    async def count(self) -> int:
        """The number of transactions in the journal.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("count", _count)

    async def open_by_lane(self) -> dict[str | None, int]:
        """How many transactions are not final, per lane (None: the default lane), on every lane.

        Start-up compares it with the configured lanes: a lane removed with work left would
        leave that work to nobody.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("open_by_lane", _open_by_lane)

    def _committed(self, change: Change, to_state: TxnState) -> None:
        """Tell the observer, if any, of ``change`` now that it is committed."""
        if self.observer is not None:
            self.observer(
                CommittedMove(
                    trace_no=change.trace_no,
                    from_state=change.from_state,
                    event=change.event,
                    to_state=to_state,
                    masked_pan=change.masked_pan,
                    card_type=change.card_type,
                    return_code=change.return_code,
                )
            )

    def _change(
        self,
        trace_no: str,
        from_state: str,
        event: str,
        *,
        masked_pan: str | None = None,
        card_type: str | None = None,
        response: dict[str, Any] | None = None,
        return_code: str | None = None,
        detail: str = "",
    ) -> Change:
        return Change(
            trace_no=trace_no,
            from_state=from_state,
            event=event,
            at=self._now(),
            masked_pan=masked_pan,
            card_type=card_type,
            response_json=response_json(response),
            return_code=return_code,
            detail=detail,
        )


# --- Everything below runs on the journal thread. ----------------------------------------


def _insert_intent(conn: sqlite3.Connection, record: TransactionRecord, lane: str | None) -> None:
    with immediate_transaction(conn):
        insert_intent_in_transaction(conn, record, lane)


def insert_intent_in_transaction(conn: sqlite3.Connection, record: TransactionRecord, lane: str | None) -> None:
    """Insert ``record`` and its first transitions row inside the caller's ``BEGIN IMMEDIATE`` transaction.

    Raises:
        BarredTraceNoError: the backend has seen ``record.trace_no`` in another request.
        DuplicateTraceNoError: the journal holds ``record.trace_no`` already.
    """
    created_at, updated_at = iso_utc(record.created_at), iso_utc(record.updated_at)
    seen_as = barred_as(conn, record.trace_no)
    if seen_as is not None:
        raise BarredTraceNoError(record.trace_no, seen_as)
    cursor = conn.execute(
        "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, masked_pan,"
        " card_type, response_json, return_code, created_at, updated_at, lane)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_no) DO NOTHING",
        (
            record.trace_no,
            record.action,
            record.state,
            jsonio.dumps(record.request),
            record.request_hash,
            record.masked_pan,
            record.card_type,
            None if record.response is None else jsonio.dumps(storable(record.response)),
            record.return_code,
            created_at,
            updated_at,
            lane,
        ),
    )
    if cursor.rowcount == 0:
        raise DuplicateTraceNoError(record.trace_no)
    insert_transition(conn, record.trace_no, "", record.state, _INTENT_EVENT, created_at, "")


def insert_transition(
    conn: sqlite3.Connection, trace_no: str, from_state: str, to_state: str, event: str, at: str, detail: str
) -> None:
    """Append one row to ``trace_no``'s audit trail (inside the caller's transaction)."""
    conn.execute(
        "INSERT INTO transitions (trace_no, from_state, to_state, event, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (trace_no, from_state, to_state, event, at, detail),
    )


def _compare_and_set(conn: sqlite3.Connection, change: Change) -> TxnState:
    with immediate_transaction(conn):
        return compare_and_set_in_transaction(conn, change)


def compare_and_set_in_transaction(conn: sqlite3.Connection, change: Change) -> TxnState:
    """Apply ``change`` inside the caller's ``BEGIN IMMEDIATE`` transaction; return the new state.

    Raises:
        StateConflictError: the transaction is not in ``change.from_state`` (or does not exist).
        InvalidTransition: the kind's machine does not allow the event in that state.
    """
    row = conn.execute("SELECT action, state FROM transactions WHERE trace_no = ?", (change.trace_no,)).fetchone()
    if row is None or row["state"] != change.from_state:
        raise StateConflictError(change.trace_no, change.from_state, None if row is None else str(row["state"]))
    # The one place a transaction's state is written after its intent: the target is the
    # machine's, never the caller's, so the journal cannot record a move the table forbids.
    to_state = next_state(kind_of(str(row["action"])), change.from_state, change.event)
    cursor = conn.execute(
        "UPDATE transactions SET state = :to_state, updated_at = :at,"
        " masked_pan = COALESCE(:masked_pan, masked_pan),"
        " card_type = COALESCE(:card_type, card_type),"
        " response_json = COALESCE(:response_json, response_json),"
        " return_code = COALESCE(:return_code, return_code)"
        " WHERE trace_no = :trace_no AND state = :from_state",
        {**vars(change), "to_state": to_state.value},
    )
    if cursor.rowcount != 1:  # the row was read in this same BEGIN IMMEDIATE transaction
        raise JournalError(f"transaction {change.trace_no!r}: the state update changed {cursor.rowcount} rows")
    insert_transition(conn, change.trace_no, change.from_state, to_state, change.event, change.at, change.detail)
    return to_state


def to_record(row: sqlite3.Row) -> TransactionRecord:
    """A ``transactions`` row as its record.

    Raises:
        JournalError: the row is corrupt.
    """
    trace_no = str(row["trace_no"])
    response_text = row["response_json"]
    try:
        return TransactionRecord(
            trace_no=trace_no,
            action=row["action"],
            state=row["state"],
            request=load_dict(row["request_json"], f"request of {trace_no!r}"),
            request_hash=row["request_hash"],
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            masked_pan=row["masked_pan"],
            card_type=row["card_type"],
            response=None if response_text is None else load_dict(response_text, f"response of {trace_no!r}"),
            return_code=row["return_code"],
            lane=row["lane"],
        )
    except (TypeError, ValueError) as err:  # a timestamp that is not ISO-8601 with an offset
        raise JournalError(f"journal row {trace_no!r} is corrupt: {err}") from err


def _select_transaction(conn: sqlite3.Connection, trace_no: str) -> TransactionRecord | None:
    row = conn.execute("SELECT * FROM transactions WHERE trace_no = ?", (trace_no,)).fetchone()
    return None if row is None else to_record(row)


def _select_transitions(conn: sqlite3.Connection, trace_no: str) -> list[TransitionRecord]:
    rows = conn.execute(
        "SELECT id, trace_no, from_state, to_state, event, at, detail FROM transitions WHERE trace_no = ? ORDER BY id",
        (trace_no,),
    ).fetchall()
    try:
        return [
            TransitionRecord(
                id=row["id"],
                trace_no=row["trace_no"],
                from_state=row["from_state"],
                to_state=row["to_state"],
                event=row["event"],
                at=datetime.fromisoformat(row["at"]),
                detail=row["detail"],
            )
            for row in rows
        ]
    except ValueError as err:
        raise JournalError(f"journal transitions of {trace_no!r} are corrupt: {err}") from err


def _select_by_states(
    conn: sqlite3.Connection, states: tuple[str, ...], lanes: LaneFilter | None
) -> list[TransactionRecord]:
    if not states:
        return []
    placeholders = ", ".join("?" * len(states))
    in_lane, lane_params = lane_clause(lanes)
    rows = conn.execute(
        f"SELECT * FROM transactions WHERE state IN ({placeholders}){in_lane} ORDER BY created_at, trace_no",  # noqa: S608 - only "?" placeholders are formatted in
        (*states, *lane_params),
    ).fetchall()
    return [to_record(row) for row in rows]


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])


def _open_by_lane(conn: sqlite3.Connection) -> dict[str | None, int]:
    final = tuple(FINAL_STATES)
    marks = ", ".join("?" for _ in final)
    rows = conn.execute(
        f"SELECT lane, COUNT(*) FROM transactions WHERE state NOT IN ({marks}) GROUP BY lane",  # noqa: S608
        final,
    ).fetchall()
    return {lane: int(count) for lane, count in rows}


def _select_followers(conn: sqlite3.Connection, original: str, actions: tuple[str, ...]) -> list[TransactionRecord]:
    if not actions:
        return []
    placeholders = ", ".join("?" * len(actions))
    rows = conn.execute(
        f"SELECT * FROM transactions WHERE action IN ({placeholders})"  # noqa: S608 - only "?" placeholders
        " AND json_extract(request_json, '$.originalTraceNo') = ? ORDER BY created_at, trace_no",
        (*actions, original),
    ).fetchall()
    return [to_record(row) for row in rows]
