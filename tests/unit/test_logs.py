"""The log masking safety net: no full card number reaches a sink."""

from __future__ import annotations

import io

from loguru import logger

from misbridge.logs import configure_logging
from misbridge.pan import luhn_valid, mask_card_numbers

CANARY_PAN = "4111111111111111"


def test_luhn() -> None:
    assert luhn_valid(CANARY_PAN)
    assert not luhn_valid("4111111111111112")


def test_mask_only_luhn_valid_runs() -> None:
    text = f"pan {CANARY_PAN} trace 99000009100010101732123 order 171698602301"
    masked = mask_card_numbers(text)
    assert CANARY_PAN not in masked
    assert "411111******1111" in masked
    assert "99000009100010101732123" in masked  # 23 digits: not a card number length
    assert "171698602301" in masked


def test_messages_and_extras_are_masked_before_any_sink() -> None:
    sink = io.StringIO()
    configure_logging("DEBUG", stream=sink)
    try:
        logger.bind(card=CANARY_PAN).info("card {} read", CANARY_PAN)
    finally:
        configure_logging("WARNING")
    output = sink.getvalue()
    assert CANARY_PAN not in output
    assert output.count("411111******1111") == 2
