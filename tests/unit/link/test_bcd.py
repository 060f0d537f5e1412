"""Packed BCD lengths (§2 LEN, §4 LENGTH)."""

from __future__ import annotations

import pytest

from misbridge.errors import FramingError
from misbridge.link.bcd import MAX_BCD_LENGTH, decode_bcd_length, encode_bcd_length


@pytest.mark.parametrize(
    ("n", "encoded"),
    [(0, b"\x00\x00"), (5, b"\x00\x05"), (123, b"\x01\x23"), (1019, b"\x10\x19"), (9999, b"\x99\x99")],
)
def test_examples(n: int, encoded: bytes) -> None:
    assert encode_bcd_length(n) == encoded
    assert decode_bcd_length(encoded) == n


def test_every_value_round_trips() -> None:
    assert all(decode_bcd_length(encode_bcd_length(n)) == n for n in range(MAX_BCD_LENGTH + 1))


@pytest.mark.parametrize("n", [-1, 10000])
def test_encode_rejects_out_of_range(n: int) -> None:
    with pytest.raises(ValueError, match=r"0\.\.9999"):
        encode_bcd_length(n)


@pytest.mark.parametrize("encoded", [b"\x00\x0a", b"\x0f\x00", b"\xa0\x00", b"\x00\xf0", b"\xff\xff"])
def test_decode_rejects_non_bcd_nibbles(encoded: bytes) -> None:
    with pytest.raises(FramingError, match="not packed BCD"):
        decode_bcd_length(encoded)


@pytest.mark.parametrize("encoded", [b"", b"\x01", b"\x00\x00\x01"])
def test_decode_rejects_wrong_size(encoded: bytes) -> None:
    with pytest.raises(ValueError, match="2 bytes"):
        decode_bcd_length(encoded)
