"""The real BackendClient against the real backend simulator over a localhost socket."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient, BackendReply
from misbridge.config import BackendSettings, IdentitySettings, SigningSettings
from misbridge.ebuy import jsonio
from misbridge.errors import BackendOutcomeUnknown
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator, Fault, TraceState
from simulators.cards import CARDS, TestCard
from simulators.crypto import TEST_WORKING_KEY_HEX, encrypt_pin_block, encrypt_text

WORKING_KEY = bytes.fromhex(TEST_WORKING_KEY_HEX)
D = Decimal
_serial = itertools.count(1)

BOOK_GOODS = [
    {"goodsCategory": "001", "goodsId": "P00001", "goodsName": "牙膏", "price": 8, "quantity": 2, "rebateCode": "000"},
    {"goodsCategory": "101", "goodsId": "P00002", "goodsName": "洗发水", "price": D("24.8"), "quantity": 1,
     "rebateCode": "000"},
]
BOOK_MEMBER = {"memberId": "M000001545", "memberName": "TONY", "grade": "1", "status": "1",
               "balance": D("1000.00"), "pointBalance": 30000}


def trace_no() -> str:
    """The book's suggested form: yyyyMMddHHmmss + a 10-digit serial."""
    return datetime.now().strftime("%Y%m%d%H%M%S") + f"{next(_serial):010d}"


def card_info(card: TestCard, pin: str | None = None) -> dict[str, str]:
    """cardInfo as misbridge builds it from the pad's encrypted output."""
    return {
        "cardNo": encrypt_text(card.pan, WORKING_KEY),
        "password": encrypt_pin_block(pin or card.pin, card.pan, WORKING_KEY),
        "valid": card.expiry,
        "track2": encrypt_text(card.track2, WORKING_KEY),
        "cardType": card.card_type,
    }


def sale(card_name: str, *, total: str = "40.8", undiscount: str = "0", pin: str | None = None,
         trace: str | None = None) -> dict[str, Any]:
    return {
        "traceNo": trace or trace_no(),
        "totalAmount": D(total),
        "undiscountAmount": D(undiscount),
        "goodsDetail": BOOK_GOODS,
        "memberDetail": BOOK_MEMBER,
        "cardInfo": card_info(CARDS[card_name], pin),
    }


@pytest.fixture
async def sim() -> AsyncIterator[BackendSimulator]:
    simulator = BackendSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


def settings_for(url: str, **signing: Any) -> BackendSettings:
    return BackendSettings(
        url=url, connect_timeout_s=0.5, read_timeout_s=0.5, request_deadline_s=3.0,
        signing=SigningSettings(**signing),
    )


@pytest.fixture
async def client(sim: BackendSimulator) -> AsyncIterator[BackendClient]:
    backend = BackendClient(settings_for(sim.url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    yield backend
    await backend.aclose()


async def redeem(client: BackendClient, body: dict[str, Any]) -> BackendReply:
    return await client.submit("cardRedemption", body)


def amounts(reply: BackendReply) -> list[tuple[str, str]]:
    return [(channel["channelNo"], channel["channelAmount"]) for channel in reply.body["fundChannel"]]


# --- approvals, one per card ---------------------------------------------------------------------


async def test_points_cash_is_exactly_the_book_example(client: BackendClient, sim: BackendSimulator) -> None:
    body = sale("points-cash")
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
    assert list(detail) == ["cardNo64", "bank", "paymentOrderNo", "pointSale", "qrCode1", "qrCode2", "qrCode3",
                            "barCode1", "barCode2", "barCode3"]
    assert sim.ledger.points("points-cash") == 10_000


async def test_approval_has_the_book_shape(client: BackendClient) -> None:
    body = sale("points-cash")
    reply = await redeem(client, body)
    assert list(reply.body) == [
        "traceNo", "orderNo", "transDate", "returnCode", "returnDesc", "paidAmount", "receiptAmount",
        "invoiceAmount", "currency", "goodsDetail", "fundChannel", "printDetail", "memberDetail",
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
    client: BackendClient, sim: BackendSimulator, card: str, undiscount: str,
    channels: list[tuple[str, str]], points: int, balance: Decimal,
) -> None:
    reply = await redeem(client, sale(card, undiscount=undiscount))
    assert reply.approved, reply.body["returnDesc"]
    assert amounts(reply) == channels
    assert sum(D(amount) for _, amount in channels) == D("40.8")
    assert sim.ledger.points(card) == points
    assert sim.ledger.balance(card) == balance
    assert reply.body["printDetail"]["cardNo64"] == CARDS[card].pan[:6] + "****" + CARDS[card].pan[-4:]


async def test_member_reply_carries_the_new_balance(client: BackendClient) -> None:
    reply = await redeem(client, sale("member"))
    assert reply.body["memberDetail"]["balance"] == D("959.20")
    assert '"balance":959.20' in jsonio.dumps(reply.body)
    assert reply.body["memberDetail"]["memberId"] == "M000001545"


# --- declines ------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", [name for name, card in CARDS.items() if card.usage is not None])
async def test_wrong_pin_is_55_and_changes_nothing(client: BackendClient, sim: BackendSimulator, card: str) -> None:
    before = sim.ledger.points(card), sim.ledger.balance(card)
    body = sale(card, pin="000000")
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
async def test_insufficient_is_51(client: BackendClient, sim: BackendSimulator, card: str, total: str,
                                  desc: str) -> None:
    reply = await redeem(client, sale(card, total=total))
    assert (reply.return_code, reply.body["returnDesc"]) == ("51", desc)
    assert sim.ledger.points(card) == CARDS[card].points
    assert sim.ledger.balance(card) == CARDS[card].balance


async def test_points_cash_book_card_cannot_pay_all_points_but_never_51(client: BackendClient) -> None:
    reply = await redeem(client, sale("points-cash", total="1000"))
    assert amounts(reply) == [("001", "980"), ("002", "20")]


async def test_unknown_card_is_14(client: BackendClient) -> None:
    reply = await redeem(client, sale("unknown"))
    assert (reply.return_code, reply.body["returnDesc"]) == ("14", "unknown card")


async def test_duplicate_trace_no_is_94_and_applied_once(client: BackendClient, sim: BackendSimulator) -> None:
    body = sale("points")
    first = await redeem(client, body)
    second = await redeem(client, body)
    assert first.approved
    assert (second.return_code, second.body["returnDesc"]) == ("94", "duplicate traceNo")
    assert sim.ledger.submissions(body["traceNo"]) == 2
    assert sim.ledger.points("points") == 500_000 - 40_800
    record = sim.ledger.get(body["traceNo"])
    assert record is not None
    assert record.points_delta == -40_800


async def test_a_declined_trace_no_cannot_be_reused(client: BackendClient, sim: BackendSimulator) -> None:
    trace = trace_no()
    assert (await redeem(client, sale("points", pin="000000", trace=trace))).return_code == "55"
    assert (await redeem(client, sale("points", trace=trace))).return_code == "94"
    assert sim.ledger.points("points") == 500_000


# --- inquiry -------------------------------------------------------------------------------------


async def test_inquiry_of_an_approved_sale(client: BackendClient) -> None:
    original = await redeem(client, sale("points-cash"))
    inquiry = {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]}
    reply = await client.submit("inquiry", inquiry)
    assert reply.approved
    assert reply.body["traceNo"] == inquiry["traceNo"]
    assert reply.body["originalTraceNo"] == original.body["traceNo"]
    for name in ("orderNo", "transDate", "paidAmount", "fundChannel", "printDetail", "memberDetail"):
        assert reply.body[name] == original.body[name]


async def test_inquiry_of_a_declined_sale_returns_its_decline(client: BackendClient) -> None:
    original = await redeem(client, sale("points", pin="000000"))
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert (reply.return_code, reply.body["returnDesc"]) == ("55", "incorrect PIN")


async def test_inquiry_of_an_unknown_trace_no_is_25(client: BackendClient) -> None:
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": "nope"})
    assert (reply.return_code, reply.body["returnDesc"]) == ("25", "original transaction not found")


async def test_inquiry_of_a_voided_sale_is_23(client: BackendClient) -> None:
    original = await redeem(client, sale("prepaid"))
    await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert (reply.return_code, reply.body["returnDesc"]) == ("23", "original transaction was voided")


async def test_inquiry_trace_no_is_no_repeat_too(client: BackendClient, sim: BackendSimulator) -> None:
    original = await redeem(client, sale("points"))
    inquiry = {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]}
    assert (await client.submit("inquiry", inquiry)).approved
    assert (await client.submit("inquiry", inquiry)).return_code == "94"
    assert sim.ledger.submissions(inquiry["traceNo"]) == 2


# --- void ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("card", ["points", "points-cash", "privilege", "privilege-cash", "prepaid", "member"])
async def test_void_restores_the_card(client: BackendClient, sim: BackendSimulator, card: str) -> None:
    original = await redeem(client, sale(card))
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


async def test_member_void_reports_the_restored_balance(client: BackendClient) -> None:
    original = await redeem(client, sale("member"))
    reply = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert reply.body["memberDetail"]["balance"] == D("1000.00")


async def test_void_twice_is_22(client: BackendClient, sim: BackendSimulator) -> None:
    original = await redeem(client, sale("points"))
    first = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    second = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": original.body["traceNo"]})
    assert first.approved
    assert (second.return_code, second.body["returnDesc"]) == ("22", "already voided")
    assert sim.ledger.points("points") == 500_000


async def test_void_of_an_unknown_trace_no_is_25(client: BackendClient) -> None:
    reply = await client.submit("voidCardSale", {"traceNo": trace_no(), "originalTraceNo": "nope"})
    assert reply.return_code == "25"


# --- signatures ----------------------------------------------------------------------------------


async def test_bad_request_signature_is_63(sim: BackendSimulator) -> None:
    # The client cannot verify a reply signed with the other key, so it reads this one unverified.
    wrong = BackendClient(settings_for(sim.url, verify_responses=False), IdentitySettings(), SecretStr("wrong"))
    body = sale("points")
    try:
        reply = await redeem(wrong, body)
    finally:
        await wrong.aclose()
    assert (reply.return_code, reply.body["returnDesc"]) == ("63", "signature verification failed")
    assert sim.ledger.points("points") == 500_000
    assert sim.ledger.submissions(body["traceNo"]) == 1


async def test_bad_key_with_verification_on_is_unknown(sim: BackendSimulator) -> None:
    wrong = BackendClient(settings_for(sim.url), IdentitySettings(), SecretStr("wrong"))
    try:
        with pytest.raises(BackendOutcomeUnknown, match="signature"):
            await redeem(wrong, sale("points"))
    finally:
        await wrong.aclose()


async def test_truncated_signatures_without_body_interoperate() -> None:
    simulator = BackendSimulator(include_body=False, truncate=16)
    url = await simulator.start()
    backend = BackendClient(settings_for(url, include_body=False, truncate=16), IdentitySettings(),
                            SecretStr(TEST_SIGNING_KEY))
    try:
        assert (await redeem(backend, sale("points"))).approved
    finally:
        await backend.aclose()
        await simulator.stop()


# --- processed, then the reply goes wrong: UNKNOWN, resolved by inquiry (R7) -----------------------


@pytest.mark.parametrize("fault", [Fault.DELAY, Fault.HTTP_500, Fault.NOT_JSON, Fault.BAD_SIGN, Fault.NO_SIGN,
                                   Fault.WRONG_TRACE])
async def test_lost_reply_is_unknown_and_inquiry_finds_the_approval(
    client: BackendClient, sim: BackendSimulator, fault: Fault
) -> None:
    sim.faults.add(fault, action="cardRedemption", delay_s=2.0)
    body = sale("points")
    with pytest.raises(BackendOutcomeUnknown):
        await redeem(client, body)
    assert sim.ledger.submissions(body["traceNo"]) == 1
    assert sim.ledger.points("points") == 500_000 - 40_800
    reply = await client.submit("inquiry", {"traceNo": trace_no(), "originalTraceNo": body["traceNo"]})
    assert reply.approved
    assert len(sim.faults) == 0


async def test_ledger_endpoint_over_the_socket(client: BackendClient, sim: BackendSimulator) -> None:
    body = sale("points-cash")
    await redeem(client, body)
    await redeem(client, body)
    base = sim.url.split("/ebuyweb-posp")[0]
    async with httpx.AsyncClient() as http:
        ledger = jsonio.loads((await http.get(f"{base}/_sim/ledger")).content)
    record = ledger["transactions"][body["traceNo"]]
    assert (record["submissions"], record["state"], record["pointsDelta"]) == (2, "approved", -20_000)
    assert record["fundChannel"][1] == {"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "20"}
    assert ledger["balances"]["points-cash"] == {"points": 10_000, "balance": 0}
