"""``voidCardSale`` and ``refundCardSale`` through the service: scripted pad and backend, real journal.

Happy paths for cardRedemption and cardPayment originals (the pad showing void or refund, the
original and the amount; cardInfo sent, never journaled), every check against an original in the
journal (refused before the pad is asked anything), another card (MB39 before the PIN), an
original the journal does not hold (the backend decides), a void whose outcome stays unknown
(sent again without cardInfo until confirmed), a refund whose outcome stays unknown
(needs_manual, never sent twice), and a day's mix.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from loguru import logger

from misbridge.config.settings import Settings
from misbridge.core.machine import TxnState
from misbridge.core.service import TransactionService
from misbridge.device.base import CardRead, TransKind
from misbridge.ebuy.examples import book_request
from misbridge.errors import BackendOutcomeUnknown, CustomerCancelled
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal
from tests.unit.core.fakes import APPROVED, ScriptedBackend, ScriptedPad, reply

VOID = "voidCardSale"
REFUND = "refundCardSale"
PAN = "622588****1234"  # the scripted pad's card
_serial = iter(range(1, 1_000_000))


def trace_no() -> str:
    """A fresh POS traceNo."""
    return f"CF{next(_serial):010d}"


async def card_sale(
    journal: Journal, total: str = "40.80", *, action: str = "cardRedemption", state: str = "approved",
    masked_pan: str = PAN,
) -> str:  # fmt: skip
    """An original card sale in the journal, paid with ``masked_pan`` (approved by default)."""
    original = trace_no()
    body: dict[str, Any] = {"traceNo": original, "totalAmount": Decimal(total), "undiscountAmount": 0,
                            "goodsDetail": []}  # fmt: skip
    if action == "cardPayment":
        body["acquirer"] = "citicCashpay"
    await journal.record_intent(TransactionRecord.new(original, action, TxnState.RECEIVED, body))
    await journal.record_transition(original, "received", "start_card")
    await journal.record_transition(original, "reading_card", "card_read", masked_pan=masked_pan, card_type="01")
    await journal.record_transition(original, "reading_pin", "pin_entered")
    event = {"approved": "approve", "declined": "decline"}[state]
    await journal.record_transition(original, "submitting", event, response={"returnCode": "00"}, return_code="00")
    return original


def void_of(original: str, **extra: Any) -> dict[str, Any]:
    """A POS card void of ``original``."""
    return {"traceNo": trace_no(), "originalTraceNo": original, **extra}


def refund_of(original: str, amount: str, **extra: Any) -> dict[str, Any]:
    """A POS card refund of ``amount`` of ``original``."""
    return {"traceNo": trace_no(), "originalTraceNo": original, "refundAmount": Decimal(amount), **extra}


async def state_of(journal: Journal, trace: str) -> str | None:
    record = await journal.get(trace)
    return None if record is None else record.state


def screens(kind: TransKind, original: str, amount_minor: int) -> list[tuple[str, TransKind, str, int]]:
    """The card and the PIN screen of one void or refund."""
    return [("card", kind, original, amount_minor), ("pin", kind, original, amount_minor)]


# --- happy paths ---------------------------------------------------------------------------------


async def test_a_card_void_reads_card_and_pin_showing_the_void_and_sends_card_info(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, APPROVED)
    original = await card_sale(journal, "40.80")
    body = void_of(original)
    answer = await service.handle(VOID, body)
    assert answer["returnCode"] == "00"
    assert pad.shown == screens(TransKind.VOID, original, 4080)
    [(action, sent)] = backend.calls
    assert action == VOID
    assert sent["originalTraceNo"] == original
    assert sent["cardInfo"]["cardNo"] == "AA" * 8
    assert sent["cardInfo"]["password"] == "CC" * 8
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert "cardInfo" not in record.request, "card data never journaled"
    assert record.masked_pan == PAN
    assert [t.event for t in await journal.transitions(body["traceNo"])] == [
        "intent", "start_card", "card_read", "pin_entered", "approve"
    ]  # fmt: skip
    assert await service.handle(VOID, body) == answer  # a repeat: the stored answer
    assert (len(backend.calls), len(pad.shown)) == (1, 2), "not sent nor prompted again"


async def test_a_card_payment_is_voided_naming_its_acquirer_and_refunded_without(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, APPROVED)
    backend.will(REFUND, APPROVED)
    refunded = await card_sale(journal, "20", action="cardPayment")
    refund = refund_of(refunded, "5.50")
    assert (await service.handle(REFUND, refund))["returnCode"] == "00"
    assert pad.shown == screens(TransKind.REFUND, refunded, 550)
    voided = await card_sale(journal, "12.34", action="cardPayment")
    assert (await service.handle(VOID, void_of(voided, acquirer="citicCashpay")))["returnCode"] == "00"
    assert pad.shown[2:] == screens(TransKind.VOID, voided, 1234)
    assert [body.get("acquirer") for _, body in backend.calls] == [None, "citicCashpay"]


async def test_the_same_card_read_another_way_is_accepted(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, APPROVED)
    pad.card = CardRead("00", PAN, "AA" * 8, "BB" * 8, "2912")  # swiped; the sale read the chip (01)
    assert (await service.handle(VOID, void_of(await card_sale(journal))))["returnCode"] == "00"


# --- refused before the customer is prompted ---------------------------------------------------------


async def _refused_before_the_pad(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad,
    action: str, body: dict[str, Any], code: str,
) -> dict[str, Any]:  # fmt: skip
    sent_before = len(backend.calls)
    answer = await service.handle(action, body)
    assert answer["returnCode"] == code, answer
    assert pad.shown == [], "the customer was prompted"
    assert len(backend.calls) == sent_before
    assert await journal.get(body["traceNo"]) is None, "a refusal is not a transaction"
    return answer


async def test_a_void_after_a_void_is_mb45_and_after_a_refund_mb46(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, APPROVED)
    backend.will(REFUND, APPROVED)
    voided, refunded = await card_sale(journal), await card_sale(journal)
    assert (await service.handle(VOID, void_of(voided)))["returnCode"] == "00"
    assert (await service.handle(REFUND, refund_of(refunded, "1")))["returnCode"] == "00"
    pad.shown.clear()
    await _refused_before_the_pad(service, journal, backend, pad, VOID, void_of(voided), "MB45")
    await _refused_before_the_pad(service, journal, backend, pad, REFUND, refund_of(voided, "1"), "MB45")
    await _refused_before_the_pad(service, journal, backend, pad, VOID, void_of(refunded), "MB46")


async def test_a_refund_above_the_rest_is_mb47_in_exact_decimals(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    original = await card_sale(journal, "0.30")
    answer = await _refused_before_the_pad(service, journal, backend, pad, REFUND, refund_of(original, "0.31"), "MB47")
    assert "0.30 left" in answer["returnDesc"]


@pytest.mark.parametrize("kind", ["qrcodeSale", "declined", "accumulating"])
async def test_an_original_that_is_no_approved_card_sale_is_mb49(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad, kind: str
) -> None:
    if kind == "declined":
        original = await card_sale(journal, state="declined")
    else:
        original = trace_no()
        body = {"traceNo": original, "totalAmount": Decimal("10"), "undiscountAmount": 0, "goodsDetail": []}
        await journal.record_intent(TransactionRecord.new(original, kind, TxnState.RECEIVED, body))
        await journal.record_transition(original, "received", "submit")
        await journal.record_transition(original, "submitting", "approve", response={}, return_code="00")
    await _refused_before_the_pad(service, journal, backend, pad, VOID, void_of(original), "MB49")
    await _refused_before_the_pad(service, journal, backend, pad, REFUND, refund_of(original, "1"), "MB49")


async def test_a_card_payment_void_without_acquirer_is_mb10_naming_it(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    original = await card_sale(journal, action="cardPayment")
    answer = await _refused_before_the_pad(service, journal, backend, pad, VOID, void_of(original), "MB10")
    assert "acquirer is mandatory" in answer["returnDesc"]
    other = void_of(original, acquirer="otherBank")
    answer = await _refused_before_the_pad(service, journal, backend, pad, VOID, other, "MB11")
    assert "acquirer 'otherBank'" in answer["returnDesc"]
    wrong = refund_of(original, "1", acquirer="otherBank")
    await _refused_before_the_pad(service, journal, backend, pad, REFUND, wrong, "MB11")


async def test_a_qr_void_of_a_card_sale_is_still_mb48(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    body = {"traceNo": trace_no(), "originalTraceNo": await card_sale(journal)}
    await _refused_before_the_pad(service, journal, backend, pad, "voidQrcodeSale", body, "MB48")


# --- the card ------------------------------------------------------------------------------------


@pytest.mark.parametrize("action", [VOID, REFUND])
async def test_another_card_is_mb39_before_the_pin_and_nothing_is_sent(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad, action: str
) -> None:
    original = await card_sale(journal, masked_pan="910001******0058")
    body = void_of(original) if action == VOID else refund_of(original, "1")
    answer = await service.handle(action, body)
    assert answer["returnCode"] == "MB39"
    assert "910001******0058" in answer["returnDesc"]
    assert [screen[0] for screen in pad.shown] == ["card"], "no PIN asked for"
    assert backend.calls == []
    assert [t.event for t in await journal.transitions(body["traceNo"])][-1] == "abort"
    assert await state_of(journal, body["traceNo"]) == "aborted"


async def test_an_original_the_journal_does_not_hold_is_prompted_and_forwarded(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, reply("57", "card does not match"))
    backend.will(REFUND, APPROVED)
    void = void_of("ELSEWHERE1")
    assert (await service.handle(VOID, void))["returnCode"] == "57"
    assert pad.shown == screens(TransKind.VOID, "ELSEWHERE1", 0), "the void's amount is not known"
    assert (await service.handle(REFUND, refund_of("ELSEWHERE1", "3")))["returnCode"] == "00"
    assert pad.shown[2:] == screens(TransKind.REFUND, "ELSEWHERE1", 300)
    assert all("cardInfo" in body for _, body in backend.calls)


async def test_a_cancelled_void_moves_nothing_and_does_not_count(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, APPROVED)
    original = await card_sale(journal)
    pad.card_error = CustomerCancelled("Cancel pressed")
    cancelled = void_of(original)
    assert (await service.handle(VOID, cancelled))["returnCode"] == "MB23"
    assert await state_of(journal, cancelled["traceNo"]) == "aborted"
    assert backend.calls == []
    assert (await service.handle(VOID, void_of(original)))["returnCode"] == "00"


# --- unknown outcomes ------------------------------------------------------------------------------


async def test_a_card_void_still_unknown_is_sent_again_without_card_data_until_confirmed(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will(VOID, BackendOutcomeUnknown("read timeout"), reply("22", "voided"))
    backend.will("inquiry", reply("26", "in progress"))
    original = await card_sale(journal, action="cardPayment")
    body = void_of(original, acquirer="citicCashpay")
    assert (await service.handle(VOID, body))["returnCode"] == "MB36"
    assert await state_of(journal, body["traceNo"]) == "voiding"
    await service.resolver.drain()
    record = await journal.get(body["traceNo"])
    assert record is not None
    assert (record.state, record.return_code) == ("approved", "22")
    first, resend = [sent for action, sent in backend.calls if action == VOID]
    assert "cardInfo" in first
    assert "cardInfo" not in resend, "a system void: misbridge keeps no card data"
    assert (resend["originalTraceNo"], resend["acquirer"]) == (original, "citicCashpay")
    assert resend["traceNo"] != body["traceNo"]
    assert len(pad.shown) == 2, "the customer is not asked again"


async def test_a_card_refund_still_unknown_goes_to_needs_manual_and_is_never_sent_again(
    service: TransactionService, journal: Journal, backend: ScriptedBackend
) -> None:
    backend.will(REFUND, BackendOutcomeUnknown("read timeout"))
    backend.will("inquiry", reply("26", "in progress"))
    original = await card_sale(journal, "40.80")
    body = refund_of(original, "5")
    answer = await service.handle(REFUND, body)
    assert answer["returnCode"] == "MB34"
    assert await state_of(journal, body["traceNo"]) == "needs_manual"
    assert await journal.reversal(body["traceNo"]) is None
    await service.resolver.drain()
    assert backend.actions().count(REFUND) == 1
    assert (await service.handle(REFUND, refund_of(original, "35.81")))["returnCode"] == "MB47"


async def test_a_restart_aborts_a_void_at_the_pad_and_inquires_a_refund_that_was_sent(
    settings: Settings, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    original = await card_sale(journal)
    at_pad, sent = void_of(original), refund_of(original, "2")
    for action, body in ((VOID, at_pad), (REFUND, sent)):
        await journal.record_intent(TransactionRecord.new(body["traceNo"], action, TxnState.RECEIVED, body))
        await journal.record_transition(body["traceNo"], "received", "start_card")
        await journal.record_transition(body["traceNo"], "reading_card", "card_read", masked_pan=PAN, card_type="01")
    await journal.record_transition(sent["traceNo"], "reading_pin", "pin_entered")
    backend.will("inquiry", APPROVED)
    restarted = TransactionService(settings, journal, pad, backend)
    await restarted.recover()
    aborted = await journal.get(at_pad["traceNo"])
    assert aborted is not None
    assert (aborted.state, aborted.return_code) == ("aborted", "MB28")
    assert await state_of(journal, sent["traceNo"]) == "approved", "a refund's approval is kept"
    assert backend.actions() == ["inquiry"], "nothing sent again"
    assert (await restarted.handle(VOID, void_of(original)))["returnCode"] == "MB46"


# --- a day -----------------------------------------------------------------------------------------


async def test_a_day_sale_partial_refund_the_rest_then_no_more_and_no_void(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad
) -> None:
    backend.will("cardRedemption", APPROVED)
    backend.will(REFUND, APPROVED)
    sale = {**book_request("cardRedemption"), "traceNo": trace_no()}
    assert Decimal(str(sale["totalAmount"])) == Decimal("40.80")
    assert (await service.handle("cardRedemption", sale))["returnCode"] == "00"
    original = sale["traceNo"]
    for amount in ("10.10", "30.70"):
        assert (await service.handle(REFUND, refund_of(original, amount)))["returnCode"] == "00", amount
    assert [screen[1] for screen in pad.shown] == [TransKind.SALE] * 2 + [TransKind.REFUND] * 4
    pad.shown.clear()
    await _refused_before_the_pad(service, journal, backend, pad, REFUND, refund_of(original, "0.01"), "MB47")
    await _refused_before_the_pad(service, journal, backend, pad, VOID, void_of(original), "MB46")
    assert backend.actions() == ["cardRedemption", REFUND, REFUND]


async def test_card_data_is_neither_logged_nor_journaled(
    service: TransactionService, journal: Journal, backend: ScriptedBackend, pad: ScriptedPad, tmp_path: Path
) -> None:
    secrets = ("AA" * 8, "BB" * 8, "CC" * 8)  # the pad's encrypted PAN and track 2, the PIN block
    lines: list[str] = []
    sink = logger.add(lambda message: lines.append(f"{message} {message.record['extra']}"), level="DEBUG")
    try:
        backend.will(VOID, BackendOutcomeUnknown("read timeout"), APPROVED)
        backend.will(REFUND, APPROVED)
        backend.will("inquiry", reply("26", "in progress"))
        original = await card_sale(journal, "40.80")
        await service.handle(REFUND, refund_of(original, "1"))
        await service.handle(VOID, void_of(await card_sale(journal)))
        await service.resolver.drain()
    finally:
        logger.remove(sink)
    assert lines, "the steps were logged"
    assert not [line for line in lines if any(secret in line for secret in secrets)]
    stored = _stored_bytes(tmp_path)
    assert not [secret for secret in secrets if secret.encode() in stored]
    assert PAN.encode() in stored, "the masked PAN is what the journal keeps"


def _stored_bytes(directory: Path) -> bytes:
    """Every byte of the journal's files (database and write-ahead log)."""
    return b"".join(path.read_bytes() for path in directory.glob("journal.db*"))
