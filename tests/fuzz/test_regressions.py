"""What the fuzzers found, one readable reproducer each, run through the same checks.

Each case feeds its target check (:mod:`tests.fuzz.targets`) the smallest readable input that
shows the finding; the check raises what escaped misbridge.  Cases for defects not fixed yet are
``xfail(strict=True, raises=...)`` with the reason: they flip to XPASS, and so fail, the day the
fix lands, and then the marker goes.  A fixed finding stays here as a plain regression test: all
twelve of the first 10^6-execution runs are fixed (issue 10) and are such tests now.
"""

from __future__ import annotations

import struct

from misbridge.ebuy.envelope import encode_body
from misbridge.ebuy.examples import CARD_REDEMPTION_REQUEST_TEXT
from tests.fuzz.targets import envelope_decoder, request_validation

_BOOK_TEXT = CARD_REDEMPTION_REQUEST_TEXT


def http_body(text: str, action: str = "cardRedemption") -> bytes:
    """The request target's input for ``text`` POSTed to ``/v1/{action}`` (free-form action, raw mode)."""
    return b"\xff" + action.encode("utf-8") + b"\n" + b"\x00" + text.encode("utf-8")


def socket_messages(*messages: str | bytes) -> bytes:
    """The envelope target's input for these messages, each behind its length prefix (raw mode)."""
    raw = [m.encode("utf-8") if isinstance(m, str) else m for m in messages]
    return b"\x00" + b"".join(struct.pack(">H", len(m)) + m for m in raw)


def envelope(action: str = '"inquiry"', body_text: str = "{}", **fields: str) -> str:
    """Envelope JSON text; ``action``, ``body_text`` and ``fields`` are inserted as written (JSON text)."""
    envelope_fields = {"deviceNo": '"POS01"', "shopNo": '"CN123456"', "brand": '"663"', **fields}
    body = '"' + encode_body({}) + '"' if body_text == "{}" else body_text
    rest = ",".join(f'"{key}":{value}' for key, value in envelope_fields.items())
    return f'{{"action":{action},{rest},"body":{body}}}'


def _with_memo(memo: str) -> str:
    """The book's card redemption with an extra field ``memo`` (JSON text), which validation keeps."""
    return _BOOK_TEXT.rstrip().removesuffix("}") + f', "memo": {memo}}}'


# --- request validation (the HTTP door's body) ------------------------------------------------


def test_an_accepted_body_with_a_lone_surrogate_hashes() -> None:
    request_validation(http_body(_BOOK_TEXT.replace('"牙膏"', '"\\udfff"')))


def test_a_refused_traceno_with_a_lone_surrogate_is_still_answered() -> None:
    request_validation(http_body('{"traceNo": "\\udfff"}'))


def test_an_accepted_body_nested_600_deep_hashes() -> None:
    request_validation(http_body(_with_memo("[" * 600 + "]" * 600)))


def test_a_body_nested_10_000_deep_is_refused() -> None:
    request_validation(http_body("[" * 10_000 + "]" * 10_000))


def test_an_integer_of_4301_digits_is_refused() -> None:
    request_validation(http_body(_BOOK_TEXT.replace('"quantity": 2', '"quantity": ' + "1" * 4301)))


def test_an_amount_with_a_huge_exponent_is_refused() -> None:
    request_validation(http_body(_BOOK_TEXT.replace('"totalAmount": 40.8', '"totalAmount": 1e99999999999999999999')))


# --- the socket door's envelope ---------------------------------------------------------------


def test_an_envelope_nested_10_000_deep_is_refused() -> None:
    envelope_decoder(socket_messages('{"action":' + "[" * 10_000 + "]" * 10_000 + "}"))


def test_an_envelope_with_an_integer_of_4301_digits_is_refused() -> None:
    envelope_decoder(socket_messages(envelope(sign="1" * 4301)))


def test_an_envelope_with_a_huge_exponent_is_refused() -> None:
    envelope_decoder(socket_messages(envelope(sign="1e99999999999999999999")))


def test_an_action_with_a_lone_surrogate_is_answered() -> None:
    envelope_decoder(socket_messages(envelope(action='"\\udfff"')))


def test_a_device_no_with_a_lone_surrogate_is_answered() -> None:
    inquiry = '"' + encode_body({"traceNo": "1", "originalTraceNo": "2"}) + '"'
    envelope_decoder(socket_messages(envelope(body_text=inquiry, deviceNo='"\\udfff"')))


def test_an_unknown_30_000_character_action_is_answered_within_the_framing() -> None:
    envelope_decoder(socket_messages(envelope(action='"' + "A" * 30_000 + '"')))
