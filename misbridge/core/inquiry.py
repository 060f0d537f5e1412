"""The inquiry loop: find out what happened to a transaction whose outcome is unknown.

``inquiry`` with ``originalTraceNo`` (book §10.4) every ``inquiry_interval_s``, under a new
traceNo allocated in the same commit as its intent (docs/reliability.md):

* approved and the POS still waiting -> approved; approved but nobody waiting for it any more
  (the POS was told it failed, or misbridge restarted) -> void;
* definitely failed or never seen -> declined, no money moved;
* still unknown at ``inquiry_bound_s`` -> void (the reversal queue takes it from there).

An action the backend cannot void (``resolution.unvoidable_actions``: ``accumulating``) keeps an
approval whoever waits for it, and still unknown at the bound goes to a person (``escalate`` to
``needs_manual``, answered MB34).  So does a refund: it is never sent twice, so only an inquiry
saying it did not happen ends it declined.  A void keeps an approval too; still unknown at the
bound it is sent again by the reversal queue until confirmed (``give_up`` to ``voiding``, MB36).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, Literal

from misbridge.config.settings import ResolutionSettings
from misbridge.core.answers import pos_response
from misbridge.core.flow import journaled_step, sent_as
from misbridge.core.machine import TransactionKind, TxnState, kind_of
from misbridge.core.observe import NoMetrics, TransactionMetrics
from misbridge.core.ports import Backend, BackendReplyLike
from misbridge.core.reversals import ReversalQueue
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, ReturnCode
from misbridge.host.crashpoints import crash_point
from misbridge.journal.store import Journal

VerdictKind = Literal["approved", "failed", "pending", "unknown"]

#: What happens at the inquiry bound (and to a late approval): a sale is voided (and a late
#: approval nobody waits for too), a void is sent again, anything else goes to a person.
Policy = Literal["void", "resend", "escalate"]

#: The MB34 answer of an action that cannot be voided, still unknown at the inquiry bound.
_UNVOIDABLE_UNKNOWN = "outcome still unknown at the inquiry bound and the backend has no void for it; reconcile by hand"
_REFUND_UNKNOWN: Final = "refund still unknown at the inquiry bound; it is never sent twice: reconcile by hand"
_OPTIONS_LOST: Final = (
    "the backend offered options, but misbridge restarted before one was chosen; nothing moved: "
    "start again with a new traceNo"
)


@dataclass(frozen=True)
class Verdict:
    """What one inquiry established about an original transaction."""

    kind: VerdictKind
    response: dict[str, Any]
    reason: str = ""


class InquiryLoop:
    """Inquires unknown outcomes of one journal at one backend and applies the verdicts."""

    def __init__(
        self,
        settings: ResolutionSettings,
        journal: Journal,
        backend: Backend,
        reversals: ReversalQueue,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: TransactionMetrics | None = None,
        choose_codes: Iterable[str] = (),
    ) -> None:
        """``choose_codes``: a ``qrcodeSale`` answered so offered options (``options.choose_codes``)."""
        self._settings = settings
        self._choose_codes = frozenset(choose_codes)
        self._journal = journal
        self._backend = backend
        self._reversals = reversals
        self._clock = clock
        self._metrics: TransactionMetrics = metrics or NoMetrics()

    async def inquire(self, trace_no: str) -> Verdict:
        """Send one ``inquiry`` for ``trace_no`` under a freshly allocated traceNo."""
        verdict = await self._inquire(trace_no)
        self._metrics.inquiry_sent(verdict.kind)
        return verdict

    async def _inquire(self, trace_no: str) -> Verdict:
        original = await sent_as(self._journal, trace_no)  # an options sale: its second round
        call_no = await self._journal.allocate_call(trace_no, "inquiry")
        crash_point("inquiry.after_alloc")
        try:
            reply = await self._backend.submit("inquiry", {"traceNo": call_no, "originalTraceNo": original})
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            await self._journal.record_call_result(call_no, state="unknown")
            return Verdict("unknown", {}, str(err))
        crash_point("inquiry.after_reply")
        await self._journal.record_call_result(
            call_no, state="answered", return_code=reply.return_code, response=reply.body
        )
        return self._classify(trace_no, reply)

    def _classify(self, trace_no: str, reply: BackendReplyLike) -> Verdict:
        code = reply.return_code
        as_original = {k: v for k, v in reply.body.items() if k != "originalTraceNo"} | {"traceNo": trace_no}
        if code == "00":
            return Verdict("approved", as_original)
        if code in self._settings.pending_codes:
            return Verdict("pending", {}, f"backend still processing ({code})")
        if code in self._settings.rejected_codes:
            # The inquiry itself was refused: nothing is known about the original yet.
            return Verdict("unknown", {}, f"inquiry refused ({code}: {reply.body.get('returnDesc', '')})")
        if code in self._settings.not_found_codes:
            return Verdict("failed", pos_response(trace_no, ReturnCode.NOT_PROCESSED), f"not found ({code})")
        if code in self._choose_codes and "activityProductList" in reply.body:
            # A first round that offered options, whose answer was lost in a crash: nobody can
            # choose any more (the POS would get "choose" and its choice would be refused).
            answer = pos_response(trace_no, ReturnCode.CHOICE_TIMEOUT, _OPTIONS_LOST)
            return Verdict("failed", answer, f"options offered ({code}), none chosen")
        return Verdict("failed", as_original, f"original failed ({code})")

    async def resolve(self, trace_no: str, *, claim_deadline: float | None) -> TxnState:
        """Inquire until the outcome of ``trace_no`` (in state ``unknown``) is known or must be voided.

        Args:
            claim_deadline: monotonic time until which the POS is still waiting for this answer;
                None when nobody waits (after a restart): an approval found then is voided.

        Returns:
            approved, declined or voiding.
        """
        started = self._clock()
        settings = self._settings
        policy = await self._policy(trace_no)
        while True:
            await journaled_step(self._journal, trace_no, TxnState.UNKNOWN, "inquire")
            verdict = await self.inquire(trace_no)
            outcome = await self._apply_verdict(trace_no, verdict, claim_deadline, policy == "void")
            if outcome is not None:
                crash_point("inquiry.after_commit")
                return outcome
            if self._clock() - started + settings.inquiry_interval_s >= settings.inquiry_bound_s:
                return await self._give_up(trace_no, policy)
            await asyncio.sleep(settings.inquiry_interval_s)

    async def _policy(self, trace_no: str) -> Policy:
        record = await self._journal.get(trace_no)
        if record is None:
            return "void"
        kind = kind_of(record.action)
        if kind is TransactionKind.VOID:
            return "resend"
        if kind is TransactionKind.SALE and record.action not in self._settings.unvoidable_actions:
            return "void"
        return "escalate"

    async def _give_up(self, trace_no: str, policy: Policy) -> TxnState:
        """Still unknown at the bound: void a sale, send a void again, or give it to a person."""
        detail = "still unknown at the inquiry bound"
        if policy == "void":
            await self._reversals.enqueue_void(trace_no, TxnState.UNKNOWN, "give_up", detail)
            return TxnState.VOIDING
        if policy == "resend":
            await self._reversals.enqueue_void(
                trace_no, TxnState.UNKNOWN, "give_up", detail, answer_code=ReturnCode.VOID_RESENDING
            )
            return TxnState.VOIDING
        record = await self._journal.get(trace_no)
        refund = record is not None and kind_of(record.action) is TransactionKind.REFUND
        answer = pos_response(trace_no, ReturnCode.NEEDS_MANUAL, _REFUND_UNKNOWN if refund else _UNVOIDABLE_UNKNOWN)
        return await journaled_step(
            self._journal, trace_no, TxnState.UNKNOWN, "escalate",
            response=answer, return_code=ReturnCode.NEEDS_MANUAL.code, detail="still unknown at the inquiry bound",
        )  # fmt: skip

    async def _apply_verdict(
        self, trace_no: str, verdict: Verdict, claim_deadline: float | None, voidable: bool
    ) -> TxnState | None:
        if verdict.kind == "approved":
            if not voidable or (claim_deadline is not None and self._clock() < claim_deadline):
                return await journaled_step(
                    self._journal, trace_no, TxnState.INQUIRING, "inquiry_approved",
                    response=verdict.response, return_code="00",
                )  # fmt: skip
            await self._reversals.enqueue_void(
                trace_no, TxnState.INQUIRING, "void_unclaimed", "approved, but nobody waits for it"
            )
            return TxnState.VOIDING
        if verdict.kind == "failed":
            return await journaled_step(
                self._journal, trace_no, TxnState.INQUIRING, "inquiry_declined",
                response=verdict.response, return_code=str(verdict.response.get("returnCode", "")),
                detail=verdict.reason,
            )  # fmt: skip
        await journaled_step(self._journal, trace_no, TxnState.INQUIRING, "inquiry_unknown", detail=verdict.reason)
        return None
