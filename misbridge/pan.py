"""Card numbers (PANs): the Luhn check and the only masked form misbridge ever shows.

PCI DSS 3.4.1: a displayed PAN shows at most the first 6 and the last 4 digits.
"""

from __future__ import annotations

import re

_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")


def luhn_valid(digits: str) -> bool:
    """True when the digit string passes the Luhn check (what card numbers do)."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask_pan(pan: str) -> str:
    """First 6 and last 4 digits of a card number, the rest ``*``."""
    return pan[:6] + "*" * (len(pan) - 10) + pan[-4:]


def mask_card_numbers(text: str) -> str:
    """Replace every Luhn-valid run of 13-19 digits in ``text`` by its masked form."""
    return _DIGIT_RUN.sub(lambda m: mask_pan(m.group()) if luhn_valid(m.group()) else m.group(), text)
