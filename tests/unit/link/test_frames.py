"""Frame encoding and the incremental FrameDecoder (§2, §3 Receiving)."""

from __future__ import annotations

import pytest

from misbridge.link import (
    INTER_BYTE_TIMEOUT_S,
    MAX_DATA_LEN,
    MAX_FRAME_LEN,
    NAK_BYTES,
    AckControl,
    BadFrame,
    DataFrame,
    Decoded,
    Discarded,
    FrameDecoder,
    NakControl,
    compute_lrc,
    encode_ack,
    encode_bcd_length,
    encode_frame,
)

FIXTURE_DATA = [
    b"\x01\x06",
    bytes.fromhex("01 06 9F 22 00 01 37"),
    b"\xff" + bytes(range(256)),
    b"\x07" + b"\x02\x03\x06\x15" * 254 + b"\x02",  # control bytes inside DATA are just data
    b"\x2a" * MAX_DATA_LEN,
]


def raw_frame(data: bytes, *, length: bytes | None = None, etx: int = 0x03, bad_lrc: bool = False) -> bytes:
    """A frame with any field forced, for building bad frames."""
    body = (encode_bcd_length(len(data)) if length is None else length) + data + bytes([etx])
    return b"\x02" + body + bytes([compute_lrc(body) ^ (0x80 if bad_lrc else 0)])


def feed_chunks(decoder: FrameDecoder, chunks: list[bytes], now: float = 0.0) -> list[Decoded]:
    out: list[Decoded] = []
    for chunk in chunks:
        out += decoder.feed(chunk, now)
        assert decoder.buffered <= MAX_FRAME_LEN
    return out


def without_garbage(items: list[Decoded]) -> list[Decoded]:
    return [i for i in items if not isinstance(i, Discarded)]


# --- encoding --------------------------------------------------------------------------------


def test_encode_frame_layout() -> None:
    frame = encode_frame(b"\x01\x06")
    assert frame == b"\x02\x00\x02\x01\x06\x03" + bytes([0x00 ^ 0x02 ^ 0x01 ^ 0x06 ^ 0x03])


def test_largest_frame_is_max_frame_len() -> None:
    assert len(encode_frame(b"\x01" * MAX_DATA_LEN)) == MAX_FRAME_LEN


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01" * (MAX_DATA_LEN + 1)])
def test_encode_frame_refuses_what_a_receiver_rejects(data: bytes) -> None:
    with pytest.raises(ValueError, match="DATA"):
        encode_frame(data)


def test_control_sequences() -> None:
    assert encode_ack(1) == b"\x06\x01"
    assert encode_ack(255) == b"\x06\xff"
    assert NAK_BYTES == b"\x15"


@pytest.mark.parametrize("seq", [0, 256, -1])
def test_encode_ack_rejects_bad_seq(seq: int) -> None:
    with pytest.raises(ValueError, match="SEQ"):
        encode_ack(seq)


def test_data_frame_accessors_and_repr_hide_content() -> None:
    frame = DataFrame(b"\x05\x82SECRET")
    assert (frame.seq, frame.payload) == (5, b"\x82SECRET")
    assert repr(frame) == "DataFrame(seq=5, len=8)"


# --- whole / byte-at-a-time / trailing data (h11's triad) -------------------------------------


@pytest.mark.parametrize("data", FIXTURE_DATA)
def test_whole_frame(data: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(data), 0.0) == [DataFrame(data)]
    assert decoder.buffered == 0
    assert decoder.next_deadline() is None


@pytest.mark.parametrize("data", FIXTURE_DATA)
def test_byte_at_a_time(data: bytes) -> None:
    frame = encode_frame(data)
    decoder = FrameDecoder()
    out = feed_chunks(decoder, [frame[i : i + 1] for i in range(len(frame))])
    assert out == [DataFrame(data)]


@pytest.mark.parametrize("data", FIXTURE_DATA)
def test_trailing_data_waits_for_the_next_frame(data: bytes) -> None:
    second = encode_frame(b"\x09\x85")
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(data) + second[:4], 0.0) == [DataFrame(data)]
    assert decoder.buffered == 4
    assert decoder.feed(second[4:], 0.1) == [DataFrame(b"\x09\x85")]


def test_frames_and_controls_interleaved() -> None:
    stream = b"\x06\x01" + encode_frame(b"\x01\x06") + b"\x15" + encode_frame(b"\x02\x06") + b"\x06\x02"
    expected = [AckControl(1), DataFrame(b"\x01\x06"), NakControl(), DataFrame(b"\x02\x06"), AckControl(2)]
    assert FrameDecoder().feed(stream, 0.0) == expected
    assert feed_chunks(FrameDecoder(), [stream[i : i + 1] for i in range(len(stream))]) == expected


def test_empty_feed_does_nothing() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"", 0.0) == []
    assert decoder.next_deadline() is None


def test_large_input_in_one_feed() -> None:
    frames = [encode_frame(bytes([i % 255 + 1]) + b"x" * 700) for i in range(10)]
    out = FrameDecoder().feed(b"".join(frames), 0.0)
    assert [f.data[0] for f in out if isinstance(f, DataFrame)] == [i % 255 + 1 for i in range(10)]


# --- garbage and controls --------------------------------------------------------------------


def test_garbage_prefix_is_discarded() -> None:
    out = FrameDecoder().feed(b"noise\x00\xff" + encode_frame(b"\x01\x06"), 0.0)
    assert out == [Discarded(7), DataFrame(b"\x01\x06")]


def test_ack_split_across_feeds_waits_for_its_seq() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x06", 0.0) == []
    assert decoder.next_deadline() == INTER_BYTE_TIMEOUT_S
    assert decoder.feed(b"\x07", 0.1) == [AckControl(7)]


def test_ack_with_seq_zero_is_garbage() -> None:
    assert FrameDecoder().feed(b"\x06\x00\x15", 0.0) == [Discarded(2), NakControl()]


def test_ack_without_its_seq_times_out_as_garbage() -> None:
    decoder = FrameDecoder()
    decoder.feed(b"\x06", 0.0)
    assert decoder.check_timeout(INTER_BYTE_TIMEOUT_S) == [Discarded(1)]
    assert decoder.buffered == 0


# --- bad frames and resync -------------------------------------------------------------------


def test_bad_lrc_then_next_frame_still_decoded() -> None:
    bad = raw_frame(b"\x01\x30\x31", bad_lrc=True)
    out = FrameDecoder().feed(bad + encode_frame(b"\x02\x30\x31"), 0.0)
    assert without_garbage(out) == [BadFrame("bad LRC"), DataFrame(b"\x02\x30\x31")]


def test_missing_etx() -> None:
    out = FrameDecoder().feed(raw_frame(b"\x01\x06", etx=0x04), 0.0)
    assert without_garbage(out)[0] == BadFrame("no ETX after DATA")


def test_a_seq_zero_frame_is_delivered_for_the_session_to_judge() -> None:
    # §3.1: SEQ 0 marks the session start's link-control frames; the session decides, not the decoder.
    assert without_garbage(FrameDecoder().feed(raw_frame(b"\x00\x06"), 0.0)) == [DataFrame(b"\x00\x06")]


@pytest.mark.parametrize(
    ("length", "reason"),
    [
        (b"\x10\x20", "LEN 1020 > MAX_DATA_LEN"),
        (b"\x99\x99", "LEN 9999 > MAX_DATA_LEN"),
        (b"\x00\x0a", "LEN is not BCD"),
        (b"\xf0\x00", "LEN is not BCD"),
        (b"\x00\x01", "LEN 1 leaves no room for SEQ and TYPE"),
        (b"\x00\x00", "LEN 0 leaves no room for SEQ and TYPE"),
    ],
)
def test_bad_len_is_rejected_at_once(length: bytes, reason: str) -> None:
    # Only STX and LEN are fed: the decoder must not wait for DATA it will reject anyway.
    decoder = FrameDecoder()
    assert decoder.feed(b"\x02" + length, 0.0)[0] == BadFrame(reason)
    assert decoder.feed(encode_frame(b"\x03\x06"), 0.0)[-1] == DataFrame(b"\x03\x06")


def test_resync_finds_a_frame_that_started_inside_a_bad_one() -> None:
    # §3 rule 4: only the STX of the bad frame is dropped; the real frame inside is found.
    inner = encode_frame(b"\x05\x30\x31")
    outer = raw_frame(b"\x01\x30" + inner, bad_lrc=True)
    out = FrameDecoder().feed(outer, 0.0)
    assert without_garbage(out) == [BadFrame("bad LRC"), DataFrame(b"\x05\x30\x31")]


def test_resync_ignores_control_bytes_inside_a_damaged_frame() -> None:
    # After a bad frame only STX is hunted for: 15 and 06 09 here are frame content.
    damaged = raw_frame(b"\x01\x15\x30\x06\x09", bad_lrc=True)
    assert without_garbage(FrameDecoder().feed(damaged, 0.0)) == [BadFrame("bad LRC")]


def test_damaged_len_hides_the_controls_of_the_frame_body() -> None:
    # Found by a seeded sweep: this frame's LRC is 0x06.  With LEN damaged, the body is
    # hunted through; read as ACK, the 06 would take the retransmission's STX as its SEQ.
    frame = encode_frame(bytes.fromhex("01 6B 9A F1"))
    assert frame[-1] == 0x06
    damaged = frame[:1] + b"\xfc" + frame[2:]
    out = FrameDecoder().feed(damaged + frame, 0.0)
    assert without_garbage(out) == [BadFrame("LEN is not BCD"), DataFrame(bytes.fromhex("01 6B 9A F1"))]


def test_controls_count_again_after_a_good_frame() -> None:
    # No ETX where LEN says: the end of the damaged frame is unknown, so the 06 05 behind it
    # may be its content; the good frame ends the doubt.
    damaged = raw_frame(b"\x01\x30\x31", etx=0x04)
    good = encode_frame(b"\x02\x30\x31")
    out = without_garbage(FrameDecoder().feed(damaged + b"\x06\x05" + good + b"\x06\x05\x15", 0.0))
    assert out == [BadFrame("no ETX after DATA"), DataFrame(b"\x02\x30\x31"), AckControl(5), NakControl()]


def test_controls_count_again_after_a_pause() -> None:
    decoder = FrameDecoder()
    decoder.feed(raw_frame(b"\x01\x30\x31", etx=0x04), 0.0)
    assert decoder.feed(b"\x06\x05", INTER_BYTE_TIMEOUT_S / 2) == [Discarded(2)]
    assert decoder.feed(b"\x06\x05", INTER_BYTE_TIMEOUT_S * 2) == [AckControl(5)]


# --- the known end of a frame whose LRC alone was bad ------------------------------------------


@pytest.mark.parametrize("control", [b"\x06\x05", b"\x15"])
def test_a_control_right_behind_a_bad_lrc_frame_counts(control: bytes) -> None:
    # ETX sat where LEN put it: the frame ended at its LRC, so what follows is a new unit.
    out = FrameDecoder().feed(raw_frame(b"\x01\x15\x30\x06\x09", bad_lrc=True) + control, 0.0)
    assert without_garbage(out) == [BadFrame("bad LRC"), AckControl(5) if control[0] == 0x06 else NakControl()]


def test_a_control_right_behind_a_bad_lrc_frame_counts_in_a_later_read() -> None:
    decoder = FrameDecoder()
    assert without_garbage(decoder.feed(raw_frame(b"\x01\x30\x31", bad_lrc=True), 0.0)) == [BadFrame("bad LRC")]
    assert decoder.feed(b"\x06\x05", 0.001) == [AckControl(5)]


def test_controls_are_ignored_behind_a_bad_frame_with_an_unknown_end() -> None:
    # LEN damaged (not BCD): the rest of the frame is still arriving and may hold 06 xx.
    out = FrameDecoder().feed(raw_frame(b"\x01\x30\x31", length=b"\x00\x0a") + b"\x06\x05\x15", 0.0)
    assert without_garbage(out) == [BadFrame("LEN is not BCD")]


def test_a_frame_started_inside_a_bad_lrc_frame_may_not_run_past_its_end() -> None:
    # The LRC is 02 and LEN 06 05 would make the stray frame swallow the real ACK behind it
    # (and wait half a second for the rest); it is rejected at once instead, in the wreckage.
    data = next(bytes([1, 0x06, x]) for x in range(256) if raw_frame(bytes([1, 0x06, x]), bad_lrc=True)[-1] == 0x02)
    damaged = raw_frame(data, bad_lrc=True)
    out = FrameDecoder().feed(damaged + b"\x06\x05", 0.0)
    assert without_garbage(out) == [
        BadFrame("bad LRC"),
        BadFrame("runs past the end of a damaged frame", in_wreckage=True),
        AckControl(5),
    ]


def test_a_frame_inside_a_bad_lrc_frame_is_still_found() -> None:
    inner = encode_frame(b"\x05\x30\x31")
    out = FrameDecoder().feed(raw_frame(b"\x01\x30" + inner, bad_lrc=True) + b"\x06\x07", 0.0)
    assert without_garbage(out) == [BadFrame("bad LRC"), DataFrame(b"\x05\x30\x31"), AckControl(7)]


def test_a_bad_frame_after_the_known_end_is_a_new_sending() -> None:
    # The resend, spoiled again: not wreckage of the first, so the session NAKs it too.
    damaged = raw_frame(b"\x01\x30\x31", bad_lrc=True)
    decoder = FrameDecoder()
    first = without_garbage(decoder.feed(damaged, 0.0))
    second = without_garbage(decoder.feed(damaged, 0.001))
    assert first == second == [BadFrame("bad LRC", in_wreckage=False)]


def test_bad_frames_inside_wreckage_are_marked() -> None:
    out = without_garbage(FrameDecoder().feed(b"\x02\xff\x00\x02\xff\x00", 0.0))
    assert out == [BadFrame("LEN is not BCD"), BadFrame("LEN is not BCD", in_wreckage=True)]


def test_ack_swallowed_by_a_stray_stx_is_not_recovered() -> None:
    # The price of ignoring controls inside rejected bytes: 02 | 06 01 reads LEN 0601 and
    # waits; after the timeout the 06 01 is re-hunted as frame content.  The sender's ACK
    # timer resends the frame, and its second ACK gets through.
    decoder = FrameDecoder()
    assert decoder.feed(b"\x02\x06\x01", 0.0) == []
    assert without_garbage(decoder.check_timeout(INTER_BYTE_TIMEOUT_S)) == [BadFrame("inter-byte timeout")]


def test_stray_stx_with_non_bcd_len_costs_nothing() -> None:
    out = FrameDecoder().feed(b"\x02\xff" + encode_frame(b"\x01\x06"), 0.0)
    assert without_garbage(out) == [BadFrame("LEN is not BCD"), DataFrame(b"\x01\x06")]


def test_stray_stx_that_swallows_a_frame_is_resolved_by_the_inter_byte_timeout() -> None:
    # 02 | 02 00 ... reads LEN 0x02 0x00 = 200 and waits; the timeout rejects it and the
    # resync then finds the real frame among the buffered bytes.
    decoder = FrameDecoder()
    assert decoder.feed(b"\x02" + encode_frame(b"\x01\x06"), 0.0) == []
    out = decoder.check_timeout(INTER_BYTE_TIMEOUT_S)
    assert without_garbage(out) == [BadFrame("inter-byte timeout"), DataFrame(b"\x01\x06")]
    assert decoder.buffered == 0


# --- inter-byte timeout ----------------------------------------------------------------------


def test_inter_byte_timeout_turns_a_stalled_frame_into_a_bad_frame() -> None:
    frame = encode_frame(b"\x01\x06")
    decoder = FrameDecoder()
    assert decoder.feed(frame[:5], 10.0) == []
    assert decoder.next_deadline() == 10.0 + INTER_BYTE_TIMEOUT_S
    assert decoder.check_timeout(10.0 + INTER_BYTE_TIMEOUT_S - 0.01) == []
    out = decoder.check_timeout(10.0 + INTER_BYTE_TIMEOUT_S)
    assert out[0] == BadFrame("inter-byte timeout")
    assert decoder.buffered == 0
    assert decoder.next_deadline() is None


def test_each_byte_restarts_the_inter_byte_timer() -> None:
    frame = encode_frame(b"\x01\x06")
    decoder = FrameDecoder()
    out: list[Decoded] = []
    for i, byte in enumerate(frame):
        now = i * 0.4
        out += decoder.check_timeout(now)
        out += decoder.feed(bytes([byte]), now)
    assert out == [DataFrame(b"\x01\x06")]


def test_feed_after_a_long_gap_applies_the_overdue_timeout_first() -> None:
    frame = encode_frame(b"\x01\x06")
    decoder = FrameDecoder()
    decoder.feed(frame[:5], 0.0)
    out = decoder.feed(frame, 5.0)
    assert out[0] == BadFrame("inter-byte timeout")
    assert out[-1] == DataFrame(b"\x01\x06")


def test_custom_inter_byte_timeout() -> None:
    decoder = FrameDecoder(inter_byte_timeout=2.0)
    decoder.feed(b"\x02", 1.0)
    assert decoder.next_deadline() == 3.0


def test_buffer_never_exceeds_max_frame_len() -> None:
    # A stream of STX bytes: every one is a candidate frame claiming LEN 0x02 0x02 = 202.
    decoder = FrameDecoder()
    for _ in range(50):
        decoder.feed(b"\x02" * 97, 0.0)
        assert decoder.buffered <= MAX_FRAME_LEN
    decoder.check_timeout(1.0)
    assert decoder.buffered == 0
