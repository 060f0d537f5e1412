"""A pad that keeps its link state across the host's reopen is not locked out (device protocol §3.1).

The pad here never learns that the host closed and reopened its end: its DEVICE session lives
on from one connection to the next, as in a pad behind a serial-to-Ethernet bridge whose TCP
connection drops, or a pad on a USB bulk pipe. Its last delivered SEQ is 1 (the host's
DEVICE_INFO). Under mispos-v1 without a session start, the reopened host's first frame is SEQ 1
again: the pad acknowledges it as a duplicate and never delivers it, on every reopen, for
good. With the session start (LINK_RESET) the pad resets its side and the host reconnects.

Run on the commit before the session start, the first two tests fail: the driver never
connects again. The last two use the simulator's ``reset_on_open=False`` (``--keep-link-on-open``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.device.link_driver import LinkDriver
from misbridge.device.pump import LinkPump
from misbridge.errors import DeviceNotConnected, DeviceTimeout
from misbridge.link import (
    CardData,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    LinkEvent,
    LinkSession,
    Message,
    PayloadReceived,
    ReadCard,
    Result,
    ResultCode,
    Role,
    StatusRequest,
    decode_message,
    encode_message,
)
from misbridge.transport import open_transport
from misbridge.transport.base import ByteTransport
from misbridge.transport.memory import memory_pipe
from simulators.pinpad import SimulatedPinPad

ENC = "0123456789ABCDEF"
FAST_S = 0.05


def _fast(role: Role) -> LinkSession:
    return LinkSession(role, ack_timeout=FAST_S, max_retransmits=3, inter_byte_timeout=FAST_S)


def _replies(msg: Message) -> list[Message]:
    rid = msg.request_id
    if isinstance(msg, DeviceInfoRequest):
        return [DeviceInfo(rid, "STICKY", "0.1", "S001", 1)]
    if isinstance(msg, StatusRequest):
        return [DeviceStatus(rid, DeviceState.IDLE)]
    if isinstance(msg, ReadCard):
        return [CardData(rid, "00", "622562******8888", ENC, ENC + ENC, "2812")]
    return [Result(rid, ResultCode.OK)]


class StickyPad:
    """One DEVICE session for the pad's whole life, carried over every connection it is given."""

    def __init__(self) -> None:
        self.session = _fast(Role.DEVICE)
        self.received: list[Message] = []
        self._pump: LinkPump | None = None
        self._transport: ByteTransport | None = None

    def attach(self, transport: ByteTransport) -> None:
        """Serve a new connection with the same session: nothing tells the pad the host reopened."""
        if self._pump is not None:
            self._pump.stop()
        self._transport = transport
        self._pump = LinkPump(self.session, transport, on_event=self._on_event, on_failure=lambda _e: None)
        self._pump.start()

    async def drop_connection(self) -> None:
        """The line between host and pad goes (the bridge's TCP connection, a USB re-enumeration)."""
        if self._pump is not None:
            await self._pump.aclose()
            self._pump = None
        if self._transport is not None:
            await self._transport.aclose()

    def _on_event(self, event: LinkEvent) -> None:
        if isinstance(event, PayloadReceived) and self._pump is not None:
            msg = decode_message(event.payload)
            self.received.append(msg)
            for reply in _replies(msg):
                self._pump.send(encode_message(reply))


def _settings(url: str) -> DeviceSettings:
    return DeviceSettings(url=url, reply_grace_s=0.2, command_timeout_s=0.5)


async def _lockout_then_sale(driver: MisPosV1Driver, pad: StickyPad) -> None:
    await driver.start()
    assert await driver.wait_connected(3)
    # The host sent exactly one frame so far (DEVICE_INFO, SEQ 1): the pad's last delivered SEQ is 1.
    assert [type(m) for m in pad.received] == [DeviceInfoRequest]
    async with asyncio.timeout(2):
        # The reply's ACK is in: nothing of the old connection is left to resend on the new one.
        while pad.session.in_flight is not None:  # noqa: ASYNC110 - the pad has no event for it
            await asyncio.sleep(0.01)
    await pad.drop_connection()
    async with asyncio.timeout(2):
        while driver.connected:  # noqa: ASYNC110 - the driver has no event for "down"
            await asyncio.sleep(0.01)
    assert await driver.wait_connected(4), "the pad kept SEQ 1 across the reopen and the host is locked out"
    card = await driver.read_card(100, 10)
    assert card.masked_pan == "622562******8888"


async def test_a_pad_that_keeps_its_state_over_an_in_memory_line_is_not_locked_out() -> None:
    pad = StickyPad()

    async def opener(url: str, baudrate: int) -> ByteTransport:
        host, device = memory_pipe()
        pad.attach(device)
        return host

    driver = MisPosV1Driver(
        _settings("/dev/sticky-pad"),
        opener=opener,
        session_factory=lambda: _fast(Role.HOST),
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        keepalive_s=None,
    )
    try:
        await _lockout_then_sale(driver, pad)
    finally:
        await driver.stop()
        await pad.drop_connection()


class _StreamTransport:
    """An accepted TCP connection as a ByteTransport: the pad's side of a serial-to-Ethernet bridge."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def read(self) -> bytes:
        try:
            data = await self._reader.read(4096)
        except OSError as err:
            raise DeviceNotConnected(str(err)) from err
        if not data:
            raise DeviceNotConnected("host closed the TCP connection")
        return data

    def write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise DeviceNotConnected("closed")
        self._writer.write(data)

    async def drain(self) -> None:
        await self._writer.drain()

    async def aclose(self) -> None:
        self._writer.close()
        with contextlib.suppress(OSError):
            await self._writer.wait_closed()


@pytest.fixture
async def bridge() -> AsyncIterator[tuple[StickyPad, int]]:
    pad = StickyPad()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        pad.attach(_StreamTransport(reader, writer))

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield pad, port
    finally:
        await pad.drop_connection()
        server.close()
        await server.wait_closed()


async def test_a_pad_that_keeps_its_state_behind_a_socket_bridge_is_not_locked_out(
    bridge: tuple[StickyPad, int],
) -> None:
    pad, port = bridge
    # The real transport registry: socket:// is serial over TCP (pyserial's URL handler).
    driver = MisPosV1Driver(
        _settings(f"socket://127.0.0.1:{port}"),
        session_factory=lambda: _fast(Role.HOST),
        backoff_initial_s=0.01,
        backoff_max_s=0.05,
        keepalive_s=None,
    )
    try:
        await _lockout_then_sale(driver, pad)
    finally:
        await driver.stop()


# -- the simulated pad on a real pty ---------------------------------------------------------------


@pytest.fixture
async def sticky_sim(tmp_path: Path) -> AsyncIterator[SimulatedPinPad]:
    # --keep-link-on-open: the pad ignores the pty's open signal (its DTR) and keeps its link state.
    pad = SimulatedPinPad(link=str(tmp_path / "mispos"), reset_on_open=False)
    await pad.start()
    yield pad
    await pad.stop()


async def _host_link(path: str, *, session_start: bool = True) -> LinkDriver:
    link = LinkDriver(await open_transport(path, baudrate=115200), LinkSession(Role.HOST), session_start=session_start)
    link.start()
    return link


async def test_the_simulator_keeping_its_state_over_a_pty_needs_the_session_start(sticky_sim: SimulatedPinPad) -> None:
    assert sticky_sim.link_path is not None
    first = await _host_link(sticky_sim.link_path)
    assert isinstance(await first.request(DeviceInfoRequest(1), timeout=2), DeviceInfo)
    await first.aclose()

    # A v1 host (no LINK_RESET): its first frame, SEQ 1, is the pad's last delivered SEQ.
    v1 = await _host_link(sticky_sim.link_path, session_start=False)
    try:
        with pytest.raises(DeviceTimeout):
            await v1.request(StatusRequest(1), timeout=1.5)
        assert v1.up  # the frame was acknowledged, as a duplicate: nothing looks wrong on the line
    finally:
        await v1.aclose()

    second = await _host_link(sticky_sim.link_path)
    try:
        assert await second.request(StatusRequest(1), timeout=2) == DeviceStatus(1, DeviceState.IDLE)
        assert second.session_confirmed is True
    finally:
        await second.aclose()


async def test_a_v1_pad_that_keeps_its_state_is_reached_by_asking_twice(tmp_path: Path) -> None:
    # Neither the open signal nor LINK_RESET: the driver's second DEVICE_INFO has SEQ 2.
    pad = SimulatedPinPad(link=str(tmp_path / "mispos"), reset_on_open=False, session_start=False)
    await pad.start()
    assert pad.link_path is not None
    driver = MisPosV1Driver(_settings(pad.link_path), backoff_initial_s=0.05, backoff_max_s=0.1, keepalive_s=None)
    try:
        await driver.start()
        assert await driver.wait_connected(6)
        link = driver._link
        assert link is not None
        assert link.session_confirmed is False
        await link.aclose()  # the host closes the port and opens it again
        async with asyncio.timeout(2):
            while driver.connected:  # noqa: ASYNC110 - the driver has no event for "down"
                await asyncio.sleep(0.01)
        assert await driver.wait_connected(8)
        assert pad.commands["DeviceInfoRequest"] == 2  # the reopened host's first one was a "duplicate"
    finally:
        await driver.stop()
        await pad.stop()
