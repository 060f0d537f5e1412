"""misbridge.host.asgi.AsgiServer: port 0, our own socket, signals left alone, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import stat
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from misbridge.host.asgi import AsgiServer, bind_tcp, serve_asgi


async def status(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


APP = Starlette(routes=[Route("/status", status)])


async def test_port_zero_reports_the_real_port_and_serves() -> None:
    server = AsgiServer(APP, "127.0.0.1", 0)
    port = await server.start()
    running = [server.running]
    try:
        assert port > 0
        assert server.port == port
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://127.0.0.1:{port}/status")
        assert response.json() == {"ok": True}
        assert response.headers["date"]
    finally:
        await server.stop()
    running.append(server.running)
    assert running == [True, False]
    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/status")


async def test_signal_handlers_are_left_alone() -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    server = AsgiServer(APP)
    await server.start()
    during = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    await server.stop()
    assert during == before
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


async def test_unix_socket_keeps_its_mode(tmp_path: Path) -> None:
    path = tmp_path / "api.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o660)
    server = await serve_asgi(APP, sock)
    try:
        assert server.port == 0
        assert stat.S_IMODE(path.stat().st_mode) == 0o660
        async with httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(uds=str(path))) as client:
            response = await client.get("http://local/status")
        assert response.json() == {"ok": True}
    finally:
        await server.stop()


async def test_start_twice_and_stop_twice() -> None:
    server = AsgiServer(APP)
    await server.stop()  # before start: nothing to do
    await server.start()
    with pytest.raises(RuntimeError, match="once"):
        await server.start()
    await server.stop()
    await server.stop()


async def test_address_in_use_is_an_os_error() -> None:
    holder = bind_tcp("127.0.0.1", 0)
    holder.listen()
    try:
        with pytest.raises(OSError, match="in use"):
            bind_tcp("127.0.0.1", holder.getsockname()[1])
    finally:
        holder.close()
