"""Serial transport: pyserial-asyncio-fast streams for device paths and pyserial URLs.

This is the only module that catches ``serial.SerialException``: every serial failure (open
refused, unplug, EOF, write error) leaves it as :class:`~misbridge.errors.DeviceNotConnected`.
``loop://`` is not supported (the asyncio transport needs a real file descriptor); tests use a
pty or ``socket://``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
from typing import Any

import serial
import serial_asyncio_fast
from loguru import logger

from misbridge.errors import ConfigError, DeviceNotConnected, PadInUse
from misbridge.transport.base import SERIAL_SCHEME, url_scheme

#: Largest chunk returned by one ``read()``; a MIS-POS frame is at most 1024 bytes.
READ_CHUNK = 4096
#: Longest wait for the port to close; pyserial closes the fd in an executor thread.
CLOSE_TIMEOUT_S = 2.0

_IO_ERRORS = (serial.SerialException, OSError)
#: flock(LOCK_EX | LOCK_NB) refused: another open file holds the lock (pyserial keeps the errno).
_LOCK_REFUSED = {errno.EAGAIN, errno.EWOULDBLOCK}
#: The same refusal as text, for a pyserial that drops the errno.
_LOCK_TEXTS = ("could not exclusively lock port", "resource temporarily unavailable")


class SerialTransport:
    """A :class:`~misbridge.transport.base.ByteTransport` over a serial port or pyserial URL."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, url: str) -> None:
        self._reader = reader
        self._writer = writer
        self._url = url
        self._closed = False

    @classmethod
    async def open(cls, url: str, *, baudrate: int) -> SerialTransport:
        """Open ``url`` 8N1 without flow control; device paths are opened exclusively.

        Raises:
            PadInUse: another process holds the port (most likely the misbridge service).
            DeviceNotConnected: the port does not exist or refused.
            ConfigError: pyserial rejected a setting (baud rate) or the URL itself.
        """
        kwargs: dict[str, Any] = {"url": url, "baudrate": baudrate}
        if url_scheme(url) == SERIAL_SCHEME:
            # flock(LOCK_EX): a second misbridge (or a stray minicom) cannot share the pad.
            kwargs["exclusive"] = True
        try:
            reader, writer = await serial_asyncio_fast.open_serial_connection(loop=asyncio.get_running_loop(), **kwargs)
        except _IO_ERRORS as err:
            if is_port_locked(err):
                raise PadInUse(url) from err
            raise DeviceNotConnected(f"cannot open PIN pad at {url}: {err}") from err
        except ValueError as err:
            raise ConfigError(f"invalid serial settings for {url}: {err}") from err
        logger.debug("opened {} at {} baud", url, baudrate)
        return cls(reader, writer, url)

    @property
    def url(self) -> str:
        """The URL this transport was opened with."""
        return self._url

    async def read(self) -> bytes:
        """Wait for the next bytes; never returns ``b""``.

        Raises:
            DeviceNotConnected: the port was unplugged, failed, reached EOF or was closed.
        """
        if self._closed:
            raise DeviceNotConnected(f"{self._url} is closed")
        try:
            data = await self._reader.read(READ_CHUNK)
        except _IO_ERRORS as err:
            raise DeviceNotConnected(f"PIN pad at {self._url} disconnected: {err}") from err
        if not data:
            raise DeviceNotConnected(f"PIN pad at {self._url} disconnected (end of file)")
        return data

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending.

        Raises:
            DeviceNotConnected: the port is closed or closing.
        """
        if self._closed or self._writer.transport.is_closing():
            raise DeviceNotConnected(f"PIN pad at {self._url} is not connected")
        self._writer.write(data)

    async def drain(self) -> None:
        """Wait for the write buffer to drain.

        Raises:
            DeviceNotConnected: the port failed while writing.
        """
        try:
            await self._writer.drain()
        except _IO_ERRORS as err:
            raise DeviceNotConnected(f"write to PIN pad at {self._url} failed: {err}") from err

    async def aclose(self) -> None:
        """Close the port without flushing pending bytes; idempotent, never raises."""
        if self._closed:
            return
        self._closed = True
        transport = self._writer.transport
        if not transport.is_closing():
            # abort(): no tcdrain, which could block on a pad that stopped reading.
            transport.abort()
        with contextlib.suppress(*_IO_ERRORS, TimeoutError):
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self._writer.wait_closed()
        logger.debug("closed {}", self._url)


def is_port_locked(err: BaseException) -> bool:
    """True when opening a port failed because another process holds its exclusive lock.

    pyserial reports the refused ``flock`` as ``SerialException(11, "Could not exclusively lock
    port ...: [Errno 11] Resource temporarily unavailable")``; the errno is the sure sign, the
    text the fallback.
    """
    if isinstance(err, OSError) and err.errno in _LOCK_REFUSED:
        return True
    text = str(err).lower()
    return any(marker in text for marker in _LOCK_TEXTS)
