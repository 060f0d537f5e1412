"""The SQLite transaction journal (stdlib :mod:`sqlite3`), used from asyncio.

Durability (reliability-requirements.md §4, R1-R4):

* WAL with ``synchronous=FULL``: a COMMIT that returned survives a power cut, not only a
  process crash.  ``foreign_keys=ON``.
* ``isolation_level=None`` and an explicit ``BEGIN IMMEDIATE ... COMMIT`` around every write,
  so a write is exactly one transaction and never waits to upgrade a read lock.
* Every sqlite call runs on **one** dedicated worker thread that also created the
  connection, so the event loop never blocks on disk and calls are serialised in order.
* ``sqlite3.Error`` is translated to :class:`~misbridge.errors.JournalError` here and only here.
* State changes are compare-and-set on the current state, and a trigger refuses any change
  to a transaction in a final state (:mod:`misbridge.journal.schema`).

What misbridge originates itself (schema v2, issue #4):

* :meth:`Journal.allocate_call` numbers every ``inquiry`` and void with a new traceNo,
  ``yyyyMMddHHmmss`` (local time) + a 10-digit serial from the ``trace_serial`` counter, and
  bumps the counter and inserts the ``backend_calls`` row in one commit before returning it:
  a traceNo the backend may have seen is never handed out again, crash or not.
* The reversal queue (jPOS SAF style) is the ``reversals`` table: one entry per original,
  created in the same commit as the transaction's move to ``voiding``
  (:meth:`Journal.enqueue_reversal`) and closed in the same commit as its move out of it
  (:meth:`Journal.complete_reversal`, :meth:`Journal.escalate_reversal`).  The journal keeps
  the bookkeeping (attempts, next attempt, last error); the caller decides the backoff and
  the expiry.

The POS's own ``inquiry`` about an original the journal does not hold is forwarded to the
backend (schema v3, issue 10): :meth:`Journal.record_pos_inquiry` commits a ``pos_inquiries`` row
before it leaves, :meth:`Journal.record_pos_inquiry_result` its one result. The backend bars both
traceNos of such an inquiry for ever, so :meth:`Journal.record_intent` refuses a transaction with
either (:class:`BarredTraceNoError`) and :meth:`Journal.allocate_call` never hands one out.

A write whose awaiting task is cancelled still runs to completion (or failure) on the worker
thread; re-read with :meth:`Journal.get` to learn which.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, TypeVar

from misbridge.core.machine import TABLES, TxnState, kind_of, next_state
from misbridge.ebuy import jsonio
from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal.records import (
    CallKind,
    CallRecord,
    ReversalRecord,
    ReversalState,
    TransactionRecord,
    TransitionRecord,
    iso_utc,
    storable,
    utc_now,
)
from misbridge.journal.schema import FINAL_STATES, PURGES_TABLE, TRACE_SERIAL, immediate_transaction, migrate

__all__ = [
    "BarredTraceNoError",
    "DuplicateTraceNoError",
    "Journal",
    "JournalSettings",
    "KnownOriginalError",
    "PosInquiryRecord",
    "ReversalConflictError",
    "StateConflictError",
]

_T = TypeVar("_T")

_BUSY_TIMEOUT_S: Final = 5.0  # another process (backup, ops shell) may hold the lock briefly
_SYNCHRONOUS_NAMES: Final = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_INTENT_EVENT: Final = "intent"
_TRACE_PREFIX_FORMAT: Final = "%Y%m%d%H%M%S"
_SERIAL_DIGITS: Final = 10
_MAX_SERIAL: Final = 10**_SERIAL_DIGITS - 1
_CALL_RESULTS: Final[tuple[str, ...]] = ("answered", "unknown")
_VOIDING: Final = "voiding"
_PURGE_BATCH: Final = 500


class DuplicateTraceNoError(JournalError):
    """An intent was recorded for a ``trace_no`` the journal already holds."""

    def __init__(self, trace_no: str) -> None:
        super().__init__(f"transaction {trace_no!r} is already in the journal")
        self.trace_no = trace_no


class BarredTraceNoError(DuplicateTraceNoError):
    """An intent was recorded for a traceNo the backend has already seen in another request.

    ``seen_as`` says how: the traceNo of a request misbridge originated, or the traceNo or
    ``originalTraceNo`` of a POS inquiry misbridge forwarded. A sale with it would be refused by
    the backend as a duplicate, after the customer typed the PIN.
    """

    def __init__(self, trace_no: str, seen_as: str) -> None:
        super().__init__(trace_no)
        self.args = (f"traceNo {trace_no!r} was already seen by the backend as {seen_as}",)
        self.seen_as = seen_as


class KnownOriginalError(JournalError):
    """A POS inquiry was to be forwarded about an original the journal holds (answer from it instead)."""

    def __init__(self, original_trace_no: str) -> None:
        super().__init__(f"transaction {original_trace_no!r} is in the journal")
        self.original_trace_no = original_trace_no


class StateConflictError(JournalError):
    """A compare-and-set state change found a different state (``actual=None``: no such row)."""

    def __init__(self, trace_no: str, expected: str, actual: str | None) -> None:
        found = "no such transaction" if actual is None else f"it is {actual!r}"
        super().__init__(f"transaction {trace_no!r}: expected state {expected!r} but {found}")
        self.trace_no = trace_no
        self.expected = expected
        self.actual = actual


class ReversalConflictError(JournalError):
    """A reversal queue change found the entry in another state (``actual=None``: no entry).

    ``expected`` is the state the change needed, or ``None`` when it needed no entry at all
    (:meth:`Journal.enqueue_reversal` of an original that is already queued).
    """

    def __init__(self, original_trace_no: str, expected: str | None, actual: str | None) -> None:
        wanted = "no entry" if expected is None else f"state {expected!r}"
        found = "there is none" if actual is None else f"it is {actual!r}"
        super().__init__(f"reversal of {original_trace_no!r}: expected {wanted} but {found}")
        self.original_trace_no = original_trace_no
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class PosInquiryRecord:
    """One POS ``inquiry`` misbridge forwarded to the backend (the original was not journaled).

    ``state`` is ``sent`` (committed before the request left), then ``answered`` (``return_code``
    and ``response`` hold the reply) or ``unknown`` (no usable reply).
    """

    id: int
    trace_no: str
    original_trace_no: str
    state: str
    return_code: str | None
    response: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class JournalSettings:
    """The durability settings in force on the journal's connection."""

    journal_mode: str
    synchronous: str
    foreign_keys: bool
    schema_version: int
    page_cache_kib: int


class Journal:
    """The durable record of every transaction and its state changes.

    Open with :meth:`open` (not the constructor) and :meth:`close` when done, or use
    ``async with``.  All methods are coroutines and may be called concurrently; they are
    executed one at a time, in call order, on the journal's thread.

    Args:
        conn: a connection made by the journal thread.
        executor: the one-thread executor that owns ``conn``.
        clock: returns the current timezone-aware time for ``updated_at`` and ``at``.
    """

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self._executor = executor
        self._clock = clock
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], datetime] = utc_now) -> Journal:
        """Open (creating and migrating if needed) the journal file at ``path``.

        Raises:
            JournalError: the file cannot be opened, WAL cannot be enabled, or the schema is
                newer than this code.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="misbridge-journal")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except sqlite3.Error as err:
            executor.shutdown(wait=False)
            raise JournalError(f"cannot open journal {path}: {err}") from err
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, clock)

    async def close(self) -> None:
        """Finish queued calls, close the connection and stop the thread.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        except sqlite3.Error as err:
            raise JournalError(f"closing the journal failed: {err}") from err
        finally:
            # The worker is idle once close() ran on it, so this returns at once.
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def record_intent(self, record: TransactionRecord) -> None:
        """Insert a new transaction and its first transitions row (``"" -> state``, ``intent``).

        Returns only after the COMMIT: the intent is durable.

        Raises:
            DuplicateTraceNoError: ``record.trace_no`` is already in the journal.
            InvalidTransition: ``record.action`` has no state machine, or ``record.state`` is
                not the initial state of its kind (a transaction starts where its machine does).
            JournalError: the write failed.
        """
        initial = TABLES[kind_of(record.action)].initial
        if record.state != initial:
            raise InvalidTransition(f"a {record.action} starts in {initial.value!r}, not {record.state!r}")
        await self._run("record_intent", _insert_intent, record)

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
        return await self._run("record_transition", _compare_and_set, change)

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

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("list_by_states", _select_by_states, tuple(str(s) for s in states))

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"``, or the problems found, one per line.

        Raises:
            JournalError: the check could not run.
        """
        return await self._run("integrity_check", _integrity_check)

    async def count(self) -> int:
        """The number of transactions in the journal.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("count", _count)

    # --- Requests misbridge originates: traceNo allocation and their results. -------------

    async def allocate_call(self, original_trace_no: str, kind: CallKind, *, local_now: datetime | None = None) -> str:
        """Allocate a new traceNo for a ``kind`` request about ``original_trace_no``; return it.

        The traceNo is ``local_now`` formatted ``%Y%m%d%H%M%S`` followed by the next
        ``trace_serial`` zero-padded to 10 digits (24 characters).  ``local_now`` is used in
        the offset it carries; by default it is the journal clock in the machine's local
        time zone.  The serial is global and only grows (no reset at day rollover), so it
        never repeats, within one second or across restarts and crashes; a serial that would
        make a traceNo equal to a POS traceNo already in the journal is skipped.

        The counter bump and the ``backend_calls`` row (state ``sent``) are one transaction:
        this returns after the COMMIT, before anything may be sent with the traceNo.

        Raises:
            JournalError: ``original_trace_no`` is not in the journal, ``kind`` is unknown, a
                time is naive, the serial is exhausted, or the write failed.
        """
        local = self._clock().astimezone() if local_now is None else local_now
        _iso("local_now", local)  # refuses a naive time
        prefix = local.strftime(_TRACE_PREFIX_FORMAT)
        return await self._run("allocate_call", _allocate_call, original_trace_no, kind, prefix, self._now())

    async def record_call_result(
        self,
        trace_no: str,
        *,
        state: Literal["answered", "unknown"],
        return_code: str | None = None,
        response: dict[str, Any] | None = None,
    ) -> None:
        """Record the one result of the originated request ``trace_no``.

        ``state`` is ``"answered"`` (a reply arrived: ``return_code`` and ``response`` hold
        it) or ``"unknown"`` (no usable reply).  A call gets exactly one result.

        Raises:
            JournalError: ``state`` is not ``answered``/``unknown``, the call is unknown or
                already has its result, or the write failed.
        """
        if state not in _CALL_RESULTS:
            raise JournalError(f"journal record_call_result: state must be one of {_CALL_RESULTS!r}, got {state!r}")
        response_json = None if response is None else jsonio.dumps(storable(response))
        await self._run(
            "record_call_result", _record_call_result, trace_no, state, return_code, response_json, self._now()
        )

    async def calls(self, original_trace_no: str) -> list[CallRecord]:
        """The requests misbridge originated about ``original_trace_no``, oldest first.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("calls", _select_calls, original_trace_no)

    # --- POS inquiries forwarded to the backend. --------------------------------------------

    async def record_pos_inquiry(self, trace_no: str, original_trace_no: str) -> int:
        """Record that the POS inquiry ``trace_no`` about ``original_trace_no`` is about to be forwarded.

        Returns the row's id once committed: before anything is sent. From then on neither
        traceNo can start a transaction (:meth:`record_intent` raises :class:`BarredTraceNoError`).
        The check that the original is unknown and the insert are one transaction, so a sale
        whose intent is committed first is answered from the journal instead.

        Raises:
            KnownOriginalError: ``original_trace_no`` is in the journal.
            JournalError: the write failed.
        """
        return await self._run("record_pos_inquiry", _insert_pos_inquiry, trace_no, original_trace_no, self._now())

    async def record_pos_inquiry_result(
        self,
        inquiry_id: int,
        *,
        state: Literal["answered", "unknown"],
        return_code: str | None = None,
        response: dict[str, Any] | None = None,
    ) -> None:
        """Record the one result of the forwarded POS inquiry ``inquiry_id``.

        Raises:
            JournalError: ``state`` is not ``answered``/``unknown``, the row is unknown or
                already has its result, or the write failed.
        """
        if state not in _CALL_RESULTS:
            raise JournalError(
                f"journal record_pos_inquiry_result: state must be one of {_CALL_RESULTS!r}, got {state!r}"
            )
        response_json = None if response is None else jsonio.dumps(storable(response))
        await self._run(
            "record_pos_inquiry_result", _record_pos_inquiry_result, inquiry_id, state, return_code, response_json,
            self._now(),
        )  # fmt: skip

    async def pos_inquiries(self, trace_no: str) -> list[PosInquiryRecord]:
        """Forwarded POS inquiries with ``trace_no`` as their own traceNo or as the original, oldest first.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("pos_inquiries", _select_pos_inquiries, trace_no)

    async def barred_as(self, trace_no: str) -> str | None:
        """How the backend has already seen ``trace_no`` (see :class:`BarredTraceNoError`), or ``None``.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("barred_as", _barred_as, trace_no)

    # --- The reversal queue. ----------------------------------------------------------------

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
        :meth:`record_transition`, including ``response``/``return_code``: the answer the POS
        is given from now on) and a ``pending`` queue entry with 0 attempts, due at
        ``first_attempt_at`` (default: now).  Either both are committed or neither.

        Raises:
            ReversalConflictError: ``trace_no`` already has a queue entry (whatever its state).
            StateConflictError: the transaction is not in ``from_state`` (or does not exist).
            InvalidTransition: ``event`` does not lead from ``from_state`` to ``voiding``.
            JournalError: a time is naive, or the write failed.
        """
        change = self._change(trace_no, from_state, event, detail=detail, response=response, return_code=return_code)
        due = change.at if first_attempt_at is None else _iso("first_attempt_at", first_attempt_at)
        await self._run("enqueue_reversal", _enqueue_reversal, change, due)

    async def due_reversals(self, now: datetime | None = None) -> list[ReversalRecord]:
        """The ``pending`` queue entries due at ``now`` (default: the clock), oldest first.

        Raises:
            JournalError: ``now`` is naive, the read failed or a row is corrupt.
        """
        at = self._now() if now is None else _iso("now", now)
        return await self._run("due_reversals", _select_reversals, at)

    async def pending_reversals(self) -> list[ReversalRecord]:
        """Every ``pending`` queue entry, due or not, oldest first.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("pending_reversals", _select_reversals, None)

    async def reversal(self, original_trace_no: str) -> ReversalRecord | None:
        """The queue entry of ``original_trace_no`` in any state, or ``None`` if it has none.

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        return await self._run("reversal", _select_reversal, original_trace_no)

    async def count_reversals(self, state: ReversalState) -> int:
        """The number of queue entries in ``state``.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("count_reversals", _count_reversals, state)

    async def record_reversal_attempt(self, original_trace_no: str, *, next_attempt_at: datetime, error: str) -> None:
        """Record a failed void attempt: ``attempts`` + 1, due again at ``next_attempt_at``.

        The entry stays ``pending`` (a reversal is never dropped); ``error`` becomes its
        ``last_error``.

        Raises:
            ReversalConflictError: there is no entry, or it is not ``pending``.
            JournalError: ``next_attempt_at`` is naive, or the write failed.
        """
        due = _iso("next_attempt_at", next_attempt_at)
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
        ``return_code`` as in :meth:`record_transition`) with its transitions row.

        Raises:
            ReversalConflictError: there is no entry, or it is not ``pending``.
            StateConflictError: the transaction is not ``voiding``.
            JournalError: the write failed.
        """
        change = self._change(
            original_trace_no, _VOIDING, event, response=response, return_code=return_code, detail=detail
        )
        await self._run("complete_reversal", _close_reversal, change, "done", 1)

    async def escalate_reversal(self, original_trace_no: str, *, detail: str) -> None:
        """Give the queue entry to a person: entry and transaction become ``needs_manual``, atomically.

        One transaction: the entry becomes ``needs_manual`` (``attempts`` and ``last_error``
        kept) and the transaction moves ``voiding -> needs_manual`` (event ``escalate``,
        ``detail`` in its transitions row).

        Raises:
            ReversalConflictError: there is no entry, or it is not ``pending``.
            StateConflictError: the transaction is not ``voiding``.
            JournalError: the write failed.
        """
        change = self._change(original_trace_no, _VOIDING, "escalate", detail=detail)
        await self._run("escalate_reversal", _close_reversal, change, "needs_manual", 0)

    async def purge(self, older_than: datetime, *, batch_size: int = _PURGE_BATCH) -> int:
        """Delete final transactions last changed before ``older_than``; return how many.

        Retention (R16): a transaction in a final state (:data:`~misbridge.journal.schema.FINAL_STATES`)
        whose ``updated_at`` is before ``older_than`` is deleted together with its transitions,
        the backend calls misbridge made about it and its ``done`` reversal. A transaction in any
        other state, or with a reversal that is not ``done``, is never touched, however old.
        The counters are kept, so a misbridge-originated traceNo is still never reused.

        The purge records itself in the ``purges`` table: one row per call (time, cutoff and
        the rows deleted per table), written in the same commit as each batch of at most
        ``batch_size`` transactions, so the daemon's writes never wait long.

        Raises:
            JournalError: ``older_than`` is naive, ``batch_size`` < 1, or the write failed.
        """
        if batch_size < 1:
            raise JournalError("journal purge: batch_size must be at least 1")
        cutoff = _iso("older_than", older_than)
        purge_id: int | None = None
        total = 0
        while True:
            purge_id, deleted = await self._run("purge", _purge_batch, cutoff, self._now(), purge_id, batch_size)
            total += deleted
            if deleted < batch_size:
                return total

    async def settings(self) -> JournalSettings:
        """The journal mode, synchronous level, foreign-key enforcement, schema version and page cache in force.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("settings", _settings)

    def _now(self) -> str:
        return _iso("clock time", self._clock())

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
    ) -> _Change:
        return _Change(
            trace_no=trace_no,
            from_state=from_state,
            event=event,
            at=self._now(),
            masked_pan=masked_pan,
            card_type=card_type,
            response_json=None if response is None else jsonio.dumps(storable(response)),
            return_code=return_code,
            detail=detail,
        )

    async def _run(self, what: str, func: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise JournalError(f"journal {what}: the journal is closed")
        call = partial(func, self._conn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as err:
            raise JournalError(f"journal {what} failed: {err}") from err


def _iso(name: str, moment: datetime) -> str:
    try:
        return iso_utc(moment)
    except ValueError as err:
        raise JournalError(f"journal {name}: {err}") from err


# --- Everything below runs on the journal thread. ----------------------------------------


@dataclass(frozen=True)
class _Change:
    trace_no: str
    from_state: str
    event: str
    at: str
    masked_pan: str | None
    card_type: str | None
    response_json: str | None
    return_code: str | None
    detail: str


#: SQLite page cache per connection, KiB (negative cache_size = KiB).
_PAGE_CACHE_KIB = 512


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        conn.row_factory = sqlite3.Row
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            raise JournalError(f"journal {path}: WAL mode refused (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # The working set is a few recent rows and the index roots; the OS page cache keeps the
        # rest. SQLite's default 2 MiB page cache only fills as the file grows, which showed as
        # daemon RSS growth over 10 000 sales (docs/performance.md).
        conn.execute(f"PRAGMA cache_size = -{_PAGE_CACHE_KIB:d}")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _insert_intent(conn: sqlite3.Connection, record: TransactionRecord) -> None:
    created_at, updated_at = iso_utc(record.created_at), iso_utc(record.updated_at)
    with immediate_transaction(conn):
        seen_as = _barred_as(conn, record.trace_no)
        if seen_as is not None:
            raise BarredTraceNoError(record.trace_no, seen_as)
        cursor = conn.execute(
            "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, masked_pan,"
            " card_type, response_json, return_code, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_no) DO NOTHING",
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
            ),
        )
        if cursor.rowcount == 0:
            raise DuplicateTraceNoError(record.trace_no)
        _insert_transition(conn, record.trace_no, "", record.state, _INTENT_EVENT, created_at, "")


def _insert_transition(
    conn: sqlite3.Connection, trace_no: str, from_state: str, to_state: str, event: str, at: str, detail: str
) -> None:
    conn.execute(
        "INSERT INTO transitions (trace_no, from_state, to_state, event, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (trace_no, from_state, to_state, event, at, detail),
    )


def _compare_and_set(conn: sqlite3.Connection, change: _Change) -> TxnState:
    with immediate_transaction(conn):
        return _compare_and_set_in_transaction(conn, change)


def _compare_and_set_in_transaction(conn: sqlite3.Connection, change: _Change) -> TxnState:
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
    _insert_transition(conn, change.trace_no, change.from_state, to_state, change.event, change.at, change.detail)
    return to_state


def _exists(conn: sqlite3.Connection, query: str, key: str) -> bool:
    return conn.execute(query, (key,)).fetchone() is not None


def _next_serial(conn: sqlite3.Connection) -> int:
    cursor = conn.execute("UPDATE counters SET value = value + 1 WHERE name = ?", (TRACE_SERIAL,))
    if cursor.rowcount != 1:
        raise JournalError(f"journal counter {TRACE_SERIAL!r} is missing")
    serial = int(conn.execute("SELECT value FROM counters WHERE name = ?", (TRACE_SERIAL,)).fetchone()[0])
    if serial > _MAX_SERIAL:
        raise JournalError(f"journal counter {TRACE_SERIAL!r} is exhausted ({_SERIAL_DIGITS} digits)")
    return serial


def _insert_call(conn: sqlite3.Connection, trace_no: str, original_trace_no: str, kind: str, at: str) -> None:
    conn.execute(
        "INSERT INTO backend_calls (trace_no, original_trace_no, kind, state, created_at, updated_at)"
        " VALUES (?, ?, ?, 'sent', ?, ?)",
        (trace_no, original_trace_no, kind, at, at),
    )


def _allocate_call(conn: sqlite3.Connection, original_trace_no: str, kind: str, prefix: str, at: str) -> str:
    with immediate_transaction(conn):
        if not _exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", original_trace_no):
            raise JournalError(f"journal allocate_call: no transaction {original_trace_no!r}")
        while True:  # skip a serial that would repeat a traceNo the POS used (it may send 24 digits too)
            trace_no = f"{prefix}{_next_serial(conn):0{_SERIAL_DIGITS}d}"
            used = _exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", trace_no)
            if not used and _barred_as(conn, trace_no) is None:
                break
        _insert_call(conn, trace_no, original_trace_no, kind, at)
    return trace_no


def _record_call_result(
    conn: sqlite3.Connection, trace_no: str, state: str, return_code: str | None, response_json: str | None, at: str
) -> None:
    with immediate_transaction(conn):
        cursor = conn.execute(
            "UPDATE backend_calls SET state = ?, return_code = ?, response_json = ?, updated_at = ?"
            " WHERE trace_no = ? AND state = 'sent'",
            (state, return_code, response_json, at, trace_no),
        )
        if cursor.rowcount == 0:
            row = conn.execute("SELECT state FROM backend_calls WHERE trace_no = ?", (trace_no,)).fetchone()
            found = "there is no such call" if row is None else f"it is already {row[0]!r}"
            raise JournalError(f"journal record_call_result: backend call {trace_no!r}: {found}")


_BARRED_AS: Final = (
    ("SELECT 1 FROM backend_calls WHERE trace_no = ?", "the traceNo of a request misbridge sent"),
    ("SELECT 1 FROM pos_inquiries WHERE trace_no = ?", "the traceNo of a forwarded POS inquiry"),
    ("SELECT 1 FROM pos_inquiries WHERE original_trace_no = ?", "the originalTraceNo of a forwarded POS inquiry"),
)


def _barred_as(conn: sqlite3.Connection, trace_no: str) -> str | None:
    return next((seen_as for query, seen_as in _BARRED_AS if _exists(conn, query, trace_no)), None)


def _insert_pos_inquiry(conn: sqlite3.Connection, trace_no: str, original_trace_no: str, at: str) -> int:
    with immediate_transaction(conn):
        if _exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", original_trace_no):
            raise KnownOriginalError(original_trace_no)
        cursor = conn.execute(
            "INSERT INTO pos_inquiries (trace_no, original_trace_no, state, created_at, updated_at)"
            " VALUES (?, ?, 'sent', ?, ?)",
            (trace_no, original_trace_no, at, at),
        )
    return int(cursor.lastrowid or 0)


def _record_pos_inquiry_result(
    conn: sqlite3.Connection, inquiry_id: int, state: str, return_code: str | None, response_json: str | None, at: str
) -> None:
    with immediate_transaction(conn):
        cursor = conn.execute(
            "UPDATE pos_inquiries SET state = ?, return_code = ?, response_json = ?, updated_at = ?"
            " WHERE id = ? AND state = 'sent'",
            (state, return_code, response_json, at, inquiry_id),
        )
        if cursor.rowcount == 0:
            row = conn.execute("SELECT state FROM pos_inquiries WHERE id = ?", (inquiry_id,)).fetchone()
            found = "there is no such row" if row is None else f"it is already {row[0]!r}"
            raise JournalError(f"journal record_pos_inquiry_result: forwarded inquiry {inquiry_id}: {found}")


def _reversal_state(conn: sqlite3.Connection, original_trace_no: str) -> str | None:
    row = conn.execute("SELECT state FROM reversals WHERE original_trace_no = ?", (original_trace_no,)).fetchone()
    return None if row is None else str(row[0])


def _enqueue_reversal(conn: sqlite3.Connection, change: _Change, due: str) -> None:
    with immediate_transaction(conn):
        existing = _reversal_state(conn, change.trace_no)
        if existing is not None:
            raise ReversalConflictError(change.trace_no, None, existing)
        _compare_and_set_in_transaction(conn, change)
        conn.execute(
            "INSERT INTO reversals (original_trace_no, state, attempts, next_attempt_at, created_at, updated_at)"
            " VALUES (?, 'pending', 0, ?, ?, ?)",
            (change.trace_no, due, change.at, change.at),
        )


def _update_pending_reversal(conn: sqlite3.Connection, original_trace_no: str, assignments: str, *args: Any) -> None:
    cursor = conn.execute(
        f"UPDATE reversals SET {assignments} WHERE original_trace_no = ? AND state = 'pending'",  # noqa: S608 - assignments are literals of this module
        (*args, original_trace_no),
    )
    if cursor.rowcount == 0:
        raise ReversalConflictError(original_trace_no, "pending", _reversal_state(conn, original_trace_no))


def _record_reversal_attempt(conn: sqlite3.Connection, original_trace_no: str, due: str, error: str, at: str) -> None:
    with immediate_transaction(conn):
        _update_pending_reversal(
            conn,
            original_trace_no,
            "attempts = attempts + 1, next_attempt_at = ?, last_error = ?, updated_at = ?",
            due,
            error,
            at,
        )


def _close_reversal(conn: sqlite3.Connection, change: _Change, state: str, extra_attempts: int) -> None:
    with immediate_transaction(conn):
        _update_pending_reversal(
            conn,
            change.trace_no,
            "state = ?, attempts = attempts + ?, updated_at = ?",
            state,
            extra_attempts,
            change.at,
        )
        _compare_and_set_in_transaction(conn, change)


def _purge_batch(
    conn: sqlite3.Connection, cutoff: str, at: str, purge_id: int | None, batch_size: int
) -> tuple[int, int]:
    """Delete up to ``batch_size`` purgeable transactions; return (purge row id, transactions deleted)."""
    final = ", ".join("?" * len(FINAL_STATES))
    with immediate_transaction(conn):
        conn.execute(PURGES_TABLE)
        if purge_id is None:
            purge_id = int(conn.execute("INSERT INTO purges (at, cutoff) VALUES (?, ?)", (at, cutoff)).lastrowid or 0)
        victims = [
            (str(row[0]),)
            for row in conn.execute(
                f"SELECT trace_no FROM transactions AS t WHERE state IN ({final}) AND updated_at < ?"  # noqa: S608 - only "?" placeholders are formatted in
                " AND NOT EXISTS (SELECT 1 FROM reversals AS r WHERE r.original_trace_no = t.trace_no"
                " AND r.state <> 'done') ORDER BY updated_at LIMIT ?",
                (*FINAL_STATES, cutoff, batch_size),
            )
        ]
        counts = {
            "transitions": _delete_each(conn, "DELETE FROM transitions WHERE trace_no = ?", victims),
            "backend_calls": _delete_each(conn, "DELETE FROM backend_calls WHERE original_trace_no = ?", victims),
            "reversals": _delete_each(
                conn, "DELETE FROM reversals WHERE original_trace_no = ? AND state = 'done'", victims
            ),
            "transactions": _delete_each(
                conn, f"DELETE FROM transactions WHERE trace_no = ? AND state IN ({final})",  # noqa: S608 - placeholders only
                [(trace_no, *FINAL_STATES) for (trace_no,) in victims],
            ),
        }
        conn.execute(
            "UPDATE purges SET transactions = transactions + :transactions, transitions = transitions + :transitions,"
            " backend_calls = backend_calls + :backend_calls, reversals = reversals + :reversals WHERE id = :id",
            {**counts, "id": purge_id},
        )
    return purge_id, counts["transactions"]


def _delete_each(conn: sqlite3.Connection, statement: str, rows: Iterable[tuple[str, ...]]) -> int:
    return sum(conn.execute(statement, row).rowcount for row in rows)


def _load_dict(text: str, what: str) -> dict[str, Any]:
    try:
        value = jsonio.loads(text)
    except jsonio.JSONDecodeError as err:
        raise JournalError(f"journal {what} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise JournalError(f"journal {what} is not a JSON object")
    return value


def _to_record(row: sqlite3.Row) -> TransactionRecord:
    trace_no = str(row["trace_no"])
    response_json = row["response_json"]
    try:
        return TransactionRecord(
            trace_no=trace_no,
            action=row["action"],
            state=row["state"],
            request=_load_dict(row["request_json"], f"request of {trace_no!r}"),
            request_hash=row["request_hash"],
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            masked_pan=row["masked_pan"],
            card_type=row["card_type"],
            response=None if response_json is None else _load_dict(response_json, f"response of {trace_no!r}"),
            return_code=row["return_code"],
        )
    except (TypeError, ValueError) as err:  # a timestamp that is not ISO-8601 with an offset
        raise JournalError(f"journal row {trace_no!r} is corrupt: {err}") from err


def _select_transaction(conn: sqlite3.Connection, trace_no: str) -> TransactionRecord | None:
    row = conn.execute("SELECT * FROM transactions WHERE trace_no = ?", (trace_no,)).fetchone()
    return None if row is None else _to_record(row)


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


def _select_by_states(conn: sqlite3.Connection, states: tuple[str, ...]) -> list[TransactionRecord]:
    if not states:
        return []
    placeholders = ", ".join("?" * len(states))
    rows = conn.execute(
        f"SELECT * FROM transactions WHERE state IN ({placeholders}) ORDER BY created_at, trace_no",  # noqa: S608 - only "?" placeholders are formatted in
        states,
    ).fetchall()
    return [_to_record(row) for row in rows]


def _time(row: sqlite3.Row, column: str) -> datetime:
    return datetime.fromisoformat(row[column])


def _to_call(row: sqlite3.Row) -> CallRecord:
    trace_no = str(row["trace_no"])
    response_json = row["response_json"]
    try:
        return CallRecord(
            trace_no=trace_no,
            original_trace_no=row["original_trace_no"],
            kind=row["kind"],
            state=row["state"],
            return_code=row["return_code"],
            response=None if response_json is None else _load_dict(response_json, f"response of call {trace_no!r}"),
            created_at=_time(row, "created_at"),
            updated_at=_time(row, "updated_at"),
        )
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal backend call {trace_no!r} is corrupt: {err}") from err


def _to_pos_inquiry(row: sqlite3.Row) -> PosInquiryRecord:
    inquiry_id = int(row["id"])
    response_json = row["response_json"]
    try:
        return PosInquiryRecord(
            id=inquiry_id,
            trace_no=row["trace_no"],
            original_trace_no=row["original_trace_no"],
            state=row["state"],
            return_code=row["return_code"],
            response=None if response_json is None else _load_dict(response_json, f"response of inquiry {inquiry_id}"),
            created_at=_time(row, "created_at"),
            updated_at=_time(row, "updated_at"),
        )
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal forwarded inquiry {inquiry_id} is corrupt: {err}") from err


def _select_pos_inquiries(conn: sqlite3.Connection, trace_no: str) -> list[PosInquiryRecord]:
    rows = conn.execute(
        "SELECT * FROM pos_inquiries WHERE trace_no = :t OR original_trace_no = :t ORDER BY id", {"t": trace_no}
    ).fetchall()
    return [_to_pos_inquiry(row) for row in rows]


def _select_calls(conn: sqlite3.Connection, original_trace_no: str) -> list[CallRecord]:
    rows = conn.execute(
        "SELECT * FROM backend_calls WHERE original_trace_no = ? ORDER BY created_at, rowid", (original_trace_no,)
    ).fetchall()
    return [_to_call(row) for row in rows]


def _to_reversal(row: sqlite3.Row) -> ReversalRecord:
    original = str(row["original_trace_no"])
    try:
        return ReversalRecord(
            original_trace_no=original,
            state=row["state"],
            attempts=int(row["attempts"]),
            next_attempt_at=_time(row, "next_attempt_at"),
            created_at=_time(row, "created_at"),
            updated_at=_time(row, "updated_at"),
            last_error=row["last_error"],
        )
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal reversal of {original!r} is corrupt: {err}") from err


def _select_reversals(conn: sqlite3.Connection, due_at: str | None) -> list[ReversalRecord]:
    """Pending entries, oldest first; only those due at ``due_at`` unless it is ``None``."""
    rows = conn.execute(
        "SELECT * FROM reversals WHERE state = 'pending' AND (:due_at IS NULL OR next_attempt_at <= :due_at)"
        " ORDER BY created_at, rowid",
        {"due_at": due_at},
    ).fetchall()
    return [_to_reversal(row) for row in rows]


def _select_reversal(conn: sqlite3.Connection, original_trace_no: str) -> ReversalRecord | None:
    row = conn.execute("SELECT * FROM reversals WHERE original_trace_no = ?", (original_trace_no,)).fetchone()
    return None if row is None else _to_reversal(row)


def _count_reversals(conn: sqlite3.Connection, state: str) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM reversals WHERE state = ?", (state,)).fetchone()[0])


def _integrity_check(conn: sqlite3.Connection) -> str:
    return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall())


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _settings(conn: sqlite3.Connection) -> JournalSettings:
    synchronous = int(_pragma(conn, "synchronous"))
    return JournalSettings(
        journal_mode=str(_pragma(conn, "journal_mode")),
        synchronous=_SYNCHRONOUS_NAMES.get(synchronous, str(synchronous)),
        foreign_keys=bool(_pragma(conn, "foreign_keys")),
        schema_version=int(_pragma(conn, "user_version")),
        page_cache_kib=-int(_pragma(conn, "cache_size")),
    )
