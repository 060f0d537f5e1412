"""Text and values made safe to show: card numbers masked, tracks and card-data values removed.

One definition for everything misbridge prints or logs, pure code so that the journal's views
(:mod:`misbridge.journal.queries`) and the log scrubber (:mod:`misbridge.telemetry.logs`) share
it. :func:`scrub_text` rewrites, in any text:

* any run of 13 to 19 digits that passes the Luhn check to first 6 / last 4
  (:func:`misbridge.ebuy.carddata.mask_card_numbers`);
* track data to :data:`REDACTED`: track 2 (``PAN=YYMM...``) and track 1 (``%B PAN ^ NAME ^ ...``);
* the value of a card-data field written as ``name=value``, ``name: value`` or
  ``"name": "value"`` (the names of :data:`SENSITIVE_FIELDS`) to :data:`REDACTED`.

:func:`masked` applies it to a whole JSON-like value, and redacts the value of any key that is
a card-data field name. Unlike :func:`misbridge.ebuy.carddata.storable` (what the journal may
keep), it keeps the structure and says where something was removed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

from misbridge.ebuy.carddata import (
    BARCODE_FIELD,
    CARD_DATA_FIELDS,
    STORED_IDENTIFIERS,
    gtin_valid,
    mask_card_numbers,
    may_hold_card_number,
)

__all__ = ["REDACTED", "SENSITIVE_FIELDS", "masked", "may_hold_card_data", "scrub_suspect", "scrub_text"]

#: What a removed value is replaced by.
REDACTED: Final = "[redacted]"
#: Field names (compared case-insensitively) whose values are card data, never to be shown: the
#: names a request is refused for (CARD_DATA_FIELDS, one list for both) and the spellings with
#: "_" the ``name=value`` pattern must also find.
SENSITIVE_FIELDS: Final = CARD_DATA_FIELDS | frozenset(
    name.lower()
    for name in (
        "password", "pin", "pinBlock", "pin_block", "track1", "track2", "track3", "track", "trackData",
        "icData", "ic_data", "cardNo", "card_no", "cardInfo", "card_info", "cvv", "cvv2", "cvn", "cvc",
        "encPan", "enc_pan", "enc_track2", "enc_pan_hex", "enc_track1_hex", "enc_track2_hex", "enc_track3_hex",
        "enc_ic_data_hex", "pin_block_hex",
        # A QR payment code is a one-time bearer token: never logged (the POS may send it, so it
        # is not a refused card-data field).
        "qrcode", "qr_code",
    )
)  # fmt: skip
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
# card-data field name (in any case): checking for either first lets the ordinary text skip
# four substitutions. Under re.IGNORECASE four non-ASCII letters match ASCII ones (Python's re
# documentation); they are mapped before the substring test so it stays a superset of the regex.
_TWELVE_DIGITS = re.compile(r"\d{12}")
_IGNORECASE_TWINS = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_NAMES_LOWER = tuple(sorted(SENSITIVE_FIELDS))


def scrub_text(text: str) -> str:
    """``text`` with tracks and card-data field values removed and card numbers masked."""
    if may_hold_card_data(text):
        return scrub_suspect(text)
    return text


def may_hold_card_data(text: str) -> bool:
    """Cheap test: False means :func:`scrub_suspect` would return ``text`` unchanged."""
    if _TWELVE_DIGITS.search(text) or may_hold_card_number(text):
        return True
    folded = text.translate(_IGNORECASE_TWINS).lower()
    return any(name in folded for name in _NAMES_LOWER)


def scrub_suspect(text: str) -> str:
    """:func:`scrub_text` without the quick pre-check."""
    text = _TRACK1.sub(REDACTED, text)
    text = _TRACK2.sub(REDACTED, text)
    text = _FIELD_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
    return mask_card_numbers(text)


def masked(value: Any, key: str = "") -> Any:
    """``value`` with card-data fields redacted and card numbers masked, numbers kept as numbers.

    ``key`` is the name ``value`` is held under (``""``: none); the value of a
    :data:`SENSITIVE_FIELDS` name becomes :data:`REDACTED` whatever it is. Mappings and lists
    are copied, text is scrubbed (:func:`scrub_text`), an integer that is a card number is
    masked (as text); anything else is returned as it is.  Identifiers (``traceNo``,
    ``originalTraceNo``, ``orderNo``) and a ``goodsId`` that is a valid GTIN barcode are shown as
    they are: the journal stored them so (:func:`misbridge.journal.records.storable`), and a
    barcode or an order number that happens to pass the Luhn check is not a card.
    """
    if key and key.lower() in SENSITIVE_FIELDS:
        return REDACTED
    if isinstance(value, str) and (key in STORED_IDENTIFIERS or (key == BARCODE_FIELD and gtin_valid(value))):
        return value
    if isinstance(value, Mapping):
        return {str(k): masked(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(item) for item in value]
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, int) and not isinstance(value, bool) and scrub_text(str(value)) != str(value):
        return scrub_text(str(value))
    return value
