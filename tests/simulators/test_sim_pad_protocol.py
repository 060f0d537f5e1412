"""The simulated pad keeps the protocol document's rules: BAD_COMMAND, CANCEL order, noisy lines."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from misbridge.device.link_driver import LinkDriver
from misbridge.device.pump import LinkPump
from misbridge.link import (
    Cancel,
    CardData,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceStatus,
    FrameRejected,
    GarbageDiscarded,
    LinkEvent,
    LinkFailed,
    Message,
    PayloadReceived,
    ReadCard,
    Result,
    ResultCode,
    StatusRequest,
    Tag,
    decode_message,
    encode_message,
)
from misbridge.link.constants import NO_REQUEST_ID
from misbridge.link.tlv import encode_tlvs
from misbridge.transport.memory import memory_pipe
from simulators.cards import DEFAULT_CARD
from simulators.pinpad.customer import Action, Customer
from simulators.pinpad.device import SimulatedPinPad
from simulators.pinpad.faults import GARBAGE, Faults
from tests.keys import signed_in_pad_key
from tests.unit.device.fakes import fast_session


class RawHost:
    """A host that sends any payload over a real link and collects the pad's messages."""

    def __init__(self, pad: SimulatedPinPad) -> None:
        host_end, pad_end = memory_pipe()
        pad.serve(pad_end)
        self.received: list[Message] = []
        self.arrived = asyncio.Event()
        self.pump = LinkPump(fast_session(), host_end, on_event=self._event, on_failure=lambda _: None)
        self.pump.start()

    def _event(self, event: LinkEvent) -> None:
        if isinstance(event, PayloadReceived):
            self.received.append(decode_message(event.payload))
            self.arrived.set()

    async def replies(self, count: int) -> list[Message]:
        async with asyncio.timeout(2):
            while len(self.received) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.received


@pytest.fixture
async def pad() -> AsyncIterator[SimulatedPinPad]:
    simulator = SimulatedPinPad(timeout_cap_s=5.0, working_key_hex=signed_in_pad_key().hex())  # READ_CARD needs it
    yield simulator
    await simulator.stop()


@pytest.mark.parametrize(
    ("payload", "request_id"),
    [
        (bytes([0x0A]) + encode_tlvs([(Tag.REQUEST_ID, b"15")]), 15),  # unknown TYPE (§5.4 example)
        (bytes([0x02]) + encode_tlvs([(Tag.REQUEST_ID, b"16"), (Tag.TIMEOUT_S, b"60")]), 16),  # no AMOUNT
        (bytes([0x06]), NO_REQUEST_ID),  # STATUS without REQUEST_ID
        (bytes([0x06]) + encode_tlvs([(Tag.REQUEST_ID, b"0")]), NO_REQUEST_ID),  # REQUEST_ID out of range
        (bytes([0x06]) + encode_tlvs([(Tag.REQUEST_ID, b"1X")]), NO_REQUEST_ID),  # not digits
        (bytes([0x06, 0x9F, 0x22, 0x00, 0x05, 0x31]), NO_REQUEST_ID),  # LENGTH past the end of DATA
    ],
    ids=["unknown-type", "missing-field", "no-request-id", "request-id-0", "request-id-not-digits", "cut-tlv"],
)
async def test_a_malformed_command_is_answered_bad_command(
    pad: SimulatedPinPad, payload: bytes, request_id: int
) -> None:
    host = RawHost(pad)
    try:
        host.pump.send(payload)
        [reply] = await host.replies(1)
        assert isinstance(reply, Result)
        assert (reply.request_id, reply.code) == (request_id, ResultCode.BAD_COMMAND)
        host.pump.send(encode_message(StatusRequest(17)))  # and the pad goes on serving
        assert isinstance((await host.replies(2))[1], DeviceStatus)
    finally:
        await host.pump.aclose()


async def test_cancel_ends_the_step_with_08_before_it_answers_00(pad: SimulatedPinPad) -> None:
    pad.enqueue_customer(Customer(DEFAULT_CARD, action=Action.NO_CARD))
    host = RawHost(pad)
    try:
        host.pump.send(encode_message(ReadCard(20, 100, 60)))
        await host.replies(1)  # PROGRESS 01, waiting for the card
        host.pump.send(encode_message(Cancel(21)))
        results = [m for m in await host.replies(3) if isinstance(m, Result)]
        assert [(r.request_id, r.code) for r in results] == [(20, "08"), (21, "00")]
        host.pump.send(encode_message(StatusRequest(22)))
        status = (await host.replies(4))[3]
        assert isinstance(status, DeviceStatus)
        assert status.state == "00"  # idle once CANCEL is answered
    finally:
        await host.pump.aclose()


def test_the_garbage_burst_holds_the_control_bytes() -> None:
    assert {0x02, 0x06, 0x15} <= set(GARBAGE)


async def test_garbage_with_control_bytes_is_resynced_and_every_reply_arrives_once() -> None:
    host_end, pad_end = memory_pipe()
    pad = SimulatedPinPad(faults=Faults(garbage=4), working_key_hex=signed_in_pad_key().hex())
    pad.serve(pad_end)
    events: list[LinkEvent] = []
    link = LinkDriver(host_end, fast_session(), on_event=events.append)
    link.start()
    try:
        assert isinstance(await link.request(DeviceInfoRequest(1), timeout=3), DeviceInfo)
        assert isinstance(await link.request(ReadCard(2, 100, 30), timeout=3), CardData)
        assert isinstance(await link.request(StatusRequest(3), timeout=3), DeviceStatus)
        assert pad.faults.garbage == 0  # all four bursts were sent
        assert any(isinstance(e, GarbageDiscarded) for e in events)
        assert any(isinstance(e, FrameRejected) for e in events)  # the STX inside the noise
        assert not any(isinstance(e, LinkFailed) for e in events)
        assert link.up
    finally:
        await link.aclose()
        await pad.stop()
