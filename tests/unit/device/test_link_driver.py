"""LinkDriver: the asyncio glue between a transport and a host LinkSession, on an in-memory pipe."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from misbridge.device.link_driver import REQUEST_ID_MAX, LinkDriver
from misbridge.errors import DeviceBadReply, DeviceNotConnected, DeviceTimeout, ReturnCode
from misbridge.link import (
    Cancel,
    DeviceInfo,
    DeviceInfoRequest,
    Message,
    Progress,
    ProgressStage,
    ReadCard,
    Result,
    ResultCode,
    StatusRequest,
)
from misbridge.transport.memory import MemoryTransport
from tests.unit.device.fakes import FakePad, Responder, fast_session, pad_pipe, standard_replies


async def open_link(
    respond: Responder = standard_replies, progress: list[Progress] | None = None
) -> tuple[LinkDriver, FakePad, MemoryTransport]:
    host, pad = pad_pipe(respond)
    link = LinkDriver(host, fast_session(), on_progress=progress.append if progress is not None else None)
    link.start()
    return link, pad, host


@pytest.fixture
async def pair() -> AsyncIterator[tuple[LinkDriver, FakePad]]:
    link, pad, _ = await open_link()
    yield link, pad
    await link.aclose()
    await pad.close()


async def test_reply_is_returned_to_its_request(pair: tuple[LinkDriver, FakePad]) -> None:
    link, pad = pair
    reply = await link.request(DeviceInfoRequest(link.next_request_id()), timeout=1)
    assert isinstance(reply, DeviceInfo)
    assert reply.model == "FAKE"
    assert isinstance(pad.received[0], DeviceInfoRequest)


async def test_replies_are_matched_by_request_id_not_by_order() -> None:
    # The pad answers READ_CARD only when CANCEL arrives, and answers CANCEL's id first.
    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, Cancel):
            return [Result(msg.request_id, ResultCode.OK), Result(1, ResultCode.HOST_CANCELLED)]
        return []

    link, pad, _ = await open_link(respond)
    try:
        assert link.next_request_id() == 1
        card = asyncio.create_task(link.request(ReadCard(1, 100, 30), timeout=2))
        await asyncio.sleep(0.02)
        assert link.busy
        cancel_reply = await link.request(Cancel(link.next_request_id()), timeout=1)
        assert cancel_reply == Result(2, ResultCode.OK)
        assert await card == Result(1, ResultCode.HOST_CANCELLED)
        assert not link.busy
    finally:
        await link.aclose()
        await pad.close()


async def test_a_reply_for_an_unknown_request_while_idle_ends_nothing(pair: tuple[LinkDriver, FakePad]) -> None:
    link, pad = pair
    assert isinstance(await link.request(StatusRequest(link.next_request_id()), timeout=1), Message)
    pad.send(Result(4242, ResultCode.OK))  # nobody waits for 4242, and no command runs
    await asyncio.sleep(0.05)
    reply = await link.request(StatusRequest(link.next_request_id()), timeout=1)
    assert reply.request_id == 2
    assert link.up


async def test_a_reply_with_a_request_id_nobody_waits_for_ends_the_waiting_command_at_once() -> None:
    # docs/device-protocol.md §6.1: neither the waiting command's id nor one given up on.
    link, pad, _ = await open_link(lambda m: [Result(4242, ResultCode.OK)] if isinstance(m, ReadCard) else [])
    try:
        started = time.monotonic()
        with pytest.raises(DeviceBadReply, match="REQUEST_ID 4242") as caught:
            await link.request(ReadCard(link.next_request_id(), 100, 30), timeout=30)
        assert time.monotonic() - started < 1
        assert caught.value.return_code is ReturnCode.DEVICE_BAD_REPLY
        assert link.up
    finally:
        await link.aclose()
        await pad.close()


async def test_a_late_reply_to_a_command_given_up_on_is_stale_and_dropped(pair: tuple[LinkDriver, FakePad]) -> None:
    link, pad = pair
    pad.respond = lambda m: []
    with pytest.raises(DeviceTimeout):
        await link.request(ReadCard(link.next_request_id(), 100, 30), timeout=0.1)
    pad.respond = lambda m: [Result(1, ResultCode.HOST_CANCELLED), Result(m.request_id, ResultCode.OK)]
    reply = await link.request(Cancel(link.next_request_id()), timeout=1)  # the old command's RESULT 08 comes first
    assert reply == Result(2, ResultCode.OK)


async def test_progress_goes_to_the_callback_never_to_the_waiter() -> None:
    def respond(msg: Message) -> list[Message]:
        rid = msg.request_id
        return [
            Progress(rid, ProgressStage.WAITING_FOR_CARD),
            Progress(rid, ProgressStage.PIN_DIGIT_ENTERED, digits_entered=2),
            Result(rid, ResultCode.TIMEOUT),
        ]

    progress: list[Progress] = []
    link, pad, _ = await open_link(respond, progress)
    try:
        reply = await link.request(ReadCard(link.next_request_id(), 100, 30), timeout=1)
        assert reply == Result(1, ResultCode.TIMEOUT)
        assert [(p.stage, p.digits_entered) for p in progress] == [("01", 0), ("04", 2)]
    finally:
        await link.aclose()
        await pad.close()


async def test_a_failing_progress_callback_does_not_break_the_link() -> None:
    def explode(_: Progress) -> None:
        raise RuntimeError("observer bug")

    host, pad = pad_pipe(lambda m: [Progress(m.request_id, "01"), Result(m.request_id, ResultCode.OK)])
    link = LinkDriver(host, fast_session(), on_progress=explode)
    link.start()
    try:
        assert await link.request(StatusRequest(1), timeout=1) == Result(1, ResultCode.OK)
        assert link.up
    finally:
        await link.aclose()
        await pad.close()


async def test_an_invalid_message_ends_the_waiting_command_and_the_link_stays(pair: tuple[LinkDriver, FakePad]) -> None:
    link, pad = pair

    def respond(msg: Message) -> list[Message]:
        if isinstance(msg, ReadCard):
            pad.send_raw_payload(b"\x7f\x00")  # unknown TYPE
            return []
        return standard_replies(msg)

    pad.respond = respond
    with pytest.raises(DeviceBadReply, match="unknown message type 0x7F"):
        await link.request(ReadCard(link.next_request_id(), 100, 30), timeout=30)
    assert link.up
    assert isinstance(await link.request(StatusRequest(link.next_request_id()), timeout=1), Message)


async def test_link_failure_fails_every_waiter_with_device_not_connected() -> None:
    down: list[DeviceNotConnected] = []
    host, pad = pad_pipe(lambda _: [])
    link = LinkDriver(host, fast_session(), on_down=down.append)
    link.start()
    pad.deaf = True  # no ACK ever: 1 send + 3 retransmits, then LinkFailed
    try:
        started = time.monotonic()
        with pytest.raises(DeviceNotConnected, match="failed"):
            await link.request(ReadCard(link.next_request_id(), 100, 30), timeout=5)
        assert time.monotonic() - started < 1.0
        assert not link.up
        assert len(down) == 1
        assert await link.wait_down(0)
        with pytest.raises(DeviceNotConnected):
            await link.request(StatusRequest(link.next_request_id()), timeout=5)
    finally:
        await link.aclose()
        await pad.close()


async def test_end_of_file_fails_waiters_and_marks_the_link_down() -> None:
    link, pad, _ = await open_link(lambda _: [])
    try:
        waiter = asyncio.create_task(link.request(ReadCard(link.next_request_id(), 100, 30), timeout=5))
        await asyncio.sleep(0.02)
        await pad.close()  # the cable is pulled
        with pytest.raises(DeviceNotConnected, match="end of file"):
            await waiter
        assert not link.up
        assert link.down_error is not None
    finally:
        await link.aclose()


async def test_no_reply_in_time_is_a_device_timeout_with_the_given_code() -> None:
    link, pad, _ = await open_link(lambda _: [])
    try:
        with pytest.raises(DeviceTimeout) as caught:
            await link.request(ReadCard(1, 100, 30), timeout=0.1, timeout_code=ReturnCode.PIN_TIMEOUT)
        assert caught.value.return_code is ReturnCode.PIN_TIMEOUT
        assert link.up
        assert not link.busy
        pad.send(Result(1, ResultCode.HOST_CANCELLED))  # the late reply finds no waiter
        await asyncio.sleep(0.02)
        assert link.up
    finally:
        await link.aclose()
        await pad.close()


async def test_commands_are_sent_one_at_a_time(pair: tuple[LinkDriver, FakePad]) -> None:
    link, pad = pair
    replies = await asyncio.gather(*(link.request(StatusRequest(i), timeout=1) for i in (1, 2, 3)))
    assert [r.request_id for r in replies] == [1, 2, 3]
    assert [m.request_id for m in pad.received] == [1, 2, 3]


async def test_request_ids_cycle_from_9999_back_to_1(pair: tuple[LinkDriver, FakePad]) -> None:
    link, _ = pair
    ids = [link.next_request_id() for _ in range(REQUEST_ID_MAX + 1)]
    assert ids[0] == 1
    assert ids[-2] == REQUEST_ID_MAX
    assert ids[-1] == 1


async def test_aclose_fails_waiters_stops_the_reader_and_closes_the_transport() -> None:
    link, pad, host = await open_link(lambda _: [])
    waiter = asyncio.create_task(link.request(ReadCard(1, 100, 30), timeout=5))
    await asyncio.sleep(0.02)
    await link.aclose()
    await link.aclose()  # idempotent
    with pytest.raises(DeviceNotConnected):
        await waiter
    assert host.closed
    assert not link._pump.running
    await pad.close()


async def test_the_first_frame_is_the_worked_example_of_the_protocol_document() -> None:
    link, pad, host = await open_link()
    try:
        await link.request(StatusRequest(7), timeout=1)
        # docs/device-protocol.md §9: STATUS with REQUEST_ID 7 as the host's first data frame (SEQ 1),
        # right after the session start's LINK_RESET (§3.1: SEQ 0, TYPE 00, an 8-hex-digit nonce).
        written = bytes(host.written)
        assert written[:9] == bytes.fromhex("02 0014 00 00 9F44 0008")
        assert written[19:].startswith(bytes.fromhex("02 0007 01 06 9F22 0001 37 03 88"))
    finally:
        await link.aclose()
        await pad.close()
