"""Packed BCD lengths: the 2-byte LEN of a frame (§2) and the LENGTH of a TLV (§4).

``0x01 0x23`` is 123: each nibble is one decimal digit, most significant first.
"""

from __future__ import annotations

from misbridge.errors import FramingError

__all__ = ["MAX_BCD_LENGTH", "decode_bcd_length", "encode_bcd_length"]

# Four BCD digits in two bytes.
MAX_BCD_LENGTH = 9999
_BCD_SIZE = 2


def encode_bcd_length(n: int) -> bytes:
    """Encode ``n`` as 2 bytes of packed BCD.

    Raises:
        ValueError: ``n`` is outside 0..9999.
    """
    if not 0 <= n <= MAX_BCD_LENGTH:
        raise ValueError(f"BCD length must be 0..{MAX_BCD_LENGTH}, got {n}")
    digits = f"{n:04d}"
    return bytes(int(digits[i], 10) << 4 | int(digits[i + 1], 10) for i in (0, 2))


def decode_bcd_length(b: bytes) -> int:
    """Decode 2 bytes of packed BCD.

    Raises:
        ValueError: ``b`` is not exactly 2 bytes long (a caller bug, not line noise).
        FramingError: a nibble is not a decimal digit (0xA..0xF).
    """
    if len(b) != _BCD_SIZE:
        raise ValueError(f"a BCD length is {_BCD_SIZE} bytes, got {len(b)}")
    value = 0
    for byte in b:
        high, low = byte >> 4, byte & 0x0F
        if high > 9 or low > 9:
            raise FramingError(f"length byte 0x{byte:02X} is not packed BCD")
        value = value * 100 + high * 10 + low
    return value
