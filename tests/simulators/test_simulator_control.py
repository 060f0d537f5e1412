"""The simulated pad's control lines: what a technician or a test may script."""

from __future__ import annotations

import pytest

from simulators.pinpad.control import parse_customer
from simulators.pinpad.customer import MAX_HESITATE_S, Action


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
