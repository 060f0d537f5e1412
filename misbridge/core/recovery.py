"""Start-up recovery: finish every transaction a previous run left half done.

Safe to interrupt and re-run (each step is one journaled move): pre-submit steps are aborted
(nothing was sent, MB28), ``submitting`` and ``inquiring`` become unknown (the request may have
been sent), every unknown one is resolved with nobody waiting (an approval found is voided),
then due voids are sent (docs/reliability.md). A query or upload left ``sent`` gets its result
``unknown`` with the MB31 answer a repeat of it is given (it is never sent again).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from loguru import logger

from misbridge.core.answers import pos_response, query_no_answer
from misbridge.core.flow import journaled_step
from misbridge.core.inquiry import InquiryLoop
from misbridge.core.kinds import PRE_SUBMIT_STATES
from misbridge.core.machine import TxnState
from misbridge.core.reversals import ReversalQueue
from misbridge.errors import ReturnCode
from misbridge.host.crashpoints import crash_point
from misbridge.journal.store import Journal

#: Money-at-risk states a restart finds mid-step, and the event that makes each one unknown.
_MAYBE_SENT = ((TxnState.SUBMITTING, "outcome_unknown"), (TxnState.INQUIRING, "inquiry_unknown"))
_NONE_CHOSEN = "misbridge restarted while the options were offered, before one was chosen; nothing moved"


class Recovery:
    """Recovers one journal at start-up, resolving through the inquiry loop and the reversal queue."""

    def __init__(
        self, journal: Journal, inquiries: InquiryLoop, reversals: ReversalQueue, *, drain_budget_s: float
    ) -> None:
        self._journal = journal
        self._inquiries = inquiries
        self._reversals = reversals
        self._drain_budget_s = drain_budget_s

    async def recover(self) -> int:
        """Finish every interrupted transaction; returns the number of transactions touched."""
        crash_point("recovery.start")
        started = datetime.now(UTC)
        touched = await self._abort_pre_submit()
        touched += await self._mark_unknown()
        touched += await self._resolve_unknown()
        await self._reversals.drain_within(self._drain_budget_s)
        touched += await self._close_unanswered_queries(started)
        if touched:
            logger.info("recovery finished {} interrupted transaction(s)", touched)
        return touched

    async def _abort_pre_submit(self) -> int:
        touched = 0
        for record in await self._journal.list_by_states(PRE_SUBMIT_STATES):
            code, message = ReturnCode.INTERRUPTED, ""
            if record.state == TxnState.CHOOSING:  # options offered (nothing moved), none chosen
                code, message = ReturnCode.CHOICE_TIMEOUT, _NONE_CHOSEN
            await journaled_step(
                self._journal,
                record.trace_no,
                record.state,
                "abort",
                response=pos_response(record.trace_no, code, message),
                return_code=code.code,
                detail="restart",
            )
            touched += 1
            crash_point("recovery.after_first")
        return touched

    async def _mark_unknown(self) -> int:
        touched = 0
        for state, event in _MAYBE_SENT:
            for record in await self._journal.list_by_states([state]):
                await journaled_step(self._journal, record.trace_no, state, event, detail="restart")
                touched += 1
        return touched

    async def _close_unanswered_queries(self, before: datetime) -> int:
        """Queries and uploads a previous run sent without recording a result (none started since)."""
        unanswered = await self._journal.unanswered_queries(before)
        for query in unanswered:
            answer = query_no_answer(query.trace_no)
            await self._journal.record_query_result(
                query.trace_no, query.action, "no_answer", response=answer, return_code=str(answer["returnCode"])
            )
        return len(unanswered)

    async def _resolve_unknown(self) -> int:
        unknown = await self._journal.list_by_states([TxnState.UNKNOWN])
        await asyncio.gather(*(self._inquiries.resolve(record.trace_no, claim_deadline=None) for record in unknown))
        return len(unknown)
