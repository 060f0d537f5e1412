"""The simulated pad's control lines: what a technician or a test may script."""

from __future__ import annotations

import pytest

from simulators.crypto import TEST_MASTER_KEY_HEX, key_check_value
from simulators.pinpad.control import parse_customer, reply_for
from simulators.pinpad.customer import MAX_HESITATE_S, Action
from simulators.pinpad.device import SimulatedPinPad


def test_a_full_line_becomes_a_customer() -> None:
    customer = parse_customer(b'{"card": "points", "pin": "123456", "action": "no-pin", "hesitate_s": 1.5}')
    assert (customer.card, customer.pin, customer.action) == ("points", "123456", Action.NO_PIN)
    assert customer.hesitate_s == 1.5


def test_hesitation_defaults_to_none() -> None:
    assert parse_customer(b'{"card": "prepaid"}').hesitate_s == 0.0


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"hesitate_s": "2"}', "number of seconds"),
        (b'{"hesitate_s": true}', "number of seconds"),
        (b'{"hesitate_s": -1}', "between 0"),
        (f'{{"hesitate_s": {MAX_HESITATE_S + 1}}}'.encode(), "between 0"),
        (b'{"card": "nope"}', "unknown card"),
        (b'{"colour": "red"}', "unknown keys: colour"),
        (b"[1]", "JSON object"),
    ],
)
def test_bad_lines_are_refused_with_the_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_customer(line)


STORE_MASTER_KCV = key_check_value(bytes.fromhex(TEST_MASTER_KEY_HEX))


@pytest.mark.parametrize(
    ("setup", "master", "working"),
    [
        ("provisioned", "store", "none"),
        ("stale", "store", "other"),
        ("foreign", "other", "other"),
        ("unprovisioned", "none", "none"),
    ],
)
def test_a_keys_line_replaces_the_pads_keys(setup: str, master: str, working: str) -> None:
    pad = SimulatedPinPad()
    before = pad.key_check_values()
    assert reply_for(pad, f'{{"step": "keys", "keys": "{setup}"}}'.encode()) == {"ok": True}
    master_kcv, working_kcv = pad.key_check_values()
    assert master_kcv == {"store": STORE_MASTER_KCV, "none": ""}.get(master, master_kcv)
    if master == "other":
        assert master_kcv not in ("", STORE_MASTER_KCV)
    if working == "none":
        assert working_kcv == ""
    else:  # a key nobody issued: not the one the pad held before, and another one each time
        assert working_kcv not in ("", before[1])
        reply_for(pad, f'{{"step": "keys", "keys": "{setup}"}}'.encode())
        assert pad.key_check_values()[1] != working_kcv


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b'{"step": "keys"}', "keys is one of"),
        (b'{"step": "keys", "keys": "signed-in"}', "keys is one of foreign, provisioned, stale, unprovisioned"),
        (b'{"step": "keys", "keys": "stale", "slot": 2}', "unknown keys: slot"),
    ],
)
def test_a_bad_keys_line_is_refused_and_the_keys_stay(line: bytes, reason: str) -> None:
    pad = SimulatedPinPad()
    before = pad.key_check_values()
    reply = reply_for(pad, line)
    assert reply["ok"] is False
    assert reason in reply["error"]
    assert pad.key_check_values() == before


def test_replace_keys_refuses_a_key_of_the_wrong_length() -> None:
    pad = SimulatedPinPad()
    with pytest.raises(ValueError, match="32 hex characters"):
        pad.replace_keys(TEST_MASTER_KEY_HEX, "ABCD")
