"""Validation of the POS's request bodies for every action of the book, with errors that name the field.

:func:`parse_request` checks the body of any of the book's twelve actions (§10, §11) against its
model (:mod:`misbridge.ebuy.requests.models`, :mod:`misbridge.ebuy.requests.management`) and
returns the model; :func:`parse_request` is what the service calls. The service carries out
every action of the book, so no valid body is refused as not carried out (``MB06`` stays reserved
for an action the book gains before misbridge runs it; docs/return-codes.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from misbridge.ebuy import carddata
from misbridge.ebuy.requests.management import BatchUploadRequest, SummaryRequest
from misbridge.ebuy.requests.models import (
    AccumulatingRequest,
    CardPaymentRequest,
    CardRedemptionRequest,
    EcouponInquiryRequest,
    InquiryRequest,
    QrcodeSaleRequest,
    RefundCardSaleRequest,
    RefundQrcodeSaleRequest,
    Traced,
    VoidCardSaleRequest,
    VoidQrcodeSaleRequest,
)
from misbridge.errors import RequestError, ReturnCode

#: Card actions: the book's "Transaction Flow" sends them through the PIN pad (§12).
CARD_ACTIONS: Final = ("cardRedemption", "cardPayment")
#: Every action string of the 4.0 book (§12).
BOOK_ACTIONS: Final = (
    "cardPayment", "cardRedemption", "qrcodeSale", "inquiry", "voidCardSale", "voidQrcodeSale",
    "refundCardSale", "refundQrcodeSale", "ecouponInquiry", "accumulating", "summary", "batchUpload",
)  # fmt: skip
#: The model of every action of the book, in the book's order.
REQUEST_MODELS: Final[dict[str, type[Traced]]] = {
    "cardRedemption": CardRedemptionRequest,
    "cardPayment": CardPaymentRequest,
    "inquiry": InquiryRequest,
    "qrcodeSale": QrcodeSaleRequest,
    "voidCardSale": VoidCardSaleRequest,
    "voidQrcodeSale": VoidQrcodeSaleRequest,
    "refundCardSale": RefundCardSaleRequest,
    "refundQrcodeSale": RefundQrcodeSaleRequest,
    "ecouponInquiry": EcouponInquiryRequest,
    "accumulating": AccumulatingRequest,
    "summary": SummaryRequest,
    "batchUpload": BatchUploadRequest,
}
#: Longest action name shown whole in an error message.
MAX_SHOWN_ACTION: Final = 64
#: A refusal's code by the rule it broke (the error type of a custom error, or pydantic's).
_CODE_BY_ERROR: Final = {
    "missing": ReturnCode.MISSING_FIELD,
    "amount": ReturnCode.BAD_AMOUNT,
    "undiscount": ReturnCode.UNDISCOUNT_OVER_TOTAL,
    "batch_count": ReturnCode.BATCH_COUNT_MISMATCH,
    "batch_window": ReturnCode.BATCH_WINDOW,
}


def _field_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _is_trace_no(path: str) -> bool:
    return path in ("traceNo", "originalTraceNo") or path.endswith("].traceNo")


def _code_for(error_type: str, path: str) -> ReturnCode:
    if error_type in _CODE_BY_ERROR:
        return _CODE_BY_ERROR[error_type]
    if path == "goodsDetail" and error_type == "too_short":
        return ReturnCode.EMPTY_GOODS
    if _is_trace_no(path) and error_type == "string_pattern_mismatch":
        return ReturnCode.BAD_TRACE_NO
    return ReturnCode.BAD_FIELD


def _message(first: ErrorDetails, path: str, code: ReturnCode) -> str:
    if code is ReturnCode.EMPTY_GOODS:
        return "'goodsDetail' must list at least one goods line"
    if first["type"] == "missing":
        return f"mandatory field '{path}' is missing"
    if code is ReturnCode.BAD_TRACE_NO:
        return f"'{path}' must be 1 to 40 letters, digits, '_' or '-'"
    if not first["loc"]:  # a rule relating two fields: its message names both
        return str(first["msg"])
    return f"'{path}' {first['msg']}" if path else str(first["msg"])


def translate_validation_error(err: ValidationError) -> RequestError:
    """Turn pydantic's first error into a RequestError naming the field and the reason."""
    first = err.errors(include_url=False)[0]
    path = _field_path(tuple(first["loc"])) or str(first.get("ctx", {}).get("field", ""))
    code = _code_for(first["type"], path)
    return RequestError(_message(first, path, code), return_code=code, field=path)


def shown_action(action: str) -> str:
    """``action`` quoted for a message or a log line: printable, card numbers masked, at most
    :data:`MAX_SHOWN_ACTION` characters (a longer one is cut and its length given)."""
    return carddata.shown(action, MAX_SHOWN_ACTION)


def _unknown_action(action: str) -> RequestError:
    carddata.refuse_card_data_in_text("action", action)
    return RequestError(
        f"unknown action {shown_action(action)}; the book's actions: {', '.join(BOOK_ACTIONS)}",
        return_code=ReturnCode.UNKNOWN_ACTION,
        field="action",
    )


def parse_request(action: str, body: Mapping[str, Any]) -> Traced:
    """Validate a POS request body for any of the book's actions and return its model.

    Raises:
        RequestError: MB05 unknown action (shown shortened, see :func:`shown_action`), MB16 card
            data anywhere in the body or in the action name, MB11 a body nested deeper than
            :data:`misbridge.ebuy.carddata.MAX_DEPTH`, MB10-MB18 invalid body.
    """
    model = REQUEST_MODELS.get(action)
    if model is None:
        raise _unknown_action(action)
    carddata.refuse_card_data(body)
    try:
        return model.model_validate(dict(body))
    except ValidationError as err:
        raise translate_validation_error(err) from err
