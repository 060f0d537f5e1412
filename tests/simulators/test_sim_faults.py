"""simulators.backend.faults: the script (FIFO, times, traceNo filter, validation), and faults in-process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from misbridge.backend import BackendClient
from misbridge.config.settings import BackendSettings, IdentitySettings
from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import decode_body, encode_body
from misbridge.errors import BackendOutcomeUnknown
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator, Fault, FaultAction, FaultScript, TraceState
from simulators.backend.drop import ConnectionDropped
from simulators.backend.faults import parse_fault_requests
from simulators.cards import CARDS
from simulators.crypto import encrypt_pin_block, encrypt_text
from tests.keys import issued_key_of, sign_in, sign_in_trace_no

PATH = "/ebuyweb-posp/api"


def sale(trace_no: str, key: bytes, card_name: str = "points") -> dict[str, Any]:
    """A cardRedemption body with the card's data under ``key``, the terminal's signed-in working key."""
    card = CARDS[card_name]
    return {
        "traceNo": trace_no,
        "totalAmount": Decimal("40.8"),
        "undiscountAmount": 0,
        "goodsDetail": [],
        "cardInfo": {
            "cardNo": encrypt_text(card.pan, key),
            "password": encrypt_pin_block(card.pin, card.pan, key),
        },
    }


def envelope(action: str, body: dict[str, Any]) -> bytes:
    fields: dict[str, Any] = {
        "action": action,
        "deviceNo": "POS01",
        "shopNo": "CN123456",
        "brand": "663",
        "body": encode_body(body),
    }
    fields["sign"] = signing.sign(fields, TEST_SIGNING_KEY)
    return jsonio.dumps(fields).encode()


# --- the script ----------------------------------------------------------------------------------


def test_commits_is_true_exactly_for_delay_before_and_after_commit_faults() -> None:
    committing = {fault for fault in Fault if fault.commits}
    assert committing == {Fault.DELAY_BEFORE_COMMIT} | {f for f in Fault if f.value.endswith("-after-commit")}
    assert not Fault.DECLINE.commits


def test_fifo_times_and_trace_filter() -> None:
    script = FaultScript()
    script.add(Fault.HTTP_500_BEFORE_COMMIT, action=FaultAction.SALE, trace_no="T1", times=2)
    script.add(Fault.DECLINE, action=FaultAction.SALE, code="51")
    script.add(Fault.DROP_AFTER_COMMIT, action=FaultAction.VOID)
    assert len(script) == 4
    assert script.take(FaultAction.INQUIRY, ("T1",)) is None
    first = script.take(FaultAction.SALE, ("T2",))
    assert first is not None
    assert (first.fault, first.code) == (Fault.DECLINE, "51")
    assert [script.take(FaultAction.SALE, ("T1",)) is not None for _ in range(3)] == [True, True, False]
    dropped = script.take(FaultAction.VOID, ("V1", "T9"))
    assert dropped is not None
    assert dropped.fault is Fault.DROP_AFTER_COMMIT
    assert len(script) == 0


def test_a_trace_filter_matches_the_original_trace_no_too() -> None:
    script = FaultScript()
    script.add(Fault.DECLINE, action=FaultAction.VOID, code="91", trace_no="SALE1")
    assert script.take(FaultAction.VOID, ("VOID1", "SALE1")) is not None


def test_actions_map_to_kinds() -> None:
    actions = (
        "cardRedemption",
        "cardPayment",
        "qrcodeSale",
        "accumulating",
        "inquiry",
        "voidCardSale",
        "voidQrcodeSale",
        "refundCardSale",
        "refundQrcodeSale",
        "ecouponInquiry",
        "summary",
        "batchUpload",
        "DownloadKey",
    )
    sale, void, refund, query = FaultAction.SALE, FaultAction.VOID, FaultAction.REFUND, FaultAction.QUERY
    assert [FaultAction.of(a) for a in actions] == [
        sale,
        sale,
        sale,
        sale,
        FaultAction.INQUIRY,
        void,
        void,
        refund,
        refund,
        query,
        query,
        FaultAction.UPLOAD,
        None,
    ]


def test_a_fault_may_name_one_action() -> None:
    script = FaultScript()
    script.add(Fault.DECLINE, action="qrcodeSale", code="05")
    assert script.take(FaultAction.SALE, ("T1",), name="cardRedemption") is None
    taken = script.take(FaultAction.SALE, ("T2",), name="qrcodeSale")
    assert taken is not None
    assert taken.action == "qrcodeSale"
    with pytest.raises(ValueError, match="book action"):
        script.add(Fault.DECLINE, action="downloadParams", code="05")


def test_pending_lists_uses_left_and_clear_counts_them() -> None:
    script = FaultScript()
    script.add(Fault.DELAY_AFTER_COMMIT, action=FaultAction.SALE, delay_s=0.5, times=3)
    script.take(FaultAction.SALE)
    assert script.pending() == [
        {
            "fault": Fault.DELAY_AFTER_COMMIT,
            "action": FaultAction.SALE,
            "times": 2,
            "delay_s": 0.5,
            "trace_no": None,
            "code": None,
            "desc": None,
            "reset": False,
        }
    ]
    assert script.clear() == 2
    assert script.pending() == []


@pytest.mark.parametrize(
    "settings",
    [
        {"fault": Fault.DELAY_BEFORE_COMMIT},
        {"fault": Fault.DELAY_AFTER_COMMIT, "delay_s": -1},
        {"fault": Fault.DECLINE},
        {"fault": Fault.DECLINE, "code": "00"},
        {"fault": Fault.DROP_AFTER_COMMIT, "code": "12"},
        {"fault": Fault.HTTP_500_AFTER_COMMIT, "reset": True},
        {"fault": Fault.HTTP_500_AFTER_COMMIT, "delay_s": 1.0},
        {"fault": Fault.HTTP_500_AFTER_COMMIT, "times": 0},
    ],
)
def test_settings_that_do_not_fit_are_refused(settings: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"delay_s|code|reset|times"):
        FaultScript().add(**settings)


def test_http_body_may_be_one_object_or_a_list() -> None:
    one = parse_fault_requests(b'{"action": "sale", "fault": "decline", "code": "51"}')
    many = parse_fault_requests(
        b'[{"action": "void", "fault": "http-500-before-commit", "times": 3},'
        b' {"action": "inquiry", "fault": "delay-after-commit", "delay_s": 0.25, "trace_no": "T1"}]'
    )
    assert [r.scripted().fault for r in one + many] == [
        Fault.DECLINE,
        Fault.HTTP_500_BEFORE_COMMIT,
        Fault.DELAY_AFTER_COMMIT,
    ]
    assert many[1].scripted().delay_s == 0.25
    with pytest.raises(ValidationError):
        parse_fault_requests(b'{"fault": "decline", "code": "51"}')  # action is required over HTTP


# --- faults served in-process --------------------------------------------------------------------


@pytest.fixture
def sim() -> BackendSimulator:
    return BackendSimulator()


@pytest.fixture
async def http(sim: BackendSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim") as client:
        yield client


async def signed_in(http: httpx.AsyncClient, url: str = PATH) -> bytes:
    """Sign in as POS01 (the envelopes' deviceNo): the working key its card data must be encrypted with."""
    response = await http.post(f"{url}/signIn", content=envelope("signIn", {"traceNo": sign_in_trace_no()}))
    return issued_key_of(decode_body(jsonio.loads(response.content)["body"]))


@pytest.fixture(name="key")
async def signed_in_key(http: httpx.AsyncClient) -> bytes:
    return await signed_in(http)


async def test_a_drop_in_process_reaches_the_client_as_a_connection_error(
    sim: BackendSimulator, http: httpx.AsyncClient, key: bytes
) -> None:
    sim.faults.add(Fault.DROP_AFTER_COMMIT, action=FaultAction.SALE)
    with pytest.raises(ConnectionDropped):
        await http.post(f"{PATH}/cardRedemption", content=envelope("cardRedemption", sale("D1", key)))
    record = sim.ledger.get("D1")
    assert record is not None
    assert record.state is TraceState.APPROVED


async def test_backend_client_in_process_sees_a_drop_as_unknown(sim: BackendSimulator) -> None:
    settings = BackendSettings(url=f"http://sim{PATH}", connect_timeout_s=1, read_timeout_s=1, request_deadline_s=3)
    client = BackendClient(
        settings, IdentitySettings(), SecretStr(TEST_SIGNING_KEY), transport=httpx.ASGITransport(app=sim.app)
    )
    sim.faults.add(Fault.DROP_BEFORE_COMMIT, action=FaultAction.SALE)
    try:
        key = await sign_in(client)
        with pytest.raises(BackendOutcomeUnknown, match="ConnectionDropped"):
            await client.submit("cardRedemption", sale("D2", key))
    finally:
        await client.aclose()
    record = sim.ledger.get("D2")
    assert record is not None
    assert (record.state, record.submissions) == (TraceState.NOT_APPLIED, 1)


async def test_a_scripted_decline_uses_the_trace_no_up(
    sim: BackendSimulator, http: httpx.AsyncClient, key: bytes
) -> None:
    sim.faults.add(Fault.DECLINE, action=FaultAction.SALE, code="51", desc="insufficient funds (scripted)")
    response = await http.post(f"{PATH}/cardRedemption", content=envelope("cardRedemption", sale("D3", key)))
    reply = jsonio.loads(response.content)
    assert signing.verify(reply, TEST_SIGNING_KEY)
    assert decode_body(reply["body"])["returnCode"] == "51"
    again = await http.post(f"{PATH}/cardRedemption", content=envelope("cardRedemption", sale("D3", key)))
    assert decode_body(jsonio.loads(again.content)["body"])["returnCode"] == "94"
    assert sim.ledger.points("points") == CARDS["points"].points


async def test_a_decline_of_a_duplicate_leaves_the_original_alone(
    sim: BackendSimulator, http: httpx.AsyncClient, key: bytes
) -> None:
    await http.post(f"{PATH}/cardRedemption", content=envelope("cardRedemption", sale("D4", key)))
    sim.faults.add(Fault.DECLINE, action=FaultAction.SALE, code="05")
    await http.post(f"{PATH}/cardRedemption", content=envelope("cardRedemption", sale("D4", key)))
    record = sim.ledger.get("D4")
    assert record is not None
    assert (record.state, record.return_code, record.submissions) == (TraceState.APPROVED, "00", 2)


async def test_stopping_during_delay_before_commit_leaves_it_not_applied() -> None:
    sim = BackendSimulator()
    url = await sim.start()
    sim.faults.add(Fault.DELAY_BEFORE_COMMIT, action=FaultAction.SALE, delay_s=30)
    async with httpx.AsyncClient() as client:
        key = await signed_in(client, url)
        request = asyncio.create_task(
            client.post(f"{url}/cardRedemption", content=envelope("cardRedemption", sale("D5", key)))
        )
        for _ in range(200):
            record = sim.ledger.get("D5")
            if record is not None and record.in_progress:
                break
            await asyncio.sleep(0.01)
        else:
            raise AssertionError("the sale never got in progress")
        await sim.stop()  # 1 s of grace, then the held request is cancelled
        for _ in range(10):
            await asyncio.sleep(0)
        assert (await request).status_code == 500  # uvicorn answers for the cancelled request
    assert record.state is TraceState.NOT_APPLIED
    assert sim.ledger.points("points") == CARDS["points"].points
