"""Logging setup: loguru, one line per event, structured extras, card numbers masked.

Code never logs card data on purpose; the patcher here is the safety net. Any run of 13 to
19 digits that passes the Luhn check is rewritten to first 6 / last 4 before a record
reaches any sink, in the message and in every bound extra field. ``diagnose`` is off on
every sink: loguru's variable dumps in tracebacks could print card data.
"""

from __future__ import annotations

import re
import sys
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

if TYPE_CHECKING:
    from loguru import Record

_DIGIT_RUN = re.compile(r"(?<!\d)\d{13,19}(?!\d)")
_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message}{extra[fields]}"


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
    """Replace every Luhn-valid 13-19 digit run in ``text`` by its masked form."""
    return _DIGIT_RUN.sub(lambda m: mask_pan(m.group()) if luhn_valid(m.group()) else m.group(), text)


def _patch(record: Record) -> None:
    record["message"] = mask_card_numbers(record["message"])
    extra: dict[str, Any] = record["extra"]
    fields = {key: mask_card_numbers(str(value)) for key, value in extra.items() if key != "fields"}
    extra.update(fields)
    extra["fields"] = "".join(f" {key}={value}" for key, value in fields.items())


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None) -> None:
    """Send logs to ``stream`` (stderr by default, which journald captures under systemd)."""
    logger.remove()
    logger.configure(patcher=_patch, extra={"fields": ""})
    logger.add(stream or sys.stderr, level=level, format=_FORMAT, diagnose=False, backtrace=False)
