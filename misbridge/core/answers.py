"""Which answer the POS gets, for every outcome: core's one place deciding it.

The shapes themselves are the book's (``misbridge.ebuy.requests``: ``error_response`` for
misbridge's own MBxx answers, ``complete_book_head`` for a backend's answer passed on); this
module picks the answer: a refusal's code, the stored answer of a journaled transaction (or
the code of the state it is in), what a repeat of a traceNo is told, what a POS inquiry about a
journaled original is told, what the repeat of a query, upload or forwarded inquiry is told.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from misbridge.core.machine import TxnState
from misbridge.ebuy.requests import complete_book_head, error_response
from misbridge.errors import MisbridgeError, ReturnCode
from misbridge.journal.records import PosInquiryRecord, PosQueryRecord, TransactionRecord

Response = dict[str, Any]

#: What the POS is told about a journaled transaction that has no stored answer yet.
STATE_CODES = {
    TxnState.RECEIVED: ReturnCode.INTERRUPTED,
    TxnState.READING_CARD: ReturnCode.INTERRUPTED,
    TxnState.READING_PIN: ReturnCode.INTERRUPTED,
    TxnState.READING_CODE: ReturnCode.INTERRUPTED,
    TxnState.SUBMITTING: ReturnCode.BACKEND_UNKNOWN,
    TxnState.UNKNOWN: ReturnCode.BACKEND_UNKNOWN,
    TxnState.INQUIRING: ReturnCode.BACKEND_UNKNOWN,
    TxnState.VOIDING: ReturnCode.VOIDED,
    TxnState.NEEDS_MANUAL: ReturnCode.NEEDS_MANUAL,
}


def pos_response(trace_no: str, code: ReturnCode, message: str = "") -> Response:
    """An e-Buy shaped answer carrying one of misbridge's own codes (its meaning unless ``message``)."""
    return error_response(trace_no, MisbridgeError(message or code.meaning, return_code=code), code)


def refusal(trace_no: str, err: MisbridgeError) -> Response:
    """A request misbridge refused or could not finish: the error's code, its sentence as returnDesc."""
    return error_response(trace_no, err, err.return_code)


def backend_answer(body: Mapping[str, Any], trace_no: str) -> Response:
    """A backend's definite answer, passed on to the POS with the book's head completed."""
    return complete_book_head(body, trace_no)


def answer_from_journal(record: TransactionRecord) -> Response:
    """What the POS is told about a transaction the journal holds.

    The stored answer when there is one (final states; voiding keeps the MB32 the POS was first
    given, needs_manual holds the MB34 written when the void was given up); otherwise a code for
    the state it is in.
    """
    if record.response is not None:
        # A head field the backend left out is filled from the record, not the clock, so every
        # replay of a stored answer is the same.
        return complete_book_head(record.response, record.trace_no, at=record.updated_at)
    return pos_response(record.trace_no, STATE_CODES.get(TxnState(record.state), ReturnCode.BACKEND_UNKNOWN))


def repeat_answer(existing: TransactionRecord, action: str, fingerprint: str) -> Response:
    """A card request whose traceNo the journal already holds: its answer, or MB41 for another request."""
    trace_no = existing.trace_no
    if existing.request_hash != fingerprint or existing.action != action:
        return pos_response(
            trace_no, ReturnCode.TRACE_NO_CONFLICT, f"traceNo {trace_no} was already used for a different request"
        )
    return answer_from_journal(existing)


def running_conflict(trace_no: str) -> Response:
    """A request with the traceNo of a running transaction but another body (MB41)."""
    message = f"traceNo {trace_no} is in progress with a different request"
    return pos_response(trace_no, ReturnCode.TRACE_NO_CONFLICT, message)


def pad_busy(trace_no: str) -> Response:
    """Another transaction runs (MB25); only that the pad is busy, never the running traceNo."""
    return pos_response(trace_no, ReturnCode.DEVICE_BUSY, "the PIN pad is busy with another transaction")


def inquiry_trace_no_taken(trace_no: str) -> Response:
    """A POS inquiry whose own traceNo is a transaction's (MB41): forwarded, the backend would see it twice."""
    message = f"traceNo {trace_no} is already used by a transaction; an inquiry needs its own"
    return pos_response(trace_no, ReturnCode.TRACE_NO_CONFLICT, message)


def inquiry_answer(original: TransactionRecord, trace_no: str) -> Response:
    """A POS inquiry (traceNo ``trace_no``) about a journaled original: the original's answer."""
    return answer_from_journal(original) | {"traceNo": trace_no, "originalTraceNo": original.trace_no}


#: A query, upload or forwarded inquiry with no stored answer (still waiting, or cut off by a restart).
NO_ANSWER = "no answer from the e-Buy backend; nothing moved: ask again under a new traceNo"


def query_no_answer(trace_no: str) -> Response:
    """A query or upload the backend did not answer (MB31): it is never sent again under its traceNo."""
    return pos_response(trace_no, ReturnCode.BACKEND_UNKNOWN, NO_ANSWER)


def _traceno_used(trace_no: str) -> Response:
    message = f"traceNo {trace_no} was already used for a different request"
    return pos_response(trace_no, ReturnCode.TRACE_NO_CONFLICT, message)


def _stored(response: Mapping[str, Any] | None, trace_no: str, record: PosQueryRecord | PosInquiryRecord) -> Response:
    if response is None:
        return query_no_answer(trace_no)
    return complete_book_head(response, trace_no, at=record.updated_at)


def query_repeat_answer(existing: PosQueryRecord, action: str, fingerprint: str) -> Response:
    """A query or upload whose traceNo is journaled: its stored answer, or MB41 for another request."""
    if existing.request_hash != fingerprint or existing.action != action:
        return _traceno_used(existing.trace_no)
    return _stored(existing.response, existing.trace_no, existing)


def forwarded_repeat_answer(existing: PosInquiryRecord, original_trace_no: str, fingerprint: str) -> Response:
    """A POS inquiry whose traceNo was forwarded before: its stored answer, or MB41 for another request.

    A row from before request hashes were kept is matched on its originalTraceNo.
    """
    if existing.request_hash:
        same = existing.request_hash == fingerprint
    else:
        same = existing.original_trace_no == original_trace_no
    if not same:
        return _traceno_used(existing.trace_no)
    return _stored(existing.response, existing.trace_no, existing)
