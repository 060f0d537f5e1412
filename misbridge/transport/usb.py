"""USB bulk transport: pads without a tty, driven through pyusb (``usb://VID:PID[?serial=...]``).

CDC-ACM pads (ttyACMn) keep using the serial transport; this one is for pads that expose a
vendor interface with one bulk IN and one bulk OUT endpoint. pyusb is blocking, so every call
runs in a worker thread (``asyncio.to_thread``); reads poll with a short USB timeout so that a
closed transport's thread ends promptly.

This is the only module that catches ``usb.core`` errors: a missing device, a missing libusb,
``USBError`` (unplug is ``ENODEV``) and a write ``USBTimeoutError`` all leave it as
:class:`~misbridge.errors.DeviceNotConnected`. A read timeout is the idle poll, not an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import usb.core
import usb.util
from loguru import logger

from misbridge.errors import ConfigError, DeviceNotConnected

#: USB timeout of one read poll; bounds how long a closed transport's worker thread lingers.
READ_POLL_MS = 200
#: USB timeout of one bulk write: a pad that accepts nothing for this long is gone.
WRITE_TIMEOUT_MS = 2000
#: Largest read requested at once (several max-size packets).
READ_SIZE = 4096
#: Longest wait in ``aclose`` for the worker threads to return.
CLOSE_TIMEOUT_S = 1.0

_URL = re.compile(r"^usb://(?P<vid>[0-9a-fA-F]{4}):(?P<pid>[0-9a-fA-F]{4})/?(?:\?(?P<query>.*))?$")
_QUERY_KEYS = frozenset({"serial"})


@dataclass(frozen=True)
class UsbAddress:
    """A parsed ``usb://`` URL."""

    vid: int
    pid: int
    serial: str | None = None

    def __str__(self) -> str:
        serial = f"?serial={self.serial}" if self.serial else ""
        return f"usb://{self.vid:04x}:{self.pid:04x}{serial}"


def parse_usb_url(url: str) -> UsbAddress:
    """Parse ``usb://VID:PID[?serial=SERIAL]`` (VID and PID: four hex digits each).

    Raises:
        ConfigError: the URL does not have that form.
    """
    match = _URL.match(url)
    if match is None:
        raise ConfigError(
            f"invalid USB device URL {url!r}; expected usb://VID:PID[?serial=SERIAL], e.g. usb://1209:0001"
        )
    query = parse_qs(match.group("query") or "", keep_blank_values=True, strict_parsing=False)
    unknown = set(query) - _QUERY_KEYS
    if unknown:
        raise ConfigError(f"USB device URL {url!r}: unknown parameters {', '.join(sorted(unknown))} (known: serial)")
    serial = query.get("serial", [None])[0] or None
    return UsbAddress(int(match.group("vid"), 16), int(match.group("pid"), 16), serial)


def string_of(dev: Any, index: int) -> str | None:
    """String descriptor ``index`` of ``dev``, or None (index 0, no permission, no answer)."""
    try:
        return usb.util.get_string(dev, index) if index else None
    except (usb.core.USBError, ValueError, NotImplementedError):
        return None


def serial_of(dev: Any) -> str | None:
    """The device's serial number string, or None."""
    return string_of(dev, dev.iSerialNumber)


def find_devices(backend: Any = None, match: Callable[[Any], bool] | None = None) -> list[Any]:
    """Every USB device pyusb sees (optionally filtered), as ``usb.core.Device`` objects.

    Raises:
        DeviceNotConnected: no USB backend (libusb) is available or enumeration failed.
    """
    try:
        found = usb.core.find(find_all=True, backend=backend, custom_match=match)
        return list(found) if found is not None else []
    except usb.core.NoBackendError as err:
        raise DeviceNotConnected("no USB backend: install libusb-1.0-0 to use usb:// pads") from err
    except usb.core.USBError as err:
        raise DeviceNotConnected(f"USB enumeration failed: {err}") from err


class UsbTransport:
    """A :class:`~misbridge.transport.base.ByteTransport` over a bulk IN/OUT endpoint pair."""

    def __init__(self, device: Any, ep_in: Any, ep_out: Any, url: str) -> None:
        self._device = device
        self._ep_in = ep_in
        self._ep_out = ep_out
        self._url = url
        self._closed = False
        self._error: DeviceNotConnected | None = None
        self._outbox = bytearray()
        self._writer: asyncio.Task[None] | None = None
        self._pending_read: asyncio.Future[bytes] | None = None

    @classmethod
    async def open(cls, url: str, *, baudrate: int = 0, backend: Any = None) -> UsbTransport:
        """Find the pad, claim its interface and its bulk endpoints; ``baudrate`` is ignored.

        Raises:
            ConfigError: the URL is not ``usb://VID:PID[?serial=...]``.
            DeviceNotConnected: no such device, no libusb, or the device refused to be opened.
        """
        del baudrate  # USB has no line speed
        address = parse_usb_url(url)
        device, ep_in, ep_out = await asyncio.to_thread(_open_sync, address, backend)
        logger.debug("opened {}", address)
        return cls(device, ep_in, ep_out, url)

    @property
    def url(self) -> str:
        """The URL this transport was opened with."""
        return self._url

    async def read(self) -> bytes:
        """Wait for the next bytes; never returns ``b""``.

        Raises:
            DeviceNotConnected: unplugged, failed or closed.
        """
        while True:
            self._check()
            if self._pending_read is None:
                self._pending_read = asyncio.ensure_future(asyncio.to_thread(self._read_sync))
            # shield: a cancelled read() leaves the thread's result for the next read().
            data = await asyncio.shield(self._pending_read)
            self._pending_read = None
            if data:
                return data

    def write(self, data: bytes) -> None:
        """Queue ``data``; a background task hands it to the OUT endpoint.

        Raises:
            DeviceNotConnected: the transport is closed or failed.
        """
        self._check()
        self._outbox += data
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name=f"usb-write {self._url}")

    async def drain(self) -> None:
        """Wait until the queued bytes were written.

        Raises:
            DeviceNotConnected: the write failed.
        """
        if self._writer is not None:
            await asyncio.wait([self._writer])
        self._check()

    async def aclose(self) -> None:
        """Release the interface and the device; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        pending = [t for t in (self._writer, self._pending_read) if t is not None and not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=CLOSE_TIMEOUT_S)
        with contextlib.suppress(usb.core.USBError, NotImplementedError):
            await asyncio.to_thread(usb.util.dispose_resources, self._device)
        logger.debug("closed {}", self._url)

    # -- worker-thread side ------------------------------------------------------------------

    def _check(self) -> None:
        if self._error is not None:
            raise DeviceNotConnected(self._error.message)
        if self._closed:
            raise DeviceNotConnected(f"{self._url} is closed")

    def _fail(self, text: str, err: Exception) -> DeviceNotConnected:
        if self._error is None:
            self._error = DeviceNotConnected(f"PIN pad at {self._url} {text}: {err}")
        return self._error

    def _read_sync(self) -> bytes:
        try:
            return bytes(self._ep_in.read(READ_SIZE, timeout=READ_POLL_MS))
        except usb.core.USBTimeoutError:
            return b""  # nothing arrived in this poll
        except (usb.core.USBError, ValueError) as err:  # ValueError: pyusb on a disposed device
            raise self._fail("disconnected", err) from err

    async def _write_all(self) -> None:
        while self._outbox and self._error is None and not self._closed:
            chunk = bytes(self._outbox)
            self._outbox.clear()
            try:
                await asyncio.to_thread(self._ep_out.write, chunk, WRITE_TIMEOUT_MS)
            except usb.core.USBTimeoutError as err:
                self._fail(f"accepted nothing for {WRITE_TIMEOUT_MS} ms", err)
            except (usb.core.USBError, ValueError) as err:
                self._fail("write failed", err)
        if self._error is not None and self._pending_read is None:
            logger.debug("{}", self._error.message)


def _open_sync(address: UsbAddress, backend: Any) -> tuple[Any, Any, Any]:
    def wanted(dev: Any) -> bool:
        return address.serial is None or serial_of(dev) == address.serial

    try:
        device = usb.core.find(idVendor=address.vid, idProduct=address.pid, backend=backend, custom_match=wanted)
    except usb.core.NoBackendError as err:
        raise DeviceNotConnected("no USB backend: install libusb-1.0-0 to use usb:// pads") from err
    except usb.core.USBError as err:
        raise DeviceNotConnected(f"cannot look for the PIN pad {address}: {err}") from err
    if device is None:
        raise DeviceNotConnected(f"no PIN pad at {address} (not plugged in?)")
    try:
        return _claim(device)
    except (usb.core.USBError, ValueError) as err:
        usb.util.dispose_resources(device)
        raise DeviceNotConnected(f"cannot open the PIN pad at {address}: {err}") from err


def _claim(device: Any) -> tuple[Any, Any, Any]:
    device.set_configuration()
    interface = device.get_active_configuration()[(0, 0)]
    number = interface.bInterfaceNumber
    with contextlib.suppress(NotImplementedError, usb.core.USBError):
        if device.is_kernel_driver_active(number):
            device.detach_kernel_driver(number)
    usb.util.claim_interface(device, number)

    def bulk(direction: int) -> Callable[[Any], bool]:
        return lambda ep: (
            usb.util.endpoint_direction(ep.bEndpointAddress) == direction
            and usb.util.endpoint_type(ep.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
        )

    ep_in = usb.util.find_descriptor(interface, custom_match=bulk(usb.util.ENDPOINT_IN))
    ep_out = usb.util.find_descriptor(interface, custom_match=bulk(usb.util.ENDPOINT_OUT))
    if ep_in is None or ep_out is None:
        raise ValueError("interface 0 has no bulk IN and OUT endpoint pair")
    return device, ep_in, ep_out
