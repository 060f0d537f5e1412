"""A reply misbridge cannot use ends the customer step at once (docs/device-protocol.md §6.1).

Each misbehaving pad answers the first READ_CARD (or READ_PIN) with something the host cannot
use, then behaves. Through the real driver: the step ends within a second with MB40 (not after
TIMEOUT_S + grace with MB21/MB22), the pad is told to CANCEL, the link stays up and the next
sale's card and PIN are read. What was wrong is logged; card data never is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from loguru import logger

from misbridge.device import MisPosV1Driver
from misbridge.errors import DeviceBadReply, DeviceTimeout, ReturnCode
from misbridge.link import (
    Cancel,
    CardData,
    Message,
    PinBlock,
    ReadCard,
    ReadPin,
    StatusRequest,
    Tag,
    encode_message,
    encode_tlvs,
)
from tests.unit.device.test_mispos import ENC, PadFactory, make_driver, pad_replies

MASKED = "622562******8888"
# Recognisable card data: none of it may reach a log line.
SECRET_PAN_HEX = "A1B2C3D4E5F60718"
SECRET_TRACK_HEX = "9A8B7C6D5E4F3021" * 2
SECRET_PIN_HEX = "F0E1D2C3B4A59687"


def _card_tlvs(rid: int, *, expiry: bytes = b"2812", drop: int | None = None) -> list[tuple[int, bytes]]:
    items = [
        (Tag.REQUEST_ID.value, str(rid).encode()),
        (Tag.CARD_TYPE.value, b"00"),
        (Tag.MASKED_PAN.value, MASKED.encode()),
        (Tag.ENC_PAN.value, SECRET_PAN_HEX.encode()),
        (Tag.ENC_TRACK2.value, SECRET_TRACK_HEX.encode()),
        (Tag.EXPIRY.value, expiry),
    ]
    return [item for item in items if item[0] != drop]


def _card(rid: int, **kwargs: object) -> bytes:
    return b"\x82" + encode_tlvs(_card_tlvs(rid, **kwargs))  # type: ignore[arg-type]


#: name -> (the step it spoils, the payload for a command's request id, what the log must say)
BAD_REPLIES: dict[str, tuple[type[Message], Callable[[int], bytes], str]] = {
    "broken TLV": (ReadCard, lambda rid: _card(rid)[:-3], "runs past the end"),
    "missing mandatory field": (ReadCard, lambda rid: _card(rid, drop=Tag.EXPIRY.value), "without mandatory EXPIRY"),
    "out-of-range value (expiry month 13)": (ReadCard, lambda rid: _card(rid, expiry=b"2813"), "month must be 01..12"),
    "out-of-range value (KEY_INDEX 0)": (
        ReadPin,
        lambda rid: (
            b"\x83"
            + encode_tlvs(
                [(Tag.REQUEST_ID, str(rid).encode()), (Tag.PIN_BLOCK, SECRET_PIN_HEX.encode()), (Tag.KEY_INDEX, b"0")]
            )
        ),
        "must be 1..99, got 0",
    ),
    "unknown message type": (
        ReadCard,
        lambda rid: (
            b"\x8e" + encode_tlvs([(Tag.REQUEST_ID, str(rid).encode()), (Tag.ENC_PAN, SECRET_PAN_HEX.encode())])
        ),
        "unknown message type 0x8E",
    ),
    "wrong request id": (ReadCard, lambda rid: _card(rid + 100), "which no command waits for"),
    "a reply of another command's type": (
        ReadPin,
        lambda rid: encode_message(CardData(rid, "00", MASKED, SECRET_PAN_HEX, SECRET_TRACK_HEX, "2812")),
        "answered ReadPin with CardData",
    ),
}


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    lines: list[str] = []
    handler = logger.add(lambda m: lines.append(str(m)), level="DEBUG", format="{level} {message}")
    yield lines
    logger.remove(handler)


@pytest.fixture
async def factory() -> AsyncIterator[PadFactory]:
    pads = PadFactory()
    yield pads
    await pads.close()


async def _driver(factory: PadFactory) -> MisPosV1Driver:
    driver = make_driver(factory)
    await driver.start()
    assert await driver.wait_connected(2)
    return driver


@pytest.mark.parametrize("kind", list(BAD_REPLIES))
async def test_a_bad_reply_ends_the_step_at_once_and_the_next_sale_works(
    kind: str, factory: PadFactory, log_lines: list[str]
) -> None:
    step, bad_payload, logged = BAD_REPLIES[kind]
    spoiled: list[int] = []
    received: list[Message] = []

    def respond(msg: Message) -> list[Message]:
        received.append(msg)
        if isinstance(msg, step) and not spoiled:
            spoiled.append(msg.request_id)
            factory.pad.send_raw_payload(bad_payload(msg.request_id))
            return []
        return pad_replies(msg)

    factory.respond = respond
    driver = await _driver(factory)
    try:
        if step is ReadPin:
            await driver.read_card(4080, 60)
        started = time.monotonic()
        with pytest.raises(DeviceBadReply) as caught:
            await (driver.read_card(4080, 60) if step is ReadCard else driver.read_pin(4080, 60))
        assert time.monotonic() - started < 1.0  # not TIMEOUT_S + grace
        assert caught.value.return_code is ReturnCode.DEVICE_BAD_REPLY
        assert caught.value.return_code.code == "MB40"
        assert any(isinstance(m, Cancel) for m in received)  # the pad is told to stop prompting
        # The link stays: same pad, and the next sale reads card and PIN.
        assert driver.connected
        card = await driver.read_card(4080, 60)
        assert card.masked_pan == MASKED
        pin = await driver.read_pin(4080, 60)
        assert pin.pin_block_hex == ENC
        assert len(factory.pads) == 1
    finally:
        await driver.stop()
    text = "\n".join(log_lines)
    assert logged in text
    assert "cannot use" in text
    for secret in (SECRET_PAN_HEX, SECRET_TRACK_HEX, SECRET_PIN_HEX, SECRET_PAN_HEX.encode().hex()):
        assert secret not in text
        assert secret.lower() not in text


async def test_a_late_reply_to_a_step_given_up_on_does_not_end_the_next_one(factory: PadFactory) -> None:
    # The pad answers the first READ_CARD only after the host gave up and cancelled it; the
    # answer arrives during the next READ_CARD and is stale, not a bad reply (§6.1).
    held: list[int] = []

    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, ReadCard) and not held:
            held.append(msg.request_id)
            return []
        if isinstance(msg, ReadCard):
            late = CardData(held[0], "00", MASKED, SECRET_PAN_HEX, SECRET_TRACK_HEX, "2812")
            return [late, *pad_replies(msg)]
        if isinstance(msg, Cancel):
            return pad_replies(msg)  # RESULT 00 for the CANCEL, nothing for the held command
        return pad_replies(msg)

    factory.respond = respond
    driver = await _driver(factory)
    try:
        with pytest.raises(DeviceTimeout) as first:
            await driver.read_card(4080, 1)  # host timer: 1 s + 0.1 s grace, then CANCEL
        assert first.value.return_code is ReturnCode.CARD_TIMEOUT
        card = await driver.read_card(4080, 60)
        assert card.masked_pan == MASKED
    finally:
        await driver.stop()


def test_pin_block_is_kept_out_of_a_valid_messages_repr() -> None:
    # The log lines above name message types and request ids; a repr never shows encrypted data.
    assert SECRET_PIN_HEX not in repr(PinBlock(1, SECRET_PIN_HEX, 1))


async def test_a_bad_answer_to_the_keep_alive_leaves_the_link_and_its_supervisor_running(factory: PadFactory) -> None:
    pings: list[int] = []

    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, StatusRequest) and not pings:
            pings.append(msg.request_id)
            factory.pad.send_raw_payload(b"\x85" + encode_tlvs([(Tag.REQUEST_ID, str(msg.request_id).encode())]))
            return []  # STATUS_REPLY without DEVICE_STATE
        return pad_replies(msg)

    factory.respond = respond
    driver = make_driver(factory, keepalive_s=0.05)
    await driver.start()
    try:
        assert await driver.wait_connected(2)
        async with asyncio.timeout(2):
            while not pings:  # noqa: ASYNC110 - the fake pad has no event for it
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.2)  # more pings, answered well
        assert driver.connected
        assert driver._supervisor is not None
        assert not driver._supervisor.done()
        assert (await driver.read_card(4080, 60)).masked_pan == MASKED
        assert len(factory.pads) == 1
    finally:
        await driver.stop()
