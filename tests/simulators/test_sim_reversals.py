"""Voids and refunds of card and QR sales, and what inquiry says about them (simulators.backend.reversals)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from simulators.cards import CARDS
from tests.simulators.booksim import SimClient, fresh_trace_no, qr_sale, running

WALLET = "280123121234567890"

D = Decimal


async def sold(client: SimClient, action: str, body: dict[str, Any]) -> str:
    reply = await client.call(action, body)
    assert reply["returnCode"] == "00", reply
    return str(body["traceNo"])


def void(original: str, **extra: Any) -> dict[str, Any]:
    return {"traceNo": fresh_trace_no(), "originalTraceNo": original, **extra}


def refund(original: str, amount: str, **extra: Any) -> dict[str, Any]:
    return {"traceNo": fresh_trace_no(), "originalTraceNo": original, "refundAmount": D(amount), **extra}


async def test_a_void_gives_everything_back_once() -> None:
    async with running() as client:
        sale = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no(), "member", "100.00"))
        assert client.sim.ledger.balance("member") == D("900.00")
        first = void(sale, cardInfo=client.card_info("member"))
        assert (await client.call("voidCardSale", first))["returnCode"] == "00"
        assert client.sim.ledger.balance("member") == D("1000.00")
        again = await client.call("voidCardSale", void(sale))
        assert again["returnCode"] == "22"
        repeat = await client.call("voidCardSale", first)  # the void's own traceNo again
        assert repeat["returnCode"] == "94"
        assert client.sim.ledger.balance("member") == D("1000.00")
        entry = await client.entry(sale)
        assert (entry["state"], entry["voidedBy"], entry["applied"]) == ("voided", first["traceNo"], False)
        void_entry = await client.entry(first["traceNo"])
        assert (void_entry["submissions"], void_entry["balanceDelta"], void_entry["applied"]) == (2, D("100.00"), True)
        assert void_entry["holder"] == {"card": "member", "points": 0, "balance": D("1000.00")}


async def test_a_card_void_with_another_card_is_refused() -> None:
    async with running() as client:
        sale = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no(), "points-cash"))
        reply = await client.call("voidCardSale", void(sale, cardInfo=client.card_info("points")))
        assert reply["returnCode"] == "57"
        wrong_pin = await client.call(
            "voidCardSale", void(sale, cardInfo=client.card_info("points-cash", pin="000000"))
        )
        assert wrong_pin["returnCode"] == "55"
        assert client.sim.ledger.points("points-cash") == CARDS["points-cash"].points - 20_000


async def test_voiding_a_card_payment_needs_its_acquirer() -> None:
    async with running() as client:
        sale = await sold(client, "cardPayment", client.card_sale(fresh_trace_no(), "prepaid", acquirer="citicCashpay"))
        assert (await client.call("voidCardSale", void(sale)))["returnCode"] == "30"
        assert (await client.call("voidCardSale", void(sale, acquirer="otherBank")))["returnCode"] == "30"
        assert (await client.call("voidCardSale", void(sale, acquirer="citicCashpay")))["returnCode"] == "00"
        card_payment_without = await client.call("cardPayment", client.card_sale(fresh_trace_no(), "prepaid"))
        assert card_payment_without["returnCode"] == "30"


async def test_unknown_and_other_family_originals_are_refused() -> None:
    async with running() as client:
        card = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no()))
        qr = await sold(client, "qrcodeSale", qr_sale(fresh_trace_no()))
        assert (await client.call("voidCardSale", void("never-sent")))["returnCode"] == "25"
        assert (await client.call("voidQrcodeSale", void(card)))["returnCode"] == "58"
        assert (await client.call("voidCardSale", void(qr)))["returnCode"] == "58"
        assert (await client.call("refundQrcodeSale", refund(card, "1")))["returnCode"] == "58"
        # "not found" stays true: the unknown traceNo is barred
        assert (await client.call("cardRedemption", client.card_sale("never-sent")))["returnCode"] == "94"


async def test_partial_refunds_up_to_what_is_left() -> None:
    async with running() as client:
        # points-cash, 40.8: cash 20.8 first, then 20 in points (20000)
        sale = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no()))
        points = client.sim.ledger.points("points-cash")
        first = await client.call("refundCardSale", refund(sale, "20.80"))
        assert (first["returnCode"], first["refundAmount"]) == ("00", D("20.80"))
        assert first["fundChannel"] == [{"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "20.8"}]
        assert client.sim.ledger.points("points-cash") == points
        second = await client.call("refundCardSale", refund(sale, "10.01"))
        assert second["fundChannel"] == [{"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "10.01"}]
        assert client.sim.ledger.points("points-cash") == points + 10_010
        beyond = await client.call("refundCardSale", refund(sale, "10.00"))
        assert beyond["returnCode"] == "13"
        last = await client.call("refundCardSale", refund(sale, "9.99"))
        assert last["returnCode"] == "00"
        assert client.sim.ledger.points("points-cash") == points + 20_000
        assert (await client.call("refundCardSale", refund(sale, "0.01")))["returnCode"] == "13"
        entry = await client.entry(sale)
        assert (entry["state"], entry["refundedAmount"], len(entry["refundedBy"])) == ("approved", D("40.80"), 3)


async def test_refund_amounts_must_be_exact_positive_decimals() -> None:
    async with running() as client:
        sale = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no()))
        for bad in (D("0"), D("1.001"), "1", -1):
            reply = await client.call("refundCardSale", {**refund(sale, "1"), "refundAmount": bad})
            assert reply["returnCode"] == "30", bad


async def test_no_void_after_a_refund_and_no_refund_after_a_void() -> None:
    async with running() as client:
        refunded = await sold(client, "qrcodeSale", qr_sale(fresh_trace_no()))
        assert (await client.call("refundQrcodeSale", refund(refunded, "0.8")))["returnCode"] == "00"
        assert (await client.call("voidQrcodeSale", void(refunded)))["returnCode"] == "24"
        voided = await sold(client, "qrcodeSale", qr_sale(fresh_trace_no()))
        assert (await client.call("voidQrcodeSale", void(voided)))["returnCode"] == "00"
        assert (await client.call("refundQrcodeSale", refund(voided, "1")))["returnCode"] == "23"
        assert client.sim.ledger.code_balance(WALLET) == D("10000.00") - D("40.0")


async def test_a_card_refund_with_another_card_is_refused() -> None:
    async with running() as client:
        sale = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no(), "prepaid"))
        reply = await client.call("refundCardSale", refund(sale, "1", cardInfo=client.card_info("member")))
        assert reply["returnCode"] == "57"
        ok = await client.call("refundCardSale", refund(sale, "1", cardInfo=client.card_info("prepaid")))
        assert ok["returnCode"] == "00"
        assert client.sim.ledger.balance("prepaid") == D("500.00") - D("40.8") + 1


async def test_inquiry_reports_voids_and_refunds() -> None:
    async with running() as client:
        refunded = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no()))
        await client.call("refundCardSale", refund(refunded, "5"))
        reply = await client.call("inquiry", void(refunded))
        assert (reply["returnCode"], reply["refundedAmount"], reply["paidAmount"]) == ("00", D("5"), D("40.8"))
        voided = await sold(client, "cardRedemption", client.card_sale(fresh_trace_no()))
        await client.call("voidCardSale", void(voided))
        assert (await client.call("inquiry", void(voided)))["returnCode"] == "23"
