"""POS inquiries forwarded to the backend (schema v3, issue 10): the ``pos_inquiries`` table.

The POS's own ``inquiry`` about an original the journal does not hold is forwarded to the
backend: :meth:`PosInquiries.record_pos_inquiry` commits a ``pos_inquiries`` row before it
leaves, :meth:`PosInquiries.record_pos_inquiry_result` its one result, by an event of the
``query`` kind's machine (``sent`` -> ``answered`` | ``unknown``). The backend bars both
traceNos of such an inquiry for ever, so ``Journal.record_intent`` refuses a transaction with
either (:class:`~misbridge.journal.errors.BarredTraceNoError`) and ``Journal.allocate_call``
never hands one out (:func:`misbridge.journal.calls.barred_as`).

A forwarded inquiry went out with its lane's ``deviceNo``: its row holds the lane of the journal
view that recorded it (schema v8). Every read here is by traceNo, journal-wide.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from misbridge.core.kinds import next_state
from misbridge.core.machine import TransactionKind, TxnState
from misbridge.errors import JournalError
from misbridge.journal.connection import JournalBase
from misbridge.journal.errors import KnownOriginalError
from misbridge.journal.records import PosInquiryRecord
from misbridge.journal.rows import POS_INQUIRIES, exists, record_result, request_fields, response_json
from misbridge.journal.schema import immediate_transaction

__all__ = ["PosInquiries", "select_pos_inquiries"]


class PosInquiries(JournalBase):
    """The POS inquiries misbridge forwarded: recorded before they leave, then their one result."""

    async def record_pos_inquiry(self, trace_no: str, original_trace_no: str, request_hash: str | None = None) -> int:
        """Record that the POS inquiry ``trace_no`` about ``original_trace_no`` is about to be forwarded.

        ``request_hash`` is the fingerprint of the POS's request, kept so a repeat of it gets the
        stored answer (and another request with the same traceNo MB41).

        The row's ``lane`` is this journal's :attr:`lane_column`. Returns the row's id once
        committed: before anything is sent. From then on neither
        traceNo can start a transaction (``record_intent`` raises ``BarredTraceNoError``).
        The check that the original is unknown and the insert are one transaction, so a sale
        whose intent is committed first is answered from the journal instead.

        Raises:
            KnownOriginalError: ``original_trace_no`` is in the journal.
            JournalError: the write failed.
        """
        return await self._run(
            "record_pos_inquiry",
            _insert_pos_inquiry,
            trace_no,
            original_trace_no,
            request_hash,
            self._now(),
            self.lane_column,
        )

    async def record_pos_inquiry_result(
        self,
        inquiry_id: int,
        event: str,
        *,
        return_code: str | None = None,
        response: dict[str, Any] | None = None,
    ) -> TxnState:
        """Record the one result of the forwarded POS inquiry ``inquiry_id``; return its new state.

        The row follows the ``query`` kind's machine: ``event`` is ``answer`` (a reply arrived:
        ``return_code`` and ``response`` hold it) or ``no_answer`` (no usable reply), and the
        state written is ``next_state(TransactionKind.QUERY, "sent", event)``: ``answered`` or
        ``unknown``.

        Raises:
            InvalidTransition: ``event`` is not an event of the query machine from ``sent``;
                nothing is written.
            JournalError: the row is unknown or already has its result, or the write failed.
        """
        state = next_state(TransactionKind.QUERY, TxnState.SENT, event)
        what = f"journal record_pos_inquiry_result: forwarded inquiry {inquiry_id}"
        result = (state.value, return_code, response_json(response), self._now())
        await self._run("record_pos_inquiry_result", record_result, POS_INQUIRIES, inquiry_id, what, result)
        return state

    async def pos_inquiries(self, trace_no: str) -> list[PosInquiryRecord]:
        """Forwarded POS inquiries with ``trace_no`` as their own traceNo or as the original, oldest first.

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("pos_inquiries", select_pos_inquiries, trace_no)

    async def forwarded_inquiry(self, trace_no: str) -> PosInquiryRecord | None:
        """The latest forwarded POS inquiry whose own traceNo is ``trace_no``, or ``None``.

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        rows = [row for row in await self.pos_inquiries(trace_no) if row.trace_no == trace_no]
        return rows[-1] if rows else None


# --- Everything below runs on the journal thread. ----------------------------------------


def _insert_pos_inquiry(
    conn: sqlite3.Connection, trace_no: str, original_trace_no: str, request_hash: str | None, at: str, lane: str | None
) -> int:
    with immediate_transaction(conn):
        if exists(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", original_trace_no):
            raise KnownOriginalError(original_trace_no)
        cursor = conn.execute(
            "INSERT INTO pos_inquiries (trace_no, original_trace_no, state, request_hash, created_at, updated_at,"
            " lane) VALUES (?, ?, 'sent', ?, ?, ?, ?)",
            (trace_no, original_trace_no, request_hash, at, at, lane),
        )
    return int(cursor.lastrowid or 0)


def _to_pos_inquiry(row: sqlite3.Row) -> PosInquiryRecord:
    inquiry_id = int(row["id"])
    try:
        fields = request_fields(row, f"inquiry {inquiry_id}")
        return PosInquiryRecord(id=inquiry_id, request_hash=row["request_hash"], lane=row["lane"], **fields)
    except (TypeError, ValueError) as err:
        raise JournalError(f"journal forwarded inquiry {inquiry_id} is corrupt: {err}") from err


def select_pos_inquiries(conn: sqlite3.Connection, trace_no: str) -> list[PosInquiryRecord]:
    """The forwarded inquiries with ``trace_no`` as their own traceNo or as their original, oldest first."""
    rows = conn.execute(
        "SELECT * FROM pos_inquiries WHERE trace_no = :t OR original_trace_no = :t ORDER BY id", {"t": trace_no}
    ).fetchall()
    return [_to_pos_inquiry(row) for row in rows]
