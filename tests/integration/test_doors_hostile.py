"""Hostile and careless callers against a whole daemon (simulators, journal, service): issue 10, items 2, 3 and 10.

Every input gets a code in the book's shape on the door it came from; no door is held open; the
log gets one scrubbed line per event and no traceback.
"""

from __future__ import annotations

import asyncio
import functools
import io
import json
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from misbridge.api.pos_client import read_framed
from misbridge.app.daemon import Daemon
from misbridge.app.simulated import simulated_daemon
from misbridge.ebuy.envelope import Envelope, parse_envelope
from misbridge.telemetry.logs import configure_logging
from tests.integration.conftest import bench_settings

pytestmark = pytest.mark.asyncio(loop_scope="module")

REQUEST_TIMEOUT_S = 0.5
BOOK_FIELDS = {"traceNo", "orderNo", "transDate", "returnCode", "returnDesc", "paidAmount"}


@dataclass
class HostileBench:
    daemon: Daemon
    log: io.StringIO

    @property
    def host(self) -> str:
        return self.daemon.settings.api.host


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def hostile(tmp_path_factory: Any) -> AsyncIterator[HostileBench]:
    workdir: Path = tmp_path_factory.mktemp("hostile")
    log = io.StringIO()
    configure_logging("INFO", stream=log)
    try:
        settings = functools.partial(
            bench_settings, workdir=workdir, request_timeout_s=REQUEST_TIMEOUT_S, idle_timeout_s=1.0,
            max_connections=8, max_connections_per_user=4,
        )  # fmt: skip
        async with simulated_daemon(workdir, settings, pinpad_args=("--timeout-cap", "0.3")) as running:
            yield HostileBench(running.daemon, log)
    finally:
        configure_logging("WARNING")


def _envelope(action: str = '"inquiry"', extra: str = "") -> bytes:
    body = '"eyJ0cmFjZU5vIjoiVDEifQ=="'  # {"traceNo":"T1"}
    return f'{{"action":{action},"deviceNo":"POS01","shopNo":"CN123456","brand":"663","body":{body}{extra}}}'.encode()


async def _socket(bench: HostileBench, data: bytes) -> Envelope:
    reader, writer = await asyncio.open_connection(bench.host, bench.daemon.socket_port)
    try:
        writer.write(data)
        return parse_envelope(await asyncio.wait_for(read_framed(reader), 10))
    finally:
        writer.close()


async def _http_raw(bench: HostileBench, data: bytes) -> tuple[int, dict[str, Any]]:
    reader, writer = await asyncio.open_connection(bench.host, bench.daemon.http_port)
    try:
        writer.write(data)
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def _framed(message: bytes) -> bytes:
    return struct.pack(">H", len(message)) + message


def _assert_log_is_one_clean_line_per_event(bench: HostileBench) -> None:
    text = bench.log.getvalue()
    assert "Traceback" not in text
    assert all(line[:4].isdigit() for line in text.splitlines()), text[-2000:]


async def test_inputs_that_crashed_the_socket_door_get_a_code(hostile: HostileBench) -> None:
    inputs = {
        "nesting-10000": _envelope(extra=',"x":' + "[" * 10_000 + "]" * 10_000),
        "integer-5000-digits": _envelope(extra=',"x":' + "9" * 5_000),
        "lone-surrogate-action": _envelope(action='"\\udfff"'),
        "action-30000-chars": _envelope(action='"' + "A" * 30_000 + '"'),
    }
    for name, message in inputs.items():
        answer = await _socket(hostile, _framed(message))
        assert set(answer.body) >= BOOK_FIELDS, name
        assert answer.body["returnCode"] != "00", name
        assert answer.action == "", name
    _assert_log_is_one_clean_line_per_event(hostile)


async def test_a_10_mb_stream_after_a_65535_prefix_gets_mb01_not_a_reset(hostile: HostileBench) -> None:
    reader, writer = await asyncio.open_connection(hostile.host, hostile.daemon.socket_port)
    try:
        writer.write(b"\xff\xff")
        for _ in range(160):
            writer.write(b"z" * 65536)
            await writer.drain()
        answer = parse_envelope(await asyncio.wait_for(read_framed(reader), 10))
    finally:
        writer.close()
    assert answer.body["returnCode"] == "MB01"


async def test_a_partial_http_head_gets_408_mb07_at_the_deadline(hostile: HostileBench) -> None:
    started = time.monotonic()
    status, body = await _http_raw(hostile, b"POST /v1/inquiry HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert status == 408
    assert body["returnCode"] == "MB07"
    assert set(body) >= BOOK_FIELDS
    assert time.monotonic() - started < REQUEST_TIMEOUT_S + 3


async def test_one_prefix_byte_on_the_socket_door_gets_mb07(hostile: HostileBench) -> None:
    answer = await _socket(hostile, b"\x00")
    assert answer.body["returnCode"] == "MB07"


async def test_idle_connections_cannot_hold_either_door(hostile: HostileBench) -> None:
    api = hostile.daemon.settings.api
    held = [
        await asyncio.open_connection(hostile.host, port)
        for port in (hostile.daemon.socket_port, hostile.daemon.http_port)
        for _ in range(api.max_connections_per_user)
    ]
    await asyncio.sleep(0.1)
    try:
        answer = await _socket(hostile, _framed(_envelope()))
        assert answer.body["returnCode"] == "MB76"
        status, body = await _http_raw(hostile, b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert (status, body["returnCode"]) == (503, "MB76")
    finally:
        for _, writer in held:
            writer.close()
    await asyncio.sleep(0.2)
    answer = await _socket(hostile, _framed(_envelope()))
    assert answer.body["returnCode"] not in ("MB76", "MB99")
    host = f"127.0.0.1:{hostile.daemon.http_port}".encode()
    status, _ = await _http_raw(hostile, b"GET /health HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    assert status == 200
