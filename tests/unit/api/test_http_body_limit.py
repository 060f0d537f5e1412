"""The HTTP door's body limit is the book's 65 535-byte message (issue 10, item 9).

A larger declared ``Content-Length`` is refused at once; a chunked body is read only up to the
limit. Either way the POS gets ``413`` with ``MB08`` in the book's shape and ``Connection: close``,
the service never sees the request, and the daemon never holds more than the limit: a 200 MB body
is sent over a real socket to a real uvicorn server while the peak RSS of this process is watched.
"""

from __future__ import annotations

import asyncio
import re
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from misbridge.api.http_app import MAX_BODY_BYTES, create_app
from misbridge.ebuy import jsonio
from misbridge.host.asgi import AsgiServer

BIG = 200 * 1024 * 1024
CHUNK = b"x" * (256 * 1024)
#: Growth of the peak RSS that would mean the body was buffered (it is 200 MB when it is).
RSS_BUDGET_KB = 48 * 1024


class RecordingService:
    def __init__(self) -> None:
        self.handled: list[dict[str, Any]] = []

    async def handle(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        self.handled.append(body)
        return {"traceNo": body.get("traceNo", ""), "orderNo": "1", "transDate": "20260101000000",
                "returnCode": "00", "returnDesc": "ok", "paidAmount": 1}  # fmt: skip

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        return None

    async def health(self) -> tuple[bool, dict[str, Any]]:
        return True, {}


@pytest.fixture
def service() -> RecordingService:
    return RecordingService()


@pytest.fixture
async def port(service: RecordingService) -> AsyncIterator[int]:
    server = AsgiServer(create_app(service), "127.0.0.1", 0)
    bound = await server.start()
    try:
        yield bound
    finally:
        await server.stop()


def _peak_rss_kb() -> int:
    match = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    assert match is not None
    return int(match.group(1))


def _reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to the current RSS


def _head(port: int, extra: str) -> bytes:
    return (f"POST /v1/cardRedemption HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"{extra}\r\n").encode()  # fmt: skip


def _exchange(port: int, head: bytes, body: Iterator[bytes]) -> bytes:
    """Send ``head`` then ``body`` from a second thread while reading the answer, like a POS would.

    The sender stops quietly when the server closes the connection; the reader reads until EOF or
    reset and returns what arrived.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send_all() -> None:
        try:
            sock.sendall(head)
            for chunk in body:
                sock.sendall(chunk)
        except OSError:
            pass  # the server answered and closed; that is the point

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    received = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            received += data
    except ConnectionResetError:
        pass
    finally:
        sender.join(30)
        sock.close()
    return received


def _repeat(total: int) -> Iterator[bytes]:
    sent = 0
    while sent < total:
        piece = CHUNK[: min(len(CHUNK), total - sent)]
        sent += len(piece)
        yield piece


def _chunked(total: int) -> Iterator[bytes]:
    for piece in _repeat(total):
        yield f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    yield b"0\r\n\r\n"


def _assert_413_mb08(raw: bytes) -> None:
    head, _, content = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    assert lines[0].startswith("HTTP/1.1 413 "), raw[:300]
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines[1:])}
    assert headers["connection"] == "close"
    assert headers["content-type"] == "application/json"
    body = jsonio.loads(content[: int(headers["content-length"])])
    assert body["returnCode"] == "MB08"
    assert "65535" in body["returnDesc"]
    assert set(body) == {"traceNo", "orderNo", "transDate", "returnCode", "returnDesc", "paidAmount"}


def test_the_limit_is_the_books_message_size() -> None:
    assert MAX_BODY_BYTES == 65_535


@pytest.mark.timeout(120)
async def test_a_200_mb_declared_body_is_refused_at_once_without_growing_rss(
    port: int, service: RecordingService
) -> None:
    _reset_peak_rss()
    before = _peak_rss_kb()
    raw = await asyncio.to_thread(_exchange, port, _head(port, f"Content-Length: {BIG}\r\n"), _repeat(BIG))
    _assert_413_mb08(raw)
    assert _peak_rss_kb() - before < RSS_BUDGET_KB
    assert service.handled == []


@pytest.mark.timeout(120)
async def test_a_200_mb_chunked_body_is_cut_at_the_limit_without_growing_rss(
    port: int, service: RecordingService
) -> None:
    _reset_peak_rss()
    before = _peak_rss_kb()
    raw = await asyncio.to_thread(_exchange, port, _head(port, "Transfer-Encoding: chunked\r\n"), _chunked(BIG))
    _assert_413_mb08(raw)
    assert _peak_rss_kb() - before < RSS_BUDGET_KB
    assert service.handled == []


def _sale_of_size(size: int) -> bytes:
    stub = jsonio.dumps({"traceNo": "T1", "memo": ""}).encode()
    body = stub[:-2] + b"x" * (size - len(stub)) + stub[-2:]
    assert len(body) == size
    return body


async def test_a_body_of_exactly_the_limit_reaches_the_service(port: int, service: RecordingService) -> None:
    body = _sale_of_size(MAX_BODY_BYTES)
    raw = await asyncio.to_thread(
        _exchange, port, _head(port, f"Content-Length: {len(body)}\r\nConnection: close\r\n"), iter([body])
    )
    assert raw.startswith(b"HTTP/1.1 200 ")
    assert len(service.handled) == 1


@pytest.mark.parametrize("framing", ["declared", "chunked"])
async def test_one_byte_over_the_limit_is_413(port: int, service: RecordingService, framing: str) -> None:
    body = _sale_of_size(MAX_BODY_BYTES + 1)
    if framing == "declared":
        head, parts = _head(port, f"Content-Length: {len(body)}\r\n"), iter([body])
    else:
        half = len(body) // 2
        head = _head(port, "Transfer-Encoding: chunked\r\n")
        parts = iter([f"{half:x}\r\n".encode() + body[:half] + b"\r\n",
                      f"{len(body) - half:x}\r\n".encode() + body[half:] + b"\r\n", b"0\r\n\r\n"])  # fmt: skip
    _assert_413_mb08(await asyncio.to_thread(_exchange, port, head, parts))
    assert service.handled == []
