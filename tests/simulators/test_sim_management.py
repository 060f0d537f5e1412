"""summary, batchUpload (simulators.backend.management) and faults addressed to the new actions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import encode_body
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator, Fault
from simulators.cards import CARDS
from tests.simulators.booksim import fresh_trace_no, qr_sale, running

D = Decimal


def upload(*records: tuple[str, Any]) -> dict[str, Any]:
    return {
        "traceNo": fresh_trace_no(),
        "transCount": len(records),
        "beginTime": "20250101000000",
        "endTime": "20250101235959",
        "transRecord": [{"traceNo": no, "paidAmount": paid, "status": 0} for no, paid in records],
    }


async def test_summary_counts_since_the_last_summary() -> None:
    async with running() as client:
        card = client.card_sale(fresh_trace_no(), "points-cash")
        await client.call("cardRedemption", card)
        qr = qr_sale(fresh_trace_no(), total="10.5")
        await client.call("qrcodeSale", qr)
        await client.call(
            "refundQrcodeSale",
            {"traceNo": fresh_trace_no(), "originalTraceNo": qr["traceNo"], "refundAmount": D("0.5")},
        )
        declined = client.card_sale(fresh_trace_no(), "points", "1000")
        await client.call("cardRedemption", declined)  # declined: not counted
        first = await client.call("summary", {"traceNo": fresh_trace_no()})
        records = {(r["activityName"], r["isRefund"]): r for r in first["settleRecord"]}
        assert records[("银行卡积分兑换", False)]["totalAmount"] == "40.80"
        assert records[("银行卡积分兑换", False)]["customer"] == CARDS["points-cash"].bank
        assert records[("二维码支付", False)]["volume"] == 1
        assert records[("二维码退货", True)]["totalAmount"] == "0.50"
        assert (first["volume"], first["totalAmount"], first["totalReceiptAmount"]) == (3, D("50.80"), D("50.80"))
        assert first["endDate"] == first["transDate"]
        second = await client.call("summary", {"traceNo": fresh_trace_no()})
        assert (second["settleRecord"], second["volume"], second["beginDate"]) == ([], 0, first["endDate"])


async def test_summary_and_batch_upload_are_per_terminal() -> None:
    """Each deviceNo has its own summary (since its own last one) and its own records to match."""
    async with running() as client:
        first, second = qr_sale(fresh_trace_no()), qr_sale(fresh_trace_no(), total="10")
        await client.call("qrcodeSale", first)
        await client.call("qrcodeSale", second, device_no="POS02")
        two = await client.call("summary", {"traceNo": fresh_trace_no()}, device_no="POS02")
        assert (two["volume"], two["totalAmount"]) == (1, D("10.00"))
        one = await client.call("summary", {"traceNo": fresh_trace_no()})
        assert (one["volume"], one["totalAmount"]) == (1, D("40.80")), "POS02's summary counted none of POS01's"
        assert (await client.call("summary", {"traceNo": fresh_trace_no()}, device_no="POS02"))["volume"] == 0

        both = upload((first["traceNo"], D("40.8")), (second["traceNo"], D("10")))
        assert [r["status"] for r in (await client.call("batchUpload", both))["transRecord"]] == [1, 4]
        again = {**both, "traceNo": fresh_trace_no()}
        reply = await client.call("batchUpload", again, device_no="POS02")
        assert [r["status"] for r in reply["transRecord"]] == [4, 1]
        assert (await client.entry(second["traceNo"]))["deviceNo"] == "POS02"
        assert (await client.entry(again["traceNo"]))["deviceNo"] == "POS02"


async def test_batch_upload_statuses() -> None:
    async with running() as client:
        ok = client.card_sale(fresh_trace_no())
        await client.call("cardRedemption", ok)
        declined = client.card_sale(fresh_trace_no(), "points", "1000")
        await client.call("cardRedemption", declined)
        voided = qr_sale(fresh_trace_no())
        await client.call("qrcodeSale", voided)
        await client.call("voidQrcodeSale", {"traceNo": fresh_trace_no(), "originalTraceNo": voided["traceNo"]})
        refunded = qr_sale(fresh_trace_no())
        await client.call("qrcodeSale", refunded)
        await client.call(
            "refundQrcodeSale",
            {"traceNo": fresh_trace_no(), "originalTraceNo": refunded["traceNo"], "refundAmount": D("1")},
        )
        body = upload(
            (ok["traceNo"], D("40.80")),
            (ok["traceNo"], D("40.79")),
            (ok["traceNo"], "40.81"),
            ("never-seen", 1),
            (declined["traceNo"], D("1000")),
            (voided["traceNo"], D("40.8")),
            (refunded["traceNo"], D("40.8")),
        )
        reply = await client.call("batchUpload", body)
        assert [r["status"] for r in reply["transRecord"]] == [1, 2, 3, 4, 5, 6, 8]
        assert reply["transRecord"][2]["paidAmount"] == "40.81"  # echoed as sent


async def test_batch_upload_status_7_rolled_back_and_0_in_progress() -> None:
    sim = BackendSimulator()
    async with running(sim) as client:
        sim.faults.add(Fault.HTTP_500_BEFORE_COMMIT, action="cardRedemption")
        dropped = client.card_sale(fresh_trace_no())
        await client.http.post("/ebuyweb-posp/api/cardRedemption", content=_signed("cardRedemption", dropped))
        held = sim.processor.receive("cardRedemption", _signed("cardRedemption", client.card_sale(fresh_trace_no())))
        reply = await client.call("batchUpload", upload((dropped["traceNo"], 1), (held.trace_no, 1)))
        assert [r["status"] for r in reply["transRecord"]] == [7, 0]


def _signed(action: str, body: dict[str, Any]) -> bytes:
    fields: dict[str, Any] = {
        "action": action,
        "deviceNo": "POS01",
        "shopNo": "CN123456",
        "brand": "663",
        "body": encode_body(body),
    }
    fields["sign"] = signing.sign(fields, TEST_SIGNING_KEY)
    return jsonio.dumps(fields).encode()


async def test_batch_upload_matches_only_the_last_7_days() -> None:
    now = [datetime(2025, 1, 1, 12, 0, 0)]
    sim = BackendSimulator(clock=lambda: now[0])
    async with running(sim) as client:
        old = client.card_sale(fresh_trace_no())
        await client.call("cardRedemption", old)
        now[0] = datetime(2025, 1, 8, 12, 0, 1)
        reply = await client.call("batchUpload", upload((old["traceNo"], D("40.8"))))
        assert reply["transRecord"][0]["status"] == 4


async def test_bad_uploads_are_format_errors() -> None:
    good = upload(("a", 1))
    bad: list[dict[str, Any]] = [
        {**good, "transCount": 2},
        {**good, "beginTime": "2025-01-01"},
        {**good, "beginTime": "20250102000000"},
        {**good, "transRecord": [{"traceNo": "a", "paidAmount": "abc"}]},
        {**good, "transRecord": "x"},
        {**upload(*[("a", 1)] * 5001)},
    ]
    async with running() as client:
        for body in bad:
            reply = await client.call("batchUpload", {**body, "traceNo": fresh_trace_no()})
            assert reply["returnCode"] == "30", reply["returnDesc"]
        full = await client.call("batchUpload", upload(*[("a", 1)] * 5000))
        assert (full["returnCode"], len(full["transRecord"])) == ("00", 5000)


async def test_faults_by_action_name_over_http() -> None:
    async with running() as client:
        script = [
            {"action": "refundQrcodeSale", "fault": "decline", "code": "91"},
            {"action": "query", "fault": "decline", "code": "96"},
        ]
        response = await client.http.post("/_sim/faults", content=jsonio.dumps(script))
        assert response.status_code == 200
        sale = qr_sale(fresh_trace_no())
        await client.call("qrcodeSale", sale)
        card = client.card_sale(fresh_trace_no())
        await client.call("cardRedemption", card)
        card_refund = {"traceNo": fresh_trace_no(), "originalTraceNo": card["traceNo"], "refundAmount": D("1")}
        assert (await client.call("refundCardSale", card_refund))["returnCode"] == "00"  # not the named action
        qr_refund = {"traceNo": fresh_trace_no(), "originalTraceNo": sale["traceNo"], "refundAmount": D("1")}
        assert (await client.call("refundQrcodeSale", qr_refund))["returnCode"] == "91"
        assert (await client.call("summary", {"traceNo": fresh_trace_no()}))["returnCode"] == "96"
        assert (await client.entry(sale["traceNo"]))["refundedAmount"] == 0
        bad = await client.http.post(
            "/_sim/faults", content=jsonio.dumps({"action": "downloadParams", "fault": "decline", "code": "91"})
        )
        assert bad.status_code == 400
