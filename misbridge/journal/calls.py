"""What misbridge originates itself (schema v2, issue #4): ``backend_calls`` and the traceNo counter.

:meth:`BackendCalls.allocate_call` numbers every ``inquiry`` and void with a new traceNo,
``yyyyMMddHHmmss`` (local time) + a 10-digit serial from the ``trace_serial`` counter, and
bumps the counter and inserts the ``backend_calls`` row in one commit before returning it:
a traceNo the backend may have seen is never handed out again, crash or not.

The backend refuses any traceNo it has already seen, so :func:`barred_as` (the requests
misbridge sent, its key requests, :mod:`misbridge.journal.key_calls`, and the POS's inquiries,
queries and uploads it passed on) is what neither a new transaction nor a new call may use.
:func:`trace_prefix` and :func:`new_trace_no` are the numbering itself, shared with the key
requests, so both take their serials from the one counter.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any, Final, Literal

from misbridge.errors import JournalError
from misbridge.journal.connection import JournalBase, iso
from misbridge.journal.records import CallKind, CallRecord
from misbridge.journal.rows import BACKEND_CALLS, exists, record_result, request_fields, response_json
from misbridge.journal.schema import TRACE_SERIAL, immediate_transaction

__all__ = ["CALL_RESULTS", "BackendCalls", "barred_as", "new_trace_no", "trace_prefix"]

_TRACE_PREFIX_FORMAT: Final = "%Y%m%d%H%M%S"
_SERIAL_DIGITS: Final = 10
_MAX_SERIAL: Final = 10**_SERIAL_DIGITS - 1
#: The results an originated request can get.
CALL_RESULTS: Final[tuple[str, ...]] = ("answered", "unknown")


class BackendCalls(JournalBase):
    """The requests misbridge originates: traceNo allocation, their results, and barred traceNos."""

    async def allocate_call(self, original_trace_no: str, kind: CallKind, *, local_now: datetime | None = None) -> str:
        """Allocate a new traceNo for a ``kind`` request about ``original_trace_no``; return it.

        The traceNo is ``local_now`` formatted ``%Y%m%d%H%M%S`` followed by the next
        ``trace_serial`` zero-padded to 10 digits (24 characters).  ``local_now`` is used in
        the offset it carries; by default it is the journal clock in the machine's local
        time zone.  The serial is global and only grows (no reset at day rollover), so it
        never repeats, within one second or across restarts and crashes; a serial that would
        make a traceNo equal to a POS traceNo already in the journal, or one the backend has
        already seen (:func:`barred_as`), is skipped.

        The counter bump and the ``backend_calls`` row (state ``sent``) are one transaction:
        this returns after the COMMIT, before anything may be sent with the traceNo.

        Raises:
            JournalError: ``original_trace_no`` is not in the journal, ``kind`` is unknown, a
                time is naive, the serial is exhausted, or the write failed.
        """
        prefix = trace_prefix(self._clock(), local_now)
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
        if state not in CALL_RESULTS:
            raise JournalError(f"journal record_call_result: state must be one of {CALL_RESULTS!r}, got {state!r}")
        what = f"journal record_call_result: backend call {trace_no!r}"
        result = (state, return_code, response_json(response), self._now())
        await self._run("record_call_result", record_result, BACKEND_CALLS, trace_no, what, result)

    async def calls(self, original_trace_no: str) -> list[CallRecord]:
        """The requests misbridge originated about ``original_trace_no``, oldest first.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("calls", _select_calls, original_trace_no)

    async def barred_as(self, trace_no: str) -> str | None:
        """How the backend has already seen ``trace_no`` (see ``BarredTraceNoError``), or ``None``.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("barred_as", barred_as, trace_no)


def trace_prefix(clock_now: datetime, local_now: datetime | None) -> str:
    """The ``yyyyMMddHHmmss`` head of a new traceNo: ``local_now`` as given, else ``clock_now`` in local time.

    Raises:
        JournalError: the time used is naive.
    """
    local = clock_now.astimezone() if local_now is None else local_now
    iso("local_now", local)  # refuses a naive time
    return local.strftime(_TRACE_PREFIX_FORMAT)


# --- Everything below runs on the journal thread. ----------------------------------------

_BARRED_AS: Final = (
    ("SELECT 1 FROM backend_calls WHERE trace_no = ?", "the traceNo of a request misbridge sent"),
    ("SELECT 1 FROM key_calls WHERE trace_no = ?", "the traceNo of a key request misbridge sent"),
    ("SELECT 1 FROM pos_inquiries WHERE trace_no = ?", "the traceNo of a forwarded POS inquiry"),
    ("SELECT 1 FROM pos_inquiries WHERE original_trace_no = ?", "the originalTraceNo of a forwarded POS inquiry"),
    ("SELECT 1 FROM pos_queries WHERE trace_no = ?", "the traceNo of a POS query or upload"),
)


def barred_as(conn: sqlite3.Connection, trace_no: str) -> str | None:
    """How the backend has already seen ``trace_no``, or ``None`` (no transaction may use it)."""
    return next((seen_as for query, seen_as in _BARRED_AS if exists(conn, query, trace_no)), None)


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


def new_trace_no(conn: sqlite3.Connection, prefix: str) -> str:
    """``prefix`` + the next serial that makes a traceNo nobody used; call it inside the write's transaction.

    A serial that would repeat a transaction's traceNo (a POS may send 24 digits too) or one the
    backend has seen (:func:`barred_as`) is skipped; the counter keeps every serial it gave.

    Raises:
        JournalError: the counter is missing or exhausted.
    """
    while True:
        trace_no = f"{prefix}{_next_serial(conn):0{_SERIAL_DIGITS}d}"
        used = exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", trace_no)
        if not used and barred_as(conn, trace_no) is None:
            return trace_no


def _allocate_call(conn: sqlite3.Connection, original_trace_no: str, kind: str, prefix: str, at: str) -> str:
    with immediate_transaction(conn):
        if not exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", original_trace_no):
            raise JournalError(f"journal allocate_call: no transaction {original_trace_no!r}")
        trace_no = new_trace_no(conn, prefix)
        _insert_call(conn, trace_no, original_trace_no, kind, at)
    return trace_no


def _to_call(row: sqlite3.Row) -> CallRecord:
    trace_no = str(row["trace_no"])
    try:
        return CallRecord(kind=row["kind"], **request_fields(row, f"call {trace_no!r}"))
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal backend call {trace_no!r} is corrupt: {err}") from err


def _select_calls(conn: sqlite3.Connection, original_trace_no: str) -> list[CallRecord]:
    rows = conn.execute(
        "SELECT * FROM backend_calls WHERE original_trace_no = ? ORDER BY created_at, rowid", (original_trace_no,)
    ).fetchall()
    return [_to_call(row) for row in rows]
