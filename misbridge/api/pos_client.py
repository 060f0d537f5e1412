"""A minimal cashier-POS client for the e-Buy socket front door (demo, tests, benchmarks)."""

from __future__ import annotations

import asyncio
from typing import Any

from misbridge.ebuy.envelope import (
    LENGTH_PREFIX_LEN,
    Envelope,
    encode_envelope,
    frame_message,
    parse_envelope,
    read_length_prefix,
)


async def read_framed(reader: asyncio.StreamReader) -> bytes:
    """Read one length-prefixed message and return its JSON bytes."""
    length = read_length_prefix(await reader.readexactly(LENGTH_PREFIX_LEN))
    return await reader.readexactly(length)


async def socket_request(host: str, port: int, envelope: Envelope, *, reply_timeout_s: float = 300.0) -> Envelope:
    """Send one e-Buy message over a new connection and return the decoded answer."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(frame_message(encode_envelope(envelope)))
        await writer.drain()
        return parse_envelope(await asyncio.wait_for(read_framed(reader), reply_timeout_s))
    finally:
        writer.close()
        await writer.wait_closed()


def envelope_for(
    action: str, body: dict[str, Any], *, device_no: str = "POS01", shop_no: str = "CN123456", brand: str = "663"
) -> Envelope:
    """An envelope as a POS written from the book would build it."""
    return Envelope(action=action, device_no=device_no, shop_no=shop_no, brand=brand, body=body)
