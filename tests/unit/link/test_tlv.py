"""TLV fields (§4)."""

from __future__ import annotations

import pytest

from misbridge.errors import MessageError
from misbridge.link import decode_tlvs, encode_tlvs


def test_encode_layout() -> None:
    assert encode_tlvs([(0x9F22, b"7")]) == bytes.fromhex("9F22 0001 37")
    assert encode_tlvs([(0x9F02, b"")]) == bytes.fromhex("9F02 0000")
    assert encode_tlvs([(0x0001, b"x" * 123)]) == bytes.fromhex("0001 0123") + b"x" * 123


def test_round_trip_keeps_order() -> None:
    items = [(0x9F22, b"7"), (0x9F01, b"4080"), (0x0000, b""), (0xFFFF, b"\x00\xff")]
    decoded = decode_tlvs(encode_tlvs(items))
    assert list(decoded.items()) == items


def test_empty() -> None:
    assert encode_tlvs([]) == b""
    assert decode_tlvs(b"") == {}


def test_unknown_tags_are_kept() -> None:
    assert decode_tlvs(bytes.fromhex("ABCD 0002 0102")) == {0xABCD: b"\x01\x02"}


@pytest.mark.parametrize(
    ("items", "match"),
    [
        ([(0x10000, b"")], "tag"),
        ([(-1, b"")], "tag"),
        ([(1, b""), (1, b"")], "repeated"),
        ([(1, b"x" * 10000)], "at most 9999"),
    ],
)
def test_encode_rejects(items: list[tuple[int, bytes]], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        encode_tlvs(items)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (bytes.fromhex("9F"), "truncated TLV header"),
        (bytes.fromhex("9F22 00"), "truncated TLV header"),
        (bytes.fromhex("9F22 0001 37 9F"), "truncated TLV header"),
        (bytes.fromhex("9F22 0002 37"), "past the end"),
        (bytes.fromhex("9F22 000A") + b"x" * 10, "not packed BCD"),
        (bytes.fromhex("9F22 0001 37 9F22 0001 38"), "repeated"),
    ],
)
def test_decode_rejects(data: bytes, match: str) -> None:
    with pytest.raises(MessageError, match=match):
        decode_tlvs(data)
