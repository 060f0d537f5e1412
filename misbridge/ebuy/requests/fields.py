"""Field types of the POS's request bodies (book §8, §10, §11), each with its limit and its error.

Every type here is an ``Annotated`` pydantic type whose JSON Schema says what the validator
checks, as far as JSON Schema can say it (the OpenAPI document of the HTTP door is generated from
them, :mod:`misbridge.api.schemas`). A validator that refuses raises a
:class:`~pydantic_core.PydanticCustomError` whose type names the rule; the type decides the MB
code (:mod:`misbridge.ebuy.requests.validation`). Limits: docs/pos-api.md, "Input limits and card data".
"""

from __future__ import annotations

import unicodedata
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Final

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

#: Largest amount accepted: 10 integer digits + 2 decimals fits a double exactly (15 digits).
MAX_AMOUNT: Final = Decimal("9999999999.99")
TRACE_NO_PATTERN: Final = r"^[0-9A-Za-z_-]{1,40}$"
#: Most units on one goods line.
MAX_QUANTITY: Final = 99_999
#: Longest text accepted in a field the models name (goodsName, memberName, acquirer, ...).
MAX_TEXT_LEN: Final = 256
#: Largest magnitude of memberDetail.pointBalance and of accumulated points: 15 digits, exact in
#: any JSON reader.
MAX_POINTS: Final = 999_999_999_999_999
#: Longest ``qrcode``: the book gives no length; a QR code holds at most 4 296 characters, but
#: payment and coupon codes are short (the book's are 18 characters) and a URL code fits in 512.
MAX_QRCODE_LEN: Final = 512
#: The book's time format, yyyyMMddHHmmss (transDate, beginTime, endTime).
BOOK_TIME_FORMAT: Final = "%Y%m%d%H%M%S"
#: Years a yyyyMMddHHmmss may have: those the card-number check reads as times, never as cards.
BOOK_TIME_YEARS: Final = range(1990, 2100)
#: JSON Schema's approximation of a valid yyyyMMddHHmmss (the calendar itself is checked in code).
BOOK_TIME_PATTERN: Final = (
    r"^(199[0-9]|20[0-9]{2})(0[1-9]|1[0-2])(0[1-9]|[12][0-9]|3[01])([01][0-9]|2[0-3])[0-5][0-9][0-5][0-9]$"
)
#: Text without control characters (C0, DEL, C1: Unicode category Cc), for JSON Schema.
NO_CONTROL_PATTERN: Final = "^[^\\u0000-\\u001f\\u007f-\\u009f]*$"
#: Largest transRecord status of book §8.7 (0 Initial ... 9).
MAX_RECORD_STATUS: Final = 9
#: Most records in one upload (book §11.2, "Maximum:5000").
MAX_BATCH_RECORDS: Final = 5000


def _price(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        kind = type(value).__name__
        raise PydanticCustomError("amount", "must be a JSON number, got {kind}", {"kind": kind})
    amount = Decimal(value)
    if not amount.is_finite() or amount < 0:
        raise PydanticCustomError("amount", "must be zero or positive, got {value}", {"value": str(value)})
    if amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise PydanticCustomError("amount", "has more than 2 decimals: {value}", {"value": str(value)})
    if amount > MAX_AMOUNT:
        raise PydanticCustomError("amount", "is larger than {limit}", {"limit": str(MAX_AMOUNT)})
    return amount


def _above_zero(amount: Decimal) -> Decimal:
    # A sale of 0 would prompt the customer for card and PIN, then fail at the backend.
    if amount == 0:  # -0 and 0.00 included
        raise PydanticCustomError("amount", "must be greater than 0")
    return amount


#: The book's Price: a JSON number in dollars (yuan), kept as an exact Decimal.
Price = Annotated[
    Decimal,
    BeforeValidator(_price),
    WithJsonSchema({"type": "number", "minimum": 0, "maximum": float(MAX_AMOUNT)}),
]
#: A Price that must be more than 0: what the customer is asked to pay, or is refunded.
TotalPrice = Annotated[
    Decimal,
    BeforeValidator(_price),
    AfterValidator(_above_zero),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": float(MAX_AMOUNT)}),
]
#: A bounded string the models name.
Text = Annotated[str, Field(strict=True, max_length=MAX_TEXT_LEN)]
#: A traceNo, originalTraceNo or a record's traceNo (MB15).
TraceNo = Annotated[str, Field(strict=True, pattern=TRACE_NO_PATTERN)]


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 2.0 is the integer 2 to JSON Schema (and to the OpenAPI document),
    # so an integral decimal is taken as that integer; 2.5, "2" and true stay refused (strict int).
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


# The Field comes first: after a validator pydantic would write its bounds into the JSON schema
# as unknown keys ("ge") instead of minimum/maximum.
Count = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY), BeforeValidator(_whole_number)]
Points = Annotated[int, Field(strict=True, ge=-MAX_POINTS, le=MAX_POINTS), BeforeValidator(_whole_number)]
#: Points a cashier accumulates (book §10.10): never negative.
EarnedPoints = Annotated[int, Field(strict=True, ge=0, le=MAX_POINTS), BeforeValidator(_whole_number)]
RecordStatus = Annotated[int, Field(strict=True, ge=0, le=MAX_RECORD_STATUS), BeforeValidator(_whole_number)]
RecordCount = Annotated[int, Field(strict=True, ge=1, le=MAX_BATCH_RECORDS), BeforeValidator(_whole_number)]


def _no_control_characters(text: str) -> str:
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise PydanticCustomError("control_characters", "must not hold control characters")
    return text


#: A scanned or typed code (book §10.3 qrcode: "serial, 1-D barcode or QR code content").
QrCode = Annotated[
    str,
    Field(strict=True, min_length=1, max_length=MAX_QRCODE_LEN, json_schema_extra={"pattern": NO_CONTROL_PATTERN}),
    AfterValidator(_no_control_characters),
]


def _book_time(text: str) -> str:
    try:
        if len(text) != len("yyyyMMddHHmmss") or not (text.isascii() and text.isdigit()):
            raise ValueError(text)
        if datetime.strptime(text, BOOK_TIME_FORMAT).year not in BOOK_TIME_YEARS:  # no time zone involved
            raise ValueError(text)
    except ValueError:
        raise PydanticCustomError("book_time", "must be a date-time yyyyMMddHHmmss of the years 1990-2099") from None
    return text


def book_time(text: str) -> datetime:
    """A valid yyyyMMddHHmmss as a naive datetime (the book gives no time zone)."""
    return datetime.strptime(text, BOOK_TIME_FORMAT)


#: A yyyyMMddHHmmss date-time (book §11.2 beginTime, endTime).
BookTime = Annotated[
    str,
    Field(strict=True, json_schema_extra={"pattern": BOOK_TIME_PATTERN}),
    AfterValidator(_book_time),
]
