"""The e-Buy envelope and socket framing against the book's own example (§6.1, §6.2)."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path

import pytest

from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import (
    Envelope,
    decode_body,
    encode_envelope,
    frame_message,
    parse_envelope,
    read_length_prefix,
)
from misbridge.ebuy.examples import MESSAGE_STRUCTURE_EXAMPLE
from misbridge.errors import RequestError, ReturnCode

SPEC = Path(__file__).resolve().parents[4] / "shared" / "spec" / "ebuy-protocol-reference.md"
# The body as published: LF newlines, 9-space indents, 5 spaces before the brace (§6.2).
PUBLISHED_BODY_TEXT = (
    '{\n         "traceNo": "99000009100010101732123",\n         "originalTraceNo": "99000009100010101732124"\n     }'
)


def test_book_example_is_reproduced_byte_for_byte() -> None:
    fields = {
        "action": "inquiry",
        "deviceNo": "POS01",
        "shopNo": "CN123456",
        "brand": "663",
        "body": base64.b64encode(PUBLISHED_BODY_TEXT.encode("utf-8")).decode("ascii"),
    }
    frame = frame_message(jsonio.dumps(fields).encode("utf-8"))
    assert frame == MESSAGE_STRUCTURE_EXAMPLE
    assert frame[:2] == b"\x00\xe7"
    assert read_length_prefix(frame[:2]) == 231 == len(frame) - 2


@pytest.mark.skipif(not SPEC.is_file(), reason="shared/spec not beside the checkout")
def test_example_constant_matches_the_spec_text() -> None:
    published_json = MESSAGE_STRUCTURE_EXAMPLE[2:].decode("ascii")
    assert f"0x00 0xE7{published_json}" in SPEC.read_text(encoding="utf-8")


def test_book_example_parses_to_the_inquiry_body() -> None:
    envelope = parse_envelope(MESSAGE_STRUCTURE_EXAMPLE[2:])
    assert envelope.action == "inquiry"
    assert (envelope.device_no, envelope.shop_no, envelope.brand) == ("POS01", "CN123456", "663")
    assert envelope.body == {"traceNo": "99000009100010101732123", "originalTraceNo": "99000009100010101732124"}


def test_round_trip_keeps_decimals_and_chinese_text() -> None:
    body = {"traceNo": "T1", "totalAmount": Decimal("40.8"), "balance": Decimal("1000.00"), "goodsName": "牙膏"}
    envelope = Envelope("cardRedemption", "POS01", "CN123456", "663", body, extra={"sign": "AB"})
    raw = encode_envelope(envelope)
    again = parse_envelope(raw)
    assert again == envelope
    assert b'"sign":"AB"' in raw
    assert '"balance":1000.00' in base64.b64decode(jsonio.loads(raw)["body"]).decode("utf-8")


@pytest.mark.parametrize(
    ("raw", "code", "field"),
    [
        (b"not json", ReturnCode.NOT_JSON, ""),
        (b"[1, 2]", ReturnCode.BAD_ENVELOPE, ""),
        (b'{"action":"inquiry","deviceNo":"P","shopNo":"S","brand":"B"}', ReturnCode.BAD_ENVELOPE, "body"),
        (b'{"action":1,"deviceNo":"P","shopNo":"S","brand":"B","body":""}', ReturnCode.BAD_ENVELOPE, "action"),
        (b'{"action":"a","deviceNo":"P","shopNo":"S","brand":"B","body":"%%%"}', ReturnCode.BAD_BODY_ENCODING, "body"),
        (b'{"action":"a","deviceNo":"P","shopNo":"S","brand":"B","body":"WzFd"}', ReturnCode.BAD_BODY_ENCODING, "body"),
    ],
)
def test_bad_envelopes_name_the_problem(raw: bytes, code: ReturnCode, field: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_envelope(raw)
    assert caught.value.return_code is code
    assert caught.value.field == field


def test_body_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(RequestError) as caught:
        decode_body(base64.b64encode(b"\xff\xfe{}").decode())
    assert caught.value.return_code is ReturnCode.BAD_BODY_ENCODING


def test_frame_refuses_more_than_65535_bytes() -> None:
    with pytest.raises(ValueError, match="2-byte length prefix"):
        frame_message(b"x" * 65536)


# --- hostile envelopes (issue 10, items 3, 4 and 8) ----------------------------------------------

PAN = "4111111111111111"


def _envelope(body_text: str = '{"traceNo":"T1","originalTraceNo":"T0"}', **fields: str) -> bytes:
    values = {"action": "inquiry", "deviceNo": "POS01", "shopNo": "CN123456", "brand": "663", **fields}
    values["body"] = base64.b64encode(body_text.encode("utf-8")).decode("ascii")
    return jsonio.dumps(values).encode("utf-8")


def _refusal(raw: bytes) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_envelope(raw)
    return caught.value


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b'{"action":"inquiry","action":"cardRedemption","deviceNo":"P","shopNo":"S","brand":"B","body":""}',
         "duplicate key 'action'"),
        (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "at most 32"),
        (b"[" * 10_000 + b"]" * 10_000, "at most 32"),
        (b'{"action":"inquiry","n":' + b"7" * 5_000 + b"}", "5000 digits"),
        (b'{"action":"\\udfff","deviceNo":"P","shopNo":"S","brand":"B","body":""}', "surrogate"),
    ],
)  # fmt: skip
def test_envelopes_beyond_the_json_limits_get_mb01(raw: bytes, says: str) -> None:
    refusal = _refusal(raw)
    assert refusal.return_code is ReturnCode.NOT_JSON
    assert says in str(refusal)
    assert len(str(refusal)) < 300


@pytest.mark.parametrize(
    ("body_text", "says"),
    [
        ('{"traceNo":"T1","traceNo":"T2","originalTraceNo":"T0"}', "duplicate key 'traceNo'"),
        ('{"traceNo":"T1","goodsDetail":[{"price":8,"price":0}]}', "duplicate key 'price'"),
        ('{"x":' + "[" * 10_000 + "]" * 10_000 + "}", "at most 32"),
        ('{"quantity":' + "9" * 4_301 + "}", "4301 digits"),
        ('{"traceNo":"\\udfff"}', "surrogate"),
    ],
)
def test_bodies_beyond_the_json_limits_get_mb04(body_text: str, says: str) -> None:
    refusal = _refusal(_envelope(body_text))
    assert (refusal.return_code, refusal.field) == (ReturnCode.BAD_BODY_ENCODING, "body")
    assert says in str(refusal)
    assert len(str(refusal)) < 300


@pytest.mark.parametrize(
    ("fields", "path"),
    [
        ({"deviceNo": f"POS {PAN}"}, "deviceNo"),
        ({"shopNo": "4111-1111-1111-1111"}, "shopNo"),
        ({"brand": "4111 1111 1111 1111"}, "brand"),
        ({"action": "pay 4111 1111 1111 1111"}, "action"),
        ({"cardNo": "x"}, "cardNo"),
        ({"TRACK2": "x"}, "TRACK2"),
    ],
)
def test_card_data_in_the_envelope_gets_mb16_without_the_value(fields: dict[str, str], path: str) -> None:
    refusal = _refusal(_envelope(**fields))
    assert (refusal.return_code, refusal.field) == (ReturnCode.CARD_DATA_REFUSED, path)
    assert "1111" not in str(refusal)


def test_an_older_books_signature_is_not_read_as_text() -> None:
    raw = jsonio.dumps({**jsonio.loads(_envelope()), "sign": "AB4111111111111111CD", "timestamp": "20260501123000"})
    assert parse_envelope(raw.encode("utf-8")).extra["sign"] == "AB4111111111111111CD"
