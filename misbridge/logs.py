"""Logging setup: loguru, one line per event, structured extras, card numbers masked.

Code never logs card data on purpose; the patcher here is the safety net. Any run of 13 to
19 digits that passes the Luhn check is rewritten to first 6 / last 4 before a record
reaches any sink, in the message and in every bound extra field. ``diagnose`` is off on
every sink: loguru's variable dumps in tracebacks could print card data.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, TextIO

from loguru import logger

from misbridge.pan import mask_card_numbers

if TYPE_CHECKING:
    from loguru import Record

_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message}{extra[fields]}"


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
