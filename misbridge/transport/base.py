"""The byte-pipe contract every PIN-pad transport meets, and the URL -> transport registry.

A transport moves bytes and nothing else: framing, ACK/NAK and messages live in
:mod:`misbridge.link`. Every transport translates its own foreign errors (``serial``,
``OSError``, later ``usb.core``) into :class:`~misbridge.errors.DeviceNotConnected`, so the
layers above never learn which transport they talk to.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from misbridge.errors import ConfigError


@runtime_checkable
class ByteTransport(Protocol):
    """An open, bidirectional byte pipe to one PIN pad."""

    async def read(self) -> bytes:
        """Wait for the next bytes from the pad; never returns ``b""``.

        Raises:
            DeviceNotConnected: the pipe is closed, unplugged or failed (EOF included).
        """
        ...

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending without blocking.

        Raises:
            DeviceNotConnected: the pipe is already known to be closed or failed.
        """
        ...

    async def drain(self) -> None:
        """Wait until the queued bytes were handed to the operating system.

        Raises:
            DeviceNotConnected: the pipe failed while writing.
        """
        ...

    async def aclose(self) -> None:
        """Close the pipe; idempotent and never raises."""
        ...


#: Opens a transport for ``url`` at ``baudrate``. Raises DeviceNotConnected when it cannot.
TransportOpener = Callable[[str, int], Awaitable[ByteTransport]]

_SCHEME = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*)://")

#: The scheme handled when a URL has none (a device path such as ``/dev/mispos``).
SERIAL_SCHEME = "serial"


async def _open_serial(url: str, baudrate: int) -> ByteTransport:
    # Imported lazily so that a USB-only installation need not import pyserial-asyncio.
    from misbridge.transport.serial import SerialTransport

    return await SerialTransport.open(url, baudrate=baudrate)


async def _open_usb(url: str, baudrate: int) -> ByteTransport:
    # Imported lazily: pyusb is only needed by installations that use a usb:// pad.
    from misbridge.transport.usb import UsbTransport

    return await UsbTransport.open(url, baudrate=baudrate)


#: URL scheme -> opener. Plain paths use ``SERIAL_SCHEME``. pyserial URL handlers that work
#: under asyncio go to the serial opener, which hands the URL to ``serial.serial_for_url``:
#: ``socket://host:port`` (serial-over-TCP bridges).
#: ``spy://`` is deliberately absent: its hex dump of the line would write encrypted PAN, track
#: and PIN-block bytes to a file, and PIN blocks must never reach a log. The simulator's masked
#: frame trace is the bench tool for looking at the line.
#: ``loop://`` and ``rfc2217://`` are absent: they have no file descriptor for the event loop.
#: ``usb://VID:PID[?serial=...]``: pads with bulk endpoints, through pyusb in a worker thread
#: (``misbridge/transport/usb.py``).
TRANSPORTS: dict[str, TransportOpener] = {
    SERIAL_SCHEME: _open_serial,
    "socket": _open_serial,
    "usb": _open_usb,
}


def url_scheme(url: str) -> str:
    """The scheme of ``url`` in lower case, or ``"serial"`` for a plain device path."""
    match = _SCHEME.match(url)
    return match.group("scheme").lower() if match else SERIAL_SCHEME


async def open_transport(url: str, *, baudrate: int) -> ByteTransport:
    """Open the transport named by ``url``.

    Args:
        url: a device path (``/dev/mispos``, ``/dev/pts/3``) or a URL (``socket://127.0.0.1:7000``).
        baudrate: line speed; ignored by transports without one.

    Raises:
        ConfigError: no transport handles the URL's scheme (the message lists the known ones).
        DeviceNotConnected: the transport exists but the device cannot be opened now.
    """
    scheme = url_scheme(url)
    opener = TRANSPORTS.get(scheme)
    if opener is None:
        known = ", ".join(sorted(TRANSPORTS))
        raise ConfigError(f"no transport for {scheme}:// in device URL {url!r} (known: {known})")
    return await opener(url, baudrate)
