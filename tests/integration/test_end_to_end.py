"""The real path: POS front doors -> daemon -> pty PIN-pad simulator -> backend simulator.

Nothing is faked: the simulators run as subprocesses, the pad is on a real pty, the backend on a
real HTTP socket, the journal a real SQLite file.
"""

from __future__ import annotations

import asyncio
import base64
import re
from decimal import Decimal
from typing import Any

import pytest

from misbridge.api.pos_client import envelope_for, read_framed, socket_request
from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import Envelope, parse_envelope
from misbridge.ebuy.examples import card_redemption_request
from simulators.cards import CARDS
from tests.integration.conftest import Bench, new_trace_no

pytestmark = pytest.mark.asyncio(loop_scope="module")


def _request(trace_no: str | None = None, **changes: Any) -> dict[str, Any]:
    body = card_redemption_request()
    body["traceNo"] = trace_no or new_trace_no()
    body.update(changes)
    return body


async def _socket(bench: Bench, action: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = await socket_request(bench.host, bench.daemon.socket_port, envelope_for(action, body))
    assert answer.action == action
    return answer.body


async def _raw_socket(bench: Bench, data: bytes, *, expect_closed: bool) -> dict[str, Any]:
    """Send raw bytes and return the decoded answer.

    With ``expect_closed`` the daemon must close the connection after answering; otherwise the
    same connection must still carry another message (the bytes are sent again and answered again).
    """
    reader, writer = await asyncio.open_connection(bench.host, bench.daemon.socket_port)
    try:
        writer.write(data)
        await writer.drain()
        answer = parse_envelope(await asyncio.wait_for(read_framed(reader), 10))
        if expect_closed:
            assert await asyncio.wait_for(reader.read(1), 5) == b"", "connection should be closed"
        else:
            writer.write(data)
            await writer.drain()
            again = parse_envelope(await asyncio.wait_for(read_framed(reader), 10))
            assert again.body["returnCode"] == answer.body["returnCode"]
    finally:
        writer.close()
    return answer.body


async def test_book_example_through_the_socket_is_approved(bench: Bench) -> None:
    body = _request()
    response = await _socket(bench, "cardRedemption", body)
    assert response["returnCode"] == "00", response
    assert response["traceNo"] == body["traceNo"]
    assert response["orderNo"]
    assert re.fullmatch(r"\d{14}", response["transDate"])
    assert response["paidAmount"] == Decimal("40.8")
    assert [(c["channelNo"], c["channelAmount"]) for c in response["fundChannel"]] == [("001", "20.8"), ("002", "20")]
    assert response["printDetail"]["cardNo64"] == "622562****8888"
    record = (await bench.http.get(f"/v1/transactions/{body['traceNo']}")).json()
    assert record["state"] == "approved"
    assert record["maskedPan"] == "622562******8888"


@pytest.mark.parametrize("card", [name for name in CARDS if name != "unknown"])
async def test_every_scripted_card_is_approved_over_http(bench: Bench, card: str) -> None:
    await bench.customer(card)
    body = _request()
    reply = await bench.http.post(
        "/v1/cardRedemption", content=jsonio.dumps(body), headers={"content-type": "application/json"}
    )
    response = reply.json(parse_float=Decimal)
    assert reply.status_code == 200
    assert response["returnCode"] == "00", response
    masked = CARDS[card].pan[:6] + "****" + CARDS[card].pan[-4:]
    assert response["printDetail"]["cardNo64"] == masked
    assert sum(Decimal(str(c["channelAmount"])) for c in response["fundChannel"]) == Decimal("40.8")


async def test_unknown_card_is_declined_by_the_backend(bench: Bench) -> None:
    await bench.customer("unknown")
    response = await _socket(bench, "cardRedemption", _request())
    assert response["returnCode"] == "14"
    assert response["returnDesc"]


async def test_wrong_pin_is_declined_and_journaled(bench: Bench) -> None:
    await bench.customer("prepaid", pin="000000")
    body = _request()
    response = await _socket(bench, "cardRedemption", body)
    assert response["returnCode"] == "55", response
    record = (await bench.http.get(f"/v1/transactions/{body['traceNo']}")).json()
    assert record["state"] == "declined"
    assert record["returnCode"] == "55"


async def test_insufficient_points_is_declined(bench: Bench) -> None:
    await bench.customer("points")
    body = _request(totalAmount=Decimal("600.00"))
    body["goodsDetail"] = [{**body["goodsDetail"][0], "price": Decimal("300.00"), "quantity": 2}]
    response = await _socket(bench, "cardRedemption", body)
    assert response["returnCode"] == "51", response


@pytest.mark.parametrize(
    ("action", "code"),
    [("cancel-card", "MB23"), ("cancel-pin", "MB23"), ("no-card", "MB21"), ("no-pin", "MB22"), ("card-error", "MB24")],
)
async def test_customer_and_card_failures_abort_without_charging(bench: Bench, action: str, code: str) -> None:
    await bench.customer("prepaid", action=action)
    body = _request()
    response = await _socket(bench, "cardRedemption", body)
    assert response["returnCode"] == code, response
    assert response["traceNo"] == body["traceNo"]
    record = (await bench.http.get(f"/v1/transactions/{body['traceNo']}")).json()
    assert record["state"] == "aborted"
    assert body["traceNo"] not in (await bench.ledger()).get("transactions", {})


async def test_same_trace_no_twice_returns_the_stored_answer_without_a_second_submit(bench: Bench) -> None:
    body = _request()
    first = await _socket(bench, "cardRedemption", body)
    second = await _socket(bench, "cardRedemption", body)
    assert first == second
    assert (await bench.ledger())["transactions"][body["traceNo"]]["submissions"] == 1


async def test_same_trace_no_with_another_body_is_refused(bench: Bench) -> None:
    body = _request()
    await _socket(bench, "cardRedemption", body)
    other = {**body, "totalAmount": Decimal("1.00"), "undiscountAmount": 0}
    assert (await _socket(bench, "cardRedemption", other))["returnCode"] == "MB41"


def _frame(envelope_json: bytes) -> bytes:
    return len(envelope_json).to_bytes(2, "big") + envelope_json


def _envelope_bytes(body_b64: str, action: str = "cardRedemption") -> bytes:
    return (
        f'{{"action":"{action}","deviceNo":"POS01","shopNo":"CN123456","brand":"663","body":"{body_b64}"}}'
    ).encode()


def _b64(body: dict[str, Any]) -> str:
    return base64.b64encode(jsonio.dumps(body).encode()).decode()


BAD_BODIES: list[tuple[str, dict[str, Any], str, str]] = [
    ("cardRedemption", {"totalAmount": 1}, "MB10", "traceNo"),
    ("cardRedemption", _request(totalAmount=Decimal("-5")), "MB12", "totalAmount"),
    ("cardRedemption", _request(totalAmount="forty"), "MB12", "totalAmount"),
    ("cardRedemption", _request(undiscountAmount=Decimal("99")), "MB13", "undiscountAmount"),
    ("cardRedemption", _request(goodsDetail=[]), "MB14", "goodsDetail"),
    # A sale's body is no refund (no originalTraceNo); a refund of nothing is refused before the pad.
    ("refundCardSale", _request(), "MB10", "originalTraceNo"),
    (
        "refundCardSale",
        {"traceNo": "R1", "originalTraceNo": "T1", "refundAmount": Decimal("0")},
        "MB12",
        "refundAmount",
    ),
    ("teleport", _request(), "MB05", "teleport"),
]


@pytest.mark.parametrize(("action", "body", "code", "named"), BAD_BODIES)
async def test_invalid_requests_never_reach_the_pad_and_name_the_problem(
    bench: Bench, action: str, body: dict[str, Any], code: str, named: str
) -> None:
    # A well-framed invalid request must not cost the POS its connection.
    answer = await _raw_socket(bench, _frame(_envelope_bytes(_b64(body), action)), expect_closed=False)
    assert answer["returnCode"] == code
    assert named in answer["returnDesc"]
    trace_no = body.get("traceNo")
    if isinstance(trace_no, str):
        assert (await bench.http.get(f"/v1/transactions/{trace_no}")).status_code == 404


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (_frame(b"this is not json"), "MB01"),
        (_frame(_envelope_bytes("%%not-base64%%")), "MB04"),
        (_frame(b'{"action":"cardRedemption","body":"e30="}'), "MB03"),
        (b"\x01\x00" + b'{"action":"x"}', "MB07"),  # announces 256 bytes, sends 14, then waits
        (b"\x00\x05" + _envelope_bytes(_b64(_request())), "MB01"),  # announces 5, the rest is garbage
    ],
    ids=["not-json", "body-not-base64", "envelope-missing-fields", "length-prefix-too-long", "length-prefix-too-short"],
)
async def test_broken_messages_get_an_answer_and_the_daemon_keeps_serving(bench: Bench, data: bytes, code: str) -> None:
    # After MB01/MB02/MB07 the stream has no trustworthy message boundary: the daemon closes it.
    answer = await _raw_socket(bench, data, expect_closed=code in ("MB01", "MB02", "MB07"))
    assert answer["returnCode"] == code, answer
    assert answer["returnDesc"]
    assert (await _socket(bench, "cardRedemption", _request()))["returnCode"] == "00"


async def test_http_front_door_refusals_use_matching_statuses(bench: Bench) -> None:
    not_json = await bench.http.post("/v1/cardRedemption", content=b"{", headers={"content-type": "application/json"})
    assert not_json.status_code == 400
    assert not_json.json()["returnCode"] == "MB01"
    wrong_type = await bench.http.post("/v1/cardRedemption", content=b"{}", headers={"content-type": "text/plain"})
    assert wrong_type.status_code == 415
    invalid = await bench.http.post("/v1/cardRedemption", json={"traceNo": new_trace_no()})
    assert invalid.status_code == 422
    assert invalid.json()["returnCode"] == "MB10"
    unknown = await bench.http.get("/v1/transactions/never-seen")
    assert unknown.status_code == 404


async def test_health_and_openapi(bench: Bench) -> None:
    health = await bench.http.get("/health")
    assert health.status_code == 200
    assert health.json()["pad"]["connected"] is True
    assert health.json()["pad"]["model"] == "MISBRIDGE-SIM"
    document = (await bench.http.get("/openapi.json")).json()
    assert {"/v1/cardRedemption", "/v1/cardPayment", "/v1/inquiry", "/health"} <= set(document["paths"])
    schemas = document["components"]["schemas"]
    assert "cardInfo" not in schemas["CardRedemptionRequest"]["properties"]


async def test_inquiry_is_forwarded_to_the_backend(bench: Bench) -> None:
    body = _request()
    await _socket(bench, "cardRedemption", body)
    found = await _socket(bench, "inquiry", {"traceNo": new_trace_no(), "originalTraceNo": body["traceNo"]})
    assert found["returnCode"] == "00"
    missing = await _socket(bench, "inquiry", {"traceNo": new_trace_no(), "originalTraceNo": new_trace_no()})
    assert missing["returnCode"] == "25"


async def test_concurrent_transaction_is_refused_as_busy(bench: Bench) -> None:
    # The customer hesitates, so the first sale holds the pad for a known time however fast the
    # box is (without it the first sale could finish before the second arrives).
    await bench.customer("prepaid", hesitate_s=2.0)
    first = asyncio.create_task(_socket(bench, "cardRedemption", _request()))
    for _ in range(100):
        if (await bench.daemon.service.health())[1]["inFlight"]:
            break
        await asyncio.sleep(0.01)
    else:
        pytest.fail("the first sale never started")
    second = await _socket(bench, "cardRedemption", _request())
    assert not first.done(), "the first sale must still hold the pad when the second is refused"
    assert second["returnCode"] == "MB25"
    assert (await first)["returnCode"] == "00"


async def test_envelope_identity_is_echoed(bench: Bench) -> None:
    envelope = Envelope("cardRedemption", "POS77", "SHOP9", "001", _request())
    answer = await socket_request(bench.host, bench.daemon.socket_port, envelope)
    assert (answer.device_no, answer.shop_no, answer.brand) == ("POS77", "SHOP9", "001")


async def test_metrics_follow_the_real_transactions(bench: Bench) -> None:
    metrics = bench.daemon.metrics
    labels = {"lane": "default", "action": "cardRedemption"}  # a daemon without [[lanes]] is the default lane
    approved_before = metrics.value("misbridge_transactions_total", {**labels, "outcome": "approved"})
    await _socket(bench, "cardRedemption", _request())
    await bench.customer("prepaid", action="cancel-card")
    await _socket(bench, "cardRedemption", _request())
    await _socket(bench, "cardRedemption", _request(totalAmount="bad"))
    assert metrics.value("misbridge_transactions_total", {**labels, "outcome": "approved"}) == approved_before + 1
    assert metrics.value("misbridge_transactions_total", {**labels, "outcome": "aborted"}) >= 1
    assert metrics.value("misbridge_transactions_total", {**labels, "outcome": "refused"}) >= 1
    for stage in ("card", "pin", "backend", "total"):
        assert metrics.value("misbridge_stage_duration_seconds_count", {"lane": "default", "stage": stage}) >= 1
    text = (await bench.http.get("/metrics")).text
    assert 'misbridge_device_connected{lane="default"} 1.0' in text
    assert "misbridge_journal_bytes " in text  # the journal's, no lane
    # The daemon signed in at start-up and the pad holds the key: the gauges say so.
    for gauge in ("misbridge_signed_in", "misbridge_pad_working_key_ok", "misbridge_backend_reachable"):
        assert f'{gauge}{{lane="default"}} 1.0' in text, gauge


async def test_the_watchdog_self_check_needs_the_key_keeper(bench: Bench) -> None:
    daemon = bench.daemon
    assert daemon.is_alive()
    keeper = next(task for task in daemon._background if task.get_name() == "key keeper")
    keeper.cancel()
    await asyncio.wait({keeper})
    try:
        assert not daemon.is_alive(), "a dead key keeper would refuse every card sale: systemd must restart"
    finally:
        daemon._spawn(daemon.service.keys.run(), "key keeper")  # type: ignore[union-attr]
    assert daemon.is_alive()
