"""Validation of the POS's request bodies (book §10), with errors that name the field.

The models describe what misbridge checks before the customer is ever prompted. Unknown
extra fields are allowed and kept: misbridge forwards the body exactly as the POS sent it,
so a field added by a newer book version still reaches the backend. Amounts must be JSON
numbers (the book's Price), at most two decimals, never negative; a total is more than 0.
Card data is refused anywhere in the body before the models run (:mod:`misbridge.ebuy.carddata`).
Limits: docs/pos-api.md, "Input limits and card data".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import PydanticCustomError

from misbridge.ebuy import carddata
from misbridge.errors import RequestError, ReturnCode

#: Card actions: the book's "Transaction Flow" sends them through the PIN pad (§12).
CARD_ACTIONS = ("cardRedemption", "cardPayment")
#: Every action string of the 4.0 book (§12); known but not handled ones get MB06.
BOOK_ACTIONS = (
    "cardPayment", "cardRedemption", "qrcodeSale", "inquiry", "voidCardSale", "voidQrcodeSale",
    "refundCardSale", "refundQrcodeSale", "ecouponInquiry", "accumulating", "summary", "batchUpload",
)  # fmt: skip
#: Largest amount accepted: 10 integer digits + 2 decimals fits a double exactly (15 digits).
MAX_AMOUNT = Decimal("9999999999.99")
TRACE_NO_PATTERN = r"^[0-9A-Za-z_-]{1,40}$"
#: The book's one defined return code: success (§9).
SUCCESS_CODE = "00"
#: Most units on one goods line.
MAX_QUANTITY = 99_999
#: Longest text accepted in a field the models name (goodsName, memberName, ...).
MAX_TEXT_LEN = 256
#: Largest magnitude of memberDetail.pointBalance: 15 digits, exact in any JSON reader.
MAX_POINTS = 999_999_999_999_999
#: Longest action name shown whole in an error message.
MAX_SHOWN_ACTION = 64


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
#: A Price that must be more than 0: what the customer is asked to pay.
TotalPrice = Annotated[
    Decimal,
    BeforeValidator(_price),
    AfterValidator(_above_zero),
    WithJsonSchema({"type": "number", "exclusiveMinimum": 0, "maximum": float(MAX_AMOUNT)}),
]
_Text = Annotated[str, Field(strict=True, max_length=MAX_TEXT_LEN)]


def _whole_number(value: Any) -> Any:
    # JSON has one number type: 2.0 is the integer 2 to JSON Schema (and to the OpenAPI document),
    # so an integral decimal is taken as that integer; 2.5, "2" and true stay refused (strict int).
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    return value


# The Field comes first: after a validator pydantic would write its bounds into the JSON schema
# as unknown keys ("ge") instead of minimum/maximum.
_Count = Annotated[int, Field(strict=True, ge=1, le=MAX_QUANTITY), BeforeValidator(_whole_number)]
_Points = Annotated[int, Field(strict=True, ge=-MAX_POINTS, le=MAX_POINTS), BeforeValidator(_whole_number)]


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow", strict=False)


class GoodsDetail(_Lenient):
    """One goods line (book §8.1)."""

    goodsCategory: _Text
    goodsId: _Text
    goodsName: _Text
    price: Price
    quantity: _Count
    rebateCode: _Text | None = None


class MemberDetail(_Lenient):
    """Member information (book §8.4: no table, types taken from the examples)."""

    memberId: _Text | None = None
    memberName: _Text | None = None
    grade: _Text | None = None
    status: _Text | None = None
    balance: Price | None = None
    pointBalance: _Points | None = None


class _Traced(_Lenient):
    traceNo: Annotated[str, Field(strict=True, pattern=TRACE_NO_PATTERN)]


class CardRedemptionRequest(_Traced):
    """``cardRedemption`` request body (book §10.2)."""

    totalAmount: TotalPrice
    undiscountAmount: Price
    goodsDetail: Annotated[list[GoodsDetail], Field(min_length=1)]
    memberDetail: MemberDetail | None = None

    @model_validator(mode="after")
    def _undiscount_within_total(self) -> CardRedemptionRequest:
        if self.undiscountAmount > self.totalAmount:
            raise PydanticCustomError(
                "undiscount",
                "undiscountAmount ({u}) is greater than totalAmount ({t})",
                {"u": str(self.undiscountAmount), "t": str(self.totalAmount)},
            )
        return self


class CardPaymentRequest(CardRedemptionRequest):
    """``cardPayment`` request body (book §10.1): a card redemption with an acquirer."""

    acquirer: _Text


class InquiryRequest(_Traced):
    """``inquiry`` request body (book §10.4)."""

    originalTraceNo: Annotated[str, Field(strict=True, pattern=TRACE_NO_PATTERN)]


REQUEST_MODELS: dict[str, type[_Traced]] = {
    "cardRedemption": CardRedemptionRequest,
    "cardPayment": CardPaymentRequest,
    "inquiry": InquiryRequest,
}


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _code_for(error_type: str, path: str) -> ReturnCode:
    if error_type == "missing":
        return ReturnCode.MISSING_FIELD
    if error_type == "amount":
        return ReturnCode.BAD_AMOUNT
    if error_type == "undiscount":
        return ReturnCode.UNDISCOUNT_OVER_TOTAL
    if path == "goodsDetail" and error_type == "too_short":
        return ReturnCode.EMPTY_GOODS
    if path in ("traceNo", "originalTraceNo") and error_type in ("string_pattern_mismatch",):
        return ReturnCode.BAD_TRACE_NO
    return ReturnCode.BAD_FIELD


def translate_validation_error(err: ValidationError) -> RequestError:
    """Turn pydantic's first error into a RequestError naming the field and the reason."""
    first = err.errors(include_url=False)[0]
    path = _field_path(tuple(first["loc"]))
    code = _code_for(first["type"], path)
    if code is ReturnCode.UNDISCOUNT_OVER_TOTAL:
        path = "undiscountAmount"
    if code is ReturnCode.EMPTY_GOODS:
        message = "'goodsDetail' must list at least one goods line"
    elif first["type"] == "missing":
        message = f"mandatory field '{path}' is missing"
    elif first["type"] == "string_pattern_mismatch":
        message = f"'{path}' must be 1 to 40 letters, digits, '_' or '-'"
    else:
        message = f"'{path}' {first['msg']}" if path else str(first["msg"])
    return RequestError(message, return_code=code, field=path)


def shown_action(action: str) -> str:
    """``action`` quoted for a message or a log line: printable, card numbers masked, at most
    :data:`MAX_SHOWN_ACTION` characters (a longer one is cut and its length given)."""
    return carddata.shown(action, MAX_SHOWN_ACTION)


def _refuse_action(action: str) -> RequestError:
    if action in BOOK_ACTIONS:
        return RequestError(
            f"action '{action}' is an e-Buy action that misbridge does not handle; "
            f"supported: {', '.join(REQUEST_MODELS)}",
            return_code=ReturnCode.UNSUPPORTED_ACTION,
            field="action",
        )
    carddata.refuse_card_data_in_text("action", action)
    return RequestError(
        f"unknown action {shown_action(action)}; supported: {', '.join(REQUEST_MODELS)}",
        return_code=ReturnCode.UNKNOWN_ACTION,
        field="action",
    )


def validate_request(action: str, body: Mapping[str, Any]) -> _Traced:
    """Validate a POS request body for ``action``.

    Returns:
        The parsed model (amounts as Decimal). The caller keeps forwarding ``body`` itself,
        so extra fields and the POS's number formatting are preserved.

    Raises:
        RequestError: MB05 unknown action (shown shortened, see :func:`shown_action`), MB06
            book action not handled, MB16 card data anywhere in the body or in the action
            name, MB11 a body nested deeper than :data:`misbridge.ebuy.carddata.MAX_DEPTH`,
            MB10-MB15 invalid body.
    """
    model = REQUEST_MODELS.get(action)
    if model is None:
        raise _refuse_action(action)
    carddata.refuse_card_data(body)
    try:
        return model.model_validate(dict(body))
    except ValidationError as err:
        raise translate_validation_error(err) from err


def amount_minor_units(amount: Decimal) -> int:
    """Dollars (yuan) to minor units (fen) for the PIN pad's display: 40.8 -> 4080."""
    return int((amount * 100).to_integral_value())


def trans_date(now: datetime | None = None) -> str:
    """A transDate in the book's format, yyyyMMddHHmmss, local time."""
    return (now or datetime.now().astimezone()).strftime("%Y%m%d%H%M%S")


def error_response(trace_no: str, error: RequestError | Exception, code: ReturnCode) -> dict[str, Any]:
    """An e-Buy shaped response for a request misbridge itself refused or could not finish."""
    return {
        "traceNo": trace_no,
        "orderNo": "",
        "transDate": trans_date(),
        "returnCode": code.code,
        "returnDesc": str(error),
        "paidAmount": 0,
    }


def complete_book_head(answer: Mapping[str, Any], trace_no: str, *, at: datetime | None = None) -> dict[str, Any]:
    """``answer`` (a backend's response passed on to the POS) with the book's mandatory head filled in.

    The book marks traceNo, orderNo, transDate, returnCode, returnDesc and paidAmount mandatory
    in every response, but a backend leaves some out (a "not found" inquiry answer has no
    order). A missing traceNo is the request's, orderNo and returnDesc are empty, transDate is
    ``at`` (default now), and paidAmount is 0 for anything but an approval; nothing the backend
    sent is changed, and an approval without paidAmount stays without one (misbridge cannot know
    the amount).
    """
    completed = dict(answer)
    completed.setdefault("traceNo", trace_no)
    completed.setdefault("orderNo", "")
    if "transDate" not in completed:
        completed["transDate"] = trans_date(None if at is None else at.astimezone())
    completed.setdefault("returnDesc", "")
    if completed.get("returnCode") != SUCCESS_CODE:
        completed.setdefault("paidAmount", 0)
    return completed
