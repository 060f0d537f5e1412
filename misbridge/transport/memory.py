"""In-memory byte pipes for tests and simulators: two connected ends, optionally hostile.

``memory_pipe()`` returns two :class:`MemoryTransport` ends; what one writes the other reads.
A *manipulator* rewrites each write into the chunks actually delivered, so a test can split,
drop or corrupt bytes on purpose (code-style-anchors.md item 10). The manipulators and their
numbering (writes count from 1 per direction) are those of :mod:`misbridge.link.testing`, whose
docstring is the one description of that fault vocabulary: ``end.manipulator = drop_writes(1)``
loses the first write from that end.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from misbridge.errors import DeviceNotConnected

#: Rewrites one written chunk into the chunks the peer receives (possibly none); the same
#: shape as ``misbridge.link.testing.Manipulator`` (transport may not import link).
Manipulator = Callable[[bytes], list[bytes]]


class MemoryTransport:
    """One end of an in-memory pipe; a :class:`~misbridge.transport.base.ByteTransport`."""

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.peer: MemoryTransport | None = None
        self.manipulator: Manipulator | None = None
        self.closed = False
        self.written = bytearray()

    async def read(self) -> bytes:
        """Next chunk from the peer.

        Raises:
            DeviceNotConnected: this end or the peer was closed.
        """
        if self.closed:
            raise DeviceNotConnected(f"{self._name} is closed")
        data = await self._inbox.get()
        if data is None:
            self._inbox.put_nowait(None)  # keep reporting EOF
            raise DeviceNotConnected(f"{self._name}: peer closed (end of file)")
        return data

    def write(self, data: bytes) -> None:
        """Deliver ``data`` to the peer (through the manipulator, if any).

        Raises:
            DeviceNotConnected: this end or the peer was closed.
        """
        if self.closed or self.peer is None or self.peer.closed:
            raise DeviceNotConnected(f"{self._name} is not connected")
        self.written += data
        chunks = self.manipulator(data) if self.manipulator else [data]
        for chunk in chunks:
            if chunk:
                self.peer._inbox.put_nowait(bytes(chunk))

    async def drain(self) -> None:
        """Nothing to wait for: delivery is immediate."""

    async def aclose(self) -> None:
        """Close this end; the peer's next read reports end of file."""
        self.unplug()

    def unplug(self) -> None:
        """Synchronous close, as a pulled cable."""
        if self.closed:
            return
        self.closed = True
        self._inbox.put_nowait(None)
        if self.peer is not None:
            self.peer._inbox.put_nowait(None)


def memory_pipe(name: str = "memory") -> tuple[MemoryTransport, MemoryTransport]:
    """Two connected ends: ``(host_end, device_end)``."""
    host, device = MemoryTransport(f"{name}:host"), MemoryTransport(f"{name}:device")
    host.peer, device.peer = device, host
    return host, device
