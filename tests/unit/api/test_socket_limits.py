"""The socket door's deadlines, connection caps, caller check and lingering refusals (issue 10, items 2 and 5).

Real sockets against a real PosSocketServer; only the handler behind it is a recorder.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from misbridge.api.peer import Caller, PeerIdentity, Unidentified
from misbridge.api.policy import CallerPolicy
from misbridge.api.pos_client import envelope_for, read_framed
from misbridge.api.socket_server import PosSocketServer
from misbridge.config.settings import ApiSettings, IdentitySettings
from misbridge.ebuy.envelope import Envelope, encode_envelope, frame_message, parse_envelope
from misbridge.errors import ReturnCode

Body = dict[str, Any]


class Recorder:
    """The handler: records calls, answers 00 (or what ``behaviour`` does)."""

    def __init__(self, behaviour: Callable[[str, Body, asyncio.Event | None], Awaitable[Body]] | None = None) -> None:
        self.calls: list[tuple[str, Body]] = []
        self.gone_events: list[asyncio.Event | None] = []
        self._behaviour = behaviour

    async def __call__(self, action: str, body: Body, *, caller_gone: asyncio.Event | None = None) -> Body:
        self.calls.append((action, body))
        self.gone_events.append(caller_gone)
        if self._behaviour is not None:
            return await self._behaviour(action, body, caller_gone)
        return {"traceNo": body.get("traceNo", ""), "returnCode": "00"}


class Door:
    """A running socket door and what it was built with."""

    def __init__(self, server: PosSocketServer, port: int, recorder: Recorder) -> None:
        self.server = server
        self.port = port
        self.recorder = recorder

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


async def _start(recorder: Recorder | None = None, *, policy: CallerPolicy | None = None, **api: Any) -> Door:
    recorder = recorder or Recorder()
    settings = ApiSettings(socket_port=0, **api)
    server = PosSocketServer(recorder, settings, IdentitySettings(), policy=policy)
    return Door(server, await server.start(), recorder)


@pytest.fixture
async def doors() -> AsyncIterator[Callable[..., Awaitable[Door]]]:
    started: list[Door] = []

    async def make(recorder: Recorder | None = None, *, policy: CallerPolicy | None = None, **api: Any) -> Door:
        door = await _start(recorder, policy=policy, **api)
        started.append(door)
        return door

    yield make
    for door in started:
        await door.server.stop()


async def _answer(reader: asyncio.StreamReader, within_s: float = 5.0) -> Envelope:
    return parse_envelope(await asyncio.wait_for(read_framed(reader), within_s))


async def _closed(reader: asyncio.StreamReader, within_s: float = 5.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), within_s) == b""
    except ConnectionError:
        return True


def _request(action: str = "inquiry", body: Body | None = None) -> bytes:
    return frame_message(encode_envelope(envelope_for(action, body if body is not None else {"traceNo": "T1"})))


# --- deadlines ----------------------------------------------------------------------------------


async def test_a_silent_connection_is_closed_at_the_idle_timeout_without_an_answer(doors: Any) -> None:
    door = await doors(idle_timeout_s=0.3)
    reader, writer = await door.connect()
    started = time.monotonic()
    assert await reader.read() == b""  # closed, and nothing was sent
    assert 0.2 < time.monotonic() - started < 3
    writer.close()
    assert door.server.guard.open_connections == 0


async def test_the_idle_timeout_also_runs_between_requests(doors: Any) -> None:
    door = await doors(idle_timeout_s=0.3)
    reader, writer = await door.connect()
    writer.write(_request())
    assert (await _answer(reader)).body["returnCode"] == "00"
    assert await _closed(reader, 3)
    writer.close()


async def test_one_prefix_byte_gets_mb07_at_the_request_deadline_then_close(doors: Any) -> None:
    door = await doors(request_timeout_s=0.3)
    reader, writer = await door.connect()
    writer.write(b"\x00")
    started = time.monotonic()
    answer = await _answer(reader)
    assert answer.body["returnCode"] == "MB07", answer.body
    assert time.monotonic() - started < 3
    assert await _closed(reader)
    writer.close()
    assert door.recorder.calls == []


async def test_a_partial_message_gets_mb07_at_the_request_deadline(doors: Any) -> None:
    # socket_read_timeout_s stays at its 5 s default: the request deadline is what answers.
    door = await doors(request_timeout_s=0.3)
    reader, writer = await door.connect()
    writer.write(struct.pack(">H", 200) + b'{"action":')
    started = time.monotonic()
    answer = await _answer(reader)
    assert answer.body["returnCode"] == "MB07", answer.body
    assert "0.3 s" in answer.body["returnDesc"]
    assert time.monotonic() - started < 3
    assert await _closed(reader)
    writer.close()


async def test_a_trickled_message_is_cut_at_the_deadline_counted_from_its_first_byte(doors: Any) -> None:
    door = await doors(request_timeout_s=0.5)
    reader, writer = await door.connect()
    data = _request()
    started = time.monotonic()
    answer_task = asyncio.create_task(_answer(reader, 10))
    for byte in data:  # one byte every 50 ms: every gap is short, the whole is not
        if answer_task.done():
            break
        writer.write(bytes([byte]))
        await asyncio.sleep(0.05)
    answer = await answer_task
    assert answer.body["returnCode"] == "MB07", answer.body
    assert time.monotonic() - started < 3
    writer.close()


async def test_a_prefix_that_lies_is_still_mb02(doors: Any) -> None:
    door = await doors(request_timeout_s=2)
    reader, writer = await door.connect()
    writer.write(struct.pack(">H", 500) + b'{"action":"inquiry"}')
    writer.write_eof()
    assert (await _answer(reader)).body["returnCode"] == "MB02"
    writer.close()


# --- connection caps ----------------------------------------------------------------------------


async def _hold(door: Door, count: int) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    held = [await door.connect() for _ in range(count)]
    for _ in range(100):  # the server admits each after accept(); wait until it has
        if door.server.guard.open_connections == count:
            break
        await asyncio.sleep(0.01)
    assert door.server.guard.open_connections == count
    return held


async def _close_all(held: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]) -> None:
    for _, writer in held:
        writer.close()


@pytest.mark.parametrize(("total", "per_user"), [(3, 10), (10, 3)], ids=["per-door", "per-user"])
async def test_at_the_cap_a_connection_gets_one_mb76_envelope_and_is_closed(
    doors: Any, total: int, per_user: int
) -> None:
    door = await doors(max_connections=total, max_connections_per_user=per_user)
    held = await _hold(door, 3)
    reader, writer = await door.connect()
    answer = await _answer(reader)
    assert answer.body["returnCode"] == "MB76", answer.body
    assert answer.body["traceNo"] == ""
    assert "paidAmount" in answer.body
    assert await _closed(reader)
    writer.close()
    # The held connections are still served, and refused peers took no slot.
    held_reader, held_writer = held[0]
    held_writer.write(_request())
    assert (await _answer(held_reader)).body["returnCode"] == "00"
    assert door.server.guard.open_connections == 3
    await _close_all(held)


async def test_refused_connections_never_hold_a_slot(doors: Any) -> None:
    door = await doors(max_connections=2)
    held = await _hold(door, 2)
    for _ in range(20):
        reader, writer = await door.connect()
        assert (await _answer(reader)).body["returnCode"] == "MB76"
        writer.close()
    await _close_all(held)
    for _ in range(100):
        if door.server.guard.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert door.server.guard.open_connections == 0
    reader, writer = await door.connect()
    writer.write(_request())
    assert (await _answer(reader)).body["returnCode"] == "00"
    writer.close()


# --- who is calling ------------------------------------------------------------------------------


class RefuseEveryone(CallerPolicy):
    """The allow-list names another user: every caller is identified and refused."""

    def refusal(self, identity: PeerIdentity) -> ReturnCode | None:
        return ReturnCode.CALLER_NOT_ALLOWED if isinstance(identity, Caller) else ReturnCode.CALLER_UNIDENTIFIED


class IdentifyNobody(CallerPolicy):
    """The kernel's socket table had no answer for the peer."""

    def identify(self, sock: socket.socket) -> PeerIdentity:
        return Unidentified("no socket table entry")


@pytest.mark.parametrize(
    ("policy", "code"), [(RefuseEveryone(), "MB74"), (IdentifyNobody(), "MB75")], ids=["not-allowed", "unidentified"]
)
async def test_a_refused_caller_gets_one_envelope_and_nothing_reaches_the_handler(
    doors: Any, policy: CallerPolicy, code: str
) -> None:
    door = await doors(policy=policy)
    reader, writer = await door.connect()
    writer.write(_request("cardRedemption", {"traceNo": "T1"}))
    answer = await _answer(reader)
    assert answer.body["returnCode"] == code
    assert answer.action == ""
    assert await _closed(reader)
    writer.close()
    assert door.recorder.calls == []
    assert door.server.guard.open_connections == 0


def _blocking_send_then_read(port: int, payload: bytes) -> bytes:
    """A plain client that writes its whole request before reading (what most POS code does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)  # at once: the bytes arrive while the server answers and closes
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


async def test_a_refused_caller_still_writing_reads_the_refusal_instead_of_a_reset(doors: Any) -> None:
    door = await doors(policy=RefuseEveryone())
    # The biggest honest request: 2 + 65 535 bytes.
    payload = struct.pack(">H", 65535) + b'{"a":"' + b"x" * (65535 - 8) + b'"}'
    for _ in range(5):  # with a plain close most of these got ECONNRESET on their send
        data = await asyncio.to_thread(_blocking_send_then_read, door.port, payload)
        (length,) = struct.unpack(">H", data[:2])
        assert parse_envelope(data[2 : 2 + length]).body["returnCode"] == "MB74"


async def test_a_garbage_collection_during_the_drain_does_not_cut_it_short(doors: Any) -> None:
    # The refused connection's StreamWriter closes its transport when collected: the drain keeps it.
    door = await doors(policy=RefuseEveryone())
    reader, writer = await door.connect()
    assert (await _answer(reader)).body["returnCode"] == "MB74"
    gc.collect()
    await asyncio.sleep(0.05)
    writer.write(b"x" * 1000)  # still writing into the drain: no reset while it lasts
    await writer.drain()
    assert door.server.guard.lingering == 1
    await _close_all([(reader, writer)])


async def test_at_most_eight_refused_connections_linger(doors: Any) -> None:
    door = await doors(policy=RefuseEveryone())
    held = [await door.connect() for _ in range(12)]
    for reader, _ in held:
        assert (await _answer(reader)).body["returnCode"] == "MB74"
    assert door.server.guard.lingering <= 8
    await _close_all(held)
    await asyncio.sleep(1.3)
    assert door.server.guard.lingering == 0


# --- a POS that gave up ---------------------------------------------------------------------------


async def test_caller_gone_is_set_when_the_pos_closes_while_its_request_runs(doors: Any) -> None:
    seen = asyncio.Event()

    async def wait_for_the_pos_to_leave(action: str, body: Body, caller_gone: asyncio.Event | None) -> Body:
        assert caller_gone is not None
        assert not caller_gone.is_set()
        await asyncio.wait_for(caller_gone.wait(), 5)
        seen.set()
        return {"traceNo": body["traceNo"], "returnCode": "MB29"}

    door = await doors(Recorder(wait_for_the_pos_to_leave))
    _, writer = await door.connect()
    writer.write(_request("cardRedemption", {"traceNo": "T7"}))
    await writer.drain()
    for _ in range(100):
        if door.recorder.calls:
            break
        await asyncio.sleep(0.01)
    writer.close()  # the POS gives up
    await asyncio.wait_for(seen.wait(), 5)


async def test_watching_for_eof_does_not_eat_pipelined_requests(doors: Any) -> None:
    async def slow(action: str, body: Body, caller_gone: asyncio.Event | None) -> Body:
        await asyncio.sleep(0.2)
        assert caller_gone is not None
        assert not caller_gone.is_set()
        return {"traceNo": body["traceNo"], "returnCode": "00"}

    door = await doors(Recorder(slow))
    reader, writer = await door.connect()
    writer.write(_request(body={"traceNo": "A"}) + _request(body={"traceNo": "B"}))
    first, second = await _answer(reader), await _answer(reader)
    assert [first.body["traceNo"], second.body["traceNo"]] == ["A", "B"]
    assert [call[1]["traceNo"] for call in door.recorder.calls] == ["A", "B"]
    writer.close()
