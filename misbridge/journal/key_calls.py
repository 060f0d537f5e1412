"""misbridge's own key requests (schema v6, issue 14): ``DownloadKey`` and the sign-in, the ``key_calls`` table.

:meth:`KeyCalls.allocate_key_call` numbers a key request like an inquiry or void
(:func:`~misbridge.journal.calls.new_trace_no`: ``yyyyMMddHHmmss`` + the next ``trace_serial``)
and commits its ``sent`` row before returning the traceNo, so a traceNo the backend may have
seen is never handed out again, crash or not. A key request has no original transaction and
moves no money, so it is not a ``backend_calls`` row; its traceNo is barred all the same
(:func:`~misbridge.journal.calls.barred_as`): no POS transaction, call or query may use it.

No key material is stored, ever: a row is the traceNo, the kind, the state, the return code,
the issued key's check value (a KCV is printed on key forms; it does not reveal the key) and
two times. The wrapped key goes from the backend to the pad and nowhere else.

Since schema v7 the end of day's own ``batchUpload`` and ``summary`` requests (``misbridge
reconcile``) are rows here too: like a key request they have no original and move no money,
and they need exactly the same guarantees (a traceNo committed before sending, never reused,
one result). Their replies are not kept here: the reconcile report files are their record.

:func:`select_key_calls` is the read, a plain function over a connection: the daemon runs it on
the journal thread (:meth:`KeyCalls.key_calls`) and ``misbridge journal key-calls`` on its
read-only connection. It names its columns rather than ``SELECT *``, so a column added to the
table is never shown by accident.

Each lane signs in with its own ``deviceNo``, so a request belongs to the lane of the journal view
that allocated it (schema v8): on a lane view :meth:`KeyCalls.last_sign_in` and
:meth:`KeyCalls.key_calls` see the lane's requests only. The traceNo counter is journal-wide.
"""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from typing import Final, Literal

from misbridge.errors import JournalError
from misbridge.journal.calls import CALL_RESULTS, new_trace_no, trace_prefix
from misbridge.journal.connection import JournalBase
from misbridge.journal.lanes import LaneFilter, lane_clause
from misbridge.journal.records import KeyCallKind, KeyCallRecord, iso_utc
from misbridge.journal.rows import time_of
from misbridge.journal.schema import KEY_CALL_KINDS, immediate_transaction

__all__ = ["DEFAULT_KEY_CALLS_LIMIT", "KeyCalls", "check_key_calls_filter", "select_key_calls"]

DEFAULT_KEY_CALLS_LIMIT: Final = 20
"""How many rows :meth:`KeyCalls.key_calls` and :func:`select_key_calls` return unless told."""
_KCV: Final = re.compile(r"[0-9A-F]{6}")
#: Every column of a :class:`KeyCallRecord` up to version 7, and nothing else (``lane`` is read when there).
_COLUMNS: Final = "trace_no, kind, state, return_code, key_kcv, created_at, updated_at"


class KeyCalls(JournalBase):
    """The key requests misbridge originates: traceNo allocation, their results, the latest ones."""

    async def allocate_key_call(self, kind: KeyCallKind, *, local_now: datetime | None = None) -> str:
        """Allocate a new traceNo for a ``kind`` request (``downloadKey``, ``signIn``, ``batchUpload``, ``summary``).

        The traceNo is made as :meth:`~misbridge.journal.calls.BackendCalls.allocate_call` makes
        one, from the same counter: ``local_now`` (by default the journal clock in local time)
        formatted ``%Y%m%d%H%M%S``, then the next ``trace_serial``, 10 digits, never repeated.
        The counter bump and the ``key_calls`` row (state ``sent``, ``lane`` this journal's
        :attr:`lane_column`) are one transaction: this returns after the COMMIT, before anything
        may be sent with the traceNo.

        Raises:
            JournalError: ``kind`` is unknown, a time is naive, the serial is exhausted, or the
                write failed.
        """
        if kind not in KEY_CALL_KINDS:
            raise JournalError(f"journal allocate_key_call: kind must be one of {KEY_CALL_KINDS!r}, got {kind!r}")
        prefix = trace_prefix(self._clock(), local_now)
        return await self._run("allocate_key_call", _allocate_key_call, kind, prefix, self._now(), self.lane_column)

    async def record_key_call_result(
        self,
        trace_no: str,
        result: Literal["answered", "unknown"],
        return_code: str | None,
        *,
        key_kcv: str | None = None,
    ) -> None:
        """Record the one result of the key request ``trace_no`` (``key_kcv``: the issued key's 6-hex KCV).

        ``result`` is ``"answered"`` (a reply arrived; ``return_code`` is its returnCode) or
        ``"unknown"`` (no usable reply; ``return_code`` is usually ``None``). Only the return
        code is kept, never the reply: it carries the wrapped key.

        Raises:
            JournalError: ``result`` is not ``answered``/``unknown``, there is no such key
                request or it already has its result, or the write failed.
        """
        if result not in CALL_RESULTS:
            raise JournalError(
                f"journal record_key_call_result: result must be one of {CALL_RESULTS!r}, got {result!r}"
            )
        if key_kcv is not None and not _KCV.fullmatch(key_kcv):
            raise JournalError("journal record_key_call_result: key_kcv must be 6 uppercase hex characters")
        await self._run("record_key_call_result", _record_result, trace_no, result, return_code, key_kcv, self._now())

    async def last_sign_in(self) -> KeyCallRecord | None:
        """The newest approved sign-in that recorded its key's KCV, or None (on a lane view, the lane's).

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        return await self._run("last_sign_in", _select_last_sign_in, self.lane_filter)

    async def key_calls(
        self,
        limit: int = DEFAULT_KEY_CALLS_LIMIT,
        *,
        kind: KeyCallKind | None = None,
        since: datetime | None = None,
    ) -> list[KeyCallRecord]:
        """The latest ``limit`` requests of this table (key requests and, since v7, the end of day's), newest first.

        ``kind`` keeps only that kind, ``since`` only the requests allocated at or after it
        (:func:`select_key_calls`); a lane view only the lane's.

        Raises:
            JournalError: ``limit`` is negative, ``kind`` is unknown, ``since`` is naive, the
                read failed or a row is corrupt.
        """
        try:
            check_key_calls_filter(limit, kind, since)
        except ValueError as err:
            raise JournalError(f"journal key_calls: {err}") from err
        return await self._run("key_calls", select_key_calls, limit, kind, since, self.lane_filter)


# --- Everything below runs on the journal thread. ----------------------------------------


def _allocate_key_call(conn: sqlite3.Connection, kind: str, prefix: str, at: str, lane: str | None) -> str:
    with immediate_transaction(conn):
        trace_no = new_trace_no(conn, prefix)
        conn.execute(
            "INSERT INTO key_calls (trace_no, kind, state, created_at, updated_at, lane)"
            " VALUES (?, ?, 'sent', ?, ?, ?)",
            (trace_no, kind, at, at, lane),
        )
    return trace_no


def _record_result(
    conn: sqlite3.Connection, trace_no: str, result: str, return_code: str | None, key_kcv: str | None, at: str
) -> None:
    # Compare-and-set on 'sent', as rows.record_result does for the tables that keep a reply.
    with immediate_transaction(conn):
        cursor = conn.execute(
            "UPDATE key_calls SET state = ?, return_code = ?, key_kcv = ?, updated_at = ?"
            " WHERE trace_no = ? AND state = 'sent'",
            (result, return_code, key_kcv, at, trace_no),
        )
        if cursor.rowcount == 0:
            row = conn.execute("SELECT state FROM key_calls WHERE trace_no = ?", (trace_no,)).fetchone()
            found = "there is no such key request" if row is None else f"it is already {row[0]!r}"
            raise JournalError(f"journal record_key_call_result: key request {trace_no!r}: {found}")


def _to_key_call(row: sqlite3.Row) -> KeyCallRecord:
    trace_no = str(row["trace_no"])
    try:
        return KeyCallRecord(
            trace_no=trace_no,
            kind=row["kind"],
            state=row["state"],
            return_code=row["return_code"],
            key_kcv=row["key_kcv"],
            created_at=time_of(row, "created_at"),
            updated_at=time_of(row, "updated_at"),
            lane=row["lane"] if "lane" in row.keys() else None,  # noqa: SIM118 - sqlite3.Row: `in` looks at the values, keys() has the names
        )
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal key request {trace_no!r} is corrupt: {err}") from err


def check_key_calls_filter(limit: int, kind: str | None, since: datetime | None) -> None:
    """Refuse a filter :func:`select_key_calls` cannot apply.

    Raises:
        ValueError: ``limit`` is negative, ``kind`` is not one of the table's kinds, or ``since``
            is naive; the message names which.
    """
    if limit < 0:
        raise ValueError(f"limit must not be negative, got {limit}")
    if kind is not None and kind not in KEY_CALL_KINDS:
        raise ValueError(f"kind must be one of {KEY_CALL_KINDS!r}, got {kind!r}")
    if since is not None:
        iso_utc(since)  # raises ValueError naming a naive time


def select_key_calls(
    conn: sqlite3.Connection,
    limit: int = DEFAULT_KEY_CALLS_LIMIT,
    kind: str | None = None,
    since: datetime | None = None,
    lanes: LaneFilter | None = None,
) -> list[KeyCallRecord]:
    """The latest ``limit`` ``key_calls`` rows, newest first; of ``kind`` only, allocated at or after ``since``.

    ``lanes`` keeps one lane's requests only (``None``: every lane's).
    Works on any connection, whatever its ``row_factory`` (the journal's, or a read-only one).
    A journal file from before schema version 6 has no such table: no rows. One from before
    version 8 has no ``lane``: every request is the default lane's.

    Raises:
        ValueError: a filter :func:`check_key_calls_filter` refuses.
        JournalError: a row is corrupt.
        sqlite3.Error: the read failed.
    """
    check_key_calls_filter(limit, kind, since)
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    if cursor.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_calls'").fetchone() is None:
        return []
    has_lane = _has_lane(cursor)
    if lanes is not None and lanes.value is not None and not has_lane:
        return []  # before version 8 there is only the default lane
    clauses: list[str] = []
    params: list[str | int | None] = []
    if lanes is not None and has_lane:
        clauses.append("lane IS ?")
        params.append(lanes.value)
    if kind is not None:
        clauses.append("kind = ?")
        params.append(kind)
    if since is not None:
        clauses.append("created_at >= ?")  # ISO-8601 UTC of fixed width: text order is time order
        params.append(iso_utc(since))
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    # rowid breaks a tie in created_at (one clock instant) by allocation order.
    columns = f"{_COLUMNS}, lane" if has_lane else _COLUMNS
    query = f"SELECT {columns} FROM key_calls{where} ORDER BY created_at DESC, rowid DESC LIMIT ?"  # noqa: S608 - literals with "?" placeholders
    rows = cursor.execute(query, (*params, limit)).fetchall()
    return [_to_key_call(row) for row in rows]


def _has_lane(cursor: sqlite3.Cursor) -> bool:
    # The daemon's file is always at the latest version; the read-only tool's may be older.
    return any(row[1] == "lane" for row in cursor.execute("PRAGMA table_info(key_calls)").fetchall())


def _select_last_sign_in(conn: sqlite3.Connection, lanes: LaneFilter | None) -> KeyCallRecord | None:
    in_lane, lane_params = lane_clause(lanes)
    row = conn.execute(
        f"SELECT {_COLUMNS}, lane FROM key_calls WHERE kind = 'signIn'{in_lane} AND state = 'answered'"  # noqa: S608 - constants
        " AND return_code = '00' AND key_kcv IS NOT NULL ORDER BY created_at DESC, rowid DESC LIMIT 1",
        lane_params,
    ).fetchone()
    return None if row is None else _to_key_call(row)
