"""Resolving unknown outcomes, undoing what must be undone, and recovering after a crash.

The e-Buy book has no reversal message: ``inquiry`` with ``originalTraceNo`` finds out what
happened, ``voidCardSale`` undoes a sale (book §10.4, §10.5, §13). The rules (docs/reliability.md):

* **unknown** -> inquire every ``inquiry_interval_s``. Approved and the POS still waiting ->
  approved; approved but nobody waiting for it any more (the POS was told it failed, or misbridge
  restarted) -> void. Definitely failed or never seen -> declined, no money moved. Still unknown
  at ``inquiry_bound_s`` -> void.
* **void** -> the durable reversal queue (jPOS SAF style): one attempt in flight at a time,
  backoff from ``reversal_backoff_initial_s`` doubling to ``reversal_backoff_max_s``, never
  dropped; "done", "not found" and "already voided" all mean nothing remains moved; a definite
  refusal or ``reversal_expire_s`` without success -> needs_manual, with an alert.
* every request misbridge originates carries a new traceNo allocated in the same commit as its
  intent (``Journal.allocate_call``).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol

from loguru import logger

from misbridge.config.settings import ResolutionSettings
from misbridge.core.flow import journaled_step
from misbridge.core.machine import PRE_SUBMIT_STATES, TxnState
from misbridge.core.observe import NoMetrics, TransactionMetrics
from misbridge.ebuy.requests import error_response
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, MisbridgeError, ReturnCode
from misbridge.host.crashpoints import crash_point
from misbridge.journal.records import ReversalRecord, TransactionRecord
from misbridge.journal.store import Journal


class BackendReplyLike(Protocol):
    """What resolution reads from a backend reply."""

    @property
    def body(self) -> dict[str, Any]: ...

    @property
    def return_code(self) -> str: ...


class Backend(Protocol):
    """The one backend call resolution needs (``BackendClient.submit``)."""

    async def submit(self, action: str, body: Mapping[str, Any]) -> BackendReplyLike: ...


VerdictKind = Literal["approved", "failed", "pending", "unknown"]


@dataclass(frozen=True)
class Verdict:
    """What one inquiry established about an original transaction."""

    kind: VerdictKind
    response: dict[str, Any]
    reason: str = ""


def pos_response(trace_no: str, code: ReturnCode, message: str = "") -> dict[str, Any]:
    """An e-Buy shaped answer carrying one of misbridge's own codes."""
    return error_response(trace_no, MisbridgeError(message or code.meaning, return_code=code), code)


class Resolver:
    """Inquiry loop, reversal queue and start-up recovery for one journal and one backend."""

    def __init__(
        self,
        settings: ResolutionSettings,
        journal: Journal,
        backend: Backend,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: TransactionMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._metrics: TransactionMetrics = metrics or NoMetrics()
        self._journal = journal
        self._backend = backend
        self._clock = clock
        self._void_lock = asyncio.Lock()  # one void in flight, whoever sends it (worker or drain)
        self._wake = asyncio.Event()
        self._drain_task: asyncio.Task[int] | None = None
        self._stopping = False  # shutdown: finish the void in flight, start no other

    # -- inquiry ----------------------------------------------------------------------------

    async def inquire(self, trace_no: str) -> Verdict:
        """Send one ``inquiry`` for ``trace_no`` under a freshly allocated traceNo."""
        verdict = await self._inquire(trace_no)
        self._metrics.inquiry_sent(verdict.kind)
        return verdict

    async def _inquire(self, trace_no: str) -> Verdict:
        call_no = await self._journal.allocate_call(trace_no, "inquiry")
        crash_point("inquiry.after_alloc")
        try:
            reply = await self._backend.submit("inquiry", {"traceNo": call_no, "originalTraceNo": trace_no})
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            await self._journal.record_call_result(call_no, state="unknown")
            return Verdict("unknown", {}, str(err))
        crash_point("inquiry.after_reply")
        await self._journal.record_call_result(
            call_no, state="answered", return_code=reply.return_code, response=reply.body
        )
        return self._classify_inquiry(trace_no, reply)

    def _classify_inquiry(self, trace_no: str, reply: BackendReplyLike) -> Verdict:
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
        while True:
            await journaled_step(self._journal, trace_no, TxnState.UNKNOWN, "inquire")
            verdict = await self.inquire(trace_no)
            outcome = await self._apply_verdict(trace_no, verdict, claim_deadline)
            if outcome is not None:
                crash_point("inquiry.after_commit")
                return outcome
            if self._clock() - started + settings.inquiry_interval_s >= settings.inquiry_bound_s:
                await self.enqueue_void(trace_no, TxnState.UNKNOWN, "give_up", "still unknown at the inquiry bound")
                return TxnState.VOIDING
            await asyncio.sleep(settings.inquiry_interval_s)

    async def _apply_verdict(self, trace_no: str, verdict: Verdict, claim_deadline: float | None) -> TxnState | None:
        if verdict.kind == "approved":
            if claim_deadline is not None and self._clock() < claim_deadline:
                return await journaled_step(
                    self._journal, trace_no, TxnState.INQUIRING, "inquiry_approved",
                    response=verdict.response, return_code="00",
                )  # fmt: skip
            await self.enqueue_void(trace_no, TxnState.INQUIRING, "void_unclaimed", "approved, but nobody waits for it")
            return TxnState.VOIDING
        if verdict.kind == "failed":
            return await journaled_step(
                self._journal, trace_no, TxnState.INQUIRING, "inquiry_declined",
                response=verdict.response, return_code=str(verdict.response.get("returnCode", "")),
                detail=verdict.reason,
            )  # fmt: skip
        await journaled_step(self._journal, trace_no, TxnState.INQUIRING, "inquiry_unknown", detail=verdict.reason)
        return None

    # -- the reversal queue -----------------------------------------------------------------

    async def enqueue_void(self, trace_no: str, from_state: str, event: str, detail: str) -> None:
        """Move ``trace_no`` to ``voiding`` and queue its void, atomically.

        The MB32 answer is stored in the same commit: every later answer about this traceNo
        (the waiting POS, a repeat, an inquiry) is this one, byte for byte.
        """
        answer = pos_response(trace_no, ReturnCode.VOIDED)
        await self._journal.enqueue_reversal(
            trace_no, from_state=from_state, event=event, detail=detail,
            response=answer, return_code=ReturnCode.VOIDED.code,
        )  # fmt: skip
        logger.bind(traceNo=trace_no).warning("void queued: {}", detail)
        crash_point("void.after_enqueue")
        self._wake.set()

    def _backoff(self, attempts: int) -> timedelta:
        settings = self._settings
        seconds = min(settings.reversal_backoff_initial_s * 2**attempts, settings.reversal_backoff_max_s)
        return timedelta(seconds=seconds)

    async def attempt_void(self, reversal: ReversalRecord) -> None:
        """One void attempt for a queued reversal (the caller holds no lock; this takes it)."""
        async with self._void_lock:
            if self._stopping:
                return  # shutdown: it stays pending in the journal for the next start
            current = await self._journal.reversal(reversal.original_trace_no)
            if current is None or current.state != "pending":
                return  # someone else finished it while we waited for the lock
            await self._attempt_void_locked(current)

    async def _attempt_void_locked(self, reversal: ReversalRecord) -> None:
        original = reversal.original_trace_no
        now = datetime.now(UTC)
        if now - reversal.created_at >= timedelta(seconds=self._settings.reversal_expire_s):
            await self._escalate(original, f"void not confirmed after {reversal.attempts} attempts")
            return
        record = await self._journal.get(original)
        call_no = await self._journal.allocate_call(original, "void")
        crash_point("void.after_alloc")
        try:
            reply = await self._backend.submit(self._settings.void_action, self._void_body(call_no, record))
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            await self._journal.record_call_result(call_no, state="unknown")
            await self._retry_later(reversal, str(err))
            return
        crash_point("void.after_reply")
        code = reply.return_code
        await self._journal.record_call_result(call_no, state="answered", return_code=code, response=reply.body)
        if code in self._settings.void_done_codes:
            # The stored MB32 answer (written when the void was queued) stays the answer.
            await self._journal.complete_reversal(original, detail=f"void answered {code}")
            logger.bind(traceNo=original).info("voided (backend answered {})", code)
            crash_point("void.after_commit")
        elif code in self._settings.pending_codes or code in self._settings.rejected_codes:
            await self._retry_later(reversal, f"void not decided ({code}: {reply.body.get('returnDesc', '')})")
        else:
            await self._escalate(original, f"void refused with {code}: {reply.body.get('returnDesc', '')}")

    def _void_body(self, call_no: str, record: TransactionRecord | None) -> dict[str, Any]:
        body: dict[str, Any] = {"traceNo": call_no, "originalTraceNo": record.trace_no if record else ""}
        if record is not None and "acquirer" in record.request:
            body["acquirer"] = record.request["acquirer"]  # book §10.5: mandatory for acquiring voids
        return body

    async def _retry_later(self, reversal: ReversalRecord, error: str) -> None:
        # Counted from the failure, not from the attempt's start (R8): an attempt that hung for
        # the whole read timeout must not make the next one due at once.
        next_at = datetime.now(UTC) + self._backoff(reversal.attempts)
        await self._journal.record_reversal_attempt(reversal.original_trace_no, next_attempt_at=next_at, error=error)
        logger.bind(traceNo=reversal.original_trace_no).warning("void attempt failed ({}); next at {}", error, next_at)

    async def _escalate(self, original: str, detail: str) -> None:
        await self._journal.escalate_reversal(original, detail=detail)
        logger.bind(traceNo=original, alert="NEEDS_MANUAL").error("reversal needs manual resolution: {}", detail)

    async def drain(self) -> int:
        """Attempt every void that is due now (until shutdown); returns how many were attempted.

        Callers that may only wait so long use :meth:`_drain_within`, which bounds the wait, not the drain.
        """
        attempted = 0
        for reversal in await self._journal.due_reversals():
            if self._stopping:
                break
            await self.attempt_void(reversal)
            attempted += 1
        return attempted

    async def drain_before_sale(self) -> None:
        """Send due voids before a new sale, waiting at most ``drain_before_sale_s`` for them.

        The drain runs as its own task: when the budget runs out the sale goes ahead and the
        voids carry on in the background, never cut off half way.
        """
        if not await self._journal.due_reversals():
            return
        await self._drain_within(self._settings.drain_before_sale_s)

    async def _drain_within(self, budget_s: float) -> None:
        # The drain is its own task, so the budget holds even while one void hangs for its
        # whole read timeout: the caller goes on and the drain carries on in the background.
        if self._drain_task is None or self._drain_task.done():
            self._drain_task = asyncio.create_task(self.drain(), name="reversal drain")
            self._drain_task.add_done_callback(_log_drain_failure)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._drain_task), budget_s)

    async def finish(self) -> None:
        """Shutdown: let the void in flight finish (never cut off half way) and start no other.

        Voids still due stay pending in the journal; the next start sends them.
        """
        self._stopping = True
        if self._drain_task is not None:
            await asyncio.gather(self._drain_task, return_exceptions=True)

    async def run_worker(self) -> None:
        """Drain the reversal queue forever: due entries now, then sleep until the next is due."""
        while True:
            try:
                await self.drain()
                delay = await self._until_next_due()
            except MisbridgeError as err:  # a journal or backend hiccup must not stop the queue
                logger.error("reversal worker: {}", err)
                delay = self._settings.reversal_backoff_initial_s
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _until_next_due(self) -> float:
        pending = await self._journal.pending_reversals()
        if not pending:
            return self._settings.reversal_backoff_max_s
        soonest = min(r.next_attempt_at for r in pending)
        return max(0.05, min((soonest - datetime.now(UTC)).total_seconds(), self._settings.reversal_backoff_max_s))

    # -- recovery ---------------------------------------------------------------------------

    async def recover(self) -> int:
        """Finish every transaction a previous run left half done; safe to interrupt and re-run.

        Pre-submit steps are aborted (nothing was sent), ``submitting`` becomes unknown (it may
        have been sent), unknown ones are resolved with nobody waiting, then due voids are sent.
        Returns the number of transactions touched.
        """
        crash_point("recovery.start")
        touched = 0
        for record in await self._journal.list_by_states(PRE_SUBMIT_STATES):
            response = pos_response(record.trace_no, ReturnCode.INTERRUPTED)
            await journaled_step(self._journal, record.trace_no, record.state, "abort",
                                 response=response, return_code=ReturnCode.INTERRUPTED.code, detail="restart")
            touched += 1
            crash_point("recovery.after_first")
        for state, event in ((TxnState.SUBMITTING, "outcome_unknown"), (TxnState.INQUIRING, "inquiry_unknown")):
            for record in await self._journal.list_by_states([state]):
                await journaled_step(self._journal, record.trace_no, state, event, detail="restart")
                touched += 1
        unknown = await self._journal.list_by_states([TxnState.UNKNOWN])
        await asyncio.gather(*(self.resolve(record.trace_no, claim_deadline=None) for record in unknown))
        touched += len(unknown)
        await self._drain_within(self._settings.drain_before_sale_s)
        if touched:
            logger.info("recovery finished {} interrupted transaction(s)", touched)
        return touched


def _log_drain_failure(task: asyncio.Task[int]) -> None:
    # The caller stops waiting after its budget; an error after that would otherwise surface
    # nowhere (finish() gathers with return_exceptions). The voids stay pending in the journal.
    if not task.cancelled() and (err := task.exception()) is not None:
        logger.error("reversal drain stopped: {}", err)
