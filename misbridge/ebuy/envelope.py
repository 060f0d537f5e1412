"""The e-Buy envelope ``{action, deviceNo, shopNo, brand, body}`` and its socket framing.

Book §6: ``body`` is the Base64 of the UTF-8 JSON of the action's request or response.
On the POS socket each message is a 2-byte big-endian length (counting only the JSON
bytes that follow) and the envelope JSON; responses use the same structure.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from misbridge.ebuy import carddata, jsonio
from misbridge.errors import RequestError, ReturnCode

#: Envelope keys in the order the book's example shows them.
ENVELOPE_FIELDS = ("action", "deviceNo", "shopNo", "brand", "body")
#: Size of the socket length prefix: 2 bytes, big endian (``0x00 0xE7`` = 231).
LENGTH_PREFIX_LEN = 2
#: The largest JSON a 2-byte prefix can announce.
MAX_MESSAGE_LEN = 0xFFFF
#: Envelope keys of older books whose values are opaque (a hex signature, a time), not text.
OPAQUE_ENVELOPE_FIELDS = frozenset({"sign", "timestamp"})


@dataclass(frozen=True)
class Envelope:
    """One decoded e-Buy message.

    ``body`` is the decoded action body (amounts as Decimal). ``extra`` keeps any envelope
    keys beyond the five of the 4.0 book (for example an older-book ``sign`` or ``timestamp``).
    """

    action: str
    device_no: str
    shop_no: str
    brand: str
    body: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)


def encode_body(body: Mapping[str, Any]) -> str:
    """Base64 of the UTF-8 JSON of ``body``."""
    return base64.b64encode(jsonio.dumps(dict(body)).encode("utf-8")).decode("ascii")


def decode_body(encoded: str) -> dict[str, Any]:
    """Decode a Base64 body into its JSON object.

    Raises:
        RequestError: MB04 when it is not Base64, not UTF-8, not a JSON object, or breaks
            the JSON limits of :func:`misbridge.ebuy.jsonio.loads`.
    """
    try:
        raw = base64.b64decode(encoded.encode("ascii"), validate=True)
        value = jsonio.loads(raw.decode("utf-8"))
    except jsonio.JSONLimitError as err:
        raise RequestError(
            f"body breaks misbridge's JSON limits: {err}", return_code=ReturnCode.BAD_BODY_ENCODING, field="body"
        ) from err
    except (binascii.Error, UnicodeError, ValueError) as err:
        raise RequestError(
            f"body is not Base64 of UTF-8 JSON: {err}", return_code=ReturnCode.BAD_BODY_ENCODING, field="body"
        ) from err
    if not isinstance(value, dict):
        raise RequestError("body must decode to a JSON object", return_code=ReturnCode.BAD_BODY_ENCODING, field="body")
    return value


def envelope_dict(envelope: Envelope) -> dict[str, Any]:
    """The JSON object of an envelope, body Base64-encoded, keys in the book's order."""
    out: dict[str, Any] = {
        "action": envelope.action,
        "deviceNo": envelope.device_no,
        "shopNo": envelope.shop_no,
        "brand": envelope.brand,
        "body": encode_body(envelope.body),
    }
    out.update(envelope.extra)
    return out


def encode_envelope(envelope: Envelope) -> bytes:
    """Compact UTF-8 JSON of an envelope (no length prefix)."""
    return jsonio.dumps(envelope_dict(envelope)).encode("utf-8")


def parse_envelope(raw: bytes | str) -> Envelope:
    """Parse envelope JSON and decode its body.

    Raises:
        RequestError: MB01 not JSON or beyond the JSON limits, MB03 a missing or non-string
            envelope field, MB16 card data in the envelope (a card-data key, a card number in
            ``action``, ``deviceNo``, ``shopNo``, ``brand`` or another key), MB04 a body that
            is not Base64 UTF-8 JSON. The body's own content is checked later, by
            :func:`misbridge.ebuy.requests.parse_request`.
    """
    try:
        value = jsonio.loads(raw)
    except jsonio.JSONLimitError as err:
        raise RequestError(f"message breaks misbridge's JSON limits: {err}", return_code=ReturnCode.NOT_JSON) from err
    except (jsonio.JSONDecodeError, UnicodeError) as err:
        raise RequestError(f"message is not JSON: {err}", return_code=ReturnCode.NOT_JSON) from err
    if not isinstance(value, dict):
        raise RequestError("message must be a JSON object", return_code=ReturnCode.BAD_ENVELOPE)
    for name in ENVELOPE_FIELDS:
        if name not in value:
            raise RequestError(f"envelope field '{name}' is missing", return_code=ReturnCode.BAD_ENVELOPE, field=name)
        if not isinstance(value[name], str):
            raise RequestError(
                f"envelope field '{name}' must be a string, got {type(value[name]).__name__}",
                return_code=ReturnCode.BAD_ENVELOPE,
                field=name,
            )
    carddata.refuse_card_data({k: v for k, v in value.items() if k != "body"}, identifiers=OPAQUE_ENVELOPE_FIELDS)
    return Envelope(
        action=value["action"],
        device_no=value["deviceNo"],
        shop_no=value["shopNo"],
        brand=value["brand"],
        body=decode_body(value["body"]),
        extra={k: v for k, v in value.items() if k not in ENVELOPE_FIELDS},
    )


def frame_message(payload: bytes) -> bytes:
    """Prefix a JSON message with its 2-byte big-endian length.

    Raises:
        ValueError: the payload is longer than 65535 bytes.
    """
    if len(payload) > MAX_MESSAGE_LEN:
        raise ValueError(f"message of {len(payload)} bytes does not fit a 2-byte length prefix")
    return struct.pack(">H", len(payload)) + payload


def read_length_prefix(prefix: bytes) -> int:
    """The length announced by a 2-byte prefix."""
    (length,) = struct.unpack(">H", prefix)
    return int(length)
