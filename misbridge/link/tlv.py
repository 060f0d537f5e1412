"""TLV fields (§4): ``TAG (2 bytes, big endian) | LENGTH (2 bytes packed BCD) | VALUE``."""

from __future__ import annotations

from collections.abc import Iterable

from misbridge.errors import FramingError, MessageError
from misbridge.link.bcd import MAX_BCD_LENGTH, decode_bcd_length, encode_bcd_length

__all__ = ["MAX_TAG", "TLV_HEADER_LEN", "decode_tlvs", "encode_tlvs"]

#: Largest tag: 2 bytes, big endian.
MAX_TAG = 0xFFFF
#: TAG (2) + LENGTH (2).
TLV_HEADER_LEN = 4


def encode_tlvs(items: Iterable[tuple[int, bytes]]) -> bytes:
    """Concatenate ``(tag, value)`` pairs as TLVs, in the order given.

    Raises:
        ValueError: a tag is outside 0..0xFFFF or repeated, or a value is longer than 9999
            bytes (the receiver would reject the message).
    """
    out = bytearray()
    seen: set[int] = set()
    for tag, value in items:
        if not 0 <= tag <= MAX_TAG:
            raise ValueError(f"TLV tag must be 0..0x{MAX_TAG:04X}, got {tag}")
        if tag in seen:
            raise ValueError(f"TLV tag 0x{tag:04X} repeated")
        if len(value) > MAX_BCD_LENGTH:
            raise ValueError(f"TLV 0x{tag:04X} value is {len(value)} bytes, at most {MAX_BCD_LENGTH}")
        seen.add(tag)
        out += tag.to_bytes(2, "big") + encode_bcd_length(len(value)) + value
    return bytes(out)


def decode_tlvs(data: bytes) -> dict[int, bytes]:
    """Split ``data`` into ``{tag: value}``, keeping the order of arrival.

    Unknown tags are kept: choosing which tags matter is the message layer's job (§4 says
    the receiver skips them, for forward compatibility).

    Raises:
        MessageError: a TLV is truncated (header or value past the end of ``data``), its
            LENGTH is not packed BCD, or a tag is repeated.
    """
    fields: dict[int, bytes] = {}
    pos = 0
    while pos < len(data):
        if len(data) - pos < TLV_HEADER_LEN:
            raise MessageError(f"truncated TLV header at offset {pos}")
        tag = int.from_bytes(data[pos : pos + 2], "big")
        try:
            length = decode_bcd_length(data[pos + 2 : pos + TLV_HEADER_LEN])
        except FramingError as err:
            raise MessageError(f"TLV 0x{tag:04X}: {err}") from err
        start = pos + TLV_HEADER_LEN
        if start + length > len(data):
            raise MessageError(f"TLV 0x{tag:04X} LENGTH {length} runs past the end of DATA")
        if tag in fields:
            raise MessageError(f"TLV 0x{tag:04X} repeated")
        fields[tag] = data[start : start + length]
        pos = start + length
    return fields
