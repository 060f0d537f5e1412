"""The real BackendClient against the real backend simulator over a localhost socket.

Includes the fault table (docs/backend.md, "Scripted faults"): every fault, for sales,
inquiries and voids, with what misbridge's client concludes and what the ledger shows.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from pydantic import SecretStr

from misbridge.backend import BackendClient, BackendReply
from misbridge.config.settings import BackendSettings, IdentitySettings, SigningSettings
from misbridge.ebuy import jsonio
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown
from simulators.backend import (
    DEFAULT_PREFIX,
    TEST_SIGNING_KEY,
    BackendSimulator,
    Fault,
    FaultAction,
    TraceState,
    blackhole_listener,
    refusing_port,
)
from simulators.cards import CARDS, TestCard
from simulators.crypto import encrypt_pin_block, encrypt_text
from tests.keys import sign_in

#: Card data for a request that never reaches a backend, so no key ever decrypts it.
NOWHERE_KEY = bytes(16)
D = Decimal
_serial = itertools.count(1)

BOOK_GOODS = [
    {"goodsCategory": "001", "goodsId": "P00001", "goodsName": "牙膏", "price": 8, "quantity": 2, "rebateCode": "000"},
    {
        "goodsCategory": "101",
        "goodsId": "P00002",
        "goodsName": "洗发水",
        "price": D("24.8"),
        "quantity": 1,
        "rebateCode": "000",
    },
]
BOOK_MEMBER = {
    "memberId": "M000001545",
    "memberName": "TONY",
    "grade": "1",
    "status": "1",
    "balance": D("1000.00"),
    "pointBalance": 30000,
}


def trace_no() -> str:
    """The book's suggested form: yyyyMMddHHmmss + a 10-digit serial."""
    return datetime.now().strftime("%Y%m%d%H%M%S") + f"{next(_serial):010d}"


def card_info(card: TestCard, key: bytes, pin: str | None = None) -> dict[str, str]:
    """cardInfo as misbridge builds it from the pad's encrypted output, under the working key ``key``."""
    return {
        "cardNo": encrypt_text(card.pan, key),
        "password": encrypt_pin_block(pin or card.pin, card.pan, key),
        "valid": card.expiry,
        "track2": encrypt_text(card.track2, key),
        "cardType": card.card_type,
    }


def sale(
    card_name: str,
    key: bytes,
    *,
    total: str = "40.8",
    undiscount: str = "0",
    pin: str | None = None,
    trace: str | None = None,
) -> dict[str, Any]:
    """A cardRedemption body with ``card_name``'s data under ``key`` (the terminal's signed-in key)."""
    return {
        "traceNo": trace or trace_no(),
        "totalAmount": D(total),
        "undiscountAmount": D(undiscount),
        "goodsDetail": BOOK_GOODS,
        "memberDetail": BOOK_MEMBER,
        "cardInfo": card_info(CARDS[card_name], key, pin),
    }


@pytest.fixture
async def sim() -> AsyncIterator[BackendSimulator]:
    simulator = BackendSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


def settings_for(url: str, **signing: Any) -> BackendSettings:
    return BackendSettings(
        url=url,
        connect_timeout_s=0.5,
        read_timeout_s=0.5,
        request_deadline_s=3.0,
        signing=SigningSettings(**signing),
    )


@pytest.fixture
async def client(sim: BackendSimulator) -> AsyncIterator[BackendClient]:
    backend = BackendClient(settings_for(sim.url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    yield backend
    await backend.aclose()


@pytest.fixture(name="key")
async def signed_in_key(client: BackendClient) -> bytes:
    """The terminal signed in: the working key the simulator decrypts its card data with."""
    return await sign_in(client)


async def redeem(client: BackendClient, body: dict[str, Any]) -> BackendReply:
    return await client.submit("cardRedemption", body)


def amounts(reply: BackendReply) -> list[tuple[str, str]]:
    return [(channel["channelNo"], channel["channelAmount"]) for channel in reply.body["fundChannel"]]


# --- approvals, one per card ---------------------------------------------------------------------


async def test_points_cash_is_exactly_the_book_example(
    client: BackendClient, sim: BackendSimulator, key: bytes
) -> None:
    body = sale("points-cash", key)
    reply = await redeem(client, body)
    assert reply.approved
    assert reply.body["fundChannel"] == [
        {"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "20.8"},
        {"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "20"},
    ]
    detail = reply.body["printDetail"]
    assert detail["cardNo64"] == "622562****8888"
    assert detail["bank"] == "中信银行"
    assert detail["pointSale"] == "20000"
    assert list(detail) == [
        "cardNo64",
        "bank",
        "paymentOrderNo",
        "pointSale",
        "qrCode1",
        "qrCode2",
        "qrCode3",
        "barCode1",
        "barCode2",
        "barCode3",
    ]
    assert sim.ledger.points("points-cash") == 10_000


async def test_approval_has_the_book_shape(client: BackendClient, key: bytes) -> None:
    body = sale("points-cash", key)
    reply = await redeem(client, body)
    assert list(reply.body) == [
        "traceNo",
        "orderNo",
        "transDate",
        "returnCode",
        "returnDesc",
        "paidAmount",
        "receiptAmount",
        "invoiceAmount",
        "currency",
        "goodsDetail",
        "fundChannel",
        "printDetail",
        "memberDetail",
    ]
    assert reply.body["traceNo"] == body["traceNo"]
    assert reply.body["returnDesc"] == "SUCCESS"
    assert len(reply.body["orderNo"]) == 12
    assert reply.body["orderNo"].isdigit()
    assert len(reply.body["transDate"]) == 14
    assert reply.body["paidAmount"] == D("40.8")
    assert '"paidAmount":40.8,"receiptAmount":40.8,"invoiceAmount":40.8' in jsonio.dumps(reply.body)
    assert reply.body["currency"] == "CNY"
    goods = reply.body["goodsDetail"]
    assert [g["goodsId"] for g in goods] == ["P00001", "P00002"]
    assert all(g["activityNo"] and g["memo"] for g in goods)
    assert goods[1]["price"] == D("24.8")
    assert reply.body["memberDetail"] == BOOK_MEMBER


@pytest.mark.parametrize(
    ("card", "undiscount", "channels", "points", "balance"),
    [
        ("points", "0", [("002", "40.8")], 500_000 - 40_800, D(0)),
        ("points-cash", "0", [("001", "20.8"), ("002", "20")], 10_000, D(0)),
        ("points-cash", "30.8", [("001", "30.8"), ("002", "10")], 20_000, D(0)),
        ("privilege", "0", [("003", "40.8")], 0, D(0)),
        ("privilege", "10.8", [("001", "10.8"), ("003", "30")], 0, D(0)),
        ("privilege-cash", "0", [("001", "20.4"), ("003", "20.4")], 0, D(0)),
        ("prepaid", "0", [("004", "40.8")], 0, D("459.20")),
        ("member", "0", [("005", "40.8")], 0, D("959.20")),
    ],
)
async def test_every_card_splits_as_its_usage_says(
    client: BackendClient,
    sim: BackendSimulator,
    card: str,
    undiscount: str,
    channels: list[tuple[str, str]],
    points: int,
    balance: Decimal,
    key: bytes,
) -> None:
    reply = await redeem(client, sale(card, key, undiscount=undiscount))
    assert reply.approved, reply.body["returnDesc"]
    assert amounts(reply) == channels
    assert sum(D(amount) for _, amount in channels) == D("40.8")
    assert sim.ledger.points(card) == points
    assert sim.ledger.balance(card) == balance
    assert reply.body["printDetail"]["cardNo64"] == CARDS[card].pan[:6] + "****" + CARDS[card].pan[-4:]


async def test_member_reply_carries_the_new_balance(client: BackendClient, key: bytes) -> None:
    reply = await redeem(client, sale("member", key))
    assert reply.body["memberDetail"]["balance"] == D("959.20")
    assert '"balance":959.20' in jsonio.dumps(reply.body)
    assert reply.body["memberDetail"]["memberId"] == "M000001545"


# --- declines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [name for name, card in CARDS.items() if card.usage is not None])
async def test_wrong_pin_is_55_and_changes_nothing(
    client: BackendClient, sim: BackendSimulator, card: str, key: bytes
) -> None:
    before = sim.ledger.points(card), sim.ledger.balance(card)
    body = sale(card, key, pin="000000")
    reply = await redeem(client, body)
    assert (reply.return_code, reply.body["returnDesc"]) == ("55", "incorrect PIN")
    assert not reply.approved
    assert reply.body["orderNo"] == ""
    assert reply.body["paidAmount"] == 0
    assert (sim.ledger.points(card), sim.ledger.balance(card)) == before
    record = sim.ledger.get(body["traceNo"])
    assert record is not None
    assert record.state is TraceState.DECLINED


@pytest.mark.parametrize(
    ("card", "total", "desc"),
    [
        ("points", "600", "insufficient points: 500000 available, 600000 needed"),
        ("prepaid", "500.01", "insufficient balance: 500.00 available, 500.01 needed"),
        ("member", "1000.01", "insufficient balance: 1000.00 available, 1000.01 needed"),
    ],
)
async def test_insufficient_is_51(
    client: BackendClient, sim: BackendSimulator, card: str, total: str, desc: str, key: bytes
) -> None:
    reply = await redeem(client, sale(card, key, total=total))
    assert (reply.return_code, reply.body["returnDesc"]) == ("51", desc)
    assert sim.ledger.points(card) == CARDS[card].points
    assert sim.ledger.balance(card) == CARDS[card].balance


async def test_points_cash_book_card_cannot_pay_all_points_but_never_51(client: BackendClient, key: bytes) -> None:
    reply = await redeem(client, sale("points-cash", key, total="1000"))
    assert amounts(reply) == [("001", "980"), ("002", "20")]


async def test_unknown_card_is_14(client: BackendClient, key: bytes) -> None:
    reply = await redeem(client, sale("unknown", key))
    assert (reply.return_code, reply.body["returnDesc"]) == ("14", "unknown card")


async def test_duplicate_trace_no_is_94_and_applied_once(
    client: BackendClient, sim: BackendSimulator, key: bytes
) -> None:
    body = sale("points", key)
    first = await redeem(client, body)
    second = await redeem(client, body)
    assert first.approved
    assert (second.return_code, second.body["returnDesc"]) == ("94", "duplicate traceNo")
    assert sim.ledger.submissions(body["traceNo"]) == 2
    assert sim.ledger.points("points") == 500_000 - 40_800
    record = sim.ledger.get(body["traceNo"])
    assert record is not None
    assert record.points_delta == -40_800


async def test_a_declined_trace_no_cannot_be_reused(client: BackendClient, sim: BackendSimulator, key: bytes) -> None:
    trace = trace_no()
    assert (await redeem(client, sale("points", key, pin="000000", trace=trace))).return_code == "55"
    assert (await redeem(client, sale("points", key, trace=trace))).return_code == "94"
    assert sim.ledger.points("points") == 500_000


# --- inquiry -------------------------------------------------------------------------------------


async def test_inquiry_of_an_approved_sale(client: BackendClient, key: bytes) -> None:
    original = await redeem(client, sale("points-cash", key))
    inquiry = {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]}
    reply = await client.submit("inquiry", inquiry)
    assert reply.approved
    assert reply.body["traceNo"] == inquiry["traceNo"]
    assert reply.body["originalTraceNo"] == original.body["traceNo"]
    for name in ("orderNo", "transDate", "paidAmount", "fundChannel", "printDetail", "memberDetail"):
        assert reply.body[name] == original.body[name]


async def test_inquiry_of_a_declined_sale_returns_its_decline(client: BackendClient, key: bytes) -> None:
    original = await redeem(client, sale("points", key, pin="000000"))
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert (reply.return_code, reply.body["returnDesc"]) == ("55", "incorrect PIN")


async def test_inquiry_of_an_unknown_trace_no_is_25(client: BackendClient) -> None:
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": "nope"})
    assert (reply.return_code, reply.body["returnDesc"]) == ("25", "original transaction not found")


@pytest.mark.parametrize("action", ["inquiry", "voidCardSale"])
async def test_not_found_stays_true_a_late_original_is_refused(
    client: BackendClient, sim: BackendSimulator, action: str, key: bytes
) -> None:
    late = sale("prepaid", key)
    reply = await client.submit(action, {"traceNo": trace_no(), "originalTraceNo": late["traceNo"]})
    assert reply.return_code == "25"
    assert (await redeem(client, late)).return_code == "94"
    assert sim.ledger.balance("prepaid") == CARDS["prepaid"].balance
    again = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": late["traceNo"]})
    assert again.return_code == "25"


async def test_inquiry_of_a_voided_sale_is_23(client: BackendClient, key: bytes) -> None:
    original = await redeem(client, sale("prepaid", key))
    await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert (reply.return_code, reply.body["returnDesc"]) == ("23", "original transaction was voided")


async def test_inquiry_trace_no_is_no_repeat_too(client: BackendClient, sim: BackendSimulator, key: bytes) -> None:
    original = await redeem(client, sale("points", key))
    inquiry = {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]}
    assert (await client.submit("inquiry", inquiry)).approved
    assert (await client.submit("inquiry", inquiry)).return_code == "94"
    assert sim.ledger.submissions(inquiry["traceNo"]) == 2


# --- void ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", ["points", "points-cash", "privilege", "privilege-cash", "prepaid", "member"])
async def test_void_restores_the_card(client: BackendClient, sim: BackendSimulator, card: str, key: bytes) -> None:
    original = await redeem(client, sale(card, key))
    assert original.approved
    void = {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"], "acquirer": "citicCashpay"}
    reply = await client.submit("voidCardSale", void)
    assert reply.approved
    assert reply.body["originalTraceNo"] == original.body["traceNo"]
    assert reply.body["fundChannel"] == original.body["fundChannel"]
    assert sim.ledger.points(card) == CARDS[card].points
    assert sim.ledger.balance(card) == CARDS[card].balance
    record = sim.ledger.get(original.body["traceNo"])
    assert record is not None
    assert record.state is TraceState.VOIDED


async def test_member_void_reports_the_restored_balance(client: BackendClient, key: bytes) -> None:
    original = await redeem(client, sale("member", key))
    reply = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert reply.body["memberDetail"]["balance"] == D("1000.00")


async def test_void_twice_is_22(client: BackendClient, sim: BackendSimulator, key: bytes) -> None:
    original = await redeem(client, sale("points", key))
    first = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    second = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert first.approved
    assert (second.return_code, second.body["returnDesc"]) == ("22", "already voided")
    assert sim.ledger.points("points") == 500_000


async def test_void_of_an_unknown_trace_no_is_25(client: BackendClient) -> None:
    reply = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": "nope"})
    assert reply.return_code == "25"


# --- signatures ----------------------------------------------------------------------------------


async def test_bad_request_signature_is_63(sim: BackendSimulator, key: bytes) -> None:
    # The client cannot verify a reply signed with the other key, so it reads this one unverified.
    wrong = BackendClient(settings_for(sim.url, verify_responses=False), IdentitySettings(), SecretStr("wrong"))
    body = sale("points", key)
    try:
        reply = await redeem(wrong, body)
    finally:
        await wrong.aclose()
    assert (reply.return_code, reply.body["returnDesc"]) == ("63", "signature verification failed")
    assert sim.ledger.points("points") == 500_000
    assert sim.ledger.submissions(body["traceNo"]) == 1


async def test_bad_key_with_verification_on_is_unknown(sim: BackendSimulator, key: bytes) -> None:
    wrong = BackendClient(settings_for(sim.url), IdentitySettings(), SecretStr("wrong"))
    try:
        with pytest.raises(BackendOutcomeUnknown, match="signature"):
            await redeem(wrong, sale("points", key))
    finally:
        await wrong.aclose()


async def test_truncated_signatures_without_body_interoperate() -> None:
    simulator = BackendSimulator(include_body=False, truncate=16)
    url = await simulator.start()
    backend = BackendClient(
        settings_for(url, include_body=False, truncate=16), IdentitySettings(), SecretStr(TEST_SIGNING_KEY)
    )
    try:
        assert (await redeem(backend, sale("points", await sign_in(backend)))).approved
    finally:
        await backend.aclose()
        await simulator.stop()


# --- processed, then the reply goes wrong: UNKNOWN, resolved by inquiry (R7) -----------------------


@pytest.mark.parametrize("fault", [fault for fault in Fault if fault.value.endswith("-after-commit")])
async def test_lost_reply_is_unknown_and_inquiry_finds_the_approval(
    client: BackendClient, sim: BackendSimulator, fault: Fault, key: bytes
) -> None:
    sim.faults.add(fault, action=FaultAction.SALE, delay_s=0.8 if fault.delays else 0.0)
    body = sale("points", key)
    with pytest.raises(BackendOutcomeUnknown):
        await redeem(client, body)
    assert sim.ledger.submissions(body["traceNo"]) == 1
    assert sim.ledger.points("points") == 500_000 - 40_800
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert reply.approved
    assert len(sim.faults) == 0


async def test_ledger_endpoint_over_the_socket(client: BackendClient, sim: BackendSimulator, key: bytes) -> None:
    body = sale("points-cash", key)
    await redeem(client, body)
    await redeem(client, body)
    base = sim.url.split("/ebuyweb-posp")[0]
    async with httpx.AsyncClient() as http:
        ledger = jsonio.loads((await http.get(f"{base}/_sim/ledger")).content)
    record = ledger["transactions"][body["traceNo"]]
    assert (record["submissions"], record["state"], record["pointsDelta"]) == (2, "approved", -20_000)
    assert record["fundChannel"][1] == {"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "20"}
    assert ledger["balances"]["points-cash"] == {"points": 10_000, "balance": 0}


# --- cardPayment ---------------------------------------------------------------------------------


async def test_card_payment_is_a_sale_too(client: BackendClient, sim: BackendSimulator, key: bytes) -> None:
    body = {**sale("prepaid", key), "acquirer": "citicCashpay"}
    reply = await client.submit("cardPayment", body)
    assert reply.approved
    assert sim.ledger.balance("prepaid") == D("459.20")
    void_body = {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]}
    refused = await client.submit("voidCardSale", void_body)  # book §10.5: acquirer is mandatory to void it
    assert refused.return_code == "30"
    void = await client.submit("voidCardSale", {**void_body, "traceNo": trace_no(), "acquirer": "citicCashpay"})
    assert void.approved
    assert sim.ledger.balance("prepaid") == D("500.00")


# --- the fault table: every fault, for sale, inquiry and void, through the real client -----------
#
# Short timeouts: a delay fault of DELAY_S outlasts READ_S, so the client gives up while the
# simulator carries on, as a real backend would.

READ_S = 0.3
DELAY_S = 0.6  # twice READ_S: the client has surely given up before the simulator moves on
#: One TLS context for every plain control client: building one per client costs ~50 ms (and it is HTTP anyway).
TLS = ssl.create_default_context()
in_module_loop = pytest.mark.asyncio(loop_scope="module")
NOT_APPLIED, IN_PROGRESS, APPROVED, DECLINED, VOIDED = (state.value for state in TraceState)


def fast_settings(url: str) -> BackendSettings:
    return BackendSettings(url=url, connect_timeout_s=0.3, read_timeout_s=READ_S, request_deadline_s=1.5)


@pytest.fixture
async def fast(sim: BackendSimulator) -> AsyncIterator[BackendClient]:
    backend = BackendClient(fast_settings(sim.url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    yield backend
    await backend.aclose()


@pytest.fixture
async def control(sim: BackendSimulator) -> AsyncIterator[httpx.AsyncClient]:
    """A separate plain HTTP client on the simulator's /_sim endpoints, as another process would use."""
    async with httpx.AsyncClient(base_url=sim.url.removesuffix(DEFAULT_PREFIX), timeout=5, verify=TLS) as http:
        yield http


async def script(control: httpx.AsyncClient, *faults: dict[str, Any]) -> list[dict[str, Any]]:
    response = await control.post("/_sim/faults", content=jsonio.dumps(list(faults)))
    assert response.status_code == 200, response.text
    pending: list[dict[str, Any]] = response.json()["pending"]
    return pending


async def entry(control: httpx.AsyncClient, trace: str) -> dict[str, Any]:
    response = await control.get(f"/_sim/ledger/{trace}")
    assert response.status_code == 200, response.text
    record: dict[str, Any] = jsonio.loads(response.content)
    return record


async def decided(control: httpx.AsyncClient, trace: str) -> dict[str, Any]:
    """The record of ``trace`` once its handler has decided (a delay-before-commit may hold it)."""
    for _ in range(100):
        record = await entry(control, trace)
        if record["state"] != IN_PROGRESS:
            return record
        await asyncio.sleep(0.02)
    raise AssertionError(f"{trace} is still in progress")


@dataclass(frozen=True)
class Case:
    """One fault and what misbridge's client concludes: ``unknown`` matches the error, or a decline code."""

    name: str
    fault: dict[str, Any]
    unknown: str | None = None
    decline: str | None = None

    @property
    def commits(self) -> bool:
        return Fault(self.fault["fault"]).commits


CASES = [
    Case("delay-before-commit", {"fault": "delay-before-commit", "delay_s": DELAY_S}, unknown="ReadTimeout"),
    Case("delay-after-commit", {"fault": "delay-after-commit", "delay_s": DELAY_S}, unknown="ReadTimeout"),
    Case("drop-before-commit", {"fault": "drop-before-commit"}, unknown="RemoteProtocolError"),
    Case("drop-before-commit-rst", {"fault": "drop-before-commit", "reset": True}, unknown="ReadError"),
    Case("drop-after-commit", {"fault": "drop-after-commit"}, unknown="RemoteProtocolError"),
    Case("drop-after-commit-rst", {"fault": "drop-after-commit", "reset": True}, unknown="ReadError"),
    Case("http-500-before-commit", {"fault": "http-500-before-commit"}, unknown="HTTP 500"),
    Case("http-500-after-commit", {"fault": "http-500-after-commit"}, unknown="HTTP 500"),
    Case("non-json-after-commit", {"fault": "non-json-after-commit"}, unknown="not JSON"),
    Case("bad-sign-after-commit", {"fault": "bad-sign-after-commit"}, unknown="signature does not verify"),
    Case("wrong-trace-after-commit", {"fault": "wrong-trace-after-commit"}, unknown="traceNo does not match"),
    Case("missing-sign-after-commit", {"fault": "missing-sign-after-commit"}, unknown="no signature"),
    Case("decline-12", {"fault": "decline", "code": "12"}, decline="12"),
    Case("decline-91", {"fault": "decline", "code": "91", "desc": "issuer unavailable"}, decline="91"),
]
CASE_IDS = [case.name for case in CASES]


async def submit_expecting(client: BackendClient, action: str, body: dict[str, Any], case: Case) -> None:
    """Submit and check the client's conclusion: UNKNOWN (never NOT SENT, never a decline) or the decline."""
    if case.decline is not None:
        reply = await client.submit(action, body)
        assert reply.return_code == case.decline
        return
    with pytest.raises(BackendOutcomeUnknown) as raised:
        await client.submit(action, body)
    assert case.unknown is not None
    assert case.unknown in f"{raised.value} {type(raised.value.__cause__).__name__}"


@dataclass(frozen=True)
class Table:
    """One simulator and its two clients, shared by the fault-table rows (a fresh one per row costs 0.2 s)."""

    sim: BackendSimulator
    fast: BackendClient
    control: httpx.AsyncClient
    key: bytes


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def shared_table() -> AsyncIterator[Table]:
    simulator = BackendSimulator()
    url = await simulator.start()
    backend = BackendClient(fast_settings(url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    try:
        async with httpx.AsyncClient(base_url=url.removesuffix(DEFAULT_PREFIX), timeout=5, verify=TLS) as http:
            yield Table(simulator, backend, http, await sign_in(backend))
    finally:
        await backend.aclose()
        await simulator.stop()


@pytest_asyncio.fixture(loop_scope="module")
async def table(shared_table: Table) -> Table:
    """The shared simulator with an empty fault script. Rows compare balances before and after."""
    assert (await shared_table.control.delete("/_sim/faults")).status_code == 200
    return shared_table


def points_and_balance(sim: BackendSimulator, card: str) -> tuple[int, Decimal]:
    return sim.ledger.points(card), sim.ledger.balance(card)


@in_module_loop
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_sale_fault_table(table: Table, case: Case) -> None:
    sim, fast, control, key = table.sim, table.fast, table.control, table.key
    # The pool holds a keep-alive connection: a fault on a reused connection must not make httpx resend.
    assert (await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": "none"})).return_code == "25"
    body, points = sale("points", key), sim.ledger.points("points")
    await script(control, {"action": "sale", **case.fault})
    await submit_expecting(fast, "cardRedemption", body, case)
    record = await decided(control, body["traceNo"])
    state = APPROVED if case.commits else DECLINED if case.decline else NOT_APPLIED
    assert (record["submissions"], record["state"], record["applied"]) == (1, state, state == APPROVED)
    assert sim.ledger.points("points") == (points - 40_800 if state == APPROVED else points)
    # misbridge's resolution (R7): inquire; an approval is confirmed, anything else is not applied.
    inquiry = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert inquiry.return_code == {APPROVED: "00", DECLINED: case.decline, NOT_APPLIED: "25"}[state]
    # ... and a void leaves nothing moved either way (25 = nothing to void).
    void = await fast.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert void.return_code == ("00" if state == APPROVED else "25")
    assert sim.ledger.points("points") == points
    assert (await entry(control, body["traceNo"]))["submissions"] == 1
    assert len(sim.faults) == 0


@in_module_loop
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_void_fault_table(table: Table, case: Case) -> None:
    sim, fast, control, key = table.sim, table.fast, table.control, table.key
    original, before = sale("member", key), points_and_balance(sim, "member")
    assert (await fast.submit("cardRedemption", original)).approved
    void = {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]}
    await script(control, {"action": "void", **case.fault})
    await submit_expecting(fast, "voidCardSale", void, case)
    record = await decided(control, void["traceNo"])
    state = APPROVED if case.commits else DECLINED if case.decline else NOT_APPLIED
    assert (record["kind"], record["state"], record["originalTraceNo"]) == ("void", state, original["traceNo"])
    target = await entry(control, original["traceNo"])
    assert target["state"] == (VOIDED if case.commits else APPROVED)
    assert target["voidedBy"] == (void["traceNo"] if case.commits else None)
    # The reversal queue tries again under a new traceNo: "00" or "22" both mean reversed (R9).
    again = await fast.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]})
    assert again.return_code == ("22" if case.commits else "00")
    assert points_and_balance(sim, "member") == before
    assert not (await entry(control, original["traceNo"]))["applied"]


@in_module_loop
@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
async def test_inquiry_fault_table(table: Table, case: Case) -> None:
    sim, fast, control, key = table.sim, table.fast, table.control, table.key
    original, before = sale("prepaid", key), points_and_balance(sim, "prepaid")
    assert (await fast.submit("cardRedemption", original)).approved
    inquiry = {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]}
    await script(control, {"action": "inquiry", **case.fault})
    await submit_expecting(fast, "inquiry", inquiry, case)
    record = await decided(control, inquiry["traceNo"])
    state = APPROVED if case.commits else DECLINED if case.decline else NOT_APPLIED
    assert (record["kind"], record["state"], record["applied"]) == ("inquiry", state, False)
    assert points_and_balance(sim, "prepaid") == (before[0], before[1] - D("40.8"))  # inquiries move nothing
    again = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]})
    assert again.approved
    assert (await fast.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]})).approved


# --- in progress: an inquiry during a slow commit says 26, not "not found" ----------------------


async def test_inquiry_during_delay_before_commit_is_26_then_00(
    fast: BackendClient, sim: BackendSimulator, control: httpx.AsyncClient, key: bytes
) -> None:
    body = sale("prepaid", key)
    await script(control, {"action": "sale", "fault": "delay-before-commit", "delay_s": 0.8})
    with pytest.raises(BackendOutcomeUnknown):
        await fast.submit("cardRedemption", body)
    record = await entry(control, body["traceNo"])
    assert (record["state"], record["applied"], record["submissions"]) == (IN_PROGRESS, False, 1)
    pending = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert (pending.return_code, pending.body["returnDesc"]) == ("26", "original transaction in progress")
    early_void = await fast.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert early_void.return_code == "26"
    assert sim.ledger.balance("prepaid") == D("500.00")
    assert (await decided(control, body["traceNo"]))["state"] == APPROVED
    assert sim.ledger.balance("prepaid") == D("459.20")  # the commit happened after the client gave up
    confirmed = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert confirmed.approved
    assert confirmed.body["fundChannel"] == [{"channelNo": "004", "channelName": "预付卡支付", "channelAmount": "40.8"}]
    void = await fast.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert void.approved
    assert sim.ledger.balance("prepaid") == D("500.00")
    assert sim.ledger.submissions(body["traceNo"]) == 1


async def test_a_repeat_while_in_progress_is_94_and_not_applied_twice(
    fast: BackendClient, sim: BackendSimulator, control: httpx.AsyncClient, key: bytes
) -> None:
    body = sale("points", key)
    await script(control, {"action": "sale", "fault": "delay-before-commit", "delay_s": DELAY_S})
    with pytest.raises(BackendOutcomeUnknown):
        await fast.submit("cardRedemption", body)
    assert (await fast.submit("cardRedemption", body)).return_code == "94"
    record = await decided(control, body["traceNo"])
    assert (record["submissions"], record["state"]) == (2, APPROVED)
    assert sim.ledger.points("points") == 500_000 - 40_800


# --- scripting faults over HTTP ------------------------------------------------------------------


async def test_fault_script_over_http(
    fast: BackendClient, sim: BackendSimulator, control: httpx.AsyncClient, key: bytes
) -> None:
    target, other = sale("points", key), sale("points", key)
    pending = await script(
        control,
        {"action": "sale", "fault": "http-500-before-commit", "trace_no": target["traceNo"], "times": 2},
        {"action": "void", "fault": "decline", "code": "91"},
    )
    assert [(p["action"], p["fault"], p["times"]) for p in pending] == [
        ("sale", "http-500-before-commit", 2),
        ("void", "decline", 1),
    ]
    assert (await fast.submit("cardRedemption", other)).approved  # another traceNo: not faulted
    with pytest.raises(BackendOutcomeUnknown, match="HTTP 500"):
        await fast.submit("cardRedemption", target)
    listed = (await control.get("/_sim/faults")).json()["pending"]
    assert [p["times"] for p in listed] == [1, 1]
    cleared = (await control.delete("/_sim/faults")).json()
    assert cleared == {"cleared": 2, "pending": []}
    assert len(sim.faults) == 0
    # The traceNo is still free: nothing was applied, so the same request is processed now.
    assert (await fast.submit("cardRedemption", target)).approved
    assert (await entry(control, target["traceNo"]))["submissions"] == 2


async def test_faults_are_fifo_and_match_inquiries_by_original(
    fast: BackendClient, control: httpx.AsyncClient, key: bytes
) -> None:
    original = sale("points", key)
    assert (await fast.submit("cardRedemption", original)).approved
    await script(
        control,
        {"action": "inquiry", "fault": "decline", "code": "96", "trace_no": original["traceNo"]},
        {"action": "inquiry", "fault": "decline", "code": "91"},
    )
    first = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": "none"})
    second = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]})
    third = await fast.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original["traceNo"]})
    assert [first.return_code, second.return_code, third.return_code] == ["91", "96", "00"]


@pytest.mark.parametrize(
    ("fault", "complaint"),
    [
        ({"action": "sale", "fault": "explode"}, "fault"),
        ({"action": "refunds", "fault": "decline", "code": "12"}, "action"),
        ({"action": "sale", "fault": "delay-before-commit"}, "delay_s"),
        ({"action": "sale", "fault": "decline"}, "code"),
        ({"action": "sale", "fault": "decline", "code": "00"}, "code"),
        ({"action": "sale", "fault": "http-500-after-commit", "delay_s": 1}, "delay_s"),
        ({"action": "sale", "fault": "http-500-after-commit", "reset": True}, "reset"),
        ({"action": "sale", "fault": "drop-after-commit", "times": 0}, "times"),
        ({"action": "sale", "fault": "drop-after-commit", "when": "now"}, "when"),
    ],
)
async def test_bad_fault_scripts_are_400(
    control: httpx.AsyncClient, sim: BackendSimulator, fault: dict[str, Any], complaint: str
) -> None:
    response = await control.post("/_sim/faults", content=jsonio.dumps(fault))
    assert response.status_code == 400
    assert complaint in response.json()["error"]
    assert len(sim.faults) == 0


async def test_not_json_fault_script_is_400(control: httpx.AsyncClient) -> None:
    response = await control.post("/_sim/faults", content=b"{")
    assert response.status_code == 400


# --- the ledger, one traceNo at a time -----------------------------------------------------------


async def test_ledger_entry_endpoint(fast: BackendClient, control: httpx.AsyncClient, key: bytes) -> None:
    assert (await control.get("/_sim/ledger/never-seen")).status_code == 404
    body = sale("points-cash", key)
    assert (await fast.submit("cardRedemption", body)).approved
    void = {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]}
    assert (await fast.submit("voidCardSale", void)).approved
    sold = await entry(control, body["traceNo"])
    assert {k: sold[k] for k in ("traceNo", "kind", "state", "applied", "submissions", "voidedBy")} == {
        "traceNo": body["traceNo"],
        "kind": "sale",
        "state": VOIDED,
        "applied": False,
        "submissions": 1,
        "voidedBy": void["traceNo"],
    }
    assert (sold["pointsDelta"], sold["totalAmount"]) == (-20_000, D("40.8"))
    voided = await entry(control, void["traceNo"])
    assert (voided["kind"], voided["state"], voided["originalTraceNo"], voided["pointsDelta"]) == (
        "void",
        APPROVED,
        body["traceNo"],
        20_000,
    )
    whole = jsonio.loads((await control.get("/_sim/ledger")).content)
    assert whole["transactions"][body["traceNo"]] == sold


async def test_a_rejected_submission_is_not_applied(
    sim: BackendSimulator, control: httpx.AsyncClient, key: bytes
) -> None:
    wrong = BackendClient(settings_for(sim.url, verify_responses=False), IdentitySettings(), SecretStr("wrong"))
    body = sale("points", key)
    try:
        assert (await wrong.submit("cardRedemption", body)).return_code == "63"
    finally:
        await wrong.aclose()
    record = await entry(control, body["traceNo"])
    assert (record["state"], record["applied"], record["submissions"]) == (NOT_APPLIED, False, 1)


# --- connect-level faults: NOT SENT ---------------------------------------------------------------


async def test_refusing_port_is_not_sent() -> None:
    url = f"http://127.0.0.1:{refusing_port()}{DEFAULT_PREFIX}"
    backend = BackendClient(fast_settings(url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    started = time.monotonic()
    try:
        with pytest.raises(BackendNotSent) as raised:
            await backend.submit("cardRedemption", sale("points", NOWHERE_KEY))
    finally:
        await backend.aclose()
    assert isinstance(raised.value.__cause__, httpx.ConnectError)
    assert time.monotonic() - started < 1.5


async def test_blackhole_listener_is_not_sent_within_the_deadline() -> None:
    async with blackhole_listener() as (host, port):
        backend = BackendClient(
            fast_settings(f"http://{host}:{port}{DEFAULT_PREFIX}"), IdentitySettings(), SecretStr(TEST_SIGNING_KEY)
        )
        started = time.monotonic()
        try:
            with pytest.raises(BackendNotSent) as raised:
                await backend.submit("cardRedemption", sale("points", NOWHERE_KEY))
        finally:
            await backend.aclose()
    assert isinstance(raised.value.__cause__, httpx.ConnectTimeout)
    assert time.monotonic() - started < 1.5


# --- outages: stop, start again on the same port, same ledger -------------------------------------


async def test_ledger_file_survives_a_restart_on_the_same_port(tmp_path: Path) -> None:
    ledger_file = tmp_path / "ledger.json"
    first = BackendSimulator(ledger_file=ledger_file)
    url = await first.start()
    backend = BackendClient(fast_settings(url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    try:
        key = await sign_in(backend)
        approved, declined = sale("member", key), sale("points", key, pin="000000")
        first_reply = await backend.submit("cardRedemption", approved)
        assert first_reply.approved
        assert (await backend.submit("cardRedemption", declined)).return_code == "55"
        await first.stop()
        with pytest.raises(BackendNotSent):  # down: nothing listens on the port
            await backend.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": approved["traceNo"]})
        second = BackendSimulator(ledger_file=ledger_file)
        assert await second.start(port=first_port(url)) == url  # SO_REUSEADDR: the same port at once
        try:
            assert second.ledger.balance("member") == D("959.20")
            inquiry = await backend.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": approved["traceNo"]})
            assert inquiry.approved
            assert inquiry.body["orderNo"] == first_reply.body["orderNo"]
            assert (await backend.submit("cardRedemption", approved)).return_code == "94"
            assert (await backend.submit("cardRedemption", declined)).return_code == "94"
            # The simulator keeps sign-ins in memory only: after its restart the terminal signs in again.
            assert await sign_in(backend) == key  # the same day, the same key
            other = await backend.submit("cardRedemption", sale("prepaid", key))
            assert other.body["orderNo"] != first_reply.body["orderNo"]  # the order counter survived too
            void = {"traceNo": trace_no(), "originalTraceNo": approved["traceNo"]}
            assert (await backend.submit("voidCardSale", void)).approved
            assert second.ledger.balance("member") == D("1000.00")
            assert second.ledger.submissions(approved["traceNo"]) == 2
        finally:
            await second.stop()
    finally:
        await backend.aclose()
        await first.stop()
    saved = jsonio.loads(ledger_file.read_bytes())
    assert {record["traceNo"]: record["state"] for record in saved["records"]}[approved["traceNo"]] == VOIDED


def first_port(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def test_cli_simulator_restarted_on_the_same_port_keeps_its_ledger(tmp_path: Path) -> None:
    ledger_file = tmp_path / "ledger.json"
    process, url = await start_cli(tmp_path, "--port", "0", "--ledger-file", str(ledger_file))
    backend = BackendClient(fast_settings(url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    try:
        body = sale("points", await sign_in(backend))
        assert (await backend.submit("cardRedemption", body)).approved
        await stop_cli(process)
        process, again = await start_cli(tmp_path, "--port", str(first_port(url)), "--ledger-file", str(ledger_file))
        assert again == url
        try:
            base = url.removesuffix(DEFAULT_PREFIX)
            async with httpx.AsyncClient(base_url=base, verify=TLS) as control:
                record = await entry(control, body["traceNo"])
            assert (record["state"], record["applied"], record["pointsDelta"]) == (APPROVED, True, -40_800)
            inquiry = await backend.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
            assert inquiry.approved
        finally:
            await stop_cli(process)
    finally:
        await backend.aclose()


async def start_cli(workdir: Path, *args: str) -> tuple[asyncio.subprocess.Process, str]:
    with (workdir / "sim.log").open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "simulators", "backend", *args, stdout=asyncio.subprocess.PIPE, stderr=log
        )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 15)
    assert line.startswith(b"e-Buy backend simulator listening on "), (workdir / "sim.log").read_text()
    return process, line.decode().split()[-1]


async def stop_cli(process: asyncio.subprocess.Process) -> None:
    process.terminate()
    assert await asyncio.wait_for(process.wait(), 10) == 0
