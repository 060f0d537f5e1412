"""The HTTP door's gate: caller check, connection caps, head/body deadline and MB99 JSON (issue 10, items 2, 3, 5).

Real sockets against uvicorn serving a small ASGI app through misbridge.host.asgi.GatedH11Protocol,
and a pin on the uvicorn internals the protocol relies on.
"""

from __future__ import annotations

import asyncio
import inspect
import io
import json
import os
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import h11
import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send
from uvicorn.protocols.http import h11_impl
from uvicorn.server import ServerState

from misbridge.api.guard import DoorGuard
from misbridge.api.peer import PeerIdentity
from misbridge.api.policy import CallerPolicy
from misbridge.api.unix_socket import bind_unix_socket
from misbridge.config.settings import ApiSettings
from misbridge.errors import ReturnCode
from misbridge.host.asgi import SCOPE_EXTENSION, AsgiServer, GatedH11Protocol, gated_protocol
from misbridge.telemetry.logs import configure_logging

PAN = "4111111111111111"


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Echoes the caller's uid; /boom raises; POST reads the whole body first."""
    if scope["type"] != "http":
        return
    if scope["method"] == "POST":
        while (await receive()).get("more_body"):
            pass
    if scope["path"] == "/boom":
        raise RuntimeError(f"bug near card {PAN}")
    caller = scope["extensions"][SCOPE_EXTENSION]["caller"]
    body = json.dumps({"uid": caller.uid}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})


class Door:
    def __init__(self, server: AsgiServer, guard: DoorGuard) -> None:
        self.server = server
        self.guard = guard

    @property
    def port(self) -> int:
        return self.server.port

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def doors() -> AsyncIterator[Callable[..., Awaitable[Door]]]:
    started: list[AsgiServer] = []

    async def make(*, policy: CallerPolicy | None = None, **api: Any) -> Door:
        guard = DoorGuard("http", ApiSettings(**api), policy)
        server = AsgiServer(app, "127.0.0.1", 0, gate=guard, graceful_shutdown_s=1)
        await server.start()
        started.append(server)
        return Door(server, guard)

    yield make
    for server in started:
        await server.stop()


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    configure_logging("INFO", stream=sink)
    yield sink
    configure_logging("WARNING")


async def _raw(port: int, data: bytes, *, within_s: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes; the answer and how long that took."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), within_s)
    finally:
        writer.close()
    return answer, time.monotonic() - started


def _split(answer: bytes) -> tuple[str, dict[str, str], dict[str, Any]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return status, headers, json.loads(body)


def _assert_book_shape(body: dict[str, Any], code: str) -> None:
    assert set(body) >= {"traceNo", "orderNo", "transDate", "returnCode", "returnDesc", "paidAmount"}, body
    assert body["returnCode"] == code


# --- deadlines ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "partial",
    [
        b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        b"G",
        b"POST /v1/inquiry HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b'Content-Length: 100\r\n\r\n{"traceNo":',
    ],
    ids=["partial-head", "one-byte", "partial-body"],
)
async def test_a_partial_request_gets_408_mb07_json_and_close_at_the_deadline(
    doors: Any, log: io.StringIO, partial: bytes
) -> None:
    door = await doors(request_timeout_s=0.3)
    answer, took = await _raw(door.port, partial)
    status, headers, body = _split(answer)
    assert status.startswith("HTTP/1.1 408"), status
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    _assert_book_shape(body, "MB07")
    assert 0.2 < took < 3
    assert "Traceback" not in log.getvalue()
    await asyncio.sleep(0.1)
    assert door.guard.open_connections == 0


async def test_a_silent_connection_is_closed_at_the_deadline_without_an_answer(doors: Any) -> None:
    door = await doors(request_timeout_s=0.3)
    answer, took = await _raw(door.port, b"")
    assert answer == b""
    assert 0.2 < took < 3


async def test_the_deadline_is_rearmed_after_each_answer_on_a_kept_alive_connection(doors: Any) -> None:
    door = await doors(request_timeout_s=0.4)
    reader, writer = await asyncio.open_connection("127.0.0.1", door.port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        first = await asyncio.wait_for(reader.readuntil(b"\r\n0\r\n\r\n"), 5)  # the whole chunked answer
        assert first.startswith(b"HTTP/1.1 200")
        writer.write(b"GET / HTTP/1.1\r\nHost: 127")  # the next request stalls half-way
        rest = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    status, _, body = _split(rest)
    assert status.startswith("HTTP/1.1 408"), rest
    _assert_book_shape(body, "MB07")


async def test_whole_requests_are_served_normally(doors: Any) -> None:
    door = await doors(request_timeout_s=0.5)
    async with httpx.AsyncClient() as client:
        for _ in range(3):
            reply = await client.post(door.url("/"), json={"traceNo": "T1"})
            assert reply.status_code == 200
            await asyncio.sleep(0.3)  # pauses shorter than the deadline between requests


# --- caps ------------------------------------------------------------------------------------------


async def test_at_the_cap_a_connection_gets_503_mb76_json_and_refused_peers_hold_no_slot(doors: Any) -> None:
    door = await doors(max_connections=2, request_timeout_s=5)
    held = [await asyncio.open_connection("127.0.0.1", door.port) for _ in range(2)]
    for _ in range(100):
        if door.guard.open_connections == 2:
            break
        await asyncio.sleep(0.01)
    for _ in range(5):
        answer, _ = await _raw(door.port, b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, body = _split(answer)
        assert status.startswith("HTTP/1.1 503")
        assert headers["connection"] == "close"
        _assert_book_shape(body, "MB76")
    assert door.guard.open_connections == 2
    for _, writer in held:
        writer.close()
    for _ in range(100):
        if door.guard.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert door.guard.open_connections == 0
    async with httpx.AsyncClient() as client:
        assert (await client.get(door.url())).status_code == 200


# --- caller ----------------------------------------------------------------------------------------


class RefuseEveryone(CallerPolicy):
    def refusal(self, identity: PeerIdentity) -> ReturnCode | None:
        return ReturnCode.CALLER_NOT_ALLOWED


async def test_a_refused_caller_gets_403_with_the_code_and_connection_close(doors: Any, log: io.StringIO) -> None:
    door = await doors(policy=RefuseEveryone())
    async with httpx.AsyncClient() as client:
        reply = await client.post(door.url("/v1/cardRedemption"), json={"memo": "x" * 60_000})
    assert reply.status_code == 403
    assert reply.headers["connection"] == "close"
    _assert_book_shape(reply.json(), "MB74")
    lines = [line for line in log.getvalue().splitlines() if "refused a connection" in line]
    assert len(lines) == 1, log.getvalue()
    assert door.guard.open_connections == 0


async def test_the_caller_is_in_the_asgi_scope(doors: Any) -> None:
    door = await doors()
    async with httpx.AsyncClient() as client:
        reply = await client.get(door.url())
    assert reply.json() == {"uid": os.getuid()}


# --- app failures ------------------------------------------------------------------------------------


async def test_an_app_exception_is_500_mb99_json_and_one_scrubbed_line(doors: Any, log: io.StringIO) -> None:
    door = await doors()
    async with httpx.AsyncClient() as client:
        reply = await client.get(door.url("/boom"))
    assert reply.status_code == 500
    _assert_book_shape(reply.json(), "MB99")
    text = log.getvalue()
    assert "Traceback" not in text
    assert PAN not in text
    assert len([line for line in text.splitlines() if "MB99" in line]) == 1


# --- the uvicorn internals GatedH11Protocol relies on ---------------------------------------------


async def test_uvicorn_internals_the_gate_relies_on_are_still_there() -> None:
    assert uvicorn.__version__.split(".")[:2] == ["0", "55"], (
        f"uvicorn {uvicorn.__version__}: re-check misbridge.host.asgi.GatedH11Protocol against its h11_impl.py"
    )
    config = uvicorn.Config(app, http=gated_protocol(DoorGuard("http", ApiSettings())), lifespan="off")
    config.load()
    assert issubclass(config.http_protocol_class, GatedH11Protocol)
    protocol = h11_impl.H11Protocol(config=config, server_state=ServerState(), app_state={})
    for attribute in ("app", "cycle", "conn", "connections", "flow", "transport", "loop", "timeout_keep_alive_task"):
        assert hasattr(protocol, attribute), attribute
    assert isinstance(protocol.conn, h11.Connection)
    for method in ("connection_made", "connection_lost", "data_received", "eof_received", "on_response_complete",
                   "_unset_keepalive_if_required"):  # fmt: skip
        assert callable(getattr(protocol, method)), method
    cycle = inspect.signature(h11_impl.RequestResponseCycle.__init__).parameters
    assert {"scope", "message_event", "on_response"} <= set(cycle)
    source = inspect.getsource(h11_impl.RequestResponseCycle)
    for used in ("self.disconnected", "self.message_event", "self.response_started", "self.response_complete"):
        assert used in source, used
    # The cycle calls back into the protocol's on_response_complete (our override re-arms the deadline).
    assert "on_response=self.on_response_complete" in inspect.getsource(h11_impl.H11Protocol.handle_events)
    assert "app = self.app" in inspect.getsource(h11_impl.H11Protocol.handle_events)


def test_a_unix_socket_peer_is_invisible_to_asgi_so_the_check_lives_in_the_protocol() -> None:
    # Why the gate is not an ASGI middleware: uvicorn gives no client address for a Unix socket.
    from uvicorn.protocols.utils import get_remote_addr

    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:

        class _Transport(asyncio.Transport):
            def get_extra_info(self, name: str, default: Any = None) -> Any:
                return {"socket": left}.get(name, default)

        assert get_remote_addr(_Transport()) is None


async def test_the_gate_identifies_callers_on_a_unix_socket_door(tmp_path: Path) -> None:
    guard = DoorGuard("http", ApiSettings())
    server = AsgiServer(app, sock=bind_unix_socket(tmp_path / "api.sock"), gate=guard, graceful_shutdown_s=1)
    await server.start()
    try:
        transport = httpx.AsyncHTTPTransport(uds=str(tmp_path / "api.sock"))
        async with httpx.AsyncClient(transport=transport) as client:
            reply = await client.get("http://localhost/")
    finally:
        await server.stop()
    assert reply.json() == {"uid": os.getuid()}


# --- heads h11 cannot parse -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_bytes", "status", "code"),
    [
        (b"NOT AN HTTP REQUEST\r\n\r\n", "400", "MB01"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nbad header line\r\n\r\n", "400", "MB01"),
        # h11 parses a complete large head; one still growing past 16 KiB is what it refuses.
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 20_000, "413", "MB08"),
    ],
    ids=["garbage", "bad-header", "head-over-16-kib"],
)
async def test_a_head_h11_cannot_parse_gets_book_shaped_json(
    doors: Callable[..., Awaitable[Door]], log: io.StringIO, request_bytes: bytes, status: str, code: str
) -> None:
    # uvicorn answers these with a plain-text 400 ("Invalid HTTP request received.").
    door = await doors()
    answer, _ = await _raw(door.port, request_bytes)
    status_line, headers, body = _split(answer)
    assert status_line.split()[1] == status
    assert headers["content-type"] == "application/json"
    _assert_book_shape(body, code)
    assert "Traceback" not in log.getvalue()
