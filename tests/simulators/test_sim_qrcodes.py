"""QR codes, e-coupons and member points (simulators.backend.qrcodes, simulators.backend.members)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from simulators.backend.testcodes import CODES, Behaviour
from tests.simulators.booksim import fresh_trace_no, qr_sale, running

OPTIONS = "HDCP00000000000009"
COUPON = "HDCP00000000001235"

D = Decimal


def test_the_table_has_one_code_of_each_behaviour() -> None:
    assert {code.behaviour for code in CODES.values()} == set(Behaviour)


@pytest.mark.parametrize(
    ("qrcode", "total", "code"),
    [
        ("280123121234567890", "40.8", "00"),
        ("134567890123456789", "30.01", "51"),
        ("280000000000000005", "1", "05"),
        ("HDCP00000000000054", "1", "54"),
        ("HDCP99999999999999", "1", "14"),
        (COUPON, "40.80", "00"),
        (COUPON, "40.81", "51"),
    ],
)
async def test_qrcode_sale_by_test_code(qrcode: str, total: str, code: str) -> None:
    async with running() as client:
        before = client.sim.ledger.code_balance(qrcode) if qrcode in CODES else None
        reply = await client.call("qrcodeSale", qr_sale(fresh_trace_no(), qrcode, total))
        assert reply["returnCode"] == code, reply
        if before is not None:
            expected = before - D(total) if code == "00" else before
            assert client.sim.ledger.code_balance(qrcode) == expected


async def test_a_coupon_sale_names_its_product_and_channel() -> None:
    async with running() as client:
        reply = await client.call("qrcodeSale", qr_sale(fresh_trace_no(), COUPON, "10"))
        assert (reply["activityProductNo"], reply["activityProductName"]) == ("2016123101", "中信365权益")
        assert reply["fundChannel"] == [{"channelNo": "007", "channelName": "电子券抵扣", "channelAmount": "10"}]
        assert reply["printDetail"]["cardNo64"] == "HDCP00****1235"
        inquiry = await client.call("ecouponInquiry", {"traceNo": fresh_trace_no(), "qrcode": COUPON})
        assert inquiry["canPayAmount"] == D("30.80")


async def test_options_then_choose() -> None:
    async with running() as client:
        first = await client.call("qrcodeSale", qr_sale(fresh_trace_no(), OPTIONS, "25"))
        assert first["returnCode"] == "09"
        products = [p["activityProductNo"] for p in first["activityProductList"]]
        assert products == ["HDCP00000000001234", "HDCP00000000001236"]
        assert client.sim.ledger.code_balance(OPTIONS) == D("100.00")
        wrong = await client.call("qrcodeSale", qr_sale(fresh_trace_no(), OPTIONS, "25", activityProductNo="X"))
        assert wrong["returnCode"] == "30"
        second = qr_sale(fresh_trace_no(), OPTIONS, "25", activityProductNo=products[1])
        reply = await client.call("qrcodeSale", second)
        assert (reply["returnCode"], reply["activityProductNo"]) == ("00", products[1])
        assert client.sim.ledger.code_balance(OPTIONS) == D("75.00")
        entry = await client.entry(second["traceNo"])
        assert entry["holder"] == {"qrcode": OPTIONS, "balance": D("75.00")}


async def test_ecoupon_inquiry_of_a_code_with_options_lists_them() -> None:
    async with running() as client:
        reply = await client.call("ecouponInquiry", {"traceNo": fresh_trace_no(), "qrcode": OPTIONS})
        assert (reply["returnCode"], reply["canPayAmount"]) == ("00", D("100.00"))
        assert len(reply["activityProductList"]) == 2
        expired = await client.call("ecouponInquiry", {"traceNo": fresh_trace_no(), "qrcode": "HDCP00000000000054"})
        assert expired["returnCode"] == "54"


@pytest.mark.parametrize(
    "change",
    [
        {"verifyType": "fax"},
        {"scene": "nfc"},
        {"orderSubject": "x" * 257},
        {"orderDescription": 5},
        {"extendData": "text"},
        {"qrcode": ""},
        {"totalAmount": 0},
    ],
)
async def test_bad_qr_fields_are_format_errors(change: dict[str, Any]) -> None:
    async with running() as client:
        reply = await client.call("qrcodeSale", {**qr_sale(fresh_trace_no()), **change})
        assert reply["returnCode"] == "30", reply


async def test_the_chinese_page_fields_are_accepted() -> None:
    fields: dict[str, Any] = {
        "verifyType": "pos",
        "scene": "bar_code",
        "orderSubject": "订单",
        "orderDescription": "描述",
        "extendData": {"k": "v"},
        "activityProductNo": "HDCP00000000001234",
    }
    async with running() as client:
        reply = await client.call("qrcodeSale", qr_sale(fresh_trace_no(), **fields))
        assert reply["returnCode"] == "00"


async def test_accumulating_adds_points_to_the_member() -> None:
    member = {"memberId": "M000001545", "memberName": "TONY", "pointBalance": 30000}
    async with running() as client:
        given = {"traceNo": fresh_trace_no(), "totalAmount": D("40.8"), "points": 100, "memberDetail": member}
        reply = await client.call("accumulating", given)
        assert (reply["returnCode"], reply["memberDetail"]["pointBalance"]) == ("00", 30_100)
        by_backend = {"traceNo": fresh_trace_no(), "totalAmount": D("40.8"), "memberDetail": member}
        reply = await client.call("accumulating", by_backend)
        assert reply["memberDetail"]["pointBalance"] == 30_140
        holder = (await client.entry(str(by_backend["traceNo"])))["holder"]
        assert holder == {"memberId": "M000001545", "pointBalance": 30_140}
        unknown = {**by_backend, "traceNo": fresh_trace_no(), "memberDetail": {"memberId": "M9"}}
        assert (await client.call("accumulating", unknown))["returnCode"] == "14"
        nobody = {"traceNo": fresh_trace_no(), "totalAmount": D("1")}
        assert (await client.call("accumulating", nobody))["returnCode"] == "30"
        assert (await client.ledger())["members"]["M000001545"] == {"pointBalance": 30_140}
