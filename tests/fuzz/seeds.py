"""Seed corpora and libFuzzer dictionaries, built from real messages at run time.

Seeds are what each decoder sees on a good day: every PIN-pad message of docs/device-protocol.md
framed as on the line, the book's published examples (:mod:`misbridge.ebuy.examples`) framed as on
the socket door, and their bodies as the HTTP door receives them.  Building them from code keeps
them in step with the encoders; nothing binary is stored in the repository.  The dictionaries hold
the tokens a mutation is unlikely to invent: control bytes and tags, JSON escapes, field names.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

from misbridge.ebuy import jsonio
from misbridge.ebuy.carddata import CARD_DATA_FIELDS
from misbridge.ebuy.envelope import Envelope, encode_envelope, frame_message
from misbridge.ebuy.examples import CARD_REDEMPTION_REQUEST_TEXT, MESSAGE_STRUCTURE_EXAMPLE, card_redemption_request
from misbridge.ebuy.requests import BOOK_ACTIONS
from misbridge.link import (
    Cancel,
    CardData,
    Choice,
    Choose,
    CodeData,
    ControlByte,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceStatus,
    DisplayText,
    LoadMasterKey,
    LoadWorkingKey,
    Message,
    MessageType,
    PinBlock,
    Progress,
    ReadCard,
    ReadCode,
    ReadPin,
    Result,
    StatusRequest,
    Tag,
    encode_ack,
    encode_frame,
    encode_message,
)

__all__ = ["dictionary", "seeds", "write_dictionary", "write_seeds"]

# One of every message, both directions, with their optional fields set.
_MESSAGES: Final[tuple[Message, ...]] = (
    DeviceInfoRequest(1),
    ReadCard(2, 4080, 60, "请刷卡 Please insert card"),
    ReadPin(3, 4080, 60, "请输入密码", key_index=2, pin_min_len=4, pin_max_len=6),
    Cancel(4),
    DisplayText(5, "Approved 已批准", display_seconds=3),
    StatusRequest(6),
    LoadWorkingKey(7, 1, "0123456789ABCDEF0123456789ABCDEF", "A1B2C3"),
    LoadMasterKey(7, "0123456789ABCDEF0123456789ABCDEF", "A1B2C3"),
    DeviceInfo(1, "MISPOS-100", "1.2.3", "SN0001", 1),
    CardData(2, "01", "622562******8888", "AB" * 8, "CD" * 16, "2812", "EF" * 8, "01" * 8, "001", "9F" * 20),
    PinBlock(3, "0F" * 8, 1),
    Progress(3, "04", 2),
    DeviceStatus(6, "01"),
    Result(4, "08", "cancelled by host"),
    ReadCode(8, 60, "请扫码 Scan the code", amount_minor=1250),
    Choose(9, 60, ("小杯咖啡", "Large coffee"), "Choose"),
    CodeData(8, "280123121234567890", "02"),
    Choice(9, 2),
)


def _link_seeds() -> list[bytes]:
    payloads = [encode_message(m) for m in _MESSAGES]
    frames = [encode_frame(bytes([seq]) + p) for seq, p in enumerate(payloads, start=1)]
    # Header (chunking seed, bit 0 of the first byte: a frame of ours in flight), then the line.
    out = [b"\x00\x00" + f for f in frames]
    out += [b"\x00\x00" + p for p in payloads]  # bare payloads reach the message parser directly
    out.append(b"\x01\x00" + encode_ack(1))
    out.append(b"\x01\x07" + bytes([ControlByte.NAK]) * 5)
    out.append(b"\x00\x05" + b"noise" + frames[1] + b"\x02\x99" + frames[2])
    out.append(b"\x01\x03" + frames[8] + frames[8] + encode_ack(1) + frames[9])
    return out


def _envelope(action: str, body: Mapping[str, Any], **extra: Any) -> bytes:
    return frame_message(encode_envelope(Envelope(action, "POS01", "CN123456", "663", dict(body), dict(extra))))


def _book_bodies() -> dict[str, dict[str, Any]]:
    redemption = card_redemption_request()
    inquiry_json = base64.b64decode(jsonio.loads(MESSAGE_STRUCTURE_EXAMPLE[2:])["body"])
    return {
        "cardRedemption": redemption,
        "cardPayment": {**redemption, "traceNo": "99000009100010101732124", "acquirer": "01"},
        "inquiry": jsonio.loads(inquiry_json),
    }


def _envelope_seeds() -> list[bytes]:
    bodies = _book_bodies()
    framed = [_envelope(action, body) for action, body in bodies.items()]
    streams = [
        MESSAGE_STRUCTURE_EXAMPLE,
        *framed,
        b"".join(framed),  # one connection, several requests
        _envelope("inquiry", bodies["inquiry"], sign="0123456789abcdef", timestamp="20260101120000"),
        _envelope("summary", {"traceNo": "1"}),
        frame_message(b'{"action":"inquiry"}'),
    ]
    # Mode byte: even, the stream as it is; odd, choices that write envelopes (zeros: the book's).
    return [b"\x00" + stream for stream in streams] + [b"\x01" + bytes(16), b"\x01" + bytes(range(64))]


def _request_seeds() -> list[bytes]:
    bodies = _book_bodies()
    texts = {action: jsonio.dumps(body).encode("utf-8") for action, body in bodies.items()}
    # Action selector, then the mode byte: even, JSON bytes follow; odd, choices that write JSON.
    return [
        b"\x00\x00" + CARD_REDEMPTION_REQUEST_TEXT.encode("utf-8"),  # selector 0: cardRedemption
        b"\x00\x00" + texts["cardRedemption"],
        b"\x01\x00" + texts["cardPayment"],  # selector 1: cardPayment
        b"\x02\x00" + texts["inquiry"],  # selector 2: inquiry
        b"\x80\x00" + texts["inquiry"],  # a book action misbridge does not handle
        b"\xffrefundCardSale\n\x00" + texts["inquiry"],  # free-form action (first line), then the body
        b"\x00\x01" + bytes(16),  # the book's card redemption, written from choices
        b"\x01\x01" + bytes([1]) + bytes(15),  # the book's card payment
        b"\x00\x01" + bytes(range(64)),
    ]


_SEEDS: Final = {"link": _link_seeds, "envelope": _envelope_seeds, "request": _request_seeds}


def seeds(target: str) -> list[bytes]:
    """The seed inputs of ``target`` (a key of :data:`tests.fuzz.targets.TARGETS`)."""
    return _SEEDS[target]()


def write_seeds(target: str, folder: Path) -> int:
    """Write the seeds of ``target`` into ``folder``, one file each; return how many."""
    folder.mkdir(parents=True, exist_ok=True)
    items = seeds(target)
    for number, data in enumerate(items):
        (folder / f"seed-{number:03d}").write_bytes(data)
    return len(items)


_JSON_TOKENS: Final = (
    b"{", b"}", b"[", b"]", b":", b",", b'"', b'""', b"{}", b"[]", b"true", b"false", b"null",
    b"\\u", b"\\ud800", b"\\udfff", b"\\u0000", b"\\ud83d\\ude00", b"\\\\", b'\\"',
    b"-0", b"0.001", b"1e999", b"1E-400", b"-1", b"99999999999999999999", b"NaN", b"Infinity",
    b"\xed\xa0\x80", b"\xc0\x80", b"\xff",
)  # fmt: skip
_BODY_KEYS: Final = (
    "traceNo", "originalTraceNo", "totalAmount", "undiscountAmount", "goodsDetail", "memberDetail",
    "goodsCategory", "goodsId", "goodsName", "price", "quantity", "rebateCode", "acquirer",
    "memberId", "memberName", "grade", "status", "balance", "pointBalance",
    "cardNo", "pan", "cvv", *sorted(CARD_DATA_FIELDS),
)  # fmt: skip
_ENVELOPE_KEYS: Final = ("action", "deviceNo", "shopNo", "brand", "body", "sign")


def _quoted(names: Iterable[str]) -> list[bytes]:
    return [b'"' + name.encode("utf-8") + b'"' for name in names]


def _link_tokens() -> list[bytes]:
    controls = [bytes([c]) for c in ControlByte]
    tags = [tag.to_bytes(2, "big") for tag in Tag]
    types = [bytes([t]) for t in MessageType]
    lengths = [b"\x00\x00", b"\x00\x02", b"\x10\x19", b"\x99\x99", b"\x0a\x00"]
    return controls + tags + types + lengths


def dictionary(target: str) -> list[bytes]:
    """The dictionary tokens of ``target``."""
    if target == "link":
        return _link_tokens()
    tokens = list(_JSON_TOKENS) + _quoted(_BODY_KEYS) + _quoted((*BOOK_ACTIONS, "cardRedemption"))
    if target == "envelope":
        tokens += [*_quoted(_ENVELOPE_KEYS), b"\x00\xe7", b"\xff\xff", b"\x00\x00", b"ewo=", b"e30="]
    return tokens


def _dict_entry(token: bytes) -> str:
    # libFuzzer's dictionary syntax: a quoted string, \\ \" and \xNN escapes.
    body = "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02X}" for b in token)
    return f'"{body}"'


def write_dictionary(target: str, path: Path) -> None:
    """Write the dictionary of ``target`` in libFuzzer's ``-dict=`` format."""
    path.write_text("".join(_dict_entry(t) + "\n" for t in dictionary(target)), encoding="ascii")
