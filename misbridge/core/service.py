"""TransactionService: the one place that wires state machine, PIN pad, backend and journal.

A card action runs as: validate (nothing is prompted for an invalid request) → record the
intent → READ_CARD → READ_PIN → record ``submitting`` → submit to the backend → record the
outcome → answer the POS. Every state change is committed to the journal *before* the next
side effect, and the state machine (``core/machine.py``) refuses any step out of order.

Each transaction runs in its own task owned by the service, so a POS that disconnects or
times out never cancels a money-moving step half way; a repeat of the same traceNo joins the
task already running instead of prompting the customer again. A POS that hung up before its
customer was prompted does not see its sale run later: the sale ends with MB29 instead.

A POS ``inquiry`` is answered by :mod:`misbridge.core.pos_inquiry`; one about an original the
journal does not hold is forwarded to the backend, which then bars both its traceNos, so a sale
with a barred traceNo is refused before the customer is prompted (MB42). ``accumulating`` and the
queries and upload (no pad) are run by :mod:`misbridge.core.passthrough`, the QR voids and refunds
with them; ``qrcodeSale`` runs here like a card sale (one pad transaction at a time), its steps in
:mod:`misbridge.core.qr`. ``voidCardSale`` and ``refundCardSale`` run here too: checked against
their original under the follow-ups' lock before the customer is prompted
(:mod:`misbridge.core.followups`), then card (the same card as the original's:
:mod:`misbridge.core.cardfollow`) and PIN, the pad showing what is voided or refunded, then
submitted with ``cardInfo`` like a sale. Which answer the POS
gets is :mod:`misbridge.core.answers`'s choice; ``/health`` is built by :mod:`misbridge.core.health`,
inquiry, voids and start-up recovery by :mod:`~misbridge.core.inquiry`,
:mod:`~misbridge.core.reversals` and :mod:`~misbridge.core.recovery`.
"""

from __future__ import annotations

import asyncio
import re
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from misbridge.config.settings import Settings
from misbridge.core import answers
from misbridge.core.answers import Response
from misbridge.core.callers import CLAIM_MARGIN_S, InFlight, Presence
from misbridge.core.cardfollow import CARD_FOLLOW_UPS, PadScreen, check_same_card, follow_up_screen
from misbridge.core.flow import Flow
from misbridge.core.followups import record_follow_up
from misbridge.core.health import BackendView, ServiceStatus, health_report
from misbridge.core.inquiry import InquiryLoop
from misbridge.core.keys import KeyKeeper
from misbridge.core.latest_reconcile import LatestReconcileReader, latest_path
from misbridge.core.machine import TxnState
from misbridge.core.observe import NoMetrics, TransactionMetrics, timed
from misbridge.core.passthrough import PASS_THROUGH_ACTIONS, VALUE_ACTIONS, PassThrough
from misbridge.core.ports import CardBackend
from misbridge.core.pos_inquiry import PosInquiries
from misbridge.core.progress import DEFAULT_LANE, ProgressEvent, ProgressHub
from misbridge.core.qr import QR_ACTION, QrSales
from misbridge.core.recovery import Recovery
from misbridge.core.reversals import ReversalQueue
from misbridge.device.base import CardRead, EncryptedPin, PinPadDriver, ProgressStep
from misbridge.ebuy import carddata
from misbridge.ebuy.requests import (
    BOOK_ACTIONS,
    CARD_ACTIONS,
    TRACE_NO_PATTERN,
    CardRedemptionRequest,
    QrcodeSaleRequest,
    RefundCardSaleRequest,
    VoidCardSaleRequest,
    parse_request,
    shown_action,
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
from misbridge.journal.queries import http_view
from misbridge.journal.records import TransactionRecord, request_hash
from misbridge.journal.store import BarredTraceNoError, Journal


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


class TransactionService:
    """Runs POS requests to completion. ``handle`` never raises for anything the POS caused."""

    def __init__(
        self,
        settings: Settings,
        journal: Journal,
        pinpad: PinPadDriver,
        backend: CardBackend,
        *,
        metrics: TransactionMetrics | None = None,
        keys: KeyKeeper | None = None,
        follow_up_lock: asyncio.Lock | None = None,
        progress: ProgressHub | None = None,
        lane: str = DEFAULT_LANE,
    ) -> None:
        self._settings = settings
        # None only where no pad keys are involved (core's unit tests); the daemon always has one.
        self._keys = keys
        self._journal = journal
        self._pinpad = pinpad
        self._backend = backend
        self._metrics: TransactionMetrics = metrics or NoMetrics()
        self._reversals = ReversalQueue(settings.resolution, journal, backend)
        self._inquiries = InquiryLoop(
            settings.resolution, journal, backend, self._reversals,
            metrics=self._metrics, choose_codes=settings.options.choose_codes,
        )  # fmt: skip
        self._recovery = Recovery(
            journal, self._inquiries, self._reversals, drain_budget_s=settings.resolution.drain_before_sale_s
        )
        # Written by `misbridge reconcile` (another process) next to the journal; read per /health.
        self._latest_reconcile = LatestReconcileReader(latest_path(Path(settings.journal.path)))
        self._in_flight: dict[str, InFlight] = {}
        # A void/refund's check and intent, one at a time (QR or card), across every lane: two
        # lanes must not both void one sale.
        self._follow_up_lock = follow_up_lock if follow_up_lock is not None else asyncio.Lock()
        self._passthrough = PassThrough(
            settings, journal, backend, self._inquiries, metrics=self._metrics, card_in_flight=self._in_flight,
            follow_up_lock=self._follow_up_lock,
        )  # fmt: skip
        # An inquiry waits for a card sale or an accumulation that is still starting.
        running = ChainMap(self._in_flight, self._passthrough.in_flight)
        self._pos_inquiries = PosInquiries(settings, journal, backend, running)
        self._qr = QrSales(settings, journal, pinpad, backend, self._inquiries, self._metrics)
        self._accepting = True
        # Not ready until recover() has run: a card request before that could overtake an
        # interrupted transaction of the same customer.
        self._recovering = True
        self._lane = lane
        self._progress = progress
        if progress is not None:
            self._follow_progress(progress)

    def _follow_progress(self, progress: ProgressHub) -> None:
        """Feed ``progress``: every move this service's journal commits, and the PIN digits typed on its pad.

        The journal is the one place every state change passes (the inquiry loop's, the reversal
        queue's and recovery's too), so its observer covers them all without a hook in each.
        """
        progress.add_lane(self._lane)
        self._journal.observer = progress.observer(self._lane)
        self._pinpad.on_progress = self._pad_progress

    def _pad_progress(self, stage: str, digits_entered: int) -> None:
        """The pad's progress report: the PIN digit count goes to the hub for the sale on the pad."""
        if self._progress is None or stage != ProgressStep.PIN_DIGIT:
            return  # card and code steps are told by the journal's moves already
        # One pad transaction at a time (MB25 otherwise): the one in flight is the pad's.
        on_pad = next(iter(self._in_flight), None)
        if on_pad is not None:
            self._progress.publish(ProgressEvent.pin_digits(self._lane, on_pad, digits_entered))

    @property
    def resolver(self) -> ReversalQueue:
        """The durable reversal queue: the daemon runs its worker and finishes it at shutdown."""
        return self._reversals

    async def recover(self) -> int:
        """Finish what a previous run left half done; card requests get MB92 meanwhile."""
        self._recovering = True
        try:
            return await self._recovery.recover()
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

    def running(self, trace_no: str) -> bool:
        """Whether a transaction with ``trace_no`` runs on this service right now (a lane router's question)."""
        return trace_no in self._in_flight or trace_no in self._passthrough.in_flight

    @property
    def lane(self) -> str:
        """The name of this service's lane (its PIN pad) in progress events."""
        return self._lane

    def stop_accepting(self) -> None:
        """Refuse new transactions (shutdown); running ones go on to their end."""
        self._accepting = False

    async def drain(self) -> None:
        """Wait until every running transaction has finished."""
        tasks = [entry.task for entry in (*self._in_flight.values(), *self._passthrough.in_flight.values())]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        """What support and the POS may see of ``trace_no`` (or of a request misbridge or the POS
        sent about it): the journal's one transaction view, as the HTTP door shows it."""
        view = await self._journal.transaction_view(trace_no)
        return None if view is None else http_view(view)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """Readiness and details for ``/health`` (:func:`misbridge.core.health.health_report`)."""
        status = ServiceStatus(self._accepting, self._recovering, len(self._in_flight))
        reconcile = self._latest_reconcile.get()
        if self._keys is None:
            return await health_report(self._pinpad, self._journal, status, reconcile=reconcile)
        backend = BackendView(self._keys.reach, self._settings.backend.healthy_within_s)
        return await health_report(self._pinpad, self._journal, status, self._keys.status, backend, reconcile=reconcile)

    @property
    def latest_reconcile(self) -> LatestReconcileReader:
        """The latest end-of-day outcome as ``/health`` reads it (the metrics scrape shares it)."""
        return self._latest_reconcile

    @property
    def keys(self) -> KeyKeeper | None:
        """The key keeper (the daemon runs it; ``misbridge pad provision`` uses it)."""
        return self._keys

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
            request = parse_request(action, body)
            if not self._accepting:
                raise RequestError("misbridge is shutting down", return_code=ReturnCode.SHUTTING_DOWN)
            if self._recovering and action in _MONEY_ACTIONS:
                raise RequestError(ReturnCode.RECOVERING.meaning, return_code=ReturnCode.RECOVERING)
        except RequestError as err:
            _log_refusal(trace_no, action, err)
            if action in _MONEY_ACTIONS:
                self._metrics.transaction_finished(action, "refused")
            return answers.refusal(trace_no, err)
        if action in PASS_THROUGH_ACTIONS:
            return await self._passthrough.handle(action, dict(body))
        if action in _PAD_ACTIONS:
            assert isinstance(request, _PadRequest)
            claim_deadline = asyncio.get_running_loop().time() + self._settings.api.pos_deadline_s - CLAIM_MARGIN_S
            return await self._join_or_start(action, dict(body), request, claim_deadline, caller_gone)
        return await self._pos_inquiries.answer(dict(body))

    async def _join_or_start(
        self,
        action: str,
        body: dict[str, Any],
        request: _PadRequest,
        claim_deadline: float,
        caller_gone: asyncio.Event | None,
    ) -> Response:
        trace_no = request.traceNo
        fingerprint = request_hash(body)
        running = self._in_flight.get(trace_no)
        if running is not None:
            if running.fingerprint != fingerprint:
                return answers.running_conflict(trace_no)
            # The same request again while it runs: wait for the one answer, never prompt twice.
            running.presence.join(caller_gone)
            return await asyncio.shield(running.task)
        if trace_no in self._passthrough.in_flight:  # an accumulation or query with this traceNo runs
            return answers.running_conflict(trace_no)
        if self._in_flight:
            # Only a count: the running traceNo is not this caller's business (issue 10, item 6).
            return answers.pad_busy(trace_no)
        presence = Presence()
        presence.join(caller_gone)
        task = asyncio.create_task(self._card_transaction(action, body, request, fingerprint, claim_deadline, presence))
        self._in_flight[trace_no] = InFlight(fingerprint, task, presence)
        task.add_done_callback(lambda _: self._in_flight.pop(trace_no, None))
        task.add_done_callback(lambda _: presence.close())
        # shield: a POS that goes away must not cancel a transaction that may move money.
        return await asyncio.shield(task)

    async def _card_transaction(
        self,
        action: str,
        body: dict[str, Any],
        request: _PadRequest,
        fingerprint: str,
        claim_deadline: float,
        presence: Presence,
    ) -> Response:
        trace_no = request.traceNo
        if action in CARD_FOLLOW_UPS:
            # A void or refund reads first: its repeat is answered before anything else is checked.
            existing = await self._journal.get(trace_no)
            if existing is not None:
                return answers.repeat_answer(existing, action, fingerprint)
        outcome = await self._start_on_pad(action, body, request, claim_deadline, presence)
        if not isinstance(outcome, TransactionRecord):
            return outcome
        if action == QR_ACTION:
            return await self._qr.again(outcome, body, claim_deadline)  # a repeat, or the POS's choice
        return answers.repeat_answer(outcome, action, fingerprint)

    async def _start_on_pad(
        self, action: str, body: dict[str, Any], request: _PadRequest, claim_deadline: float, presence: Presence
    ) -> Response | TransactionRecord:
        """The keys' check, then the transaction under the pad lock; the journal's row if the traceNo is a repeat.

        A sale's repeat is found by the intent's own journal hop (:meth:`Journal.open_intent`),
        so a new sale reads nothing before it; when the keys refuse, the journal is read
        for a repeat, which keeps its stored answer whatever the keys.
        """
        if self._keys is None:
            return await self._new_pad_transaction(action, body, request, claim_deadline, presence)
        trace_no = request.traceNo
        # A sign-in never swaps the pad's key between a card read and its PIN or its submit.
        async with self._keys.pad_lock:
            try:
                await self._keys.check_ready(needs_keys=action != QR_ACTION)
            except MisbridgeError as err:  # nothing recorded, nobody prompted: the traceNo stays free
                existing = None if action in CARD_FOLLOW_UPS else await self._journal.get(trace_no)
                if existing is not None:
                    return existing
                _log_refusal(trace_no, action, err)
                self._metrics.transaction_finished(action, "refused")
                return answers.refusal(trace_no, err)
            return await self._new_pad_transaction(action, body, request, claim_deadline, presence)

    async def _new_pad_transaction(
        self, action: str, body: dict[str, Any], request: _PadRequest, claim_deadline: float, presence: Presence
    ) -> Response | TransactionRecord:
        """A pad transaction: intent, steps, answer; the journal's row instead if it holds the traceNo."""
        trace_no = request.traceNo
        try:
            intake = await self._intake(action, body, presence)
            if isinstance(intake, TransactionRecord):
                return intake
        except BarredTraceNoError as barred:
            # The backend would refuse the sale as a duplicate after the PIN: refuse it now.
            err = RequestError(f"{barred}; use a new traceNo", return_code=ReturnCode.TRACE_NO_BARRED)
            _log_refusal(trace_no, action, err)
            self._metrics.transaction_finished(action, "refused")
            return answers.refusal(trace_no, err)
        except RequestError as err:  # the journal rules the void or refund out: nobody prompted, nothing sent
            _log_refusal(trace_no, action, err)
            self._metrics.transaction_finished(action, "refused")
            return answers.refusal(trace_no, err)
        crash_point("intake.after_intent")
        flow = Flow(self._journal, trace_no)
        screen = follow_up_screen(action, body, intake.original) if action in CARD_FOLLOW_UPS else None
        with timed(self._metrics, "total"):
            response = await self._run_steps(action, body, request, flow, claim_deadline, presence, screen)
        crash_point("outcome.after_commit")
        self._metrics.transaction_finished(action, flow.state)
        return response

    async def _intake(self, action: str, body: dict[str, Any], presence: Presence) -> _Committed | TransactionRecord:
        """Pending voids first, then the intent: :class:`_Committed` once it is, or the journal's row of a repeat.

        Pending voids go out before a new sale (the 冲正-before-next-transaction practice). A
        sale or QR sale asks the journal in one hop (:meth:`Journal.open_intent`): a repeat's
        row, or voids due, or the intent committed; only when voids are due does it drain
        them and then record the intent. A card void or refund drains, then is checked
        against its original under the follow-ups' lock, and ``original`` is that original.

        Raises:
            BarredTraceNoError: the backend saw the traceNo in an inquiry.
            RequestError: the original in the journal rules the void or refund out (nothing recorded).
        """
        record = TransactionRecord.new(str(body["traceNo"]), action, TxnState.RECEIVED, body)
        if action in CARD_FOLLOW_UPS:
            await self._drain_unless_gone(presence)
            crash_point("intake.before_intent")
            return _Committed(await record_follow_up(self._journal, self._follow_up_lock, action, record, body))
        crash_point("intake.before_intent")
        intake = await self._journal.open_intent(record)
        if intake.existing is not None:
            return intake.existing
        if intake.voids_due:
            await self._drain_unless_gone(presence)
            await self._journal.record_intent(record)
        return _Committed(None)

    async def _run_steps(
        self,
        action: str,
        body: dict[str, Any],
        request: _PadRequest,
        flow: Flow,
        claim_deadline: float,
        presence: Presence,
        screen: PadScreen | None,
    ) -> Response:
        """A journaled (``received``) pad transaction to its answer: a QR sale, or card and PIN then submit."""
        if isinstance(request, QrcodeSaleRequest):
            return await self._qr.run(flow, body, request, presence, claim_deadline)
        if screen is None:
            assert isinstance(request, CardRedemptionRequest)
            screen = PadScreen.sale(request.totalAmount)
        try:
            card, pin = await self._read_card_and_pin(flow, screen, presence)
        except (DeviceError, MisbridgeError) as err:
            return await self._abort(flow, err)
        outbound = {**body, "cardInfo": card_info(card, pin)}
        return await self._submit(flow, action, outbound, claim_deadline)

    async def _drain_unless_gone(self, presence: Presence) -> None:
        """Wait for the drain before a sale, but no longer once every caller has hung up.

        Cancelling the wait never cuts a void short: the drain runs as the reversal queue's own task.
        """
        drain = asyncio.create_task(self._reversals.drain_before_sale(), name="drain before sale")
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
        self, flow: Flow, screen: PadScreen, presence: Presence
    ) -> tuple[CardRead, EncryptedPin]:
        """Card, then PIN, the pad showing ``screen``; another card than the original's ends it before the PIN."""
        device = self._settings.device
        if presence.all_gone.is_set():
            # Nobody is there to hear the answer: do not ask the customer for a card (issue 10, item 2).
            raise MisbridgeError(ReturnCode.POS_GONE.meaning, return_code=ReturnCode.POS_GONE)
        if not self._pinpad.connected:
            raise DeviceNotConnected("PIN pad not connected: check the cable and the device path")
        amount, kind, reference = screen.amount_minor, screen.kind, screen.reference
        await flow.step("start_card")
        with timed(self._metrics, "card"):
            card = await self._pinpad.read_card(
                amount, device.card_timeout_s, screen.prompt, kind=kind, reference=reference
            )
        crash_point("card.before_commit")
        await flow.step("card_read", masked_pan=card.masked_pan, card_type=card.card_type)
        crash_point("card.after_commit")
        check_same_card(screen, card)
        with timed(self._metrics, "pin"):
            pin = await self._pinpad.read_pin(
                amount, device.pin_timeout_s, "Enter PIN", key_index=device.key_index, kind=kind, reference=reference
            )
        crash_point("pin.before_commit")
        return card, pin

    async def _abort(self, flow: Flow, err: MisbridgeError) -> Response:
        response = answers.refusal(flow.trace_no, err)
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
            response = answers.refusal(flow.trace_no, err)
            await flow.step("not_sent", response=response, return_code=err.return_code.code, detail=str(err))
            return response
        except BackendOutcomeUnknown as err:
            # Never re-submitted: find out by inquiry, void if it cannot be confirmed (R7).
            await flow.step("outcome_unknown", detail=str(err))
            # resolve() moved the journal row itself; the flow follows what it ended in.
            flow.state = await self._inquiries.resolve(flow.trace_no, claim_deadline=claim_deadline)
            record = await self._journal.get(flow.trace_no)  # resolve() stored the answer it ended with
            if record is None:
                return answers.pos_response(flow.trace_no, ReturnCode.BACKEND_UNKNOWN)
            return answers.answer_from_journal(record)
        crash_point("submit.after_reply")
        if self._keys is not None and reply.return_code in self._settings.keys.key_expired_codes:
            self._keys.key_expired(reply.return_code)  # this request is answered as declined, never re-sent
        event = "approve" if reply.approved else "decline"
        answer = answers.backend_answer(reply.body, flow.trace_no)
        await flow.step(event, response=answer, return_code=reply.return_code)
        return answer


@dataclass(frozen=True)
class _Committed:
    """A pad transaction's intent is committed; ``original`` is a card void's or refund's original (else None)."""

    original: TransactionRecord | None


def _log_refusal(trace_no: str, action: str, err: MisbridgeError) -> None:
    # A refused request's traceNo and action are whatever the POS sent: a known action and a
    # traceNo that passed validation are logged as they are, anything else only as a bounded,
    # printable, card-masked quote (a 30 000-character action must not become a 30 KB line).
    shown_trace = trace_no if re.fullmatch(TRACE_NO_PATTERN, trace_no) else carddata.shown(trace_no, 40)
    shown_name = action if action in BOOK_ACTIONS else shown_action(action)
    logger.bind(traceNo=shown_trace, action=shown_name).warning("refused: {} {}", err.return_code.code, err)


#: Actions that use the pad, one at a time (a qrcodeSale may read its code and show options on it).
_PAD_ACTIONS = (*CARD_ACTIONS, QR_ACTION, *CARD_FOLLOW_UPS)
_PadRequest = CardRedemptionRequest | QrcodeSaleRequest | VoidCardSaleRequest | RefundCardSaleRequest
#: Actions that move value: refused while recovering (MB92), counted as transactions.
_MONEY_ACTIONS = (*_PAD_ACTIONS, *VALUE_ACTIONS)
