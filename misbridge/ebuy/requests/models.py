"""The request models of the book's transaction actions (§10), from its field tables.

The models describe what misbridge checks before the customer is ever prompted or anything is
sent. Unknown extra fields are allowed and kept: misbridge forwards the body exactly as the POS
sent it, so a field added by a newer book version still reaches the backend. Amounts must be JSON
numbers (the book's Price), at most two decimals, never negative; a total or a refund is more
than 0. Card data is refused anywhere in the body before the models run
(:mod:`misbridge.ebuy.carddata`). The management actions (§11) are in
:mod:`misbridge.ebuy.requests.management`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from misbridge.ebuy.requests.fields import Count, EarnedPoints, Points, Price, QrCode, Text, TotalPrice, TraceNo


class Lenient(BaseModel):
    """A book object: its fields checked, any other field allowed and kept."""

    # Each model's validator is built when it first validates, not at import: the daemon's start
    # would build every request model's (~10 ms), and a day's sales use a few of them (issue 18).
    model_config = ConfigDict(extra="allow", strict=False, defer_build=True)


class GoodsDetail(Lenient):
    """One goods line (book §8.1)."""

    goodsCategory: Text
    goodsId: Text
    goodsName: Text
    price: Price
    quantity: Count
    rebateCode: Text | None = None


class MemberDetail(Lenient):
    """Member information (book §8.4: no table, types taken from the examples)."""

    memberId: Text | None = None
    memberName: Text | None = None
    grade: Text | None = None
    status: Text | None = None
    balance: Price | None = None
    pointBalance: Points | None = None


class Traced(Lenient):
    """Every request: its own, never repeated traceNo (book §9)."""

    traceNo: TraceNo


def undiscount_over_total(undiscount: Decimal | None, total: Decimal) -> None:
    """Refuse an undiscountable part larger than the total (MB13)."""
    if undiscount is not None and undiscount > total:
        raise PydanticCustomError(
            "undiscount",
            "undiscountAmount ({u}) is greater than totalAmount ({t})",
            {"u": str(undiscount), "t": str(total), "field": "undiscountAmount"},
        )


#: goodsDetail: at least one line (MB14).
GoodsLines = Annotated[list[GoodsDetail], Field(min_length=1)]


class SaleRequest(Traced):
    """What every sale of goods carries (book §9, "Common request example body")."""

    totalAmount: TotalPrice
    undiscountAmount: Price
    goodsDetail: GoodsLines
    memberDetail: MemberDetail | None = None

    @model_validator(mode="after")
    def _undiscount_within_total(self) -> SaleRequest:
        undiscount_over_total(self.undiscountAmount, self.totalAmount)
        return self


class CardRedemptionRequest(SaleRequest):
    """``cardRedemption`` request body (book §10.2)."""


class CardPaymentRequest(CardRedemptionRequest):
    """``cardPayment`` request body (book §10.1): a card redemption with an acquirer."""

    acquirer: Text


class QrcodeSaleRequest(SaleRequest):
    """``qrcodeSale`` request body (book §10.3, with the Chinese 4.0 page's fields of §15.1).

    ``qrcode`` is optional: the pad can collect it (scan or keypad). The §15.1 fields are
    forwarded unchanged; their values are to be agreed with e-Buy, so only their type and
    length are checked.
    """

    qrcode: QrCode | None = None
    verifyType: Text | None = Field(None, description="wechatApp, h5, aliApp or pos (book §15.1)")
    scene: Text | None = Field(None, description="bar_code or qr_code (book §15.1)")
    activityProductNo: Text | None = Field(None, description="on the second round trip (book §15.1)")
    orderSubject: Text | None = Field(None, description="at most 256 characters (book §15.1)")
    orderDescription: Text | None = Field(None, description="at most 256 characters (book §15.1)")
    extendData: dict[str, Any] | None = Field(None, description="agreed with e-Buy (book §15.1)")


class InquiryRequest(Traced):
    """``inquiry`` request body (book §10.4)."""

    originalTraceNo: TraceNo


class VoidQrcodeSaleRequest(InquiryRequest):
    """``voidQrcodeSale`` request body (book §10.6): the original's traceNo."""


class VoidCardSaleRequest(InquiryRequest):
    """``voidCardSale`` request body (book §10.5).

    ``acquirer`` is mandatory when the original was a ``cardPayment``: only the journal knows
    that, so the service checks it; here it is accepted and bounded.
    """

    acquirer: Text | None = None


class RefundQrcodeSaleRequest(InquiryRequest):
    """``refundQrcodeSale`` request body (book §10.8)."""

    refundAmount: TotalPrice


class RefundCardSaleRequest(RefundQrcodeSaleRequest):
    """``refundCardSale`` request body (book §10.7)."""

    acquirer: Text | None = None


class EcouponInquiryRequest(Traced):
    """``ecouponInquiry`` request body (book §10.9); the pad can collect the code."""

    qrcode: QrCode | None = None


class AccumulatingRequest(Traced):
    """``accumulating`` request body (book §10.10): points for a purchase.

    ``activityNo`` and ``points`` are filled in when the cashier terminal accumulates, left out
    when the backend does.
    """

    totalAmount: TotalPrice
    undiscountAmount: Price | None = None
    activityNo: Text | None = None
    points: EarnedPoints | None = None
    goodsDetail: GoodsLines | None = None
    memberDetail: MemberDetail | None = None

    @model_validator(mode="after")
    def _undiscount_within_total(self) -> AccumulatingRequest:
        undiscount_over_total(self.undiscountAmount, self.totalAmount)
        return self
