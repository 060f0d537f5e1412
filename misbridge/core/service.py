"""TransactionService: the one place that wires state machine, PIN pad, backend and journal.

A card action runs as: validate (nothing is prompted for an invalid request) → record the
intent → READ_CARD → READ_PIN → record ``submitting`` → submit to the backend → record the
outcome → answer the POS. Every state change is committed to the journal *before* the next
side effect, and the state machine (``core/machine.py``) refuses any step out of order.

Each transaction runs in its own task owned by the service, so a POS that disconnects or
times out never cancels a money-moving step half way; a repeat of the same traceNo joins the
task already running instead of prompting the customer again. A POS that hung up before its
customer was prompted does not see its sale run later: the sale ends with MB29 instead.

A POS ``inquiry`` about an original the journal does not hold is forwarded to the backend,
which then bars both its traceNos: so each forwarded inquiry is journaled before it leaves, they
are rate-limited (``api.unknown_inquiries_per_minute``, MB43 beyond), and a sale with a barred
traceNo is refused before the customer is prompted (MB42).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from loguru import logger

from misbridge.backend.client import BackendClient
from misbridge.config.settings import Settings
from misbridge.core.flow import Flow
from misbridge.core.machine import TxnState
from misbridge.core.observe import NoMetrics, TransactionMetrics, timed
from misbridge.core.resolution import Resolver, pos_response
from misbridge.device.base import CardRead, EncryptedPin, PinPadDriver
from misbridge.ebuy import carddata
from misbridge.ebuy.requests import (
    BOOK_ACTIONS,
    CARD_ACTIONS,
    TRACE_NO_PATTERN,
    CardRedemptionRequest,
    amount_minor_units,
    complete_book_head,
    error_response,
    shown_action,
    validate_request,
)
from misbridge.errors import (
    BackendNotSent,
    BackendOutcomeUnknown,
    DeviceError,
    DeviceNotConnected,
    MisbridgeError,
    RequestError,
    ReturnCode,
)
from misbridge.host.crashpoints import crash_point
from misbridge.journal.records import TransactionRecord, request_hash
from misbridge.journal.store import BarredTraceNoError, Journal, KnownOriginalError

Response = dict[str, Any]


def card_info(card: CardRead, pin: EncryptedPin) -> dict[str, str]:
    """The book's cardInfo object (§8.5) from what the pad returned; encrypted fields stay HEX."""
    info = {
        "cardNo": card.enc_pan_hex,
        "password": pin.pin_block_hex,
        "valid": card.expiry,
        "track2": card.enc_track2_hex,
        "cardType": card.card_type,
    }
    optional = {
        "track1": card.enc_track1_hex,
        "track3": card.enc_track3_hex,
        "cardSn": card.card_sn,
        "icData": card.enc_ic_data_hex,
    }
    info.update({key: value for key, value in optional.items() if value})
    return info


class _Presence:
    """Whether anybody still waits for a transaction's answer.

    A door that can tell passes an event it sets when its POS hangs up; a caller that passes
    none counts as waiting for ever. :attr:`all_gone` is set while every caller that joined the
    transaction (the first request and its repeats) has gone, and cleared when one joins again.
    """

    def __init__(self) -> None:
        self.all_gone = asyncio.Event()
        self._waiting = 0
        self._undetectable = False
        self._watchers: set[asyncio.Task[None]] = set()

    def join(self, caller_gone: asyncio.Event | None) -> None:
        """Count one more caller waiting for the answer, until ``caller_gone`` is set."""
        if caller_gone is None:
            self._undetectable = True
        elif not caller_gone.is_set():
            self._waiting += 1
            watcher = asyncio.create_task(self._leave_when(caller_gone), name="POS presence")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        self._update()

    def close(self) -> None:
        """Stop watching (the transaction has ended)."""
        for watcher in list(self._watchers):
            watcher.cancel()

    async def _leave_when(self, caller_gone: asyncio.Event) -> None:
        await caller_gone.wait()
        self._waiting -= 1
        self._update()

    def _update(self) -> None:
        if self._undetectable or self._waiting > 0:
            self.all_gone.clear()
        else:
            self.all_gone.set()


class _RateGate:
    """At most ``per_minute`` admissions in any 60 s (a sliding window); 0 admits nothing."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._last_refusal_logged = -self.WINDOW_S

    def admit(self) -> bool:
        """True (and counted) when one more fits in the window."""
        now = self._clock()
        while self._admitted and now - self._admitted[0] >= self.WINDOW_S:
            self._admitted.popleft()
        if len(self._admitted) >= self._per_minute:
            return False
        self._admitted.append(now)
        return True

    def should_log_refusal(self) -> bool:
        """True at most once a window, so a flood of refusals writes one log line a minute."""
        now = self._clock()
        if now - self._last_refusal_logged < self.WINDOW_S:
            return False
        self._last_refusal_logged = now
        return True


@dataclass
class _InFlight:
    fingerprint: str
    task: asyncio.Task[Response]
    presence: _Presence


class TransactionService:
    """Runs POS requests to completion. ``handle`` never raises for anything the POS caused."""

    def __init__(
        self, settings: Settings, journal: Journal, pinpad: PinPadDriver, backend: BackendClient,
        *, metrics: TransactionMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._pinpad = pinpad
        self._backend = backend
        self._metrics: TransactionMetrics = metrics or NoMetrics()
        self._resolver = Resolver(settings.resolution, journal, backend, metrics=self._metrics)
        self._in_flight: dict[str, _InFlight] = {}
        self._unknown_inquiries = _RateGate(settings.api.unknown_inquiries_per_minute)
        self._accepting = True
        # Not ready until recover() has run: a card request before that could overtake an
        # interrupted transaction of the same customer.
        self._recovering = True

    @property
    def resolver(self) -> Resolver:
        """Inquiry, reversal queue and recovery (the daemon runs its worker)."""
        return self._resolver

    async def recover(self) -> int:
        """Finish what a previous run left half done; card requests get MB92 meanwhile."""
        self._recovering = True
        try:
            return await self._resolver.recover()
        finally:
            self._recovering = False

    @property
    def pinpad(self) -> PinPadDriver:
        """The PIN-pad driver (read-only: health reporting)."""
        return self._pinpad

    @property
    def journal(self) -> Journal:
        """The journal (read-only: status queries)."""
        return self._journal

    def stop_accepting(self) -> None:
        """Refuse new transactions (shutdown); running ones go on to their end."""
        self._accepting = False

    async def drain(self) -> None:
        """Wait until every running transaction has finished."""
        tasks = [entry.task for entry in self._in_flight.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        """What support and the POS may see of ``trace_no``: state, masked card, final answer,
        the journaled trail, any reversal and every request misbridge originated about it."""
        record = await self._journal.get(trace_no)
        if record is None:
            return None
        reversal = await self._journal.reversal(trace_no)
        return {
            "traceNo": record.trace_no,
            "action": record.action,
            "state": record.state,
            "maskedPan": record.masked_pan,
            "returnCode": record.return_code,
            "response": record.response,
            "createdAt": record.created_at.isoformat(),
            "updatedAt": record.updated_at.isoformat(),
            "transitions": [
                {"from": t.from_state, "to": t.to_state, "event": t.event, "at": t.at.isoformat(), "detail": t.detail}
                for t in await self._journal.transitions(trace_no)
            ],
            "reversal": None if reversal is None else {
                "state": reversal.state, "attempts": reversal.attempts, "lastError": reversal.last_error,
                "nextAttemptAt": reversal.next_attempt_at.isoformat(), "createdAt": reversal.created_at.isoformat(),
            },
            "backendCalls": [
                {"traceNo": c.trace_no, "kind": c.kind, "state": c.state, "returnCode": c.return_code}
                for c in await self._journal.calls(trace_no)
            ],
        }

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Readiness and details for ``/health``: ready means the PIN pad link is up.

        ``alerts`` lists what needs a person: a reversal in NEEDS_MANUAL never clears by itself.
        Anyone may read ``/health``, so it shows counts, never a traceNo.
        """
        info = self._pinpad.info
        device = {
            "connected": self._pinpad.connected,
            "model": info.model if info else None,
            "firmware": info.firmware if info else None,
            "serialNo": info.serial_no if info else None,
        }
        ready = self._pinpad.connected and self._accepting and not self._recovering
        needs_manual = await self._journal.count_reversals("needs_manual")
        alerts = [f"{needs_manual} reversal(s) need manual resolution"] if needs_manual else []
        return ready, {
            "status": "ready" if ready else "not ready",
            "accepting": self._accepting,
            "recovering": self._recovering,
            "device": device,
            "inFlight": len(self._in_flight),
            "reversals": {"pending": await self._journal.count_reversals("pending"), "needsManual": needs_manual},
            "alerts": alerts,
        }

    async def handle(
        self, action: str, body: Mapping[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> Response:
        """Process one POS request and return the e-Buy response body.

        Args:
            caller_gone: set by the door when the POS closes its connection; a card sale whose
                customer was not prompted yet then ends with MB29 instead of running unseen.
        """
        trace_no = body.get("traceNo") if isinstance(body.get("traceNo"), str) else ""
        assert isinstance(trace_no, str)
        try:
            request = validate_request(action, body)
            if not self._accepting:
                raise RequestError("misbridge is shutting down", return_code=ReturnCode.SHUTTING_DOWN)
            if self._recovering and action in CARD_ACTIONS:
                raise RequestError(ReturnCode.RECOVERING.meaning, return_code=ReturnCode.RECOVERING)
        except RequestError as err:
            _log_refusal(trace_no, action, err)
            if action in CARD_ACTIONS:
                self._metrics.transaction_finished(action, "refused")
            return error_response(trace_no, err, err.return_code)
        if action in CARD_ACTIONS:
            assert isinstance(request, CardRedemptionRequest)
            claim_deadline = asyncio.get_running_loop().time() + self._settings.api.pos_deadline_s - _CLAIM_MARGIN_S
            return await self._join_or_start(action, dict(body), request, claim_deadline, caller_gone)
        return await self._inquiry(dict(body))

    async def _join_or_start(
        self, action: str, body: dict[str, Any], request: CardRedemptionRequest, claim_deadline: float,
        caller_gone: asyncio.Event | None,
    ) -> Response:
        trace_no = request.traceNo
        fingerprint = request_hash(body)
        running = self._in_flight.get(trace_no)
        if running is not None:
            if running.fingerprint != fingerprint:
                err = RequestError(
                    f"traceNo {trace_no} is in progress with a different request",
                    return_code=ReturnCode.TRACE_NO_CONFLICT,
                )
                return error_response(trace_no, err, err.return_code)
            # The same request again while it runs: wait for the one answer, never prompt twice.
            running.presence.join(caller_gone)
            return await asyncio.shield(running.task)
        if self._in_flight:
            # Only a count: the running traceNo is not this caller's business (issue 10, item 6).
            err = RequestError("the PIN pad is busy with another transaction", return_code=ReturnCode.DEVICE_BUSY)
            return error_response(trace_no, err, err.return_code)
        presence = _Presence()
        presence.join(caller_gone)
        task = asyncio.create_task(
            self._card_transaction(action, body, request, fingerprint, claim_deadline, presence)
        )
        self._in_flight[trace_no] = _InFlight(fingerprint, task, presence)
        task.add_done_callback(lambda _: self._in_flight.pop(trace_no, None))
        task.add_done_callback(lambda _: presence.close())
        # shield: a POS that goes away must not cancel a transaction that may move money.
        return await asyncio.shield(task)

    async def _card_transaction(
        self, action: str, body: dict[str, Any], request: CardRedemptionRequest, fingerprint: str,
        claim_deadline: float, presence: _Presence,
    ) -> Response:
        trace_no = request.traceNo
        existing = await self._journal.get(trace_no)
        if existing is not None:
            return self._repeat_answer(existing, action, fingerprint)
        # Pending voids go out before a new sale (the 冲正-before-next-transaction practice).
        await self._drain_unless_gone(presence)
        crash_point("intake.before_intent")
        try:
            await self._journal.record_intent(TransactionRecord.new(trace_no, action, TxnState.RECEIVED, body))
        except BarredTraceNoError as barred:
            # The backend would refuse the sale as a duplicate after the PIN: refuse it now.
            err = RequestError(f"{barred}; use a new traceNo", return_code=ReturnCode.TRACE_NO_BARRED)
            _log_refusal(trace_no, action, err)
            self._metrics.transaction_finished(action, "refused")
            return error_response(trace_no, err, err.return_code)
        crash_point("intake.after_intent")
        flow = Flow(self._journal, trace_no)
        with timed(self._metrics, "total"):
            try:
                card, pin = await self._read_card_and_pin(flow, request, presence)
            except (DeviceError, MisbridgeError) as err:
                response = await self._abort(flow, err)
            else:
                outbound = {**body, "cardInfo": card_info(card, pin)}
                response = await self._submit(flow, action, outbound, claim_deadline)
        crash_point("outcome.after_commit")
        self._metrics.transaction_finished(action, flow.state)
        return response

    async def _drain_unless_gone(self, presence: _Presence) -> None:
        """Wait for the drain before a sale, but no longer once every caller has hung up.

        Cancelling the wait never cuts a void short: the drain runs as the resolver's own task.
        """
        drain = asyncio.create_task(self._resolver.drain_before_sale(), name="drain before sale")
        gone = asyncio.create_task(presence.all_gone.wait(), name="POS gone")
        try:
            await asyncio.wait({drain, gone}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            drain.cancel()  # we are cancelled (shutdown): leave no task unawaited behind
            raise
        finally:
            gone.cancel()
        if not drain.done():
            drain.cancel()
            await asyncio.wait({drain})  # returns once the wait is cancelled; our own cancellation still propagates
        if not drain.cancelled():
            drain.result()  # a journal error of the drain surfaces as before

    async def _read_card_and_pin(
        self, flow: Flow, request: CardRedemptionRequest, presence: _Presence
    ) -> tuple[CardRead, EncryptedPin]:
        device = self._settings.device
        if presence.all_gone.is_set():
            # Nobody is there to hear the answer: do not ask the customer for a card (issue 10, item 2).
            raise MisbridgeError(ReturnCode.POS_GONE.meaning, return_code=ReturnCode.POS_GONE)
        if not self._pinpad.connected:
            raise DeviceNotConnected("PIN pad not connected: check the cable and the device path")
        amount = amount_minor_units(request.totalAmount)
        await flow.step("start_card")
        with timed(self._metrics, "card"):
            card = await self._pinpad.read_card(amount, device.card_timeout_s, f"Amount {request.totalAmount}")
        crash_point("card.before_commit")
        await flow.step("card_read", masked_pan=card.masked_pan, card_type=card.card_type)
        crash_point("card.after_commit")
        with timed(self._metrics, "pin"):
            pin = await self._pinpad.read_pin(amount, device.pin_timeout_s, "Enter PIN", key_index=device.key_index)
        crash_point("pin.before_commit")
        return card, pin

    async def _abort(self, flow: Flow, err: MisbridgeError) -> Response:
        response = error_response(flow.trace_no, err, err.return_code)
        await flow.step("abort", response=response, return_code=err.return_code.code, detail=str(err))
        return response

    async def _submit(self, flow: Flow, action: str, outbound: dict[str, Any], claim_deadline: float) -> Response:
        # The intent to submit is durable before the first byte leaves (R1).
        await flow.step("pin_entered")
        crash_point("submit.after_commit")
        try:
            with timed(self._metrics, "backend"):
                reply = await self._backend.submit(action, outbound)
        except BackendNotSent as err:
            response = error_response(flow.trace_no, err, err.return_code)
            await flow.step("not_sent", response=response, return_code=err.return_code.code, detail=str(err))
            return response
        except BackendOutcomeUnknown as err:
            # Never re-submitted: find out by inquiry, void if it cannot be confirmed (R7).
            await flow.step("outcome_unknown", detail=str(err))
            # resolve() moved the journal row itself; the flow follows what it ended in.
            flow.state = await self._resolver.resolve(flow.trace_no, claim_deadline=claim_deadline)
            record = await self._journal.get(flow.trace_no)  # resolve() stored the answer it ended with
            return answer_from_journal(record) if record else pos_response(flow.trace_no, ReturnCode.BACKEND_UNKNOWN)
        crash_point("submit.after_reply")
        event = "approve" if reply.approved else "decline"
        answer = complete_book_head(reply.body, flow.trace_no)
        await flow.step(event, response=answer, return_code=reply.return_code)
        return answer

    def _repeat_answer(self, existing: TransactionRecord, action: str, fingerprint: str) -> Response:
        trace_no = existing.trace_no
        if existing.request_hash != fingerprint or existing.action != action:
            err = RequestError(
                f"traceNo {trace_no} was already used for a different request",
                return_code=ReturnCode.TRACE_NO_CONFLICT,
            )
            return error_response(trace_no, err, err.return_code)
        return answer_from_journal(existing)

    async def _inquiry(self, body: dict[str, Any]) -> Response:
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
            if trace_no in self._in_flight or await self._journal.get(trace_no) is not None:
                # Forwarded, the inquiry would make the backend see that sale's traceNo twice.
                err = RequestError(
                    f"traceNo {trace_no} is already used by a transaction; an inquiry needs its own",
                    return_code=ReturnCode.TRACE_NO_CONFLICT,
                )
                return error_response(trace_no, err, err.return_code)
            forwarded = await self._forward_inquiry(trace_no, original_trace_no, body)
            if forwarded is not None:
                return forwarded
            original = await self._journal.get(original_trace_no)  # a sale was journaled meanwhile
            if original is None:
                return pos_response(trace_no, ReturnCode.INTERNAL, "the original vanished from the journal")
        running = self._in_flight.get(original.trace_no)
        if running is not None:
            await asyncio.shield(running.task)
            original = await self._journal.get(original.trace_no) or original
        return answer_from_journal(original) | {"traceNo": trace_no, "originalTraceNo": original.trace_no}

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
            return error_response(trace_no, err, err.return_code)
        try:
            # Journaled before it leaves: the backend bars both traceNos from this moment on.
            inquiry_id = await self._journal.record_pos_inquiry(trace_no, original_trace_no)
        except KnownOriginalError:
            return None
        try:
            reply = await self._backend.submit("inquiry", body)
        except (BackendNotSent, BackendOutcomeUnknown) as err:
            await self._journal.record_pos_inquiry_result(inquiry_id, "no_answer")
            return error_response(trace_no, err, err.return_code)
        answer = complete_book_head(reply.body, trace_no)
        await self._journal.record_pos_inquiry_result(
            inquiry_id, "answer", return_code=reply.return_code, response=answer
        )
        return answer


def _log_refusal(trace_no: str, action: str, err: RequestError) -> None:
    # A refused request's traceNo and action are whatever the POS sent: a known action and a
    # traceNo that passed validation are logged as they are, anything else only as a bounded,
    # printable, card-masked quote (a 30 000-character action must not become a 30 KB line).
    shown_trace = trace_no if re.fullmatch(TRACE_NO_PATTERN, trace_no) else carddata.shown(trace_no, 40)
    shown_name = action if action in BOOK_ACTIONS else shown_action(action)
    logger.bind(traceNo=shown_trace, action=shown_name).warning("refused: {} {}", err.return_code.code, err)


#: Margin between the POS's deadline and the last moment misbridge hands it an approval.
_CLAIM_MARGIN_S = 2.0

_STATE_CODES = {
    TxnState.RECEIVED: ReturnCode.INTERRUPTED,
    TxnState.READING_CARD: ReturnCode.INTERRUPTED,
    TxnState.READING_PIN: ReturnCode.INTERRUPTED,
    TxnState.SUBMITTING: ReturnCode.BACKEND_UNKNOWN,
    TxnState.UNKNOWN: ReturnCode.BACKEND_UNKNOWN,
    TxnState.INQUIRING: ReturnCode.BACKEND_UNKNOWN,
    TxnState.VOIDING: ReturnCode.VOIDED,
    TxnState.NEEDS_MANUAL: ReturnCode.NEEDS_MANUAL,
}


def answer_from_journal(record: TransactionRecord) -> Response:
    """What the POS is told about a transaction the journal holds.

    The stored answer when there is one (final states, and voiding/needs_manual which keep the
    MB32 the POS was first given); otherwise a code for the state it is in.
    """
    if record.response is not None:
        # A head field the backend left out is filled from the record, not the clock, so every
        # replay of a stored answer is the same.
        return complete_book_head(record.response, record.trace_no, at=record.updated_at)
    return pos_response(record.trace_no, _STATE_CODES.get(TxnState(record.state), ReturnCode.BACKEND_UNKNOWN))
