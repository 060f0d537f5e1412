"""The simulator's fault plumbing and trace formatting, without a pty."""

from __future__ import annotations

import argparse
import itertools
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from misbridge.link import (
    CardData,
    DeviceInfo,
    DeviceInfoRequest,
    DeviceStatus,
    FrameRejected,
    LinkFailed,
    Message,
    PinBlock,
    Progress,
    ReadCard,
    ReadPin,
    Retransmitted,
    Role,
    StatusRequest,
    encode_message,
)
from misbridge.link.frames import NAK_BYTES, encode_ack, encode_frame
from misbridge.link.testing import LinkPair
from simulators.pinpad.cli import add_arguments, build_pad
from simulators.pinpad.customer import Action
from simulators.pinpad.device import SimulatedPinPad
from simulators.pinpad.faults import GARBAGE, Faults, describe_unit, load_scenario, split_units


def _frame(seq: int, msg: object) -> bytes:
    return encode_frame(bytes([seq]) + encode_message(msg))  # type: ignore[arg-type]


def test_split_units_separates_acks_naks_and_frames() -> None:
    frame = _frame(1, DeviceInfoRequest(7))
    units = [encode_ack(3), frame, NAK_BYTES, frame]
    assert split_units(b"".join(units)) == units


def test_trace_lines() -> None:
    assert describe_unit(encode_ack(9)) == "ACK seq=9 | 06 09"
    assert describe_unit(NAK_BYTES) == "NAK | 15"
    assert describe_unit(GARBAGE).startswith(f"garbage ({len(GARBAGE)} bytes)")
    info = describe_unit(_frame(2, DeviceInfoRequest(7)))
    assert info.startswith("frame seq=2 DeviceInfoRequest id=7 | 02 ")


def test_trace_elides_encrypted_fields() -> None:
    card = CardData(
        4, card_type="00", masked_pan="622202******1234", enc_pan_hex="AB" * 16, enc_track2_hex="CD" * 24, expiry="2912"
    )
    line = describe_unit(_frame(5, card))
    assert "masked_pan=622202******1234" in line
    assert "elided" in line
    assert "ab ab" not in line.lower()
    assert "cd cd" not in line.lower()
    assert "2912" not in line
    pin = describe_unit(_frame(6, PinBlock(4, "0123456789ABCDEF", 1)))
    assert "0123456789abcdef" not in pin.lower()
    assert "01 23 45" not in pin


def test_scenario_file(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[pad]\ncard = "points"\n[faults]\nnak = 2\nunplug_after = "card-data"\n'
        '[[customers]]\naction = "cancel-pin"\n[[customers]]\npin = "000000"\n'
    )
    scenario = load_scenario(path)
    assert scenario.pad == {"card": "points"}
    assert scenario.faults == Faults(nak=2, unplug_after="card-data")
    assert [c.action for c in scenario.customers] == [Action.CANCEL_PIN, Action.PAY]
    assert scenario.customers[1].typed_pin == "000000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[faults]\nnak = -1\n", "must not be negative"),
        ("[faults]\nexplode = 1\n", "unknown \\[faults\\] keys explode"),
        ('[faults]\nunplug_after = "lunch"\n', "unknown unplug_after"),
        ("[pad]\ncolour = 1\n", "unknown \\[pad\\] keys"),
        ("[weather]\n", "unknown sections"),
        ('[[customers]]\naction = "dance"\n', "unknown action"),
        ("[[customers]]\nshoe = 1\n", "unexpected keyword"),
        ("not toml ==", "scenario"),
        ("[faults]\nnak_rate = 1.0\n", "nak_rate must be a probability"),
        ("[faults]\nbad_lrc_rate = -0.01\n", "bad_lrc_rate must be a probability"),
        ('[faults]\nbad_lrc_rate = "5 %"\n', "bad_lrc_rate must be a probability"),
        ('[faults]\nseed = "x"\n', "seed must be an integer"),
    ],
)
def test_bad_scenarios_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_scenario(path)


# -- rate faults -------------------------------------------------------------------------------


def _spoiled(pad: SimulatedPinPad, units: list[bytes]) -> list[bytes]:
    """The pad's fault step (what its line writes), unit by unit, without a pty."""
    return [out for unit in units for out, _note in pad._line.spoil(unit)]


def _rate_pad(**faults: Any) -> SimulatedPinPad:
    return SimulatedPinPad(faults=Faults(**faults))


def _ack_and_frame_units(count: int) -> list[bytes]:
    return [unit for i in range(count) for unit in (encode_ack(i % 255 + 1), _frame(i % 255 + 1, StatusRequest(i + 1)))]


def test_rate_faults_are_reproducible_with_the_same_seed() -> None:
    units = _ack_and_frame_units(400)
    first = _spoiled(_rate_pad(nak_rate=0.2, bad_lrc_rate=0.2, seed=7), units)
    again = _spoiled(_rate_pad(nak_rate=0.2, bad_lrc_rate=0.2, seed=7), units)
    other = _spoiled(_rate_pad(nak_rate=0.2, bad_lrc_rate=0.2, seed=8), units)
    assert first == again
    assert first != units  # something was spoiled...
    assert other != first  # ...and the seed decides what


def test_each_rate_has_its_own_draws() -> None:
    """The k-th ACK's fate does not depend on the bad-LRC rate (nor on the frames between ACKs)."""
    acks = [encode_ack(i % 255 + 1) for i in range(300)]
    alone = _spoiled(_rate_pad(nak_rate=0.3, seed=3), acks)
    mixed = _spoiled(_rate_pad(nak_rate=0.3, bad_lrc_rate=0.5, seed=3), _ack_and_frame_units(300))
    assert [u for u in mixed if len(u) <= 2] == alone
    assert NAK_BYTES in alone


def test_rate_zero_never_faults() -> None:
    units = _ack_and_frame_units(2000)
    pad = _rate_pad(nak_rate=0.0, bad_lrc_rate=0.0, seed=1)
    assert _spoiled(pad, units) == units
    assert not pad.faults.injected
    assert pad.faults.summary() == ""
    # One rate at 0 stays at 0 while the other one fires.
    only_lrc = _rate_pad(bad_lrc_rate=0.5)
    out = _spoiled(only_lrc, units)
    assert [u for u in out if len(u) <= 2] == [u for u in units if len(u) <= 2]
    assert only_lrc.faults.injected["bad_lrc"] > 0
    assert "nak" not in only_lrc.faults.injected


def test_a_rate_spoils_about_that_share_and_decides_every_resend_again() -> None:
    frame = _frame(4, StatusRequest(9))
    pad = _rate_pad(bad_lrc_rate=0.05, seed=0)
    sends = _spoiled(pad, [frame] * 4000)  # the same frame resent: each send is decided on its own
    bad = [out != frame for out in sends]
    assert all(out == frame or (out[:-1] == frame[:-1] and out[-1] == frame[-1] ^ 0xFF) for out in sends)
    assert 120 <= sum(bad) <= 280  # 5 % of 4000 is 200, sd ~14
    assert any(a and b for a, b in itertools.pairwise(bad))  # a resend spoiled again
    assert any(a and not b for a, b in itertools.pairwise(bad))  # ...or let through
    assert pad.faults.injected["bad_lrc"] == sum(bad)
    assert pad.faults.summary() == f"bad_lrc {sum(bad)}/4000"


def test_a_count_is_used_up_before_the_rate_decides() -> None:
    ack = encode_ack(5)
    pad = _rate_pad(nak=2, nak_rate=0.01, seed=0)
    out = _spoiled(pad, [ack] * 2)
    assert out == [NAK_BYTES, NAK_BYTES]
    assert pad.faults.nak == 0
    assert _spoiled(pad, [ack] * 20) == [ack] * 20  # seed 0 draws no NAK in the next 20 at 1 %


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"nak_rate": 1.0}, "nak_rate must be a probability with 0 <= nak_rate < 1, not 1.0 \\(at 1"),
        ({"bad_lrc_rate": 1}, "bad_lrc_rate must be a probability"),
        ({"nak_rate": 5}, "5 % is 0.05"),
        ({"nak_rate": -0.05}, "nak_rate must be a probability"),
        ({"bad_lrc_rate": math.nan}, "bad_lrc_rate must be a probability"),
        ({"nak_rate": True}, "nak_rate must be a probability"),
        ({"seed": 1.5}, "seed must be an integer"),
    ],
)
def test_bad_rates_are_refused_naming_the_field(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Faults(**kwargs)


def test_rates_and_seed_from_scenario_and_flags(tmp_path: Path) -> None:
    path = tmp_path / "rates.toml"
    path.write_text("[faults]\nnak_rate = 0.05\nbad_lrc_rate = 0.1\nseed = 3\nnak = 1\n")
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    pad = build_pad(parser.parse_args(["--scenario", str(path), "--bad-lrc-rate", "0.02", "--fault-seed", "9"]))
    assert pad.faults == Faults(nak=1, nak_rate=0.05, bad_lrc_rate=0.02, seed=9)
    with pytest.raises(ValueError, match="nak_rate must be a probability"):
        build_pad(parser.parse_args(["--nak-rate", "1"]))


def _transaction(rid: int) -> tuple[list[Message], list[Message]]:
    commands: list[Message] = [
        DeviceInfoRequest(rid),
        ReadCard(rid + 1, 1234, 60),
        ReadPin(rid + 2, 1234, 60),
        StatusRequest(rid + 3),
    ]
    events: list[Message] = [
        DeviceInfo(rid, "MISBRIDGE-SIM", "1.0.0", "SIM0001", 1),
        Progress(rid + 1, "01"),
        CardData(rid + 1, "00", "622562******8888", "AB" * 8, "CD" * 16, "2812"),
        Progress(rid + 2, "03"),
        *(Progress(rid + 2, "04", digits) for digits in range(1, 7)),
        PinBlock(rid + 2, "0F" * 8, 1),
        DeviceStatus(rid + 3, "00"),
    ]
    return commands, events


def _through_pad_faults(pad: SimulatedPinPad) -> Callable[[bytes], list[bytes]]:
    """A LinkPair manipulator for the pad-to-host direction: the pad's own fault step."""
    return lambda data: _spoiled(pad, split_units(data))


def test_with_5_percent_rates_every_message_arrives_exactly_once() -> None:
    """A host session against the pad's faults: 5 % of ACKs NAKed, 5 % of the pad's frames corrupted."""
    injected: dict[str, int] = {"nak": 0, "bad_lrc": 0}
    host_retransmits = pad_retransmits = rejected = 0
    for seed in range(40):
        pad = _rate_pad(nak_rate=0.05, bad_lrc_rate=0.05, seed=seed)
        pair = LinkPair(device_to_host=_through_pad_faults(pad))
        commands: list[bytes] = []
        events: list[bytes] = []
        for rid in (10, 20, 30):
            sent, answered = _transaction(rid)
            commands += [encode_message(m) for m in sent]
            events += [encode_message(m) for m in answered]
        for payload in commands:
            pair.host.send(payload, pair.now)
        for payload in events:
            pair.device.send(payload, pair.now)
        pair.run()
        assert not [e for e in pair.host_events + pair.device_events if isinstance(e, LinkFailed)], seed
        assert pair.received_by(Role.DEVICE) == commands, seed  # the pad: each command once, in order
        assert pair.received_by(Role.HOST) == events, seed  # the host: each reply once, in order
        for kind in injected:
            injected[kind] += pad.faults.injected[kind]
        # An ACK turned into NAK leaves the host's frame unacknowledged: it resends on the NAK, or
        # on its ACK timer when the NAK came right behind a bad frame (the decoder skips it then).
        host_retransmits += sum(isinstance(e, Retransmitted) for e in pair.host_events)
        pad_retransmits += sum(isinstance(e, Retransmitted) for e in pair.device_events)
        rejected += sum(isinstance(e, FrameRejected) for e in pair.host_events)
    # The faults really were on the line and really were recovered from.
    assert injected["nak"] >= 10
    assert injected["bad_lrc"] >= 20
    assert host_retransmits >= injected["nak"]
    assert rejected >= injected["bad_lrc"]
    assert pad_retransmits >= injected["bad_lrc"]
