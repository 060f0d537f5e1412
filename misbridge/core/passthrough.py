"""The actions misbridge passes on without the PIN pad: ``accumulating``, the queries and the upload.

``accumulating`` (book §10.10) posts points: a ``sale`` transaction with no pad step. Its intent
is journaled, then ``submit`` (``received -> submitting``) is committed before the first byte
leaves, and the reply is recorded as a card sale's (approve, decline, not_sent,
outcome_unknown). An unknown outcome is inquired, never re-submitted; the book has no void for
points, so still unknown at the inquiry bound it goes to a person (``needs_manual``, MB34) and an
approval found later is kept (:class:`~misbridge.core.inquiry.InquiryLoop`).

``voidQrcodeSale`` and ``refundQrcodeSale`` run the same way (``void`` and ``refund`` kinds,
``submit`` with no pad step), after :func:`~misbridge.core.followups.check_follow_up` found
nothing in the journal against them (MB45-MB48 otherwise, before anything is sent; the card
voids and refunds, which use the pad, are run by the service under the same lock). Unknown,
they are inquired; still unknown at the bound a void is sent again by the reversal queue until
confirmed (MB36 meanwhile) and a refund goes to a person (MB34): it is never sent twice.

``ecouponInquiry`` and ``summary`` (``query`` kind) and ``batchUpload`` (``upload`` kind) move
nothing: each is journaled ``sent`` in ``pos_queries`` before it leaves and answered with the
backend's reply, its head completed, or MB30/MB31 when none came. One traceNo is one request to
the backend (it refuses a traceNo it has seen): a repeat with the same body gets the stored
answer, never a second request, and another request with the traceNo MB41.

Each request runs in its own task, shielded from a POS that hangs up; a repeat while it runs
joins it. None of them uses the pad, so they neither wait for nor block a card sale.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Final

from misbridge.config.settings import Settings
from misbridge.core import answers
from misbridge.core.answers import Response
from misbridge.core.callers import CLAIM_MARGIN_S, InFlight, Presence
from misbridge.core.flow import Flow
from misbridge.core.followups import (
    QR_FOLLOW_UPS,
    as_posted,
    as_sent,
    batch_as_posted,
    batch_as_sent,
    record_follow_up,
)
from misbridge.core.inquiry import InquiryLoop
from misbridge.core.machine import TxnState
from misbridge.core.observe import TransactionMetrics, timed
from misbridge.core.ports import CardBackend
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, RequestError, ReturnCode
from misbridge.host.crashpoints import crash_point
from misbridge.journal.records import TransactionRecord, request_hash
from misbridge.journal.store import BarredTraceNoError, DuplicateTraceNoError, Journal

__all__ = ["PASS_THROUGH_ACTIONS", "QUERY_ACTIONS", "VALUE_ACTIONS", "PassThrough"]

#: Actions that move value without the pad: journaled as transactions, refused while recovering.
VALUE_ACTIONS: Final = ("accumulating", *QR_FOLLOW_UPS)
#: Actions that move nothing: journaled in ``pos_queries``.
QUERY_ACTIONS: Final = ("ecouponInquiry", "summary", "batchUpload")
PASS_THROUGH_ACTIONS: Final = (*VALUE_ACTIONS, *QUERY_ACTIONS)


class PassThrough:
    """Runs the pass-through actions; ``card_in_flight`` are the card transactions the service runs."""

    def __init__(
        self, settings: Settings, journal: Journal, backend: CardBackend, inquiries: InquiryLoop,
        *, metrics: TransactionMetrics, card_in_flight: Mapping[str, InFlight],
        follow_up_lock: asyncio.Lock | None = None,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._journal = journal
        self._backend = backend
        self._inquiries = inquiries
        self._metrics = metrics
        self._card_in_flight = card_in_flight
        self.in_flight: dict[str, InFlight] = {}
        """The pass-through requests running, by traceNo."""
        # A void/refund's check and intent, one at a time (shared with the card voids and refunds).
        self._follow_up_lock = follow_up_lock or asyncio.Lock()

    async def handle(self, action: str, body: dict[str, Any]) -> Response:
        """Run a validated ``action`` request, or join the same request already running."""
        trace_no = str(body["traceNo"])
        fingerprint = f"{action}:{request_hash(body)}"
        running = self.in_flight.get(trace_no)
        if running is not None:
            if running.fingerprint != fingerprint:
                return answers.running_conflict(trace_no)
            return await asyncio.shield(running.task)
        if trace_no in self._card_in_flight:
            return answers.running_conflict(trace_no)
        task = asyncio.create_task(self._run(action, body), name=f"{action} {trace_no}")
        self.in_flight[trace_no] = InFlight(fingerprint, task, Presence())
        task.add_done_callback(lambda _: self.in_flight.pop(trace_no, None))
        # shield: a POS that goes away must not cancel a request the backend may be processing.
        return await asyncio.shield(task)

    async def _run(self, action: str, body: dict[str, Any]) -> Response:
        if action in VALUE_ACTIONS:
            deadline = asyncio.get_running_loop().time() + self._settings.api.pos_deadline_s - CLAIM_MARGIN_S
            return await self._move_value(action, body, deadline)
        return await self._query(action, body)

    # -- accumulating, QR voids and refunds ---------------------------------------------------

    async def _move_value(self, action: str, body: dict[str, Any], claim_deadline: float) -> Response:
        trace_no = str(body["traceNo"])
        existing = await self._journal.get(trace_no)
        if existing is not None:
            return answers.repeat_answer(existing, action, request_hash(body))
        try:
            await self._checked_intent(action, trace_no, body)
        except BarredTraceNoError as barred:
            self._metrics.transaction_finished(action, "refused")
            err = RequestError(f"{barred}; use a new traceNo", return_code=ReturnCode.TRACE_NO_BARRED)
            return answers.refusal(trace_no, err)
        except RequestError as refused:  # the journal rules the void or refund out: nothing sent
            self._metrics.transaction_finished(action, "refused")
            return answers.refusal(trace_no, refused)
        except DuplicateTraceNoError:  # a card sale took the traceNo meanwhile
            taken = await self._journal.get(trace_no)
            if taken is None:
                raise
            return answers.repeat_answer(taken, action, request_hash(body))
        follow_up = action in QR_FOLLOW_UPS
        _crash_if(follow_up, "followup.after_intent")
        flow = Flow(self._journal, trace_no)
        with timed(self._metrics, "total"):
            await flow.step("submit")  # the intent to submit is durable before the first byte leaves (R1)
            _crash_if(follow_up, "followup.submit.after_commit")
            outbound = await as_sent(self._journal, body) if action in QR_FOLLOW_UPS else body
            response = await self._submit(flow, action, outbound, claim_deadline, posted=body)
        _crash_if(follow_up, "followup.outcome.after_commit")
        self._metrics.transaction_finished(action, flow.state)
        return response

    async def _checked_intent(self, action: str, trace_no: str, body: dict[str, Any]) -> None:
        """Record the intent; a void or refund is checked against its original first, under one lock."""
        record = TransactionRecord.new(trace_no, action, TxnState.RECEIVED, body)
        if action not in QR_FOLLOW_UPS:
            await self._journal.record_intent(record)
            return
        await record_follow_up(self._journal, self._follow_up_lock, action, record, body)

    async def _submit(
        self, flow: Flow, action: str, body: dict[str, Any], claim_deadline: float, *, posted: Mapping[str, Any]
    ) -> Response:
        """Send ``body`` once (``posted`` is what the POS sent; they differ for an options sale's follow-up)."""
        try:
            with timed(self._metrics, "backend"):
                reply = await self._backend.submit(action, body)
        except BackendNotSent as err:
            response = answers.refusal(flow.trace_no, err)
            await flow.step("not_sent", response=response, return_code=err.return_code.code, detail=str(err))
            return response
        except BackendOutcomeUnknown as err:
            # Never re-submitted: inquired; at the bound a person decides (a void: sent again, queued).
            await flow.step("outcome_unknown", detail=str(err))
            flow.state = await self._inquiries.resolve(flow.trace_no, claim_deadline=claim_deadline)
            record = await self._journal.get(flow.trace_no)
            if record is None:
                return answers.pos_response(flow.trace_no, ReturnCode.BACKEND_UNKNOWN)
            return answers.answer_from_journal(record)
        _crash_if(action in QR_FOLLOW_UPS, "followup.after_reply")
        answer = as_posted(answers.backend_answer(reply.body, flow.trace_no), posted, body)
        await flow.step("approve" if reply.approved else "decline", response=answer, return_code=reply.return_code)
        return answer

    # -- queries and the upload -----------------------------------------------------------------

    async def _query(self, action: str, body: dict[str, Any]) -> Response:
        trace_no = str(body["traceNo"])
        existing = await self._journal.query(trace_no)
        if existing is not None:
            return answers.query_repeat_answer(existing, action, request_hash(body))
        try:
            # Journaled before it leaves: from now on the backend may have seen the traceNo.
            await self._journal.record_query(trace_no, action, body)
        except DuplicateTraceNoError as taken:
            message = f"{taken}; a {action} needs a traceNo of its own"
            return answers.pos_response(trace_no, ReturnCode.TRACE_NO_CONFLICT, message)
        event, answer = await self._ask_as_sent(action, body, trace_no)
        await self._journal.record_query_result(
            trace_no, action, event, response=answer, return_code=str(answer["returnCode"])
        )
        return answer

    async def _ask_as_sent(self, action: str, body: dict[str, Any], trace_no: str) -> tuple[str, Response]:
        """:meth:`_ask`, a ``batchUpload``'s options sales named as the backend knows them, and back."""
        if action != "batchUpload":
            return await self._ask(action, body, trace_no)
        outbound, renames = await batch_as_sent(self._journal, body)
        event, answer = await self._ask(action, outbound, trace_no)
        return event, batch_as_posted(answer, renames)

    async def _ask(self, action: str, body: dict[str, Any], trace_no: str) -> tuple[str, Response]:
        """Send the query once: ``("answer", the reply passed on)`` or ``("no_answer", MB30/MB31)``."""
        try:
            with timed(self._metrics, "backend"):
                reply = await self._backend.submit(action, body)
        except BackendNotSent as err:
            return "no_answer", answers.refusal(trace_no, err)
        except BackendOutcomeUnknown:
            return "no_answer", answers.query_no_answer(trace_no)
        return "answer", answers.backend_answer(reply.body, trace_no)


def _crash_if(follow_up: bool, point: str) -> None:
    """A crash point of the POS's QR voids and refunds (accumulating runs the same steps without them)."""
    if follow_up:
        crash_point(point)
