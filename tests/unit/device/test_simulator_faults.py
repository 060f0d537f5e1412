"""The simulator's fault plumbing and trace formatting, without a pty."""

from __future__ import annotations

from pathlib import Path

import pytest

from misbridge.link import CardData, DeviceInfoRequest, PinBlock, encode_message
from misbridge.link.frames import NAK_BYTES, encode_ack, encode_frame
from simulators.pinpad.customer import Action
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
    card = CardData(4, card_type="00", masked_pan="622202******1234", enc_pan_hex="AB" * 16,
                    enc_track2_hex="CD" * 24, expiry="2912")
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
    path.write_text('[pad]\ncard = "points"\n[faults]\nnak = 2\nunplug_after = "card-data"\n'
                    '[[customers]]\naction = "cancel-pin"\n[[customers]]\npin = "000000"\n')
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
    ],
)
def test_bad_scenarios_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        load_scenario(path)
