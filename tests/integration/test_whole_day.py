"""A whole day at the till through both doors: a POS written from the book (§10-§11) runs every action.

The daemon runs with both simulators as subprocesses (the pad on a real pty, the backend on a
real HTTP socket, tests/integration/conftest.py). The POS sends, alternating the e-Buy socket
door and the HTTP door: a card redemption and a card payment, a void of the payment, a partial
refund of the redemption then the rest (and one cent more, refused before the pad), a QR sale,
an options QR sale (the customer chooses on the pad) and its void, an e-coupon inquiry, points,
a summary and a batch upload. Every answer must have the book's head (traceNo, orderNo,
transDate, returnCode, returnDesc) and the fields the book gives the action; the backend's
ledger must hold what the POS was told.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, Literal

import pytest

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import book_request
from tests.integration.conftest import Bench, new_trace_no

pytestmark = pytest.mark.asyncio(loop_scope="module")

Door = Literal["socket", "http"]
OPTIONS_CODE = "HDCP00000000000009"
#: Fields the book gives each action's answer besides the head (docs/pos-api.md, docs/backend.md).
BOOK_FIELDS: dict[str, tuple[str, ...]] = {
    "cardRedemption": ("paidAmount", "fundChannel", "printDetail"),
    "cardPayment": ("paidAmount", "fundChannel", "printDetail"),
    "voidCardSale": ("fundChannel",),
    "refundCardSale": ("fundChannel",),
    "qrcodeSale": ("paidAmount", "fundChannel"),
    "voidQrcodeSale": ("fundChannel",),
    "ecouponInquiry": ("canPayAmount",),
    "accumulating": ("memberDetail",),
    "summary": ("settleRecord", "volume"),
    "batchUpload": ("transRecord",),
}
HEAD = ("traceNo", "orderNo", "transDate", "returnCode", "returnDesc")


async def send(bench: Bench, door: Door, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """One request as a POS sends it through ``door``; the answer body."""
    if door == "socket":
        answer = await socket_request(bench.host, bench.daemon.socket_port, envelope_for(action, body))
        assert answer.action == action
        return answer.body
    reply = await bench.http.post(
        f"/v1/{action}", content=jsonio.dumps(body), headers={"content-type": "application/json"}
    )
    result: dict[str, Any] = jsonio.loads(reply.content)
    return result


def book_shaped(action: str, body: dict[str, Any], answer: dict[str, Any], code: str = "00") -> dict[str, Any]:
    """Assert ``answer`` is the book's answer to ``body`` with ``code``; returns it."""
    assert answer.get("returnCode") == code, (action, answer)
    missing = [name for name in HEAD if name not in answer]
    assert not missing, (action, missing, answer)
    assert answer["traceNo"] == body["traceNo"], (action, answer)
    assert re.fullmatch(r"\d{14}", str(answer["transDate"])), answer
    assert isinstance(answer["returnDesc"], str)
    if code == "00":
        absent = [name for name in BOOK_FIELDS.get(action, ()) if name not in answer]
        assert not absent, (action, absent, answer)
    return answer


def fresh(action: str, **changes: Any) -> dict[str, Any]:
    """The book's example of ``action`` under a new traceNo."""
    return {**book_request(action), "traceNo": new_trace_no(), **changes}


def refund(original: dict[str, Any], amount: Decimal) -> dict[str, Any]:
    """A refund of ``amount`` of ``original`` under a new traceNo."""
    return {"traceNo": new_trace_no(), "originalTraceNo": original["traceNo"], "refundAmount": amount}


async def entry(bench: Bench, trace_no: str) -> dict[str, Any]:
    """The backend's ledger entry of ``trace_no``."""
    record: dict[str, Any] = (await bench.ledger())["transactions"][trace_no]
    return record


async def journal_state(bench: Bench, trace_no: str) -> str:
    """The state the transaction view shows."""
    return str((await bench.http.get(f"/v1/transactions/{trace_no}")).json()["state"])


async def test_a_whole_day_of_the_book_through_both_doors(bench: Bench) -> None:
    await card_sales_a_void_and_refunds(bench)
    await qr_sales_options_and_a_void(bench)
    await the_pass_through_actions(bench)


async def card_sales_a_void_and_refunds(bench: Bench) -> None:
    """A redemption refunded in two parts, a payment voided: card and PIN on the pad for each."""
    redemption = fresh("cardRedemption")
    book_shaped("cardRedemption", redemption, await send(bench, "socket", "cardRedemption", redemption))
    await bench.customer("prepaid")
    payment = fresh("cardPayment")
    book_shaped("cardPayment", payment, await send(bench, "http", "cardPayment", payment))
    await bench.customer("prepaid")
    void = {"traceNo": new_trace_no(), "originalTraceNo": payment["traceNo"], "acquirer": payment["acquirer"]}
    book_shaped("voidCardSale", void, await send(bench, "socket", "voidCardSale", void))
    assert (await entry(bench, payment["traceNo"]))["state"] == "voided"
    total = Decimal(str(redemption["totalAmount"]))
    part = refund(redemption, Decimal("10.80"))
    book_shaped("refundCardSale", part, await send(bench, "http", "refundCardSale", part))
    rest = refund(redemption, total - Decimal("10.80"))
    book_shaped("refundCardSale", rest, await send(bench, "socket", "refundCardSale", rest))
    more = refund(redemption, Decimal("0.01"))
    book_shaped("refundCardSale", more, await send(bench, "http", "refundCardSale", more), code="MB47")
    sale = await entry(bench, redemption["traceNo"])
    assert Decimal(str(sale["refundedAmount"])) == total
    assert sorted(sale["refundedBy"]) == sorted([part["traceNo"], rest["traceNo"]])
    for trace_no in (redemption["traceNo"], payment["traceNo"], void["traceNo"], part["traceNo"], rest["traceNo"]):
        assert await journal_state(bench, trace_no) == "approved"


async def qr_sales_options_and_a_void(bench: Bench) -> None:
    """A QR sale with the code in the body; an options sale chosen on the pad, then voided."""
    sale = fresh("qrcodeSale")
    book_shaped("qrcodeSale", sale, await send(bench, "http", "qrcodeSale", sale))
    options = fresh(
        "qrcodeSale",
        qrcode=OPTIONS_CODE,
        totalAmount=Decimal("12.50"),
        undiscountAmount=0,
        goodsDetail=[
            {
                "goodsCategory": "001",
                "goodsId": "P00009",
                "goodsName": "coffee",
                "price": Decimal("12.50"),
                "quantity": 1,
                "rebateCode": "000",
            }
        ],
    )
    options.pop("memberDetail", None)
    answer = book_shaped("qrcodeSale", options, await send(bench, "socket", "qrcodeSale", options))
    assert answer["activityProductNo"] in ("HDCP00000000001234", "HDCP00000000001236"), answer
    view = (await bench.http.get(f"/v1/transactions/{options['traceNo']}")).json()
    assert [t["event"] for t in view["transitions"]][-3:] == ["offer_options", "option_chosen", "approve"]
    second = [call["traceNo"] for call in view["backendCalls"] if call["kind"] == "option"]
    assert len(second) == 1, view
    void = {"traceNo": new_trace_no(), "originalTraceNo": options["traceNo"]}
    voided = book_shaped("voidQrcodeSale", void, await send(bench, "http", "voidQrcodeSale", void))
    assert voided.get("originalTraceNo", options["traceNo"]) == options["traceNo"], "the POS's name for the sale"
    assert (await entry(bench, second[0]))["state"] == "voided"  # the backend knows the sale by its 2nd round
    records = [{"traceNo": sale["traceNo"], "paidAmount": sale["totalAmount"], "status": 0},
               {"traceNo": options["traceNo"], "paidAmount": options["totalAmount"], "status": 0}]  # fmt: skip
    upload = fresh("batchUpload", transCount=2, transRecord=records)
    matched = book_shaped("batchUpload", upload, await send(bench, "socket", "batchUpload", upload))
    statuses = {record["traceNo"]: record["status"] for record in matched["transRecord"]}
    assert statuses == {sale["traceNo"]: 1, options["traceNo"]: 6}, matched  # equal; reversed (by its 2nd round)
    assert (await entry(bench, sale["traceNo"]))["applied"] is True


async def the_pass_through_actions(bench: Bench) -> None:
    """An e-coupon inquiry, points, a summary and a batch upload: each answered once, its repeat from the journal."""
    rounds: tuple[tuple[Door, Door, str], ...] = (
        ("socket", "http", "ecouponInquiry"),
        ("http", "socket", "accumulating"),
        ("socket", "http", "summary"),
        ("http", "socket", "batchUpload"),
    )
    for door, other, action in rounds:
        body = fresh(action)
        answer = book_shaped(action, body, await send(bench, door, action, body))
        again = await send(bench, other, action, body)
        assert again == answer, (action, again, answer)  # the repeat is not sent again (the backend would say 94)
    ledger = await bench.ledger()
    assert ledger["members"]["M000001545"]["pointBalance"] > 30000
