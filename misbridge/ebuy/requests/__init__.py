"""Validation of the POS's request bodies (book §10, §11), with errors that name the field.

One model per action of the book, from its field tables: sales, inquiry, voids, refunds,
e-coupon and points in :mod:`~misbridge.ebuy.requests.models`, summary and batch upload in
:mod:`~misbridge.ebuy.requests.management`, their field types and limits in
:mod:`~misbridge.ebuy.requests.fields`; :mod:`~misbridge.ebuy.requests.validation` turns a body
into its model or into a RequestError with the MB code of the rule it broke;
:mod:`~misbridge.ebuy.requests.responses` makes the book's response shape. Limits:
docs/pos-api.md, "Input limits and card data".
"""

from __future__ import annotations

from misbridge.ebuy.requests.fields import (
    BOOK_TIME_FORMAT,
    MAX_AMOUNT,
    MAX_BATCH_RECORDS,
    MAX_POINTS,
    MAX_QRCODE_LEN,
    MAX_QUANTITY,
    MAX_TEXT_LEN,
    TRACE_NO_PATTERN,
    Price,
    TotalPrice,
)
from misbridge.ebuy.requests.management import (
    MAX_BATCH_WINDOW,
    BatchUploadRequest,
    SummaryRequest,
    TransRecord,
)
from misbridge.ebuy.requests.models import (
    AccumulatingRequest,
    CardPaymentRequest,
    CardRedemptionRequest,
    EcouponInquiryRequest,
    GoodsDetail,
    InquiryRequest,
    MemberDetail,
    QrcodeSaleRequest,
    RefundCardSaleRequest,
    RefundQrcodeSaleRequest,
    SaleRequest,
    Traced,
    VoidCardSaleRequest,
    VoidQrcodeSaleRequest,
)
from misbridge.ebuy.requests.responses import (
    SUCCESS_CODE,
    amount_minor_units,
    complete_book_head,
    error_response,
    trans_date,
)
from misbridge.ebuy.requests.validation import (
    BOOK_ACTIONS,
    CARD_ACTIONS,
    MAX_SHOWN_ACTION,
    REQUEST_MODELS,
    parse_request,
    shown_action,
    translate_validation_error,
)

__all__ = [
    "BOOK_ACTIONS",
    "BOOK_TIME_FORMAT",
    "CARD_ACTIONS",
    "MAX_AMOUNT",
    "MAX_BATCH_RECORDS",
    "MAX_BATCH_WINDOW",
    "MAX_POINTS",
    "MAX_QRCODE_LEN",
    "MAX_QUANTITY",
    "MAX_SHOWN_ACTION",
    "MAX_TEXT_LEN",
    "REQUEST_MODELS",
    "SUCCESS_CODE",
    "TRACE_NO_PATTERN",
    "AccumulatingRequest",
    "BatchUploadRequest",
    "CardPaymentRequest",
    "CardRedemptionRequest",
    "EcouponInquiryRequest",
    "GoodsDetail",
    "InquiryRequest",
    "MemberDetail",
    "Price",
    "QrcodeSaleRequest",
    "RefundCardSaleRequest",
    "RefundQrcodeSaleRequest",
    "SaleRequest",
    "SummaryRequest",
    "TotalPrice",
    "Traced",
    "TransRecord",
    "VoidCardSaleRequest",
    "VoidQrcodeSaleRequest",
    "amount_minor_units",
    "complete_book_head",
    "error_response",
    "parse_request",
    "shown_action",
    "trans_date",
    "translate_validation_error",
]  # fmt: skip
