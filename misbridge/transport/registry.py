"""The device-URL scheme -> transport registry: ``open_transport(url)`` opens the right byte pipe.

Kept apart from :mod:`misbridge.transport.base` (the contract every transport meets) so that the
transports import the contract and this module imports the transports, never the other way
round. Each transport is imported lazily, when its scheme is first opened.
"""

from __future__ import annotations

from misbridge.errors import ConfigError, DeviceNotConnected, PadInUse
from misbridge.transport.base import SERIAL_SCHEME, ByteTransport, TransportOpener, url_scheme


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


async def ensure_port_free(url: str, *, baudrate: int) -> None:
    """Raise :class:`~misbridge.errors.PadInUse` when another program holds the pad's serial port.

    For the tools that open the pad themselves (``misbridge probe --try``, ``pad provision``,
    ``conformance``): their drivers retry a refused open until they give up, which would hide the
    one cause a technician can fix at once (the service still running) behind a vague timeout.
    Only a serial device path can be locked; any other failure to open is left to the tool's own
    open, which reports it as ever. The port is closed again at once.

    Raises:
        PadInUse: the port is locked by another process.
    """
    if url_scheme(url) != SERIAL_SCHEME:
        return
    try:
        transport = await open_transport(url, baudrate=baudrate)
    except PadInUse:
        raise
    except (DeviceNotConnected, ConfigError):
        return
    await transport.aclose()
