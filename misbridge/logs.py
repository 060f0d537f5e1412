"""Logging setup: loguru, one line per event, structured extras, card data masked or removed.

Code never logs card data on purpose; the patcher here is the safety net (R16). Before a record
reaches any sink, in the message, in every bound extra field and in the text of an exception:

* any run of 13 to 19 digits that passes the Luhn check is rewritten to first 6 / last 4;
* track data is removed: track 2 (``PAN=YYMM...``) and track 1 (``%B PAN ^ NAME ^ ...``);
* the value of a card-data field is removed wherever it appears as ``name=value``,
  ``name: value`` or ``"name": "value"`` (``password``, ``track1``-``track3``, ``icData``,
  ``cardNo``, ``cardInfo``, ``pinBlock``, ``cvv``...), and a bound extra with such a name, or a
  dict/list extra holding one at any depth, has that value replaced by ``[redacted]``.

``diagnose`` and ``backtrace`` are off on every sink: loguru's variable dumps in tracebacks
could print card data. Exceptions are formatted here (plain traceback, masked) rather than by
loguru.

Two line formats:

* a terminal or file: ``2026-01-02 03:04:05.678 INFO    misbridge.core.service: message traceNo=... state=...``
* the systemd journal (``$JOURNAL_STREAM`` names our stderr): ``<6>misbridge.core.service: message
  traceNo=...`` -- journald reads the ``<N>`` syslog priority (``SyslogLevelPrefix=yes``, the
  default) and adds its own timestamp; newlines inside a record are written as ``\\n`` so every
  event stays one journal entry.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TextIO

from loguru import logger

from misbridge.pan import mask_card_numbers

if TYPE_CHECKING:
    from loguru import Record

__all__ = ["REDACTED", "SENSITIVE_FIELDS", "configure_logging", "journald_stderr", "scrub", "scrub_text"]

#: What a removed value is replaced by.
REDACTED: Final = "[redacted]"
#: Field names (compared case-insensitively) whose values are card data, never to be logged.
SENSITIVE_FIELDS: Final = frozenset(
    name.lower()
    for name in (
        "password", "pin", "pinBlock", "pin_block", "track1", "track2", "track3", "track", "trackData",
        "icData", "ic_data", "cardNo", "card_no", "cardInfo", "card_info", "cvv", "cvv2", "cvn", "cvc",
        "encPan", "enc_pan", "enc_track2", "enc_pan_hex", "enc_track1_hex", "enc_track2_hex", "enc_track3_hex",
        "enc_ic_data_hex", "pin_block_hex",
    )
)  # fmt: skip
#: syslog priorities journald understands in a ``<N>`` prefix (sd-daemon(3)).
_PRIORITY: Final = {"TRACE": 7, "DEBUG": 7, "INFO": 6, "SUCCESS": 5, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}
# Track 2 equivalent data: PAN, '=' (or 'D'), then expiry, service code and discretionary data.
_TRACK2 = re.compile(r"(?<![0-9A-Za-z])\d{12,19}[=D]\d{4}\d*")
# Track 1 (format B): %B PAN ^ NAME ^ YYMM service code discretionary [?].
_TRACK1 = re.compile(r"%?B\d{12,19}\^[^^\n]{0,26}\^[^\s?]*\??")
_NAMES = "|".join(sorted({re.escape(n) for n in SENSITIVE_FIELDS}, key=len, reverse=True))
# ``name=value``, ``name: value``, ``'name': 'value'``, ``"name":"value"``; the value ends at a quote,
# comma, closing brace/bracket or whitespace (a whole dict value loses its scalars one by one).
_FIELD_VALUE = re.compile(
    rf"""(?ix)(?<![A-Za-z0-9_])(["']?(?:{_NAMES})["']?\s*[:=]\s*)(?!\{{|\[)(["']?)([^"',}}\]\s]+)"""
)
# Nothing above can match a text without a run of 12 digits (tracks and PANs need one) or a
# card-data field name (in any case): checking for either first lets the ordinary log line skip
# four substitutions. Under re.IGNORECASE four non-ASCII letters match ASCII ones (Python's re
# documentation); they are mapped before the substring test so it stays a superset of the regex.
_TWELVE_DIGITS = re.compile(r"\d{12}")
_IGNORECASE_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_NAMES_LOWER = tuple(sorted(SENSITIVE_FIELDS))
_NEEDS_QUOTES = re.compile(r"[\s\"'=]")
_INTERNAL = ("_fields", "_exc", "_exc1", "_prio", "_msg1")
# loguru appends "\n{exception}" to a string format; the patcher has already moved the
# (masked) exception text into the extras, so that renders as nothing.
_TEXT_FORMAT = "{time:YYYY-MM-DD HH:mm:ss.SSS} {level:<7} {name}: {message}{extra[_fields]}{extra[_exc]}"
_JOURNAL_FORMAT = "<{extra[_prio]}>{name}: {extra[_msg1]}{extra[_fields]}{extra[_exc1]}"


def scrub_text(text: str) -> str:
    """``text`` with tracks and card-data field values removed and card numbers masked."""
    if _may_hold_card_data(text):
        return _scrub_suspect(text)
    return text


def _may_hold_card_data(text: str) -> bool:
    if _TWELVE_DIGITS.search(text):
        return True
    folded = text.translate(_IGNORECASE_TWINS).lower()
    return any(name in folded for name in _NAMES_LOWER)


def _scrub_suspect(text: str) -> str:
    text = _TRACK1.sub(REDACTED, text)
    text = _TRACK2.sub(REDACTED, text)
    text = _FIELD_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return mask_card_numbers(text)


def scrub(value: Any, *, key: str = "") -> Any:
    """A copy of ``value`` safe to log: card-data fields redacted at any depth, text scrubbed."""
    if key and key.lower() in SENSITIVE_FIELDS:
        return REDACTED
    if isinstance(value, Mapping):
        return {k: scrub(v, key=str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [scrub(item) for item in value]
    if isinstance(value, bool | float) or value is None:
        return value
    return scrub_text(str(value))


def _field(key: str, value: Any) -> str:
    text = str(value)
    if not text or _NEEDS_QUOTES.search(text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return f" {key}={text}"


def _patch(record: Record) -> None:
    record["message"] = scrub_text(record["message"])
    extra: dict[str, Any] = record["extra"]
    fields = {key: scrub(value, key=key) for key, value in extra.items() if key not in _INTERNAL}
    extra.update(fields)
    extra["_fields"] = "".join(_field(key, value) for key, value in fields.items())
    extra["_prio"] = _PRIORITY.get(record["level"].name, 6)
    extra["_msg1"] = _one_line(record["message"])
    extra["_exc"] = extra["_exc1"] = ""
    exc = record["exception"]
    if exc is not None and exc.type is not None:
        text = scrub_text("".join(traceback.format_exception(exc.type, exc.value, exc.traceback)))
        extra["_exc"] = "\n" + text.rstrip("\n")
        extra["_exc1"] = _one_line(extra["_exc"])
        record["exception"] = None  # loguru must not print the unmasked original


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


def journald_stderr() -> bool:
    """True when stderr is connected to the systemd journal (``$JOURNAL_STREAM`` is its dev:inode)."""
    value = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = value.partition(":")
    try:
        stat = os.fstat(sys.stderr.fileno())
        return bool(value) and (int(device), int(inode)) == (stat.st_dev, stat.st_ino)
    except (OSError, ValueError, AttributeError):
        return False


def configure_logging(level: str = "INFO", *, stream: TextIO | None = None, journald: bool | None = None) -> None:
    """Send logs to ``stream`` (stderr by default, which journald captures under systemd).

    Args:
        level: the lowest level written.
        stream: where to write; stderr by default.
        journald: use the journal format (``<N>`` priority prefix, no timestamp); by default
            when writing to stderr and stderr is the journal (:func:`journald_stderr`).
    """
    logger.remove()
    logger.configure(patcher=_patch, extra={key: "" for key in _INTERNAL})
    use_journal = journald if journald is not None else stream is None and journald_stderr()
    logger.add(
        stream or sys.stderr,
        level=level,
        format=_JOURNAL_FORMAT if use_journal else _TEXT_FORMAT,
        colorize=False,
        diagnose=False,
        backtrace=False,
    )
