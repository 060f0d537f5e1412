"""Every request example of the book's §10 and §11, restated, answers "00" from the simulator.

Each example gets a fresh traceNo (traceNos never repeat) and a fresh simulator. Examples that
name an original (``99000009100010101732124``) get that original made first; the card
examples carry no card data in the book (the MIS-POS reads the card, reference §8.5 note), so
the cardInfo misbridge adds is that of the book's own card, ``622562****8888``.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from simulators.backend.book import BOOK_ACTIONS
from simulators.backend.codes import SimCode
from simulators.backend.testcodes import CODES, MEMBERS
from tests.simulators.booksim import SimClient, fresh_trace_no, qr_sale, running

BOOK_ORIGINAL = "99000009100010101732124"


def _book(text: str) -> dict[str, Any]:
    body: dict[str, Any] = jsonio.loads(text)
    return body


def common(**extra: Any) -> dict[str, Any]:
    """§9's common body (the §10.2 example), with the action's own keys after undiscountAmount."""
    body = card_redemption_request()
    head = {key: body.pop(key) for key in ("traceNo", "totalAmount", "undiscountAmount")}
    return {**head, **extra, **body}


def card_payment_example() -> dict[str, Any]:
    """§10.1 Request body example."""
    return common(acquirer="citicCashpay")


def qrcode_sale_example() -> dict[str, Any]:
    """§10.3: "the same as §10.1, with "qrcode": "280123121234567890" in place of "acquirer"."""
    return common(qrcode="280123121234567890")


def accumulating_example() -> dict[str, Any]:
    """§10.10 Request body example."""
    return common(activityNo="2016121901", points=100)


INQUIRY = '{"traceNo": "99000009100010101732123", "originalTraceNo": "99000009100010101732124"}'
VOID_CARD = (
    '{"traceNo": "99000009100010101732123", "originalTraceNo": "99000009100010101732124", "acquirer": "citicCashpay"}'
)
VOID_QR = '{"traceNo": "99000009100010101732123", "originalTraceNo": "99000009100010101732124"}'
REFUND_CARD = (
    '{"traceNo": "99000009100010101732123", "originalTraceNo": "99000009100010101732124",'
    ' "refundAmount": 40.8, "acquirer": "citicCashpay"}'
)
REFUND_QR = '{"traceNo": "99000009100010101732123", "originalTraceNo": "99000009100010101732124", "refundAmount": 40.8}'
ECOUPON = '{"traceNo": "99000009100010101732123", "qrcode": "HDCP00000000001235"}'
SUMMARY = '{ "traceNo": "99000009100010101732123" }'
BATCH_UPLOAD = """{
    "traceNo": "99000009100010101732123",
    "transCount": 3,
    "beginTime": "20161231102201",
    "endTime": "20161231102230",
    "transRecord": [
      {"traceNo": "99000009100010101732123", "paidAmount": 100.00, "status": 0},
      {"traceNo": "99000009100010101732123", "paidAmount": 200.00, "status": 0},
      {"traceNo": "99000009100010101732123", "paidAmount": 300.00, "status": 0}
    ]
}"""


async def card_original(client: SimClient) -> None:
    """The original the card examples name: the book's cardPayment under 99000009100010101732124."""
    body = {**card_payment_example(), "traceNo": BOOK_ORIGINAL, "cardInfo": client.card_info("points-cash")}
    assert (await client.call("cardPayment", body))["returnCode"] == "00"


async def qr_original(client: SimClient) -> None:
    """The original the QR examples name: the book's qrcodeSale under 99000009100010101732124."""
    assert (await client.call("qrcodeSale", qr_sale(BOOK_ORIGINAL)))["returnCode"] == "00"


async def no_original(client: SimClient) -> None:
    """Nothing to make first."""


#: (section, action, the example's body for a signed-in client, what to make first).
Example = tuple[str, str, Callable[[SimClient], dict[str, Any]], Callable[[SimClient], Any]]

EXAMPLES: list[Example] = [
    ("§10.1", "cardPayment", lambda c: {**card_payment_example(), "cardInfo": c.card_info()}, no_original),
    ("§10.2", "cardRedemption", lambda c: {**card_redemption_request(), "cardInfo": c.card_info()}, no_original),
    ("§10.3", "qrcodeSale", lambda _: qrcode_sale_example(), no_original),
    ("§10.4", "inquiry", lambda _: _book(INQUIRY), card_original),
    ("§10.5", "voidCardSale", lambda _: _book(VOID_CARD), card_original),
    ("§10.6", "voidQrcodeSale", lambda _: _book(VOID_QR), qr_original),
    ("§10.7", "refundCardSale", lambda _: _book(REFUND_CARD), card_original),
    ("§10.8", "refundQrcodeSale", lambda _: _book(REFUND_QR), qr_original),
    ("§10.9", "ecouponInquiry", lambda _: _book(ECOUPON), no_original),
    ("§10.10", "accumulating", lambda _: accumulating_example(), no_original),
    ("§11.1", "summary", lambda _: _book(SUMMARY), card_original),
    ("§11.2", "batchUpload", lambda _: _book(BATCH_UPLOAD), no_original),
]


@pytest.mark.parametrize(("section", "action", "example", "setup"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
async def test_every_book_example_answers_00(
    section: str, action: str, example: Callable[[SimClient], dict[str, Any]], setup: Callable[[SimClient], Any]
) -> None:
    async with running() as client:
        await setup(client)
        body = {**example(client), "traceNo": fresh_trace_no()}
        reply = await client.call(action, body)
        assert (reply["returnCode"], reply["returnDesc"]) == ("00", "SUCCESS"), f"{section} {action}: {reply}"
        assert reply["traceNo"] == body["traceNo"]
        assert len(reply["transDate"]) == 14


def test_the_table_covers_every_action_of_the_book() -> None:
    assert sorted(action for _, action, _, _ in EXAMPLES) == sorted(BOOK_ACTIONS)


async def test_card_redemption_answers_like_the_book_response_example() -> None:
    async with running() as client:
        reply = await client.call(
            "cardRedemption",
            {**card_redemption_request(), "traceNo": fresh_trace_no()} | {"cardInfo": client.card_info("points-cash")},
        )
    assert reply["paidAmount"] == Decimal("40.8")
    assert reply["fundChannel"] == [
        {"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "20.8"},
        {"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "20"},
    ]
    detail = reply["printDetail"]
    assert (detail["cardNo64"], detail["bank"], detail["pointSale"]) == ("622562****8888", "中信银行", "20000")
    assert reply["memberDetail"]["memberId"] == "M000001545"


async def test_ecoupon_inquiry_answers_like_the_book_response_example() -> None:
    async with running() as client:
        reply = await client.call("ecouponInquiry", {**_book(ECOUPON), "traceNo": fresh_trace_no()})
    assert reply["canPayAmount"] == Decimal("40.8")
    assert (reply["activityProductNo"], reply["activityProductName"]) == ("2016123101", "中信365权益")


async def test_batch_upload_of_the_book_example_on_an_empty_ledger() -> None:
    async with running() as client:
        reply = await client.call("batchUpload", {**_book(BATCH_UPLOAD), "traceNo": fresh_trace_no()})
    assert [(r["paidAmount"], r["status"]) for r in reply["transRecord"]] == [
        (Decimal("100.00"), 4),
        (Decimal("200.00"), 4),
        (Decimal("300.00"), 4),
    ]


def test_every_simulator_code_and_test_code_is_documented() -> None:
    docs = (Path(__file__).resolve().parents[2] / "docs" / "backend.md").read_text(encoding="utf-8")
    codes_section = docs[docs.index("### Simulator return codes") :]
    missing = [code.value for code in SimCode if f"| `{code.value}` |" not in codes_section]
    missing += [name for name in [*CODES, *MEMBERS] if f"| `{name}` |" not in docs]
    assert missing == []
