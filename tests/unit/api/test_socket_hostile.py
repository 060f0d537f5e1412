"""Inputs and handler failures that once closed the socket door without a word (issue 10, items 1, 3 and 10).

Every message gets an answer in the book's shape; the log gets one scrubbed line, no traceback.
"""

from __future__ import annotations

import asyncio
import io
import struct
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from misbridge.api.pos_client import read_framed
from misbridge.api.socket_server import PosSocketServer
from misbridge.config.settings import ApiSettings, IdentitySettings
from misbridge.ebuy.envelope import Envelope, parse_envelope
from misbridge.ebuy.fitting import DETAIL_FIELD, OMITTED_FIELD
from misbridge.telemetry.logs import configure_logging

Body = dict[str, Any]
PAN = "4111111111111111"
IDENTITY = IdentitySettings()


class Handler:
    """Answers 00, or fails the way ``mode`` says."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.calls = 0

    async def __call__(self, action: str, body: Body, *, caller_gone: asyncio.Event | None = None) -> Body:
        self.calls += 1
        trace_no = body.get("traceNo", "")
        if self.mode == "raise":
            raise RuntimeError(f"handler bug near card {PAN}")
        if self.mode == "recursion":
            raise RecursionError("maximum recursion depth exceeded")
        if self.mode == "huge":  # an approved sale whose answer outgrows the 2-byte prefix
            return {"traceNo": trace_no, "returnCode": "00", "goodsDetail": [{"goodsName": "x" * 100}] * 1000}
        if self.mode == "surrogate":
            return {"traceNo": trace_no, "returnCode": "00", "memo": "\udfff"}
        return {"traceNo": trace_no, "returnCode": "00"}


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    configure_logging("DEBUG", stream=sink)
    yield sink
    configure_logging("WARNING")


@pytest.fixture
async def door() -> AsyncIterator[tuple[int, Handler]]:
    handler = Handler()
    server = PosSocketServer(handler, ApiSettings(socket_port=0, request_timeout_s=2), IDENTITY)
    port = await server.start()
    try:
        yield port, handler
    finally:
        await server.stop()


def _envelope(
    action: str = '"inquiry"', device_no: str = '"POS01"', body: str = '"eyJ0cmFjZU5vIjoiVDEifQ=="', extra: str = ""
) -> bytes:
    """Envelope JSON written by hand, so hostile values go out exactly as a hostile POS sends them."""
    text = f'{{"action":{action},"deviceNo":{device_no},"shopNo":"CN123456","brand":"663","body":{body}{extra}}}'
    return text.encode("utf-8")


async def _exchange(port: int, message: bytes, *, framed: bool = True) -> Envelope:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack(">H", len(message)) + message if framed else message)
        return parse_envelope(await asyncio.wait_for(read_framed(reader), 10))
    finally:
        writer.close()


def _assert_book_shape(body: Body, code: str) -> None:
    assert set(body) >= {"traceNo", "orderNo", "transDate", "returnCode", "returnDesc", "paidAmount"}, body
    assert body["returnCode"] == code, body


def _assert_one_clean_line_per_event(log: io.StringIO) -> None:
    text = log.getvalue()
    assert "Traceback" not in text
    assert PAN not in text
    for line in text.splitlines():
        assert line[:4].isdigit(), f"a continuation line: {line!r}"


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (_envelope(extra=',"x":' + "[" * 10_000 + "]" * 10_000), "MB01"),
        (_envelope(extra=',"x":' + "9" * 5_000), "MB01"),
        (_envelope(body='"' + "e" * 10 + '"', extra=',"n":' + "1" * 4_400), "MB01"),
    ],
    ids=["nesting-10000", "integer-5000-digits", "integer-4400-digits"],
)
async def test_inputs_that_crash_the_parser_get_a_code(
    door: tuple[int, Handler], log: io.StringIO, message: bytes, code: str
) -> None:
    port, handler = door
    answer = await _exchange(port, message)
    _assert_book_shape(answer.body, code)
    assert handler.calls == 0
    _assert_one_clean_line_per_event(log)


async def test_an_unknown_30000_character_action_is_not_echoed(door: tuple[int, Handler], log: io.StringIO) -> None:
    port, _ = door
    answer = await _exchange(port, _envelope(action='"' + "A" * 30_000 + '"'))
    assert answer.action == ""
    assert answer.body["returnCode"]  # whatever the service says about it, in the book's shape
    _assert_one_clean_line_per_event(log)


async def test_a_lone_surrogate_is_never_echoed(door: tuple[int, Handler], log: io.StringIO) -> None:
    port, _ = door
    answer = await _exchange(port, _envelope(action='"\\udfff"', device_no='"\\udfff"'))
    assert answer.action == ""
    assert answer.device_no == IDENTITY.device_no
    _assert_one_clean_line_per_event(log)


async def test_a_huge_device_no_is_replaced_by_our_own(door: tuple[int, Handler]) -> None:
    port, _ = door
    answer = await _exchange(port, _envelope(device_no='"' + "D" * 5_000 + '"'))
    assert answer.device_no == IDENTITY.device_no
    assert answer.action == "inquiry"  # a book action is echoed
    assert answer.body["returnCode"] == "00"


@pytest.mark.parametrize("mode", ["raise", "recursion"])
async def test_a_handler_that_raises_gets_mb99_and_one_scrubbed_line(
    door: tuple[int, Handler], log: io.StringIO, mode: str
) -> None:
    port, handler = door
    handler.mode = mode
    answer = await _exchange(port, _envelope())
    _assert_book_shape(answer.body, "MB99")
    assert answer.body["traceNo"] == "T1"
    _assert_one_clean_line_per_event(log)
    assert "MB99" in log.getvalue()


@pytest.mark.parametrize(("mode", "left_out"), [("huge", "goodsDetail"), ("surrogate", "memo")])
async def test_an_answer_that_cannot_be_framed_whole_is_fitted_keeping_its_code(
    door: tuple[int, Handler], log: io.StringIO, mode: str, left_out: str
) -> None:
    # An approval must reach the POS (issue 10, item 1): never a silent close, never an MB99
    # in place of a "00"; what did not fit is named and stays in the journal.
    port, handler = door
    handler.mode = mode
    answer = await _exchange(port, _envelope())
    assert answer.body["returnCode"] == "00", answer.body
    assert answer.body["traceNo"] == "T1"
    assert left_out in answer.body[OMITTED_FIELD]
    assert answer.body[DETAIL_FIELD] == "/v1/transactions/T1"
    _assert_one_clean_line_per_event(log)


async def test_the_connection_serves_on_after_a_handler_failure(door: tuple[int, Handler]) -> None:
    port, handler = door
    handler.mode = "raise"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    message = _envelope()
    try:
        writer.write(struct.pack(">H", len(message)) + message)
        assert parse_envelope(await asyncio.wait_for(read_framed(reader), 5)).body["returnCode"] == "MB99"
        handler.mode = "ok"
        writer.write(struct.pack(">H", len(message)) + message)
        assert parse_envelope(await asyncio.wait_for(read_framed(reader), 5)).body["returnCode"] == "00"
    finally:
        writer.close()


@pytest.mark.parametrize(
    "stream_start", [b"x", b'{"action":"inquiry","memo":"'], ids=["not-json", "json-that-never-ends"]
)
async def test_a_65535_prefix_then_a_10_mb_stream_gets_a_readable_answer(
    door: tuple[int, Handler], stream_start: bytes
) -> None:
    port, handler = door
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"y" * 65536
    try:
        writer.write(b"\xff\xff" + stream_start)
        for _ in range(160):  # 10 MiB, written as fast as the server takes it
            writer.write(chunk)
            await writer.drain()
        answer = parse_envelope(await asyncio.wait_for(read_framed(reader), 10))
    finally:
        writer.close()
    _assert_book_shape(answer.body, "MB01")
    assert handler.calls == 0
