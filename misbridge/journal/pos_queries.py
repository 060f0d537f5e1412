"""The POS's queries and uploads passed on to the backend (schema v4): the ``pos_queries`` table.

``ecouponInquiry`` and ``summary`` (the ``query`` kind) and ``batchUpload`` (the ``upload``
kind) move nothing: :meth:`PosQueries.record_query` commits a ``sent`` row, keyed by the POS's
traceNo, before the request leaves, and :meth:`PosQueries.record_query_result` its one result by
an event of the kind's machine (``sent`` -> ``answered`` | ``unknown``), with the answer the POS
got, so a repeat of the request gets the same answer. The backend has seen the traceNo from then
on: no transaction may use it (``Journal.record_intent`` raises
:class:`~misbridge.journal.errors.BarredTraceNoError`), and a query may not use a traceNo the
backend has seen already.

A query belongs to the lane of the journal view that recorded it (schema v8): on a lane view
:meth:`PosQueries.unanswered_queries` sees the lane's only; :meth:`PosQueries.query` is by traceNo.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Any

from misbridge.core.kinds import next_state
from misbridge.core.machine import TxnState, kind_of
from misbridge.ebuy import jsonio
from misbridge.errors import JournalError
from misbridge.journal.calls import barred_as
from misbridge.journal.connection import JournalBase, iso
from misbridge.journal.errors import BarredTraceNoError, DuplicateTraceNoError
from misbridge.journal.lanes import LaneFilter, lane_clause
from misbridge.journal.records import PosQueryRecord, request_hash, storable
from misbridge.journal.rows import POS_QUERIES, exists, load_dict, record_result, response_json, time_of
from misbridge.journal.schema import immediate_transaction

__all__ = ["PosQueries"]


class PosQueries(JournalBase):
    """The queries and uploads the POS sent: recorded before they leave, then their one result."""

    async def record_query(self, trace_no: str, action: str, request: dict[str, Any]) -> None:
        """Record that the POS's ``action`` request ``trace_no`` is about to be passed on.

        The row keeps the :func:`storable` copy of ``request``, the fingerprint of ``request``
        itself and this journal's :attr:`lane_column`. Returns once committed: before anything
        is sent.

        Raises:
            DuplicateTraceNoError: a query with ``trace_no`` is already journaled.
            BarredTraceNoError: a transaction, a request misbridge sent or a forwarded inquiry
                has ``trace_no`` (a :class:`DuplicateTraceNoError` too).
            InvalidTransition: ``action`` has no state machine.
            JournalError: ``action`` is not a query or upload, or the write failed.
        """
        kind_of(action)  # an action without a machine raises before anything is written
        row = (trace_no, action, jsonio.dumps(storable(request)), request_hash(request), self._now(), self.lane_column)
        await self._run("record_query", _insert_query, row)

    async def record_query_result(
        self, trace_no: str, action: str, event: str, *, response: dict[str, Any], return_code: str
    ) -> TxnState:
        """Record the one result of the query ``trace_no``; return its new state.

        ``event`` is ``answer`` (a reply arrived: ``response`` is the answer passed on) or
        ``no_answer`` (no usable reply: ``response`` is misbridge's MB30/MB31 answer); the
        state written is ``next_state(kind_of(action), "sent", event)``.

        Raises:
            InvalidTransition: ``event`` is not an event of the kind's machine from ``sent``;
                nothing is written.
            JournalError: the row is unknown or already has its result, or the write failed.
        """
        state = next_state(kind_of(action), TxnState.SENT, event)
        what = f"journal record_query_result: query {trace_no!r}"
        result = (state.value, return_code, response_json(response), self._now())
        await self._run("record_query_result", record_result, POS_QUERIES, trace_no, what, result)
        return state

    async def query(self, trace_no: str) -> PosQueryRecord | None:
        """The query or upload ``trace_no``, or ``None``.

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        return await self._run("query", _select_query, trace_no)

    async def unanswered_queries(self, before: datetime) -> list[PosQueryRecord]:
        """The queries and uploads still ``sent`` that were recorded before ``before``, oldest first.

        At start-up these are the ones a previous run left without a result. On a lane view,
        only the lane's.

        Raises:
            JournalError: ``before`` is naive, the read failed or a row is corrupt.
        """
        return await self._run("unanswered_queries", _select_unanswered, iso("before", before), self.lane_filter)


# --- Everything below runs on the journal thread. ----------------------------------------


def _insert_query(conn: sqlite3.Connection, row: tuple[str, str, str, str, str, str | None]) -> None:
    trace_no, action, request_json, fingerprint, at, lane = row
    with immediate_transaction(conn):
        if exists(conn, "SELECT 1 FROM pos_queries WHERE trace_no = ?", trace_no):
            raise DuplicateTraceNoError(trace_no)
        if exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", trace_no):
            raise BarredTraceNoError(trace_no, "the traceNo of a transaction")
        seen_as = barred_as(conn, trace_no)
        if seen_as is not None:
            raise BarredTraceNoError(trace_no, seen_as)
        conn.execute(
            "INSERT INTO pos_queries (trace_no, action, state, request_json, request_hash, created_at, updated_at,"
            " lane) VALUES (?, ?, 'sent', ?, ?, ?, ?, ?)",
            (trace_no, action, request_json, fingerprint, at, at, lane),
        )


def _to_query(row: sqlite3.Row) -> PosQueryRecord:
    trace_no = str(row["trace_no"])
    text = row["response_json"]
    try:
        return PosQueryRecord(
            trace_no=trace_no,
            action=row["action"],
            state=row["state"],
            request=load_dict(row["request_json"], f"request of query {trace_no!r}"),
            request_hash=row["request_hash"],
            return_code=row["return_code"],
            response=None if text is None else load_dict(text, f"response of query {trace_no!r}"),
            created_at=time_of(row, "created_at"),
            updated_at=time_of(row, "updated_at"),
            lane=row["lane"],
        )
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal query {trace_no!r} is corrupt: {err}") from err


def _select_query(conn: sqlite3.Connection, trace_no: str) -> PosQueryRecord | None:
    row = conn.execute("SELECT * FROM pos_queries WHERE trace_no = ?", (trace_no,)).fetchone()
    return None if row is None else _to_query(row)


def _select_unanswered(conn: sqlite3.Connection, before: str, lanes: LaneFilter | None) -> list[PosQueryRecord]:
    in_lane, lane_params = lane_clause(lanes)
    rows = conn.execute(
        f"SELECT * FROM pos_queries WHERE state = 'sent' AND created_at < ?{in_lane} ORDER BY created_at, trace_no",  # noqa: S608 - "?" placeholders only
        (before, *lane_params),
    ).fetchall()
    return [_to_query(row) for row in rows]
