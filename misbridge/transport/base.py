"""The byte-pipe contract every PIN-pad transport meets, and how a device URL names its scheme.

A transport moves bytes and nothing else: framing, ACK/NAK and messages live in
:mod:`misbridge.link`. Every transport translates its own foreign errors (``serial``,
``OSError``, later ``usb.core``) into :class:`~misbridge.errors.DeviceNotConnected`, so the
layers above never learn which transport they talk to. Which transport a scheme opens is
:mod:`misbridge.transport.registry`'s business: this module imports no transport.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable


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


def url_scheme(url: str) -> str:
    """The scheme of ``url`` in lower case, or ``"serial"`` for a plain device path."""
    match = _SCHEME.match(url)
    return match.group("scheme").lower() if match else SERIAL_SCHEME
