"""LinkSession (§3 Link rules): two sessions back to back over a manipulated in-memory line."""

from __future__ import annotations

import pytest

from misbridge.errors import LinkFailedError
from misbridge.link import (
    ACK_TIMEOUT_S,
    INTER_BYTE_TIMEOUT_S,
    MAX_PAYLOAD_LEN,
    MAX_RETRANSMITS,
    NAK_BYTES,
    CardData,
    DuplicateSuppressed,
    FrameRejected,
    GarbageDiscarded,
    InFlight,
    LinkEvent,
    LinkFailed,
    LinkSession,
    PayloadAcked,
    PayloadReceived,
    ReadCard,
    Retransmitted,
    Role,
    decode_message,
    encode_ack,
    encode_frame,
    encode_message,
)
from misbridge.link.testing import (
    LinkPair,
    corrupt_write,
    drop_writes,
    duplicate_writes,
    split_every,
)


def payloads(n: int) -> list[bytes]:
    return [bytes([0x06]) + f"message {i}".encode() for i in range(n)]


def of_type(events: list[LinkEvent], kind: type[LinkEvent]) -> list[LinkEvent]:
    return [e for e in events if isinstance(e, kind)]


def send_all(pair: LinkPair, msgs: list[bytes], role: Role = Role.HOST) -> list[int]:
    session = pair.host if role is Role.HOST else pair.device
    return [session.send(m, pair.now) for m in msgs]


# --- happy path ------------------------------------------------------------------------------


def test_payload_is_delivered_and_acknowledged() -> None:
    pair = LinkPair()
    assert send_all(pair, [b"\x06hello"]) == [1]
    pair.run()
    assert pair.device_events == [PayloadReceived(1, b"\x06hello")]
    assert pair.host_events == [PayloadAcked(1)]
    assert pair.now == 0.0
    assert pair.host.in_flight is None


def test_both_directions_at_once() -> None:
    pair = LinkPair()
    send_all(pair, payloads(5), Role.HOST)
    send_all(pair, payloads(3), Role.DEVICE)
    pair.run()
    assert pair.received_by(Role.DEVICE) == payloads(5)
    assert pair.received_by(Role.HOST) == payloads(3)


def test_messages_end_to_end() -> None:
    pair = LinkPair()
    pair.host.send(encode_message(ReadCard(7, 4080, 60, "请刷卡")), pair.now)
    pair.run()
    (command,) = pair.received_by(Role.DEVICE)
    assert decode_message(command) == ReadCard(7, 4080, 60, "请刷卡")
    reply = CardData(7, "01", "622562******8888", "AB" * 16, "CD" * 16, "2512", card_sn="001")
    pair.device.send(encode_message(reply), pair.now)
    pair.run()
    assert [decode_message(p) for p in pair.received_by(Role.HOST)] == [reply]


def test_stop_and_wait_one_frame_in_flight() -> None:
    host = LinkSession(Role.HOST)
    assert [host.send(p, 0.0) for p in payloads(3)] == [1, 2, 3]
    assert host.data_to_send() == encode_frame(b"\x01" + payloads(3)[0])
    assert host.in_flight == InFlight(seq=1, retransmits=0, deadline=ACK_TIMEOUT_S)
    assert host.queued == 2
    host.receive_data(encode_ack(1), 0.5)
    assert host.data_to_send() == encode_frame(b"\x02" + payloads(3)[1])
    assert host.in_flight == InFlight(seq=2, retransmits=0, deadline=0.5 + ACK_TIMEOUT_S)
    assert host.queued == 1
    assert host.events() == [PayloadAcked(1)]


def test_seq_wraps_from_255_to_1_across_300_messages() -> None:
    pair = LinkPair()
    msgs = payloads(300)
    seqs = send_all(pair, msgs)
    assert seqs == [*range(1, 256), *range(1, 46)]
    pair.run()
    # Crossing 255 -> 1 must not trip duplicate suppression: every message exactly once.
    assert pair.received_by(Role.DEVICE) == msgs
    assert [e.seq for e in pair.device_events if isinstance(e, PayloadReceived)] == seqs
    assert not of_type(pair.device_events, DuplicateSuppressed)
    assert len(of_type(pair.host_events, PayloadAcked)) == 300


def test_byte_at_a_time_in_both_directions() -> None:
    pair = LinkPair(host_to_device=split_every(1), device_to_host=split_every(1))
    send_all(pair, payloads(10), Role.HOST)
    send_all(pair, payloads(4), Role.DEVICE)
    pair.run()
    assert pair.received_by(Role.DEVICE) == payloads(10)
    assert pair.received_by(Role.HOST) == payloads(4)


# --- retransmission --------------------------------------------------------------------------


def test_retransmit_on_nak() -> None:
    pair = LinkPair(host_to_device=corrupt_write(1, offset=-1))  # damage the LRC of frame 1
    send_all(pair, payloads(2))
    pair.run()
    assert pair.received_by(Role.DEVICE) == payloads(2)
    assert of_type(pair.device_events, FrameRejected) == [FrameRejected("bad LRC", nak_sent=True)]
    assert of_type(pair.host_events, Retransmitted) == [Retransmitted(1, 1, "nak")]
    assert pair.now == 0.0  # the NAK made waiting for the ACK timer unnecessary


def test_retransmit_on_timeout_when_the_frame_is_lost() -> None:
    pair = LinkPair(host_to_device=drop_writes(1))
    send_all(pair, payloads(2))
    pair.run()
    assert pair.received_by(Role.DEVICE) == payloads(2)
    assert of_type(pair.host_events, Retransmitted) == [Retransmitted(1, 1, "timeout")]
    assert pair.now == ACK_TIMEOUT_S


def test_lost_ack_resend_is_acknowledged_but_not_delivered_again() -> None:
    pair = LinkPair(device_to_host=drop_writes(1))
    send_all(pair, payloads(2))
    pair.run()
    assert pair.received_by(Role.DEVICE) == payloads(2)
    assert of_type(pair.device_events, DuplicateSuppressed) == [DuplicateSuppressed(1)]
    assert of_type(pair.host_events, PayloadAcked) == [PayloadAcked(1), PayloadAcked(2)]


def test_duplicated_write_is_delivered_once_and_its_second_ack_is_stale() -> None:
    pair = LinkPair(host_to_device=duplicate_writes(1))
    send_all(pair, payloads(3))
    pair.run()
    assert pair.received_by(Role.DEVICE) == payloads(3)
    assert of_type(pair.device_events, DuplicateSuppressed) == [DuplicateSuppressed(1)]
    assert of_type(pair.host_events, PayloadAcked) == [PayloadAcked(1), PayloadAcked(2), PayloadAcked(3)]
    assert not of_type(pair.host_events, Retransmitted)


def test_stale_ack_is_ignored() -> None:
    host = LinkSession(Role.HOST)
    host.send(b"\x06a", 0.0)
    host.send(b"\x06b", 0.0)
    host.data_to_send()
    host.receive_data(encode_ack(2) + encode_ack(255), 0.1)  # not the frame in flight
    assert host.in_flight == InFlight(1, 0, ACK_TIMEOUT_S)
    assert host.events() == []
    host.receive_data(encode_ack(1) + encode_ack(1), 0.2)  # second ACK 1 is now stale
    assert host.events() == [PayloadAcked(1)]
    assert host.in_flight == InFlight(2, 0, 0.2 + ACK_TIMEOUT_S)


def test_nak_with_nothing_in_flight_is_ignored() -> None:
    host = LinkSession(Role.HOST)
    host.receive_data(NAK_BYTES * 5, 0.0)
    assert host.data_to_send() == b""
    assert host.events() == []
    assert not host.failed


def test_timer_does_nothing_before_its_deadline() -> None:
    host = LinkSession(Role.HOST)
    host.send(b"\x06a", 0.0)
    host.data_to_send()
    host.handle_timeout(ACK_TIMEOUT_S - 0.001)
    assert host.data_to_send() == b""
    assert host.events() == []


def test_retransmission_restarts_the_timer_with_the_same_bytes() -> None:
    host = LinkSession(Role.HOST)
    host.send(b"\x06a", 0.0)
    frame = host.data_to_send()
    host.handle_timeout(1.25)
    assert host.data_to_send() == frame
    assert host.in_flight == InFlight(1, 1, 1.25 + ACK_TIMEOUT_S)
    assert host.next_deadline() == 1.25 + ACK_TIMEOUT_S


# --- link failure ----------------------------------------------------------------------------


def test_link_fails_after_three_timeouts_four_sends_in_all() -> None:
    host = LinkSession(Role.HOST)
    host.send(b"\x06a", 0.0)
    host.send(b"\x06b", 0.0)
    frame = host.data_to_send()
    now = 0.0
    for attempt in range(1, MAX_RETRANSMITS + 1):
        now = host.next_deadline() or 0.0
        host.handle_timeout(now)
        assert host.data_to_send() == frame
        assert host.events() == [Retransmitted(1, attempt, "timeout")]
    host.handle_timeout(host.next_deadline() or 0.0)
    assert host.data_to_send() == b""
    events = host.events()
    assert len(events) == 1
    assert isinstance(events[0], LinkFailed)
    assert events[0].unsent == 2
    assert host.failed
    assert host.in_flight is None
    assert host.queued == 0
    assert host.next_deadline() is None


def test_link_fails_after_three_naks() -> None:
    host = LinkSession(Role.HOST)
    host.send(b"\x06a", 0.0)
    host.data_to_send()
    host.receive_data(NAK_BYTES * (MAX_RETRANSMITS + 2), 0.0)
    events = host.events()
    assert [e for e in events if isinstance(e, Retransmitted)] == [
        Retransmitted(1, n, "nak") for n in range(1, MAX_RETRANSMITS + 1)
    ]
    assert isinstance(events[-1], LinkFailed)
    assert "SEQ 1" in events[-1].reason


def test_failed_link_stays_failed() -> None:
    pair = LinkPair(host_to_device=lambda data: [])  # the pad is unplugged
    send_all(pair, payloads(3))
    pair.run()
    assert pair.host.failed
    failures = [e for e in pair.host_events if isinstance(e, LinkFailed)]
    assert failures == [LinkFailed(failures[0].reason, unsent=3)]
    assert len(of_type(pair.host_events, Retransmitted)) == MAX_RETRANSMITS
    assert pair.now == (MAX_RETRANSMITS + 1) * ACK_TIMEOUT_S
    with pytest.raises(LinkFailedError, match="unacknowledged"):
        pair.host.send(b"\x06x", pair.now)
    pair.host.receive_data(encode_frame(b"\x01\x06"), pair.now)
    pair.host.handle_timeout(pair.now + 100)
    assert pair.host.events() == []
    assert pair.host.data_to_send() == b""


def test_custom_retransmit_limit_and_timeout() -> None:
    pair = LinkPair(LinkSession(Role.HOST, ack_timeout=0.2, max_retransmits=0), host_to_device=drop_writes(1))
    send_all(pair, payloads(1))
    pair.run()
    assert pair.host.failed
    assert pair.now == pytest.approx(0.2)


# --- receiving side: bad frames, NAK and its hold-off ----------------------------------------


def test_bad_frame_is_naked() -> None:
    device = LinkSession(Role.DEVICE)
    device.receive_data(b"\x02\x99\x99", 0.0)
    assert device.data_to_send() == NAK_BYTES
    assert device.events()[0] == FrameRejected("LEN 9999 > MAX_DATA_LEN", nak_sent=True)


def test_stalled_frame_is_naked_after_the_inter_byte_timeout() -> None:
    device = LinkSession(Role.DEVICE)
    device.receive_data(encode_frame(b"\x01\x06")[:4], 2.0)
    assert device.next_deadline() == 2.0 + INTER_BYTE_TIMEOUT_S
    device.handle_timeout(2.0 + INTER_BYTE_TIMEOUT_S)
    assert device.data_to_send() == NAK_BYTES
    assert FrameRejected("inter-byte timeout") in device.events()


def test_next_deadline_is_the_earliest_timer() -> None:
    host = LinkSession(Role.HOST)
    assert host.next_deadline() is None
    host.send(b"\x06a", 0.0)
    assert host.next_deadline() == ACK_TIMEOUT_S
    host.receive_data(b"\x02\x00", 0.2)
    assert host.next_deadline() == 0.2 + INTER_BYTE_TIMEOUT_S


def test_garbage_is_reported() -> None:
    device = LinkSession(Role.DEVICE)
    device.receive_data(b"line noise", 0.0)
    assert device.events() == [GarbageDiscarded(10)]
    assert device.data_to_send() == b""


def test_nak_hold_off_one_nak_per_burst_of_bad_frames() -> None:
    device = LinkSession(Role.DEVICE)
    device.receive_data(b"\x02\xff\x00\x02\xff\x00\x02\xff\x00", 0.0)
    assert device.data_to_send() == NAK_BYTES
    assert [e.nak_sent for e in device.events() if isinstance(e, FrameRejected)] == [True, False, False]


def test_nak_hold_off_ends_with_a_good_frame() -> None:
    device = LinkSession(Role.DEVICE)
    device.receive_data(b"\x02\xff\xff", 0.0)
    device.receive_data(encode_frame(b"\x01\x06"), 0.1)
    device.receive_data(b"\x02\xff\xff", 0.2)
    assert device.data_to_send() == NAK_BYTES + encode_ack(1) + NAK_BYTES


def test_nak_hold_off_ends_after_its_time() -> None:
    device = LinkSession(Role.DEVICE, nak_holdoff=0.5)
    device.receive_data(b"\x02\xff\xff", 0.0)
    device.receive_data(b"\x02\xff\xff", 0.49)
    device.receive_data(b"\x02\xff\xff", 0.5)
    assert device.data_to_send() == NAK_BYTES * 2


def test_zero_hold_off_is_the_literal_rule() -> None:
    device = LinkSession(Role.DEVICE, nak_holdoff=0)
    device.receive_data(b"\x02\xff\x00\x02\xff\x00\x02\xff\x00", 0.0)
    assert device.data_to_send() == NAK_BYTES * 3


# A payload holding several 02 bytes: once its frame is damaged, the resync (§3 rule 4) finds
# a bad candidate frame at each of them.
STX_RICH = b"\x8f" + b"\x02\xff\xff" * 5


def test_one_damaged_frame_costs_one_retransmission() -> None:
    pair = LinkPair(host_to_device=corrupt_write(1, offset=-1))
    send_all(pair, [STX_RICH])
    pair.run()
    assert pair.received_by(Role.DEVICE) == [STX_RICH]
    assert len(of_type(pair.device_events, FrameRejected)) == 6
    assert pair.device_events.count(FrameRejected("LEN is not BCD", nak_sent=False)) == 5
    assert of_type(pair.host_events, Retransmitted) == [Retransmitted(1, 1, "nak")]


def test_literal_nak_rule_lets_one_damaged_byte_fail_the_link() -> None:
    # Why the hold-off exists: one NAK per bad frame burns every retransmission at once, and
    # the host declares the link failed although its first retransmission got through.
    device = LinkSession(Role.DEVICE, nak_holdoff=0)
    pair = LinkPair(device=device, host_to_device=corrupt_write(1, offset=-1))
    send_all(pair, [STX_RICH])
    pair.run()
    assert pair.device_events.count(FrameRejected("LEN is not BCD", nak_sent=True)) == 5
    assert pair.host.failed
    assert pair.received_by(Role.DEVICE) == [STX_RICH]


# --- API contract ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, MAX_PAYLOAD_LEN + 1])
def test_send_rejects_bad_payload_size(size: int) -> None:
    with pytest.raises(ValueError, match="payload"):
        LinkSession(Role.HOST).send(b"\x06" * size, 0.0)


def test_send_accepts_the_largest_payload() -> None:
    pair = LinkPair()
    send_all(pair, [b"\x06" * MAX_PAYLOAD_LEN])
    pair.run()
    assert pair.received_by(Role.DEVICE) == [b"\x06" * MAX_PAYLOAD_LEN]


@pytest.mark.parametrize(
    "kwargs",
    [{"ack_timeout": 0}, {"inter_byte_timeout": -1}, {"max_retransmits": -1}, {"nak_holdoff": -0.1}],
)
def test_constructor_rejects_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        LinkSession(Role.HOST, **kwargs)  # type: ignore[arg-type]


def test_role_and_event_queue() -> None:
    device = LinkSession(Role.DEVICE)
    assert device.role is Role.DEVICE
    assert device.next_event() is None
    device.receive_data(encode_frame(b"\x01\x06") + encode_frame(b"\x02\x06"), 0.0)
    assert device.next_event() == PayloadReceived(1, b"\x06")
    assert device.events() == [PayloadReceived(2, b"\x06")]
    assert device.events() == []


def test_payload_received_repr_hides_content() -> None:
    assert repr(PayloadReceived(3, b"\x83SECRET")) == "PayloadReceived(seq=3, len=7)"
