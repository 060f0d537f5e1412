"""The durable reversal queue (jPOS SAF style): the ``reversals`` table.

One entry per original, created in the same commit as the transaction's move to ``voiding``
(:meth:`ReversalQueue.enqueue_reversal`) and closed in the same commit as its move out of it
(:meth:`ReversalQueue.complete_reversal`, :meth:`ReversalQueue.escalate_reversal`).  The
journal keeps the bookkeeping (attempts, next attempt, last error); the caller decides the
backoff and the expiry.  A ``pending`` entry is never dropped.

A transaction the queue gave to a person (``needs_manual``) gets its last word from the
operator (``misbridge journal resolve``): :meth:`ReversalQueue.resolve` moves it by its
kind's ``resolve_*`` event and closes its queue entry (``needs_manual -> done``, so retention
may purge both later), in one commit.

An entry belongs to its transaction's lane (schema v8): on a lane view, ``due_reversals``,
``pending_reversals`` and ``count_reversals`` see the lane's entries only; the rest is by traceNo.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any, Final

from misbridge.core.kinds import TABLES
from misbridge.core.machine import TxnState, kind_of
from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal.connection import iso
from misbridge.journal.errors import ReversalConflictError
from misbridge.journal.lanes import LaneFilter
from misbridge.journal.records import ReversalRecord, ReversalState, TransactionRecord
from misbridge.journal.rows import time_of
from misbridge.journal.schema import immediate_transaction
from misbridge.journal.transactions import (
    Change,
    Intake,
    TransactionTable,
    compare_and_set_in_transaction,
    insert_intent_in_transaction,
    to_record,
)

__all__ = ["ReversalQueue"]

_VOIDING: Final = "voiding"


class ReversalQueue(TransactionTable):
    """Queue, retry, complete and escalate the voids of transactions whose outcome stayed unknown."""

    async def open_intent(self, record: TransactionRecord) -> Intake:
        """A new sale's intake in one journal hop: the repeat check, the voids-first check and the intent.

        One ``BEGIN IMMEDIATE`` transaction on the journal thread does what ``get``,
        ``due_reversals`` and :meth:`record_intent` did in three hops, in that order: a traceNo
        the journal holds is returned (nothing written); a void due on this journal's lane
        stops it (nothing written: send the voids, then :meth:`record_intent`); otherwise the
        intent is inserted and committed as :meth:`record_intent` does, with the same checks.
        The due check and the insert are one transaction, so no void can fall due between them.

        Raises:
            BarredTraceNoError: the backend has already seen ``record.trace_no`` in another request.
            InvalidTransition: ``record.state`` is not the initial state of its kind.
            JournalError: ``record.lane`` is another lane's, or the read or write failed.
        """
        lane = self._intent_lane(record)
        return await self._run("open_intent", _open_intent, record, lane, self._now(), self.lane_filter)

    async def enqueue_reversal(
        self,
        trace_no: str,
        *,
        from_state: str,
        event: str,
        detail: str = "",
        first_attempt_at: datetime | None = None,
        response: dict[str, Any] | None = None,
        return_code: str | None = None,
    ) -> None:
        """Move ``trace_no`` from ``from_state`` by ``event`` and queue its reversal, atomically.

        One transaction: the compare-and-set transition with its transitions row (as
        ``record_transition``, including ``response``/``return_code``: the answer the POS
        is given from now on) and a ``pending`` queue entry with 0 attempts, due at
        ``first_attempt_at`` (default: now).  Either both are committed or neither.

        Raises:
            ReversalConflictError: ``trace_no`` already has a queue entry (whatever its state).
            StateConflictError: the transaction is not in ``from_state`` (or does not exist).
            InvalidTransition: ``event`` does not lead from ``from_state`` to ``voiding``.
            JournalError: a time is naive, or the write failed.
        """
        change = self._change(trace_no, from_state, event, detail=detail, response=response, return_code=return_code)
        due = change.at if first_attempt_at is None else iso("first_attempt_at", first_attempt_at)
        self._committed(change, await self._run("enqueue_reversal", _enqueue_reversal, change, due))

    async def due_reversals(self, now: datetime | None = None) -> list[ReversalRecord]:
        """The ``pending`` queue entries due at ``now`` (default: the clock), oldest first.

        On a lane view, only the entries of the lane's transactions.

        Raises:
            JournalError: ``now`` is naive, the read failed or a row is corrupt.
        """
        at = self._now() if now is None else iso("now", now)
        return await self._run("due_reversals", _select_reversals, at, self.lane_filter)

    async def pending_reversals(self) -> list[ReversalRecord]:
        """Every ``pending`` queue entry, due or not, oldest first (on a lane view, the lane's).

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("pending_reversals", _select_reversals, None, self.lane_filter)

    async def reversal(self, original_trace_no: str) -> ReversalRecord | None:
        """The queue entry of ``original_trace_no`` in any state, or ``None`` if it has none.

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        return await self._run("reversal", _select_reversal, original_trace_no)

    async def count_reversals(self, state: ReversalState) -> int:
        """The number of queue entries in ``state`` (on a lane view, of the lane's transactions).

        Raises:
            JournalError: the read failed.
        """
        return await self._run("count_reversals", _count_reversals, state, self.lane_filter)

    async def record_reversal_attempt(self, original_trace_no: str, *, next_attempt_at: datetime, error: str) -> None:
        """Record a failed void attempt: ``attempts`` + 1, due again at ``next_attempt_at``.

        The entry stays ``pending`` (a reversal is never dropped); ``error`` becomes its
        ``last_error``.

        Raises:
            ReversalConflictError: there is no entry, or it is not ``pending``.
            JournalError: ``next_attempt_at`` is naive, or the write failed.
        """
        due = iso("next_attempt_at", next_attempt_at)
        await self._run("record_reversal_attempt", _record_reversal_attempt, original_trace_no, due, error, self._now())

    async def complete_reversal(
        self,
        original_trace_no: str,
        *,
        event: str = "voided",
        response: dict[str, Any] | None = None,
        return_code: str | None = None,
        detail: str = "",
    ) -> None:
        """Close the queue entry as ``done`` and move the transaction ``voiding -> voided``, atomically.

        One transaction: the entry becomes ``done`` with ``attempts`` + 1 (the attempt that
        succeeded), and the transaction's compare-and-set transition (``response`` and
        ``return_code`` as in ``record_transition``) with its transitions row.

        Raises:
            ReversalConflictError: there is no entry, or it is not ``pending``.
            StateConflictError: the transaction is not ``voiding``.
            JournalError: the write failed.
        """
        change = self._change(
            original_trace_no, _VOIDING, event, response=response, return_code=return_code, detail=detail
        )
        self._committed(change, await self._run("complete_reversal", _close_reversal, change, "done", 1))

    async def escalate_reversal(
        self,
        original_trace_no: str,
        *,
        detail: str,
        response: dict[str, Any] | None = None,
        return_code: str | None = None,
    ) -> None:
        """Give the queue entry to a person: entry and transaction become ``needs_manual``, atomically.

        One transaction: the entry becomes ``needs_manual`` (``attempts`` and ``last_error``
        kept) and the transaction moves ``voiding -> needs_manual`` (event ``escalate``,
        ``detail`` in its transitions row); ``response`` and ``return_code``, when given, replace
        the answer a repeat of the request gets (as in ``record_transition``).

        Raises:
            ReversalConflictError: there is no entry, or it is not ``pending``.
            StateConflictError: the transaction is not ``voiding``.
            JournalError: the write failed.
        """
        change = self._change(
            original_trace_no, _VOIDING, "escalate", response=response, return_code=return_code, detail=detail
        )
        self._committed(change, await self._run("escalate_reversal", _close_reversal, change, "needs_manual", 0))

    async def resolve(self, trace_no: str, outcome: str, *, note: str) -> TxnState:
        """Record an operator's resolution of ``trace_no``, in ``needs_manual``, as ``outcome``; return it.

        ``outcome`` is the final state the operator established with the backend: ``voided``
        or ``approved`` for a sale, ``approved`` or ``declined`` for a void or a refund (the
        kind's ``resolve_<outcome>`` event).  One transaction: the compare-and-set move out of
        ``needs_manual`` with ``note`` as its transitions row's detail, and the queue entry, if
        the transaction has one, closed ``needs_manual -> done``.

        Raises:
            StateConflictError: the transaction is not ``needs_manual`` (or does not exist).
            InvalidTransition: the kind cannot be resolved as ``outcome`` (the message names
                the outcomes it can).
            ReversalConflictError: the queue entry is not ``needs_manual``.
            JournalError: ``note`` is empty, or the write failed.
        """
        if not note.strip():
            raise JournalError(f"journal resolve {trace_no!r}: a note is required (who decided, on what evidence)")
        change = self._change(trace_no, TxnState.NEEDS_MANUAL.value, f"resolve_{outcome}", detail=note)
        to_state = await self._run("resolve", _resolve, change)
        self._committed(change, to_state)
        return to_state


# --- Everything below runs on the journal thread. ----------------------------------------


def _reversal_state(conn: sqlite3.Connection, original_trace_no: str) -> str | None:
    row = conn.execute("SELECT state FROM reversals WHERE original_trace_no = ?", (original_trace_no,)).fetchone()
    return None if row is None else str(row[0])


def _enqueue_reversal(conn: sqlite3.Connection, change: Change, due: str) -> TxnState:
    with immediate_transaction(conn):
        existing = _reversal_state(conn, change.trace_no)
        if existing is not None:
            raise ReversalConflictError(change.trace_no, None, existing)
        to_state = compare_and_set_in_transaction(conn, change)
        conn.execute(
            "INSERT INTO reversals (original_trace_no, state, attempts, next_attempt_at, created_at, updated_at)"
            " VALUES (?, 'pending', 0, ?, ?, ?)",
            (change.trace_no, due, change.at, change.at),
        )
    return to_state


def _update_reversal(
    conn: sqlite3.Connection, original_trace_no: str, expected: str, assignments: str, *args: Any
) -> None:
    cursor = conn.execute(
        f"UPDATE reversals SET {assignments} WHERE original_trace_no = ? AND state = ?",  # noqa: S608 - assignments are literals of this module
        (*args, original_trace_no, expected),
    )
    if cursor.rowcount == 0:
        raise ReversalConflictError(original_trace_no, expected, _reversal_state(conn, original_trace_no))


def _record_reversal_attempt(conn: sqlite3.Connection, original_trace_no: str, due: str, error: str, at: str) -> None:
    with immediate_transaction(conn):
        _update_reversal(
            conn,
            original_trace_no,
            "pending",
            "attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ?",
            due,
            error,
            at,
        )


def _close_reversal(conn: sqlite3.Connection, change: Change, state: str, extra_attempts: int) -> TxnState:
    with immediate_transaction(conn):
        _update_reversal(
            conn,
            change.trace_no,
            "pending",
            "state = ?, attempts = attempts + ?, updated_at = ?",
            state,
            extra_attempts,
            change.at,
        )
        return compare_and_set_in_transaction(conn, change)


def _resolve(conn: sqlite3.Connection, change: Change) -> TxnState:
    with immediate_transaction(conn):
        try:
            to_state = compare_and_set_in_transaction(conn, change)
        except InvalidTransition:
            row = conn.execute("SELECT action FROM transactions WHERE trace_no = ?", (change.trace_no,)).fetchone()
            kind = kind_of(str(row["action"]))
            allowed = sorted(
                spec.target.value for spec in TABLES[kind].transitions if spec.source is TxnState.NEEDS_MANUAL
            )
            outcome = change.event.removeprefix("resolve_")
            raise InvalidTransition(
                f"transaction {change.trace_no!r} is a {row['action']} ({kind.value}): it can be resolved as"
                f" {' or '.join(allowed)}, not {outcome!r}"
            ) from None
        if _reversal_state(conn, change.trace_no) is not None:
            _update_reversal(conn, change.trace_no, "needs_manual", "state = 'done', updated_at = ?", change.at)
    return to_state


def _to_reversal(row: sqlite3.Row) -> ReversalRecord:
    original = str(row["original_trace_no"])
    try:
        return ReversalRecord(
            original_trace_no=original,
            state=row["state"],
            attempts=int(row["attempts"]),
            next_attempt_at=time_of(row, "next_attempt_at"),
            created_at=time_of(row, "created_at"),
            updated_at=time_of(row, "updated_at"),
            last_error=row["last_error"],
        )
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal reversal of {original!r} is corrupt: {err}") from err


#: The reversals of one lane: an entry is its transaction's lane's (the ``reversals`` row has none).
_OF_LANE: Final = " AND original_trace_no IN (SELECT trace_no FROM transactions WHERE lane IS :lane)"


def _lane_condition(lanes: LaneFilter | None) -> tuple[str, dict[str, str | None]]:
    return ("", {}) if lanes is None else (_OF_LANE, {"lane": lanes.value})


def _open_intent(
    conn: sqlite3.Connection, record: TransactionRecord, lane: str | None, now: str, lanes: LaneFilter | None
) -> Intake:
    with immediate_transaction(conn):
        row = conn.execute("SELECT * FROM transactions WHERE trace_no = ?", (record.trace_no,)).fetchone()
        if row is not None:
            return Intake(existing=to_record(row))  # a COMMIT of nothing: no write, no sync
        if _any_due(conn, now, lanes):
            return Intake(voids_due=True)
        insert_intent_in_transaction(conn, record, lane)
    return Intake()


def _any_due(conn: sqlite3.Connection, due_at: str, lanes: LaneFilter | None) -> bool:
    """Whether a ``pending`` entry of ``lanes``' transactions is due at ``due_at``."""
    of_lane, params = _lane_condition(lanes)
    row = conn.execute(
        f"SELECT 1 FROM reversals WHERE state = 'pending' AND next_attempt_at <= :due_at{of_lane} LIMIT 1",  # noqa: S608 - literals with named placeholders
        {"due_at": due_at, **params},
    ).fetchone()
    return row is not None


def _select_reversals(conn: sqlite3.Connection, due_at: str | None, lanes: LaneFilter | None) -> list[ReversalRecord]:
    """Pending entries, oldest first; only those due at ``due_at`` unless it is ``None``; of ``lanes``' transactions."""
    of_lane, params = _lane_condition(lanes)
    rows = conn.execute(
        "SELECT * FROM reversals WHERE state = 'pending' AND (:due_at IS NULL OR next_attempt_at <= :due_at)"  # noqa: S608 - literals with named placeholders
        f"{of_lane} ORDER BY created_at, rowid",
        {"due_at": due_at, **params},
    ).fetchall()
    return [_to_reversal(row) for row in rows]


def _select_reversal(conn: sqlite3.Connection, original_trace_no: str) -> ReversalRecord | None:
    row = conn.execute("SELECT * FROM reversals WHERE original_trace_no = ?", (original_trace_no,)).fetchone()
    return None if row is None else _to_reversal(row)


def _count_reversals(conn: sqlite3.Connection, state: str, lanes: LaneFilter | None) -> int:
    of_lane, params = _lane_condition(lanes)
    query = f"SELECT COUNT(*) FROM reversals WHERE state = :state{of_lane}"  # noqa: S608 - literals with named placeholders
    return int(conn.execute(query, {"state": state, **params}).fetchone()[0])
