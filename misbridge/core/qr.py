"""``qrcodeSale`` (book §10.3, §15.1): the code, the first round, the options, the second round.

The code is the POS body's ``qrcode`` (``submit``), or, when the POS leaves it out, read on the
pad showing the amount (``start_code``, then ``code_read``); a timeout is MB35, a cancel MB23, a
pad without the command or without a scanner MB26, and nothing was sent. The code is a
one-time payment token, treated like card data: a code read on the pad is sent to the backend
and never journaled or logged (the journal keeps the POS body as it came), and the POS's own
``qrcode`` stays only where the request body already holds it.

A first round answered with one of ``options.choose_codes`` and an ``activityProductList``
moved nothing (``offer_options``, the row waits in ``choosing``). With ``options.on = "pad"``
the customer chooses on the pad (at most nine options; with more, the POS chooses); with
``"pos"`` the POS gets that answer and sends the same ``qrcodeSale`` again, same traceNo, with
the chosen ``activityProductNo`` added, within ``options.pos_choice_timeout_s`` (MB37 after, or
when misbridge restarted meanwhile). The second round (``option_chosen``) goes out under a
traceNo misbridge allocates (an ``option`` call in the journal: the backend refuses a traceNo it
has seen), and its reply is the sale's answer under the POS traceNo. Inquiries and voids of the
sale name that second round (:func:`~misbridge.core.flow.sent_as`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from misbridge.config.settings import Settings
from misbridge.core import answers
from misbridge.core.answers import Response
from misbridge.core.callers import Presence
from misbridge.core.flow import Flow
from misbridge.core.inquiry import InquiryLoop
from misbridge.core.machine import TxnState
from misbridge.core.observe import TransactionMetrics, timed
from misbridge.core.ports import CardBackend, CodePad
from misbridge.ebuy.requests import QrcodeSaleRequest, amount_minor_units
from misbridge.errors import (
    BackendNotSent,
    BackendOutcomeUnknown,
    DeviceError,
    DeviceNotConnected,
    DeviceTimeout,
    MisbridgeError,
    ReturnCode,
)
from misbridge.host.crashpoints import crash_point
from misbridge.journal.records import TransactionRecord, request_hash
from misbridge.journal.store import Journal

__all__ = ["QR_ACTION", "QrSales"]

QR_ACTION: Final = "qrcodeSale"
_PAD_OPTIONS: Final = 9  # the pad's CHOOSE shows at most nine
_LABEL_MAX: Final = 32


@dataclass(frozen=True)
class _Offer:
    """A first round that offered options: its answer (already journaled) and the offered products."""

    answer: Response
    products: list[Mapping[str, Any]]


@dataclass(frozen=True)
class _Waiting:
    """An options sale waiting for the POS's choice: what the second round sends, and until when."""

    outbound: dict[str, Any]
    deadline: float


class QrSales:
    """Runs ``qrcodeSale`` transactions for the service (which owns the pad and the in-flight map)."""

    def __init__(
        self, settings: Settings, journal: Journal, pinpad: CodePad, backend: CardBackend,
        inquiries: InquiryLoop, metrics: TransactionMetrics,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._journal = journal
        self._pinpad = pinpad
        self._backend = backend
        self._inquiries = inquiries
        self._metrics = metrics
        self._waiting: dict[str, _Waiting] = {}  # options handed to the POS, by POS traceNo

    async def run(
        self, flow: Flow, body: dict[str, Any], request: QrcodeSaleRequest, presence: Presence, claim_deadline: float
    ) -> Response:
        """Run a journaled (``received``) qrcodeSale to its answer."""
        await self._expire_waiting()
        try:
            outbound, event = await self._code(flow, body, request, presence)
        except (DeviceError, MisbridgeError) as err:
            return await _abort(flow, err)
        result = await self._round(flow, event, outbound, claim_deadline)
        if not isinstance(result, _Offer):
            return result
        if self._settings.options.on == "pad" and len(result.products) <= _PAD_OPTIONS:
            return await self._choose_on_pad(flow, outbound, result, claim_deadline)
        loop = asyncio.get_running_loop()
        self._waiting[flow.trace_no] = _Waiting(outbound, loop.time() + self._settings.options.pos_choice_timeout_s)
        return result.answer  # the POS chooses and asks again

    async def again(self, existing: TransactionRecord, body: dict[str, Any], claim_deadline: float) -> Response:
        """A qrcodeSale whose traceNo the journal holds: a repeat, or the POS's choice of options.

        The first request again gets the stored answer (the options, while ``choosing``); the
        first request plus ``activityProductNo`` is the POS's choice: sent while ``choosing``,
        afterwards answered from the journal like a repeat. Anything else is MB41.
        """
        trace_no = existing.trace_no
        chosen = body.get("activityProductNo")
        first = {name: value for name, value in body.items() if name != "activityProductNo"}
        if (
            chosen is None
            or request_hash(body) == existing.request_hash
            or request_hash(first) != existing.request_hash
        ):
            return answers.repeat_answer(existing, QR_ACTION, request_hash(body))  # a repeat, or MB41
        if existing.state != TxnState.CHOOSING:
            return answers.answer_from_journal(existing)  # the choice again: the sale's answer
        flow = Flow(self._journal, trace_no, TxnState.CHOOSING)
        waiting = self._waiting.pop(trace_no, None)
        if waiting is None or asyncio.get_running_loop().time() > waiting.deadline:
            return await _abort(flow, _choice_timeout("the POS's choice came too late (or after a restart)"))
        if str(chosen) not in _numbers(_products(existing.response or {})):
            self._waiting[trace_no] = waiting  # the POS may choose again
            err = MisbridgeError(
                f"activityProductNo {chosen!r} was not offered", return_code=ReturnCode.OPTION_NOT_OFFERED
            )
            return answers.refusal(trace_no, err)
        return await self._second_round(flow, waiting.outbound, str(chosen), claim_deadline)

    # -- the code -----------------------------------------------------------------------------

    async def _code(
        self, flow: Flow, body: dict[str, Any], request: QrcodeSaleRequest, presence: Presence
    ) -> tuple[dict[str, Any], str]:
        """What the first round sends and the event that commits it: the body's code, or the pad's."""
        if request.qrcode is not None:
            return body, "submit"
        if presence.all_gone.is_set():
            raise MisbridgeError(ReturnCode.POS_GONE.meaning, return_code=ReturnCode.POS_GONE)
        if not self._pinpad.connected:
            raise DeviceNotConnected("PIN pad not connected: check the cable and the device path")
        await flow.step("start_code")
        amount = amount_minor_units(request.totalAmount)
        try:
            with timed(self._metrics, "code"):
                code = await self._pinpad.read_code(
                    f"Amount {request.totalAmount}", self._settings.device.code_timeout_s, amount
                )
        except DeviceTimeout as err:
            raise MisbridgeError(
                f"{ReturnCode.CODE_TIMEOUT.meaning} ({err})", return_code=ReturnCode.CODE_TIMEOUT
            ) from err
        return {**body, "qrcode": code.text}, "code_read"  # the code goes out, never into the journal

    # -- one round with the backend ------------------------------------------------------------

    async def _round(
        self, flow: Flow, event: str, outbound: dict[str, Any], claim_deadline: float, call_no: str | None = None
    ) -> Response | _Offer:
        """Commit ``event`` (to ``submitting``), send, record the outcome; an offer of options ends it early."""
        await flow.step(event)  # the intent to submit is durable before the first byte leaves (R1)
        crash_point("qr.option.after_commit" if call_no else "qr.submit.after_commit")
        try:
            with timed(self._metrics, "backend"):
                reply = await self._backend.submit(QR_ACTION, outbound)
        except BackendNotSent as err:
            await self._call_result(call_no, None, None)
            response = answers.refusal(flow.trace_no, err)
            await flow.step("not_sent", response=response, return_code=err.return_code.code, detail=str(err))
            return response
        except BackendOutcomeUnknown as err:
            await self._call_result(call_no, None, None)
            await flow.step("outcome_unknown", detail=str(err))
            flow.state = await self._inquiries.resolve(flow.trace_no, claim_deadline=claim_deadline)
            record = await self._journal.get(flow.trace_no)
            return answers.pos_response(flow.trace_no, ReturnCode.BACKEND_UNKNOWN) if record is None else (
                answers.answer_from_journal(record)
            )  # fmt: skip
        crash_point("qr.after_reply")
        await self._call_result(call_no, reply.return_code, reply.body)
        # A second round's reply carries its own traceNo: the POS hears it under its traceNo.
        answer = answers.backend_answer({**reply.body, "traceNo": flow.trace_no}, flow.trace_no)
        products = _products(reply.body)
        if call_no is None and reply.return_code in self._settings.options.choose_codes and products:
            await flow.step("offer_options", response=answer, return_code=reply.return_code)
            crash_point("qr.offer.after_commit")
            return _Offer(answer, products)
        await flow.step("approve" if reply.approved else "decline", response=answer, return_code=reply.return_code)
        return answer

    async def _call_result(self, call_no: str | None, code: str | None, body: dict[str, Any] | None) -> None:
        if call_no is None:
            return  # the first round is the transaction itself
        if code is None:
            await self._journal.record_call_result(call_no, state="unknown")
        else:
            await self._journal.record_call_result(call_no, state="answered", return_code=code, response=body)

    # -- options ---------------------------------------------------------------------------------

    async def _choose_on_pad(
        self, flow: Flow, outbound: dict[str, Any], offer: _Offer, claim_deadline: float
    ) -> Response:
        labels = [_label(product) for product in offer.products]
        try:
            index = await self._pinpad.choose("Choose an option", labels, self._settings.device.choice_timeout_s)
        except DeviceTimeout as err:
            return await _abort(flow, _choice_timeout(str(err)))
        except (DeviceError, MisbridgeError) as err:
            return await _abort(flow, err)
        return await self._second_round(flow, outbound, _numbers(offer.products)[index], claim_deadline)

    async def _second_round(self, flow: Flow, outbound: dict[str, Any], chosen: str, claim_deadline: float) -> Response:
        """Send the chosen option under a new traceNo; its answer is the sale's, under the POS traceNo."""
        call_no = await self._journal.allocate_call(flow.trace_no, "option")
        crash_point("qr.option.after_alloc")
        second = {**outbound, "traceNo": call_no, "activityProductNo": chosen}
        result = await self._round(flow, "option_chosen", second, claim_deadline, call_no)
        assert not isinstance(result, _Offer)  # a second round is never offered options again
        return result

    async def _expire_waiting(self) -> None:
        """Abort options sales whose POS did not choose in time (checked when a new QR sale starts)."""
        now = asyncio.get_running_loop().time()
        for trace_no in [no for no, waiting in self._waiting.items() if now > waiting.deadline]:
            del self._waiting[trace_no]
            record = await self._journal.get(trace_no)
            if record is not None and record.state == TxnState.CHOOSING:
                await _abort(
                    Flow(self._journal, trace_no, TxnState.CHOOSING), _choice_timeout("the POS did not choose")
                )


async def _abort(flow: Flow, err: MisbridgeError) -> Response:
    response = answers.refusal(flow.trace_no, err)
    await flow.step("abort", response=response, return_code=err.return_code.code, detail=str(err))
    return response


def _choice_timeout(detail: str) -> MisbridgeError:
    return MisbridgeError(f"{ReturnCode.CHOICE_TIMEOUT.meaning} ({detail})", return_code=ReturnCode.CHOICE_TIMEOUT)


def _products(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The ``activityProductList`` entries that name a product (book §8.10), or none."""
    listed = body.get("activityProductList")
    if not isinstance(listed, list):
        return []
    return [entry for entry in listed if isinstance(entry, Mapping) and entry.get("activityProductNo")]


def _numbers(products: list[Mapping[str, Any]]) -> list[str]:
    return [str(product["activityProductNo"]) for product in products]


def _label(product: Mapping[str, Any]) -> str:
    """What the pad shows for an option: its name, else its number, at most 32 characters."""
    name = str(product.get("activityProductName") or product["activityProductNo"])
    return name[:_LABEL_MAX]
