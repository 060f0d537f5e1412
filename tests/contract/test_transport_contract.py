"""The ByteTransport contract, run unchanged over every transport misbridge can open.

* ``memory``: the in-memory pipe used by unit tests;
* ``pty``: the serial transport on a real pseudo-terminal (what the PIN-pad simulator serves);
* ``socket``: the serial transport on a pyserial ``socket://`` URL (a serial-over-TCP bridge).

``loop://`` is not here on purpose: pyserial-asyncio-fast needs a real file descriptor.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol

import pytest

from misbridge.errors import ConfigError, DeviceNotConnected
from misbridge.link.testing import split_every
from misbridge.transport import ByteTransport, open_transport, url_scheme
from misbridge.transport.memory import memory_pipe
from simulators.pinpad.pty import PtyPort


class Peer(Protocol):
    """The far end of a transport under test."""

    def send(self, data: bytes) -> None: ...
    async def recv(self, size: int) -> bytes: ...
    async def close(self) -> None: ...


class QueuePeer:
    """Collects what arrives through a callback."""

    def __init__(self) -> None:
        self.inbox = bytearray()
        self.arrived = asyncio.Event()

    def feed(self, data: bytes) -> None:
        self.inbox += data
        self.arrived.set()

    async def recv(self, size: int) -> bytes:
        async with asyncio.timeout(2):
            while len(self.inbox) < size:
                self.arrived.clear()
                await self.arrived.wait()
        data, self.inbox[:] = bytes(self.inbox[:size]), self.inbox[size:]
        return data


class TransportPeer(QueuePeer):
    """The far end as a ByteTransport of its own: a memory pipe's end or the simulator's pty."""

    def __init__(self, end: ByteTransport) -> None:
        super().__init__()
        self.end = end
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        with contextlib.suppress(DeviceNotConnected):
            while True:
                self.feed(await self.end.read())

    def send(self, data: bytes) -> None:
        self.end.write(data)

    async def close(self) -> None:
        await self.end.aclose()
        await asyncio.wait([self._task])


class SocketPeer(QueuePeer):
    def __init__(self) -> None:
        super().__init__()
        self.writer: asyncio.StreamWriter | None = None
        self.connected = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    async def on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.connected.set()
        while data := await reader.read(4096):
            self.feed(data)

    def send(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)

    async def close(self) -> None:
        assert self.writer is not None
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


async def open_memory(stack: contextlib.AsyncExitStack) -> tuple[ByteTransport, Peer]:
    host, device = memory_pipe()
    return host, TransportPeer(device)


async def open_pty(stack: contextlib.AsyncExitStack) -> tuple[ByteTransport, Peer]:
    port = PtyPort()
    path = port.open()
    return await open_transport(path, baudrate=115200), TransportPeer(port)


async def open_socket(stack: contextlib.AsyncExitStack) -> tuple[ByteTransport, Peer]:
    peer = SocketPeer()
    server = await asyncio.start_server(peer.on_client, "127.0.0.1", 0)
    stack.push_async_callback(server.wait_closed)
    stack.callback(server.close)
    port = server.sockets[0].getsockname()[1]
    transport = await open_transport(f"socket://127.0.0.1:{port}", baudrate=115200)
    async with asyncio.timeout(2):
        await peer.connected.wait()
    return transport, peer


OPENERS = {"memory": open_memory, "pty": open_pty, "socket": open_socket}


@pytest.fixture(params=sorted(OPENERS))
async def pipe(request: pytest.FixtureRequest) -> AsyncIterator[tuple[ByteTransport, Peer]]:
    async with contextlib.AsyncExitStack() as stack:
        transport, peer = await OPENERS[request.param](stack)
        yield transport, peer
        await transport.aclose()
        await peer.close()


async def read_exactly(transport: ByteTransport, size: int) -> bytes:
    data = b""
    async with asyncio.timeout(2):
        while len(data) < size:
            chunk = await transport.read()
            assert chunk, "read() must never return b''"
            data += chunk
    return data


async def test_bytes_go_both_ways_unchanged(pipe: tuple[ByteTransport, Peer]) -> None:
    transport, peer = pipe
    frame = bytes(range(256)) * 4  # every byte value, a maximal 1024-byte frame
    transport.write(frame)
    await transport.drain()
    assert await peer.recv(len(frame)) == frame
    peer.send(frame)
    assert await read_exactly(transport, len(frame)) == frame


async def test_peer_going_away_is_device_not_connected(pipe: tuple[ByteTransport, Peer]) -> None:
    transport, peer = pipe
    await peer.close()
    async with asyncio.timeout(1):
        with pytest.raises(DeviceNotConnected):
            await transport.read()


async def test_closed_transport_refuses_io_and_closes_twice(pipe: tuple[ByteTransport, Peer]) -> None:
    transport, _ = pipe
    await transport.aclose()
    await transport.aclose()
    with pytest.raises(DeviceNotConnected):
        transport.write(b"\x02")
    with pytest.raises(DeviceNotConnected):
        await transport.read()


# -- opening by URL --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("/dev/mispos", "serial"),
        ("/dev/ttyACM0", "serial"),
        ("socket://10.0.0.5:7000", "socket"),
        ("SPY:///dev/ttyUSB0", "spy"),
        ("usb://1234:5678", "usb"),
    ],
)
def test_url_scheme(url: str, scheme: str) -> None:
    assert url_scheme(url) == scheme


async def test_missing_device_is_device_not_connected(tmp_path: Path) -> None:
    with pytest.raises(DeviceNotConnected, match="no-such-pad"):
        await open_transport(str(tmp_path / "no-such-pad"), baudrate=115200)


async def test_refused_socket_is_device_not_connected() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    with pytest.raises(DeviceNotConnected):
        await open_transport(f"socket://127.0.0.1:{port}", baudrate=115200)


async def test_unknown_scheme_is_a_config_error_naming_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="serial, socket"):
        await open_transport("carrier-pigeon://coop", baudrate=115200)


async def test_memory_manipulator_splits_writes() -> None:
    host, device = memory_pipe()
    host.manipulator = split_every(3)
    host.write(b"\x02abcdefg")
    assert [await device.read() for _ in range(3)] == [b"\x02ab", b"cde", b"fg"]


async def test_spy_hex_dump_is_not_offered() -> None:
    # spy:// would write the line, encrypted card data and PIN blocks included, to a file.
    with pytest.raises(ConfigError, match="spy"):
        await open_transport("spy:///dev/mispos", baudrate=115200)
