"""A POS ``inquiry``: answered from the journal, or forwarded when misbridge never saw the original.

The backend bars both traceNos of a forwarded inquiry, so each one is journaled (with its
request's fingerprint) before it leaves and never forwarded twice: a repeat gets the stored
answer, another request with its traceNo MB41. They are rate-limited
(``api.unknown_inquiries_per_minute``, MB43 beyond), and an inquiry about a sale that is still
starting waits for it instead of being forwarded (its traceNo would be barred).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from loguru import logger

from misbridge.config.settings import Settings
from misbridge.core import answers
from misbridge.core.answers import Response
from misbridge.core.callers import InFlight, RateGate
from misbridge.core.ports import Backend
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, RequestError, ReturnCode
from misbridge.journal.records import request_hash
from misbridge.journal.store import Journal, KnownOriginalError


class PosInquiries:
    """Answers the POS's inquiries; sees the service's running transactions through ``in_flight``."""

    def __init__(
        self, settings: Settings, journal: Journal, backend: Backend, in_flight: Mapping[str, InFlight]
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._backend = backend
        self._in_flight = in_flight
        self._unknown_inquiries = RateGate(settings.api.unknown_inquiries_per_minute)

    async def answer(self, body: dict[str, Any]) -> Response:
        """``inquiry`` from the POS: answered from the journal when misbridge knows the original."""
        trace_no = str(body.get("traceNo", ""))
        original_trace_no = str(body["originalTraceNo"])
        starting = self._in_flight.get(original_trace_no)
        if starting is not None:
            # A sale that is still draining voids has no journal row yet: wait for it rather
            # than forward the inquiry, which would bar its traceNo at the backend.
            await asyncio.shield(starting.task)
        original = await self._journal.get(original_trace_no)
        if original is None:  # a transaction misbridge never saw: ask the backend
            if await self._trace_no_taken(trace_no):
                # Forwarded, the inquiry would make the backend see that request's traceNo twice.
                return answers.inquiry_trace_no_taken(trace_no)
            earlier = await self._journal.forwarded_inquiry(trace_no)
            if earlier is not None:  # asked before: never forwarded twice
                return answers.forwarded_repeat_answer(earlier, original_trace_no, request_hash(body))
            forwarded = await self._forward_inquiry(trace_no, original_trace_no, body)
            if forwarded is not None:
                return forwarded
            original = await self._journal.get(original_trace_no)  # a sale was journaled meanwhile
            if original is None:
                return answers.pos_response(trace_no, ReturnCode.INTERNAL, "the original vanished from the journal")
        running = self._in_flight.get(original.trace_no)
        if running is not None:
            await asyncio.shield(running.task)
            original = await self._journal.get(original.trace_no) or original
        return answers.inquiry_answer(original, trace_no)

    async def _trace_no_taken(self, trace_no: str) -> bool:
        """Whether a transaction, query or upload (running or journaled) has ``trace_no``."""
        if trace_no in self._in_flight or await self._journal.get(trace_no) is not None:
            return True
        return await self._journal.query(trace_no) is not None

    async def _forward_inquiry(self, trace_no: str, original_trace_no: str, body: dict[str, Any]) -> Response | None:
        """Forward an inquiry about an unknown original, journaled and rate-limited.

        Returns None when the original turned up in the journal meanwhile (answer from it).
        """
        if not self._unknown_inquiries.admit():
            limit = self._settings.api.unknown_inquiries_per_minute
            err = RequestError(
                f"more than {limit} inquiries a minute about transactions misbridge does not know; not forwarded",
                return_code=ReturnCode.UNKNOWN_ORIGINAL_REFUSED,
            )
            if self._unknown_inquiries.should_log_refusal():  # one line a minute, whatever the flood
                logger.warning("refused: {} {}", err.return_code.code, err)
            return answers.refusal(trace_no, err)
        try:
            # Journaled before it leaves: the backend bars both traceNos from this moment on.
            inquiry_id = await self._journal.record_pos_inquiry(trace_no, original_trace_no, request_hash(body))
        except KnownOriginalError:
            return None
        try:
            reply = await self._backend.submit("inquiry", body)
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            answer = answers.refusal(trace_no, err)  # kept: a repeat gets the same answer
            await self._journal.record_pos_inquiry_result(
                inquiry_id, "no_answer", return_code=err.return_code.code, response=answer
            )
            return answer
        answer = answers.backend_answer(reply.body, trace_no)
        await self._journal.record_pos_inquiry_result(
            inquiry_id, "answer", return_code=reply.return_code, response=answer
        )
        return answer
