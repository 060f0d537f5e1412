"""A browser's HTTP request sent to the e-Buy socket door (9100) is a framing error with no side effect.

A page can make the browser open a TCP connection to 127.0.0.1:9100 and write an HTTP request
(fetch, a form POST, sendBeacon). The first two bytes (``PO`` of ``POST``) become the length
prefix and the third byte is a letter that no JSON document starts with, so the message is
refused (MB01) and the connection closed before anything reaches the service. No method name,
body or header the page chooses changes that: the request line always puts ``SP /`` within
the first bytes after the method.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misbridge.api.pos_client import envelope_for, read_framed, socket_request
from misbridge.api.socket_server import PosSocketServer
from misbridge.config.settings import ApiSettings, IdentitySettings
from misbridge.ebuy.envelope import parse_envelope


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def __call__(
        self, action: str, body: dict[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        self.calls.append((action, body))
        return {"traceNo": body.get("traceNo", ""), "returnCode": "00"}


@pytest.fixture
async def door() -> AsyncIterator[tuple[PosSocketServer, int, Recorder]]:
    recorder = Recorder()
    server = PosSocketServer(recorder, ApiSettings(socket_port=0, socket_read_timeout_s=0.3), IdentitySettings())
    port = await server.start()
    try:
        yield server, port, recorder
    finally:
        await server.stop()


def _http(method: str, body: bytes, content_type: str = "text/plain;charset=UTF-8") -> bytes:
    head = (
        f"{method} /v1/cardRedemption HTTP/1.1\r\nHost: 127.0.0.1:9100\r\nConnection: keep-alive\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: {content_type}\r\nOrigin: http://127.0.0.2:8001\r\n"
        "Sec-Fetch-Site: cross-site\r\nSec-Fetch-Mode: no-cors\r\n\r\n"
    )
    return head.encode() + body


async def _send(port: int, data: bytes) -> tuple[dict[str, Any], bytes]:
    """Write ``data``; return the decoded answer and what followed it before the close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        answer = parse_envelope(await asyncio.wait_for(read_framed(reader), 5))
        rest = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
    return answer.body, rest


ENVELOPE = b'{"action":"cardRedemption","deviceNo":"POS01","shopNo":"CN123456","brand":"663","body":"e30="}'


@pytest.mark.parametrize(
    "data",
    [
        _http("POST", b'{"traceNo":"T1","totalAmount":1}'),
        _http("POST", b"traceNo=T1&totalAmount=1", "application/x-www-form-urlencoded"),
        _http("POST", ENVELOPE),
        _http("POST", b"x" * 70_000),  # longer than any length prefix can announce
        _http("OPTIONS", b""),
        _http("GET", b""),
        _http("PUT", ENVELOPE),
        b"GET / HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n\r\n",
    ],
    ids=["fetch-json", "form", "envelope-body", "huge", "preflight", "get", "put", "bare-get"],
)
async def test_browser_requests_are_refused_at_once_and_closed(
    door: tuple[PosSocketServer, int, Recorder], data: bytes
) -> None:
    _, port, recorder = door
    answer, rest = await _send(port, data)
    # MB01 (not JSON) at the first byte, not MB02 after the read timeout.
    assert answer["returnCode"] == "MB01", answer
    assert rest == b"", "the connection must be closed after a framing error"
    assert recorder.calls == []


async def test_the_door_still_serves_the_pos_afterwards(door: tuple[PosSocketServer, int, Recorder]) -> None:
    _, port, recorder = door
    await _send(port, _http("POST", b"{}"))
    answer = await socket_request("127.0.0.1", port, envelope_for("inquiry", {"traceNo": "T2"}))
    assert answer.body["returnCode"] == "00"
    assert recorder.calls == [("inquiry", {"traceNo": "T2"})]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    method=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~",
                   min_size=1, max_size=12),
    body=st.binary(max_size=300),
)  # fmt: skip
async def test_no_method_or_body_gets_an_http_request_through(
    door: tuple[PosSocketServer, int, Recorder], method: str, body: bytes
) -> None:
    _, port, recorder = door
    answer, _ = await _send(port, _http(method, body))
    # MB07: a two-letter method makes "AB" the prefix and " " (JSON whitespace) the first byte,
    # so the announced 16 706 bytes never arrive within the deadline.
    assert answer["returnCode"] in ("MB01", "MB02", "MB07"), answer
    assert recorder.calls == []
