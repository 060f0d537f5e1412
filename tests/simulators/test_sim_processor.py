"""The backend simulator in-process (httpx.ASGITransport): envelope checks, signing, ledger JSON."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from misbridge.ebuy import jsonio, signing
from misbridge.ebuy.envelope import decode_body, encode_body
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator
from simulators.cards import CARDS
from simulators.crypto import encrypt_pin_block, encrypt_text
from tests.keys import issued_key_of, sign_in_trace_no

PATH = "/ebuyweb-posp/api"


@pytest.fixture
def sim() -> BackendSimulator:
    return BackendSimulator()


@pytest.fixture
async def http(sim: BackendSimulator) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=sim.app), base_url="http://sim") as client:
        yield client


def envelope(action: str, body: dict[str, Any], *, key: str | None = TEST_SIGNING_KEY) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "action": action,
        "deviceNo": "POS01",
        "shopNo": "CN123456",
        "brand": "663",
        "body": encode_body(body),
    }
    if key is not None:
        fields["sign"] = signing.sign(fields, key)
    return fields


def sale(trace_no: str, key: bytes, card_name: str = "points-cash", total: str = "40.8") -> dict[str, Any]:
    """A cardRedemption body with the card's data under ``key``, the terminal's signed-in working key."""
    card = CARDS[card_name]
    return {
        "traceNo": trace_no,
        "totalAmount": Decimal(total),
        "undiscountAmount": 0,
        "goodsDetail": [],
        "cardInfo": {
            "cardNo": encrypt_text(card.pan, key),
            "password": encrypt_pin_block(card.pin, card.pan, key),
            "valid": card.expiry,
            "cardType": card.card_type,
        },
    }


async def post(http: httpx.AsyncClient, action: str, content: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    response = await http.post(f"{PATH}/{action}", content=content)
    assert response.status_code == 200
    reply = jsonio.loads(response.content)
    assert signing.verify(reply, TEST_SIGNING_KEY), "every simulator reply is signed"
    return reply, decode_body(reply["body"])


def dumps(value: Any) -> bytes:
    return jsonio.dumps(value).encode()


def sign_in_request(**envelope_options: Any) -> dict[str, Any]:
    """The signIn envelope of POS01 (the deviceNo of every envelope here)."""
    return envelope("signIn", {"traceNo": sign_in_trace_no()}, **envelope_options)


@pytest.fixture(name="key")
async def signed_in_key(http: httpx.AsyncClient) -> bytes:
    """POS01 signed in: the working key its card data must be encrypted with."""
    _, body = await post(http, "signIn", dumps(sign_in_request()))
    return issued_key_of(body)


async def test_reply_echoes_the_envelope(http: httpx.AsyncClient, key: bytes) -> None:
    reply, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", sale("P1", key))))
    echoed = [reply[k] for k in ("action", "deviceNo", "shopNo", "brand")]
    assert echoed == ["cardRedemption", "POS01", "CN123456", "663"]
    assert body["returnCode"] == "00"


async def test_not_json_is_format_error(http: httpx.AsyncClient) -> None:
    reply, body = await post(http, "cardRedemption", b"hello")
    assert body["returnCode"] == "30"
    assert body["returnDesc"].startswith("format error")
    assert reply["action"] == "cardRedemption"


async def test_undecodable_body_is_format_error(http: httpx.AsyncClient, sim: BackendSimulator) -> None:
    fields = envelope("cardRedemption", {})
    fields["body"] = "%%%"
    fields["sign"] = signing.sign(fields, TEST_SIGNING_KEY)
    _, body = await post(http, "cardRedemption", dumps(fields))
    assert (body["returnCode"], body["traceNo"]) == ("30", "")


async def test_bad_signature_is_63_and_counted(http: httpx.AsyncClient, sim: BackendSimulator, key: bytes) -> None:
    _, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", sale("P2", key), key="wrong")))
    assert (body["returnCode"], body["returnDesc"]) == ("63", "signature verification failed")
    assert body["traceNo"] == "P2"
    assert sim.ledger.submissions("P2") == 1
    assert sim.ledger.points("points-cash") == CARDS["points-cash"].points
    # A rejected submission does not use up the traceNo: the correctly signed one is processed.
    _, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", sale("P2", key))))
    assert body["returnCode"] == "00"
    assert sim.ledger.submissions("P2") == 2


async def test_unsigned_request_is_63(http: httpx.AsyncClient, key: bytes) -> None:
    _, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", sale("P3", key), key=None)))
    assert body["returnCode"] == "63"


async def test_unsupported_action_is_12(http: httpx.AsyncClient) -> None:
    _, body = await post(http, "downloadParams", dumps(envelope("downloadParams", {"traceNo": "P4"})))
    assert (body["returnCode"], body["returnDesc"]) == ("12", "unsupported action")


async def test_path_must_name_the_envelope_action(http: httpx.AsyncClient, key: bytes) -> None:
    _, body = await post(http, "inquiry", dumps(envelope("cardRedemption", sale("P5", key))))
    assert body["returnCode"] == "30"


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ({"totalAmount": "40.8"}, "totalAmount"),
        ({"totalAmount": Decimal("40.801")}, "totalAmount"),
        ({"totalAmount": -1}, "totalAmount"),
        ({"totalAmount": 0}, "positive"),
        ({"undiscountAmount": 50}, "positive"),
        ({"totalAmount": True}, "totalAmount"),
        ({"cardInfo": None}, "cardInfo"),
        ({"cardInfo": {"cardNo": "00"}}, "cardInfo"),
        ({"cardInfo": {"cardNo": "XYZ", "password": "00"}}, "whole 8-byte blocks"),
        ({"goodsDetail": "x"}, "goodsDetail"),
        ({"memberDetail": [1]}, "memberDetail"),
    ],
)
async def test_bad_sale_fields_are_format_errors(
    http: httpx.AsyncClient, change: dict[str, Any], detail: str, key: bytes
) -> None:
    _, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", {**sale("P6", key), **change})))
    assert body["returnCode"] == "30"
    assert detail in body["returnDesc"]


async def test_missing_trace_no_is_format_error(http: httpx.AsyncClient, key: bytes) -> None:
    body_in = sale("x", key)
    del body_in["traceNo"]
    _, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", body_in)))
    assert (body["returnCode"], body["returnDesc"]) == ("30", "format error: traceNo is required")


async def test_undecryptable_pin_block_is_incorrect_pin(http: httpx.AsyncClient, key: bytes) -> None:
    body_in = sale("P7", key)
    body_in["cardInfo"]["password"] = "00" * 8
    _, body = await post(http, "cardRedemption", dumps(envelope("cardRedemption", body_in)))
    assert body["returnCode"] == "55"


async def test_inquiry_needs_original_trace_no(http: httpx.AsyncClient) -> None:
    _, body = await post(http, "inquiry", dumps(envelope("inquiry", {"traceNo": "P8"})))
    assert body["returnCode"] == "30"


async def test_inquiry_of_itself_is_not_found(http: httpx.AsyncClient) -> None:
    _, body = await post(http, "inquiry", dumps(envelope("inquiry", {"traceNo": "P9", "originalTraceNo": "P9"})))
    assert body["returnCode"] == "25"


async def test_void_of_a_declined_or_non_sale_original(http: httpx.AsyncClient, key: bytes) -> None:
    await post(http, "cardRedemption", dumps(envelope("cardRedemption", sale("Q1", key, "points", "1000"))))  # 51
    await post(http, "inquiry", dumps(envelope("inquiry", {"traceNo": "Q2", "originalTraceNo": "Q1"})))
    for trace_no, original in (("Q3", "Q1"), ("Q4", "Q2")):
        request = {"traceNo": trace_no, "originalTraceNo": original}
        _, body = await post(http, "voidCardSale", dumps(envelope("voidCardSale", request)))
        assert body["returnCode"] == "25"


async def test_ledger_json(http: httpx.AsyncClient, key: bytes) -> None:
    await post(http, "cardRedemption", dumps(envelope("cardRedemption", sale("L1", key))))
    response = await http.get("/_sim/ledger")
    ledger = jsonio.loads(response.content)
    record = ledger["transactions"]["L1"]
    assert record["submissions"] == 1
    assert record["state"] == "approved"
    assert record["totalAmount"] == Decimal("40.8")
    assert record["pointsDelta"] == -20_000
    assert ledger["balances"]["points-cash"]["points"] == 10_000
    assert ledger["balances"]["prepaid"]["balance"] == Decimal("500.00")


async def test_signing_off(sim: BackendSimulator) -> None:
    unsigned = BackendSimulator(signing_key=None)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=unsigned.app), base_url="http://sim") as client:
        signed_in = await client.post(f"{PATH}/signIn", content=dumps(sign_in_request(key=None)))
        key = issued_key_of(decode_body(jsonio.loads(signed_in.content)["body"]))
        response = await client.post(
            f"{PATH}/cardRedemption", content=dumps(envelope("cardRedemption", sale("U1", key)))
        )
    reply = jsonio.loads(response.content)
    assert "sign" not in reply
    assert decode_body(reply["body"])["returnCode"] == "00"


def truncated_signed(fields: dict[str, Any]) -> bytes:
    fields["sign"] = signing.sign(fields, TEST_SIGNING_KEY, include_body=False, truncate=16)
    return dumps(fields)


async def test_truncated_body_excluded_signing() -> None:
    custom = BackendSimulator(include_body=False, truncate=16, prefix="/api/")
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=custom.app), base_url="http://sim") as client:
        signed_in = await client.post("/api/signIn", content=truncated_signed(sign_in_request(key=None)))
        key = issued_key_of(decode_body(jsonio.loads(signed_in.content)["body"]))
        fields = envelope("cardRedemption", sale("T1", key), key=None)
        response = await client.post("/api/cardRedemption", content=truncated_signed(fields))
    reply = jsonio.loads(response.content)
    assert len(reply["sign"]) == 16
    assert signing.verify(reply, TEST_SIGNING_KEY, include_body=False, truncate=16)
    assert decode_body(reply["body"])["returnCode"] == "00"
