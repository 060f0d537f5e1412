"""The LRC (§2) and the worked example of §9, byte for byte."""

from __future__ import annotations

from functools import reduce
from operator import xor

from misbridge.link import (
    DataFrame,
    DeviceStatus,
    FrameDecoder,
    LinkSession,
    Role,
    StatusRequest,
    compute_lrc,
    decode_message,
    encode_frame,
    encode_message,
    lrc_ok,
)

# §9: STATUS with REQUEST_ID 7, sent as the host's first frame (SEQ 1).
EXAMPLE_DATA = bytes.fromhex("01 06 9F 22 00 01 37")
EXAMPLE_FRAME = bytes.fromhex("02 00 07 01 06 9F 22 00 01 37 03 88")


def test_lrc_of_the_worked_example() -> None:
    assert compute_lrc(bytes.fromhex("00 07 01 06 9F 22 00 01 37 03")) == 0x88


def test_lrc_of_nothing_is_zero() -> None:
    assert compute_lrc(b"") == 0


def test_lrc_ok() -> None:
    body = EXAMPLE_FRAME[1:-1]
    assert lrc_ok(body, 0x88)
    assert not lrc_ok(body, 0x89)


def test_xor_over_len_to_lrc_is_zero_for_valid_frames() -> None:
    for data in (EXAMPLE_DATA, b"\x01\x02", bytes(range(1, 256)) * 3, b"\xff" * 1019):
        assert reduce(xor, encode_frame(data)[1:], 0) == 0


def test_worked_example_encodes_byte_for_byte() -> None:
    assert encode_message(StatusRequest(request_id=7)) == EXAMPLE_DATA[1:]
    assert encode_frame(EXAMPLE_DATA) == EXAMPLE_FRAME


def test_worked_example_as_the_session_sends_it() -> None:
    host = LinkSession(Role.HOST)
    assert host.send(encode_message(StatusRequest(request_id=7)), now=0.0) == 1
    assert host.data_to_send() == EXAMPLE_FRAME


def test_worked_example_exchange() -> None:
    host, pad = LinkSession(Role.HOST), LinkSession(Role.DEVICE)
    host.send(encode_message(StatusRequest(7)), 0.0)
    pad.receive_data(host.data_to_send(), 0.0)
    # "The pad answers 06 01 (ACK SEQ 1), then its own frame SEQ 1 STATUS_REPLY..."
    pad.send(encode_message(DeviceStatus(7, "00")), 0.0)
    wire = pad.data_to_send()
    assert wire[:2] == b"\x06\x01"
    reply = FrameDecoder().feed(wire[2:], 0.0)
    assert len(reply) == 1
    assert isinstance(reply[0], DataFrame)
    assert reply[0].seq == 1
    assert decode_message(reply[0].payload) == DeviceStatus(7, "00")
    # "...which the host acknowledges with 06 01."
    host.receive_data(wire, 0.0)
    assert host.data_to_send() == b"\x06\x01"
