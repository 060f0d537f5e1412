"""The simulated pad's code and choice customers: control lines, scenario sections, trace, flags."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from misbridge.link import Choose, CodeData, ReadCard, TransType
from misbridge.link.frames import encode_frame
from misbridge.link.messages import encode_message
from simulators.pinpad.cli import add_arguments, build_pad
from simulators.pinpad.control import parse_line, reply_for
from simulators.pinpad.customer import ChoiceAction, CodeAction, Customer, ScriptedChoice, ScriptedCode
from simulators.pinpad.device import SimulatedPinPad
from simulators.pinpad.faults import describe_unit, load_scenario
from simulators.pinpad.prompts import confirmation


def test_control_lines_pick_the_queue_by_step() -> None:
    assert isinstance(parse_line(b'{"card": "points"}'), Customer)
    code = parse_line(b'{"step": "code", "code": "ABC-123", "source": "barcode", "hesitate_s": 1}')
    assert code == ScriptedCode("ABC-123", "barcode", CodeAction.GIVE, 1.0)
    assert parse_line(b'{"step": "choice", "option": 2}') == ScriptedChoice(2)
    assert parse_line(b'{"step": "choice", "action": "cancel"}') == ScriptedChoice(action=ChoiceAction.CANCEL)


def test_control_lines_enqueue_on_the_pad() -> None:
    pad = SimulatedPinPad()
    assert reply_for(pad, b'{"step": "code", "action": "none"}') == {"ok": True}
    assert reply_for(pad, b'{"step": "choice", "option": 9}') == {"ok": True}
    assert (len(pad.prompts.codes), len(pad.prompts.choices), pad.queued_customers) == (1, 1, 0)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"step": "pin"}', "unknown step"),
        (b'{"step": "code", "card": "points"}', "unknown keys: card"),
        (b'{"step": "code", "code": "line\\nbreak"}', "printable ASCII"),
        (b'{"step": "code", "code": ""}', "printable ASCII"),
        (b'{"step": "code", "source": "nfc"}', "unknown source"),
        (b'{"step": "code", "code": 5}', "object of type"),
        (b'{"step": "choice", "option": 0}', "1 to 9"),
        (b'{"step": "choice", "option": "2"}', "1 to 9"),
        (b'{"step": "choice", "action": "pay"}', "unknown action"),
        (b'{"step": "choice", "hesitate_s": -1}', "between 0"),
    ],
)
def test_bad_prompt_lines_are_refused(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_line(line)


def test_scenario_queues_codes_and_choices(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(
        '[pad]\nscanner = false\n[[codes]]\ncode = "123"\nsource = "keypad"\n'
        '[[codes]]\naction = "cancel"\n[[choices]]\noption = 3\n'
    )
    scenario = load_scenario(path)
    assert scenario.codes == [ScriptedCode("123", "keypad"), ScriptedCode(action="cancel")]
    assert scenario.choices == [ScriptedChoice(3)]
    args = argparse.ArgumentParser()
    add_arguments(args)
    pad = build_pad(args.parse_args(["--scenario", str(path)]))
    assert (len(pad.prompts.codes), len(pad.prompts.choices), pad.prompts.scanner) == (2, 1, False)
    assert build_pad(args.parse_args(["--no-scanner"])).prompts.scanner is False


def test_the_trace_never_shows_the_code() -> None:
    line = describe_unit(encode_frame(b"\x01" + encode_message(CodeData(4, "SECRET-PAYMENT-CODE", "02"))))
    assert "CodeData id=4" in line
    assert "source=02" in line
    assert "SECRET" not in line
    assert "elided" in line
    choose = describe_unit(encode_frame(b"\x01" + encode_message(Choose(5, 30, ("A", "B")))))
    assert "Choose id=5" in choose
    card = describe_unit(encode_frame(b"\x01" + encode_message(ReadCard(6, 100, 30, trans_type="01", reference="T9"))))
    assert "trans_type=01 reference=T9" in card


def test_confirmation_lines() -> None:
    assert confirmation(TransType.SALE, 4080, "") == "40.80"
    assert confirmation(TransType.VOID, 5, "") == "VOID 0.05"
    assert confirmation(TransType.REFUND, 100000, "ORD1") == "REFUND 1000.00 of ORD1"
