"""The host's ACK timer (§12) and what a lost or spoiled ACK costs, on the injected clock."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misbridge.link import (
    ACK_TIMEOUT_MIN_S,
    ACK_TIMEOUT_S,
    MAX_FRAME_LEN,
    MAX_RETRANSMITS,
    NAK_BYTES,
    AckTimer,
    FrameRejected,
    LinkFailed,
    LinkSession,
    PayloadAcked,
    Retransmitted,
    Role,
    encode_ack,
    encode_frame,
    wire_time_s,
)
from misbridge.link.testing import LinkPair, corrupt_write, drop_writes, lossy

# A 256-byte frame: 251 bytes of DATA (SEQ + TYPE + 249) inside STX, LEN, ETX, LRC.
PAYLOAD_256 = b"\x06" + b"A" * 249
FRAME_256 = len(encode_frame(b"\x01" + PAYLOAD_256))
AT_115200 = AckTimer(baudrate=115200)


# --- the computation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("byte_count", "baud", "seconds"),
    [(256, 115200, 0.022222), (1024, 115200, 0.088889), (1024, 19200, 0.533333), (2, 9600, 0.002083), (0, 300, 0.0)],
)
def test_wire_time_is_ten_bits_a_byte(byte_count: int, baud: int, seconds: float) -> None:
    assert wire_time_s(byte_count, baud) == pytest.approx(seconds, abs=1e-6)


@pytest.mark.parametrize(("byte_count", "baud"), [(1, 0), (1, -9600), (-1, 9600)])
def test_wire_time_refuses_nonsense(byte_count: int, baud: int) -> None:
    with pytest.raises(ValueError, match="baudrate"):
        wire_time_s(byte_count, baud)


@pytest.mark.parametrize(
    ("baud", "frame_len", "floor", "seconds"),
    [
        # frame + ACK SEQ on the wire + 0.2 s turnaround + 0.05 s margin
        (115200, 256, ACK_TIMEOUT_MIN_S, 0.0222222 + 0.0001736 + 0.25),
        (115200, 1024, ACK_TIMEOUT_MIN_S, 0.0888889 + 0.0001736 + 0.25),
        (57600, 256, ACK_TIMEOUT_MIN_S, 0.0444444 + 0.0003472 + 0.25),
        (38400, 1024, ACK_TIMEOUT_MIN_S, 0.2666667 + 0.0005208 + 0.25),
        (19200, 1024, ACK_TIMEOUT_MIN_S, 0.5333333 + 0.0010417 + 0.25),
        # a short frame at 115200: the pad's turnaround allowance is nearly all of the wait
        (115200, 20, ACK_TIMEOUT_MIN_S, 0.0017361 + 0.0001736 + 0.25),
        # an operator's floor for a pad that acknowledges late wins over the computation
        (115200, 256, 0.6, 0.6),
        # a line too slow for version 1 (below §1's 19200) is capped at the fixed timer
        (2400, 1024, ACK_TIMEOUT_MIN_S, ACK_TIMEOUT_S),
    ],
)
def test_first_wait_from_baud_and_frame_length(baud: int, frame_len: int, floor: float, seconds: float) -> None:
    assert AckTimer(baudrate=baud, floor=floor).first(frame_len) == pytest.approx(seconds, abs=1e-6)


def test_a_256_byte_frame_at_115200_waits_a_quarter_of_the_fixed_timer() -> None:
    assert FRAME_256 == 256
    assert AT_115200.first(FRAME_256) == pytest.approx(0.2724, abs=1e-4)


@pytest.mark.parametrize(
    ("retransmits", "seconds"), [(0, 0.2724), (1, 0.5448), (2, ACK_TIMEOUT_S), (3, ACK_TIMEOUT_S), (9, ACK_TIMEOUT_S)]
)
def test_the_wait_doubles_per_retransmission_up_to_the_ceiling(retransmits: int, seconds: float) -> None:
    assert AT_115200.timeout(FRAME_256, retransmits) == pytest.approx(seconds, abs=1e-4)


def test_every_wait_of_the_largest_frame_at_the_slowest_speed_fits_the_fixed_timer() -> None:
    # §1: 19200 is the slowest speed; its 1024-byte frame must still fit under ACK_TIMEOUT_S.
    slowest = AckTimer(baudrate=19200)
    assert slowest.first(MAX_FRAME_LEN) < ACK_TIMEOUT_S
    assert [slowest.timeout(MAX_FRAME_LEN, n) for n in range(MAX_RETRANSMITS + 1)][1:] == [ACK_TIMEOUT_S] * 3


@pytest.mark.parametrize(
    "kwargs", [{"baudrate": 0}, {"floor": 0}, {"margin": -0.01}, {"floor": 1.5}, {"floor": 0.5, "ceiling": 0.4}]
)
def test_ack_timer_refuses_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="AckTimer"):
        AckTimer(**kwargs)  # type: ignore[arg-type]


def test_negative_retransmits_are_refused() -> None:
    with pytest.raises(ValueError, match="retransmits"):
        AT_115200.timeout(FRAME_256, -1)


# --- the session with the timer ------------------------------------------------------------------


def _host() -> LinkSession:
    return LinkSession(Role.HOST, ack_timer=AT_115200)


def test_the_session_arms_the_computed_timer() -> None:
    host = _host()
    host.send(PAYLOAD_256, 10.0)
    assert host.next_deadline() == pytest.approx(10.0 + AT_115200.first(FRAME_256))


def test_a_dropped_ack_is_resent_after_the_computed_wait_not_the_fixed_second() -> None:
    pair = LinkPair(_host(), device_to_host=drop_writes(1))
    pair.host.send(PAYLOAD_256, pair.now)
    pair.run()
    assert pair.now == pytest.approx(AT_115200.first(FRAME_256))
    assert [e for e in pair.host_events if isinstance(e, Retransmitted)] == [Retransmitted(1, 1, "timeout")]
    assert PayloadAcked(1) in pair.host_events
    assert pair.received_by(Role.DEVICE) == [PAYLOAD_256]  # the resend was suppressed as a duplicate


def test_a_silent_pad_fails_the_link_after_the_doubling_waits() -> None:
    host = _host()
    host.send(PAYLOAD_256, 0.0)
    deadlines = []
    while (deadline := host.next_deadline()) is not None:
        deadlines.append(deadline)
        host.handle_timeout(deadline)
    first = AT_115200.first(FRAME_256)
    assert deadlines == pytest.approx([first, 3 * first, 3 * first + 1.0, 3 * first + 2.0])
    assert host.failed
    assert any(isinstance(e, LinkFailed) for e in host.events())


def test_the_session_start_keeps_the_fixed_timer() -> None:
    # §3.1: the pad has SESSION_REPLY_MAX_S (0.5 s) to answer LINK_RESET, more than the computed wait.
    host = _host()
    host.start(b"\x12\x34\x56\x78", 0.0)
    assert host.next_deadline() == ACK_TIMEOUT_S


# --- a spoiled ACK costs about one frame time (§3 refinements), on an explicit timeline --------


def _pad_reply_spoiled(pad_seq: int) -> bytes:
    """The pad's reply frame with its LRC flipped, as the simulated pad's bad_lrc sends it."""
    frame = bytearray(encode_frame(bytes([pad_seq]) + b"\x8fREPLY"))
    frame[-1] ^= 0xFF
    return bytes(frame)


def test_an_ack_right_behind_a_bad_lrc_frame_completes_the_frame_at_once() -> None:
    # 115200 baud: the host's 256-byte frame reaches the pad after 22.2 ms; the pad's reply
    # (spoiled) and its ACK come back behind it. Version 1.0 missed that ACK and waited 1 s.
    host = _host()
    host.send(PAYLOAD_256, 0.0)
    host.data_to_send()
    one_frame = wire_time_s(FRAME_256, 115200)
    host.receive_data(_pad_reply_spoiled(1) + encode_ack(1), one_frame)
    assert PayloadAcked(1) in host.events()
    assert host.in_flight is None
    assert host.data_to_send() == NAK_BYTES  # the spoiled reply is asked for again


def test_a_nak_right_behind_a_bad_lrc_frame_resends_at_once() -> None:
    host = _host()
    host.send(PAYLOAD_256, 0.0)
    frame = host.data_to_send()
    one_frame = wire_time_s(FRAME_256, 115200)
    host.receive_data(_pad_reply_spoiled(1) + NAK_BYTES, one_frame)
    assert host.data_to_send() == NAK_BYTES + frame  # NAK for the reply, then the resend
    assert [e for e in host.events() if isinstance(e, Retransmitted)] == [Retransmitted(1, 1, "nak")]
    host.receive_data(encode_ack(1), 2 * one_frame + wire_time_s(2, 115200))
    assert PayloadAcked(1) in host.events()  # one round trip after the NAK, not a timer


def test_the_second_bad_copy_of_a_frame_is_naked_too() -> None:
    # The pad's reply spoiled on its first two sends: each gets a NAK, the third is delivered,
    # and no timer ever ran out (version 1.0's hold-off left the second unanswered for 1 s).
    spoiled = iter([True, True])

    def spoil_two(data: bytes) -> list[bytes]:
        # data[3] is the SEQ of the pad's frame (after STX and the 2-byte LEN).
        return [_pad_reply_spoiled(data[3])] if next(spoiled, False) else [data]

    pair = LinkPair(_host(), device_to_host=spoil_two)
    pair.device.send(b"\x8fREPLY", pair.now)
    pair.run()
    assert pair.now == 0.0
    assert pair.received_by(Role.HOST) == [b"\x8fREPLY"]
    assert [e.nak_sent for e in pair.host_events if isinstance(e, FrameRejected)] == [True, True]
    assert [e.cause for e in pair.device_events if isinstance(e, Retransmitted)] == ["nak", "nak"]


def test_a_damaged_byte_inside_a_frame_still_costs_one_retransmission() -> None:
    # The hold-off still covers the wreckage: the STX-looking bytes inside one damaged frame.
    stx_rich = b"\x8f" + b"\x02\xff\xff" * 5
    pair = LinkPair(_host(), host_to_device=corrupt_write(1, offset=-1))
    pair.host.send(stx_rich, pair.now)
    pair.run()
    assert pair.received_by(Role.DEVICE) == [stx_rich]
    assert [e for e in pair.host_events if isinstance(e, Retransmitted)] == [Retransmitted(1, 1, "nak")]


# --- exactly once with the computed timer, as the property tests show for the fixed one -------

payload_lists = st.lists(st.binary(min_size=1, max_size=300), max_size=10)
budgets = st.integers(0, MAX_RETRANSMITS).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, MAX_RETRANSMITS - n)))


@given(payload_lists, payload_lists, st.integers(0, 2**32), budgets, st.sampled_from([19200, 115200]))
def test_exactly_once_in_order_with_the_computed_timer(
    to_device: list[bytes], to_host: list[bytes], seed: int, budget: tuple[int, int], baud: int
) -> None:
    pair = LinkPair(
        LinkSession(Role.HOST, ack_timer=AckTimer(baudrate=baud)),
        host_to_device=lossy(seed, drop=0.2, duplicate=0.1, max_faults=budget[0]),
        device_to_host=lossy(seed + 1, drop=0.2, duplicate=0.1, max_faults=budget[1]),
    )
    for payload in to_device:
        pair.host.send(payload, pair.now)
    for payload in to_host:
        pair.device.send(payload, pair.now)
    pair.run()
    assert pair.received_by(Role.DEVICE) == to_device
    assert pair.received_by(Role.HOST) == to_host
    assert not any(isinstance(e, LinkFailed) for e in pair.host_events + pair.device_events)


@given(payload_lists, st.integers(0, 2**32), budgets)
def test_exactly_once_over_a_corrupting_line_with_the_computed_timer(
    to_device: list[bytes], seed: int, budget: tuple[int, int]
) -> None:
    pair = LinkPair(
        _host(),
        host_to_device=lossy(seed, drop=0.1, duplicate=0, corrupt=0.3, max_faults=budget[0]),
        device_to_host=lossy(seed + 1, drop=0.1, duplicate=0, corrupt=0.3, max_faults=budget[1]),
    )
    for payload in to_device:
        pair.host.send(payload, pair.now)
    pair.run()
    assert pair.received_by(Role.DEVICE) == to_device
    assert not pair.host.failed
