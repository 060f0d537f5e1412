"""Session start (docs/device-protocol.md §3.1): LINK_RESET, its reply, and what each end resets."""

from __future__ import annotations

import pytest

from misbridge.link import (
    DuplicateSuppressed,
    LinkFailed,
    LinkReset,
    LinkSession,
    PayloadReceived,
    Retransmitted,
    Role,
    SessionReset,
    SessionStarted,
    StaleFrameDiscarded,
    encode_frame,
    encode_link_reset,
    parse_link_reset,
)
from misbridge.link.testing import LinkPair, corrupt_write, drop_writes

NONCE = bytes.fromhex("12345678")
STATUS = bytes.fromhex("06 9F22 0001 37")  # STATUS, REQUEST_ID 7


def test_the_frames_are_those_of_the_document() -> None:
    # §3.1 worked example: nonce 12 34 56 78 travels as the ASCII text "12345678".
    assert encode_link_reset(NONCE) == bytes.fromhex("02 0014 00 00 9F44 0008 3132333435363738 03 CC")
    assert encode_link_reset(NONCE, reply=True) == bytes.fromhex("02 0014 00 80 9F44 0008 3132333435363738 03 4C")


@pytest.mark.parametrize(
    "data",
    [
        bytes.fromhex("01 00 9F44 0008 3132333435363738"),  # SEQ 1: a data frame
        bytes.fromhex("00 01 9F44 0008 3132333435363738"),  # another TYPE
        bytes.fromhex("00 00"),  # no nonce
        bytes.fromhex("00 00 9F44 0008 3132333435363761"),  # lowercase hex
        bytes.fromhex("00 00 9F44 0006 313233343536"),  # too short
        bytes.fromhex("00 00 9F44 0009 3132333435363738"),  # TLV runs past the end
    ],
)
def test_anything_else_is_no_link_reset(data: bytes) -> None:
    assert parse_link_reset(data) is None


def test_unknown_tags_in_a_link_reset_are_skipped() -> None:
    data = bytes.fromhex("00 00 9F99 0001 41 9F44 0008 3132333435363738")
    assert parse_link_reset(data) == LinkReset(NONCE, reply=False)


def test_the_host_sends_nothing_before_the_pad_echoes_the_nonce() -> None:
    pair = LinkPair()
    pair.host.start(NONCE, pair.now)
    pair.host.send(STATUS, pair.now)
    first = pair.host.data_to_send()
    assert first == encode_link_reset(NONCE)  # the data frame waits
    assert pair.host.in_flight is None
    pair.device.receive_data(first, pair.now)
    assert pair.device.data_to_send() == encode_link_reset(NONCE, reply=True)  # no ACK SEQ for it
    pair.host.receive_data(encode_link_reset(NONCE, reply=True), pair.now)
    assert not pair.host.starting
    assert pair.host.data_to_send() == encode_frame(b"\x01" + STATUS)  # SEQ 1
    assert pair.host.events() == [SessionStarted(confirmed=True)]
    assert pair.device.events() == [SessionReset(dropped=0)]


def test_a_pad_that_kept_seq_1_from_the_previous_host_is_not_locked_out() -> None:
    # The previous host session delivered SEQ 1 to this pad, then the host reopened; the pad never knew.
    old = LinkPair()
    old.host.send(STATUS, old.now)
    old.run()
    pad = old.device
    assert len(old.received_by(Role.DEVICE)) == 1

    # Without a session start (v1): the new host's SEQ 1 is taken for a duplicate, every time.
    v1 = LinkPair(device=pad)
    v1.host.send(STATUS, v1.now)
    v1.run()
    assert v1.received_by(Role.DEVICE) == []
    assert DuplicateSuppressed(1) in v1.device_events

    # With it: LINK_RESET, then SEQ 1 is delivered.
    new = LinkPair(device=pad)
    new.host.start(NONCE, new.now)
    new.host.send(STATUS, new.now)
    new.run()
    assert new.received_by(Role.DEVICE) == [STATUS]
    assert SessionStarted(confirmed=True) in new.host_events


def test_a_lost_reply_is_recovered_by_resending_the_same_link_reset() -> None:
    pair = LinkPair(device_to_host=drop_writes(1))
    pair.host.start(NONCE, pair.now)
    pair.host.send(STATUS, pair.now)
    pair.run()
    assert pair.received_by(Role.DEVICE) == [STATUS]
    assert Retransmitted(0, 1, "timeout") in pair.host_events
    assert pair.device_events.count(SessionReset(dropped=0)) == 2  # reset twice: harmless, nothing was sent
    assert pair.now == pytest.approx(1.0)


def test_a_damaged_link_reset_is_nakked_and_resent() -> None:
    pair = LinkPair(host_to_device=corrupt_write(1, 5))
    pair.host.start(NONCE, pair.now)
    pair.host.send(STATUS, pair.now)
    pair.run()
    assert pair.received_by(Role.DEVICE) == [STATUS]
    assert Retransmitted(0, 1, "nak") in pair.host_events
    assert pair.now < 1.0  # no timer waited out


def test_a_reply_with_another_nonce_is_stale_and_ignored() -> None:
    host = LinkSession(Role.HOST)
    host.start(NONCE, 0.0)
    host.receive_data(encode_link_reset(b"\xde\xad\xbe\xef", reply=True), 0.1)
    assert host.starting
    assert not any(isinstance(e, SessionStarted) for e in host.events())


def test_a_v1_pad_naks_link_reset_and_the_host_carries_on_without_it() -> None:
    pair = LinkPair(device=LinkSession(Role.DEVICE, session_start=False))
    pair.host.start(NONCE, pair.now)
    pair.host.send(STATUS, pair.now)
    pair.run()
    assert pair.received_by(Role.DEVICE) == [STATUS]
    assert SessionStarted(confirmed=False) in pair.host_events
    assert not any(isinstance(e, LinkFailed) for e in pair.host_events)
    # Four sends of LINK_RESET, the pad's NAK hold-off making some wait for the ACK timer.
    assert [e.attempt for e in pair.host_events if isinstance(e, Retransmitted)] == [1, 2, 3]
    assert pair.now <= 3.0


def test_a_silent_line_gives_up_the_session_start_then_fails_the_link_as_v1() -> None:
    host = LinkSession(Role.HOST)
    host.start(NONCE, 0.0)
    host.send(STATUS, 0.0)
    now = 0.0
    events = []
    while (deadline := host.next_deadline()) is not None:
        now = deadline
        host.handle_timeout(now)
        events += host.events()
    assert events.index(SessionStarted(confirmed=False)) < next(
        i for i, e in enumerate(events) if isinstance(e, LinkFailed)
    )
    assert now == pytest.approx(8.0)  # 4 sends of LINK_RESET, then 4 of the frame


def test_frames_of_the_pads_previous_session_are_acked_but_not_delivered() -> None:
    host = LinkSession(Role.HOST)
    host.start(NONCE, 0.0)
    host.data_to_send()
    host.receive_data(encode_frame(b"\x05\x8f\x9f\x22\x00\x01\x31"), 0.1)  # a late RESULT, SEQ 5
    assert host.data_to_send() == b"\x06\x05"
    assert host.events() == [StaleFrameDiscarded(5)]


def test_the_pad_drops_its_unacknowledged_frames_and_restarts_at_seq_1() -> None:
    pad = LinkSession(Role.DEVICE)
    pad.send(b"\x8f\x9f\x22\x00\x01\x31", 0.0)  # a reply the old host never acknowledged
    pad.send(b"\x8f\x9f\x22\x00\x01\x32", 0.0)
    pad.data_to_send()
    pad.receive_data(encode_link_reset(NONCE), 0.2)
    assert pad.data_to_send() == encode_link_reset(NONCE, reply=True)
    assert pad.events() == [SessionReset(dropped=2)]
    assert pad.in_flight is None
    assert pad.next_deadline() is None  # nothing of the old session is resent
    assert pad.send(b"\x85\x9f\x22\x00\x01\x33", 0.3) == 1


def test_a_failed_pad_session_comes_back_with_link_reset() -> None:
    pad = LinkSession(Role.DEVICE, ack_timeout=0.1, max_retransmits=0)
    pad.send(b"\x8f\x9f\x22\x00\x01\x31", 0.0)
    pad.handle_timeout(0.1)
    assert any(isinstance(e, LinkFailed) for e in pad.events())
    pad.data_to_send()
    pad.receive_data(encode_frame(b"\x01" + STATUS), 0.2)  # a data frame still finds it failed
    assert pad.data_to_send() == b""
    pad.receive_data(encode_link_reset(NONCE), 0.3)
    assert not pad.failed
    assert pad.data_to_send() == encode_link_reset(NONCE, reply=True)


def test_only_the_host_starts_and_only_once() -> None:
    with pytest.raises(ValueError, match="only the host"):
        LinkSession(Role.DEVICE).start(NONCE, 0.0)
    host = LinkSession(Role.HOST)
    host.send(STATUS, 0.0)
    with pytest.raises(ValueError, match="comes first"):
        host.start(NONCE, 0.0)
    with pytest.raises(ValueError, match="4 bytes"):
        LinkSession(Role.HOST).start(b"\x01", 0.0)


def test_link_control_frames_meant_for_the_other_end_are_ignored() -> None:
    host = LinkSession(Role.HOST)
    host.receive_data(encode_link_reset(NONCE), 0.0)  # a pad never sends LINK_RESET
    pad = LinkSession(Role.DEVICE)
    pad.receive_data(encode_link_reset(NONCE, reply=True), 0.0)
    assert host.data_to_send() == pad.data_to_send() == b""
    assert not any(isinstance(e, PayloadReceived | SessionReset | SessionStarted) for e in host.events() + pad.events())
