"""The USB bulk transport against a fake pyusb backend: enumeration, bulk I/O, timeout, unplug."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import usb.core

from misbridge.config.settings import DeviceSettings
from misbridge.device import MisPosV1Driver
from misbridge.errors import ConfigError, DeviceNotConnected
from misbridge.link import (
    DeviceInfo,
    DeviceInfoRequest,
    LinkSession,
    PayloadReceived,
    Role,
    decode_message,
    encode_message,
)
from misbridge.transport import TRANSPORTS, ByteTransport, open_transport
from misbridge.transport import usb as usb_transport
from misbridge.transport.usb import UsbAddress, UsbTransport, find_devices, parse_usb_url
from tests.unit.transport.fake_usb import FakeBackend, FakeUsbDevice

PAD_URL = "usb://1209:0001"


@pytest.fixture
def pad() -> FakeUsbDevice:
    return FakeUsbDevice(0x1209, 0x0001, "PAD-A")


@pytest.fixture
def backend(pad: FakeUsbDevice) -> FakeBackend:
    return FakeBackend(pad, FakeUsbDevice(0x1209, 0x0001, "PAD-B", address=3), FakeUsbDevice(0x046D, 0xC52B, address=4))


@pytest.fixture
async def transport(backend: FakeBackend) -> AsyncIterator[UsbTransport]:
    opened = await UsbTransport.open(PAD_URL + "?serial=PAD-A", backend=backend)
    yield opened
    await opened.aclose()


def test_urls() -> None:
    assert parse_usb_url("usb://1209:0001") == UsbAddress(0x1209, 0x0001)
    assert parse_usb_url("usb://1209:00ff?serial=A1") == UsbAddress(0x1209, 0x00FF, "A1")
    assert str(UsbAddress(0x1209, 0x00FF, "A1")) == "usb://1209:00ff?serial=A1"
    for bad in ("usb://1209", "usb://12g9:0001", "usb://1209:0001?speed=9"):
        with pytest.raises(ConfigError):
            parse_usb_url(bad)


async def test_usb_is_a_registered_transport() -> None:
    assert "usb" in TRANSPORTS
    with pytest.raises(ConfigError, match="usb://VID:PID"):
        await open_transport("usb://pad", baudrate=115200)


def test_enumeration(backend: FakeBackend) -> None:
    found = find_devices(backend)
    assert [(d.idVendor, d.idProduct) for d in found] == [(0x1209, 1), (0x1209, 1), (0x046D, 0xC52B)]
    assert len(find_devices(backend, lambda d: d.idVendor == 0x1209)) == 2


async def test_bulk_round_trip_on_the_device_with_that_serial(transport: UsbTransport, backend: FakeBackend) -> None:
    assert isinstance(transport, ByteTransport)
    transport.write(b"\x02hello")
    transport.write(b"\x03")
    await transport.drain()
    pad_a, pad_b = backend.devices[0], backend.devices[1]
    assert bytes(pad_a.from_host) == b"\x02hello\x03"
    assert pad_b.from_host == b""
    pad_a.feed(b"reply")
    async with asyncio.timeout(2):
        assert await transport.read() == b"reply"


async def test_a_read_timeout_is_an_idle_poll_not_an_error(transport: UsbTransport, pad: FakeUsbDevice) -> None:
    reader = asyncio.create_task(transport.read())
    await asyncio.sleep(usb_transport.READ_POLL_MS / 1000 * 2.5)  # several polls time out
    assert not reader.done()
    pad.feed(b"late")
    async with asyncio.timeout(2):
        assert await reader == b"late"


async def test_a_cancelled_read_loses_no_bytes(transport: UsbTransport, pad: FakeUsbDevice) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.05):
            await transport.read()
    pad.feed(b"kept")
    async with asyncio.timeout(2):
        assert await transport.read() == b"kept"


async def test_a_write_timeout_means_the_pad_is_gone(transport: UsbTransport, pad: FakeUsbDevice) -> None:
    pad.write_timeouts = 1
    transport.write(b"x")
    with pytest.raises(DeviceNotConnected, match="accepted nothing"):
        await transport.drain()
    with pytest.raises(DeviceNotConnected):
        transport.write(b"y")


async def test_unplug_fails_the_read_at_once_and_the_open_until_replugged(
    transport: UsbTransport, pad: FakeUsbDevice, backend: FakeBackend
) -> None:
    reader = asyncio.create_task(transport.read())
    await asyncio.sleep(0.05)
    started = time.monotonic()
    pad.unplug()
    with pytest.raises(DeviceNotConnected, match="disconnected"):
        await reader
    assert time.monotonic() - started < 0.5
    with pytest.raises(DeviceNotConnected):
        transport.write(b"x")
    with pytest.raises(DeviceNotConnected, match="no PIN pad"):
        await UsbTransport.open(PAD_URL + "?serial=PAD-A", backend=backend)
    pad.replug()
    again = await UsbTransport.open(PAD_URL + "?serial=PAD-A", backend=backend)
    await again.aclose()


async def test_no_libusb_is_device_not_connected(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_backend(*_args: Any, **_kwargs: Any) -> None:
        raise usb.core.NoBackendError("No backend available")

    monkeypatch.setattr(usb.core, "find", no_backend)
    with pytest.raises(DeviceNotConnected, match="libusb"):
        await UsbTransport.open(PAD_URL)
    with pytest.raises(DeviceNotConnected, match="libusb"):
        find_devices()


def _answer_device_info(pad: FakeUsbDevice) -> None:
    session = LinkSession(Role.DEVICE)

    def on_write(data: bytes) -> bytes:
        session.receive_data(data, time.monotonic())
        for event in session.events():
            if isinstance(event, PayloadReceived):
                msg = decode_message(event.payload)
                assert isinstance(msg, DeviceInfoRequest)
                session.send(encode_message(DeviceInfo(msg.request_id, "USB-PAD", "2.1", "U1", 1)), time.monotonic())
        return session.data_to_send()

    pad.on_write = on_write


async def test_the_driver_over_usb_connects_loses_the_pad_and_comes_back(
    pad: FakeUsbDevice, backend: FakeBackend
) -> None:
    async def opener(url: str, baudrate: int) -> ByteTransport:
        return await UsbTransport.open(url, baudrate=baudrate, backend=backend)

    _answer_device_info(pad)
    driver = MisPosV1Driver(DeviceSettings(url=PAD_URL + "?serial=PAD-A"), opener=opener, keepalive_s=None)
    await driver.start()
    try:
        assert await driver.wait_connected(3)
        assert driver.info is not None
        assert driver.info.model == "USB-PAD"
        pad.unplug()
        async with asyncio.timeout(2):
            while driver.connected:  # noqa: ASYNC110 - polling the health property
                await asyncio.sleep(0.01)
        pad.replug()
        _answer_device_info(pad)
        assert await driver.wait_connected(5)
    finally:
        await driver.stop()
