"""The durable reversal queue (jPOS SAF style): undo what must be undone, never drop it.

The e-Buy book has no reversal message: ``voidCardSale`` with ``originalTraceNo`` undoes a sale
(book §10.5, §13). The rules (docs/reliability.md):

* a void is queued in the same commit that moves the transaction to ``voiding`` (with the MB32
  answer every later question about it gets);
* one attempt in flight at a time, whoever sends it (the worker, a drain before a sale,
  recovery); backoff from ``reversal_backoff_initial_s`` doubling to ``reversal_backoff_max_s``;
* "done", "not found" and "already voided" all mean nothing remains moved; a definite refusal
  or ``reversal_expire_s`` without success -> needs_manual, with an alert;
* every void carries a new traceNo allocated in the same commit as its intent
  (``Journal.allocate_call``).

A POS void (``voidQrcodeSale``, ``voidCardSale``) whose outcome stayed unknown is queued the same
way: the queue sends the POS's void again (its action, ``originalTraceNo`` and ``acquirer``: the
body the journal keeps, so a card void goes without ``cardInfo``, a system void like misbridge's
own) under new traceNos until the backend confirms it (``resolution.void_resend_done_codes``:
``void_confirmed``, the void approved with that reply) or refuses it (needs_manual).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from loguru import logger

from misbridge.config.settings import ResolutionSettings
from misbridge.core.answers import backend_answer, pos_response
from misbridge.core.flow import sent_as
from misbridge.core.followups import as_posted, as_sent
from misbridge.core.machine import TransactionKind, kind_of
from misbridge.core.ports import Backend, BackendReplyLike
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, MisbridgeError, ReturnCode
from misbridge.host.crashpoints import crash_point
from misbridge.journal.records import ReversalRecord, TransactionRecord
from misbridge.journal.store import Journal


class ReversalQueue:
    """Queued voids of one journal, sent to one backend: enqueue, attempt, drain, worker."""

    def __init__(self, settings: ResolutionSettings, journal: Journal, backend: Backend) -> None:
        self._settings = settings
        self._journal = journal
        self._backend = backend
        self._void_lock = asyncio.Lock()  # one void in flight, whoever sends it (worker or drain)
        self._wake = asyncio.Event()
        self._drain_task: asyncio.Task[int] | None = None
        self._stopping = False  # shutdown: finish the void in flight, start no other

    async def enqueue_void(
        self, trace_no: str, from_state: str, event: str, detail: str, *, answer_code: ReturnCode = ReturnCode.VOIDED
    ) -> None:
        """Move ``trace_no`` to ``voiding`` and queue its void, atomically.

        The MB32 answer (MB36 for a POS void sent again) is stored in the same commit: every
        later answer about this traceNo (the waiting POS, a repeat, an inquiry) is this one,
        byte for byte, until a POS void is confirmed.
        """
        answer = pos_response(trace_no, answer_code)
        await self._journal.enqueue_reversal(
            trace_no, from_state=from_state, event=event, detail=detail,
            response=answer, return_code=answer_code.code,
        )  # fmt: skip
        logger.bind(traceNo=trace_no).warning("void queued: {}", detail)
        crash_point("void.after_enqueue")
        self._wake.set()

    # -- one attempt --------------------------------------------------------------------------

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
        action = self._void_action(record)
        try:
            body = await self._void_body(call_no, record)
            reply = await self._backend.submit(action, body)
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            await self._journal.record_call_result(call_no, state="unknown")
            await self._retry_later(reversal, str(err))
            return
        crash_point("void.after_reply")
        await self._journal.record_call_result(
            call_no, state="answered", return_code=reply.return_code, response=reply.body
        )
        posted = record.request if record is not None and _is_pos_void(record) else None
        await self._apply_void_reply(reversal, reply, sent=body, posted=posted)

    def _void_action(self, record: TransactionRecord | None) -> str:
        """The POS's own void sent again, or the void of the sale's family (voidQrcodeSale for a QR sale)."""
        if record is None:
            return self._settings.void_action
        if _is_pos_void(record):
            return record.action
        return self._settings.void_actions.get(record.action, self._settings.void_action)

    async def _void_body(self, call_no: str, record: TransactionRecord | None) -> dict[str, Any]:
        if record is None:
            return {"traceNo": call_no, "originalTraceNo": ""}
        if _is_pos_void(record):  # the POS's void again, under a new traceNo
            return {**await as_sent(self._journal, record.request), "traceNo": call_no}
        # The sale as the backend knows it: its own traceNo, or its options sale's second round.
        body: dict[str, Any] = {"traceNo": call_no, "originalTraceNo": await sent_as(self._journal, record.trace_no)}
        if "acquirer" in record.request:
            body["acquirer"] = record.request["acquirer"]  # book §10.5: mandatory for acquiring voids
        return body

    async def _apply_void_reply(
        self,
        reversal: ReversalRecord,
        reply: BackendReplyLike,
        *,
        sent: Mapping[str, Any],
        posted: Mapping[str, Any] | None,
    ) -> None:
        """Settle the queue entry by the void's reply; ``posted`` is the POS's void when this resent it."""
        original = reversal.original_trace_no
        code = reply.return_code
        if posted is not None and code in self._settings.void_resend_done_codes:
            # The POS's void is done: it ends approved with the backend's answer under its traceNo.
            answer = as_posted(backend_answer({**reply.body, "traceNo": original}, original), posted, sent)
            await self._journal.complete_reversal(
                original, event="void_confirmed", response=answer, return_code=code, detail=f"void answered {code}"
            )
            logger.bind(traceNo=original).info("void confirmed (backend answered {})", code)
            crash_point("void.resend.after_commit")
        elif posted is None and code in self._settings.void_done_codes:
            # The stored MB32 answer (written when the void was queued) stays the answer.
            await self._journal.complete_reversal(original, detail=f"void answered {code}")
            logger.bind(traceNo=original).info("voided (backend answered {})", code)
            crash_point("void.after_commit")
        elif code in self._settings.pending_codes or code in self._settings.rejected_codes:
            await self._retry_later(reversal, f"void not decided ({code}: {reply.body.get('returnDesc', '')})")
        else:
            await self._escalate(original, f"void refused with {code}: {reply.body.get('returnDesc', '')}")

    def _backoff(self, attempts: int) -> timedelta:
        settings = self._settings
        seconds = min(settings.reversal_backoff_initial_s * 2**attempts, settings.reversal_backoff_max_s)
        return timedelta(seconds=seconds)

    async def _retry_later(self, reversal: ReversalRecord, error: str) -> None:
        # Counted from the failure, not from the attempt's start (R8): an attempt that hung for
        # the whole read timeout must not make the next one due at once.
        next_at = datetime.now(UTC) + self._backoff(reversal.attempts)
        await self._journal.record_reversal_attempt(reversal.original_trace_no, next_attempt_at=next_at, error=error)
        logger.bind(traceNo=reversal.original_trace_no).warning("void attempt failed ({}); next at {}", error, next_at)

    async def _escalate(self, original: str, detail: str) -> None:
        # The answer first given (MB32 "voids it, not charged", MB36 "sends it again") is no
        # longer true: a repeat of the request is told a person must reconcile it.
        answer = pos_response(
            original, ReturnCode.NEEDS_MANUAL, f"the void could not be completed ({detail}); reconcile by hand"
        )
        await self._journal.escalate_reversal(
            original, detail=detail, response=answer, return_code=ReturnCode.NEEDS_MANUAL.code
        )
        logger.bind(traceNo=original, alert="NEEDS_MANUAL").error("reversal needs manual resolution: {}", detail)

    # -- draining -----------------------------------------------------------------------------

    async def drain(self) -> int:
        """Attempt every void that is due now (until shutdown); returns how many were attempted.

        Callers that may only wait so long use :meth:`drain_within`, which bounds the wait, not the drain.
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
        await self.drain_within(self._settings.drain_before_sale_s)

    async def drain_within(self, budget_s: float) -> None:
        """Drain, waiting at most ``budget_s`` for it; the drain itself is never cut short."""
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


def _is_pos_void(record: TransactionRecord | None) -> bool:
    """``record`` is a void the POS asked for (sent again), not a sale misbridge undoes."""
    return record is not None and kind_of(record.action) is TransactionKind.VOID


def _log_drain_failure(task: asyncio.Task[int]) -> None:
    # The caller stops waiting after its budget; an error after that would otherwise surface
    # nowhere (finish() gathers with return_exceptions). The voids stay pending in the journal.
    if not task.cancelled() and (err := task.exception()) is not None:
        logger.error("reversal drain stopped: {}", err)
