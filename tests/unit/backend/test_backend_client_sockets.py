"""BackendClient against real local sockets: a server that never answers, and a closed port."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient
from misbridge.config.settings import BackendSettings, IdentitySettings
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown

BODY = {"traceNo": "20261123120000000002", "totalAmount": 1}


class SilentServer:
    """Accepts connections, reads the request, never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = bytearray()
        self._writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        while chunk := await reader.read(65536):
            self.received += chunk

    def close_all(self) -> None:
        for writer in self._writers:
            writer.close()


@pytest.fixture
async def silent() -> AsyncIterator[tuple[SilentServer, int]]:
    server_state = SilentServer()
    server = await asyncio.start_server(server_state.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield server_state, port
    server_state.close_all()
    server.close()
    await server.wait_closed()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def client_for(port: int, **timers: float) -> BackendClient:
    settings = BackendSettings(url=f"http://127.0.0.1:{port}/ebuyweb-posp/api", **timers)
    return BackendClient(settings, IdentitySettings(), SecretStr("k"))


async def test_server_that_never_answers_is_unknown_after_one_attempt(silent: tuple[SilentServer, int]) -> None:
    state, port = silent
    client = client_for(port, connect_timeout_s=0.5, read_timeout_s=0.3, request_deadline_s=3.0)
    started = time.monotonic()
    try:
        with pytest.raises(BackendOutcomeUnknown, match="ReadTimeout"):
            await client.submit("cardRedemption", BODY)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 1.5
    assert state.connections == 1
    assert b"POST /ebuyweb-posp/api/cardRedemption" in state.received


async def test_closed_port_is_not_sent() -> None:
    client = client_for(free_port(), connect_timeout_s=0.1, read_timeout_s=0.2, request_deadline_s=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(BackendNotSent, match="ConnectError"):
            await client.submit("cardRedemption", BODY)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 1.0
