"""QR codes and e-coupons: ``qrcodeSale`` (book §10.3, with the §15.1 fields) and ``ecouponInquiry`` (§10.9).

The codes are the test table of simulators.backend.testcodes. A code pays the whole
totalAmount from its balance or declines; a code with options answers the first round with
"09" and an ``activityProductList`` (§8.10), and is paid by a second qrcodeSale, under a new
traceNo (traceNos never repeat, §13), with the same ``qrcode`` and the chosen
``activityProductNo`` (§15.1: "二次交互时填写", fill in on the second round-trip).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from simulators.backend.cardsale import parse_sale, print_detail
from simulators.backend.codes import Declined, SimCode
from simulators.backend.context import (
    CURRENCY,
    SimContext,
    approved,
    decline_body,
    declined,
    format_error,
    success_head,
    text,
)
from simulators.backend.records import TraceRecord, TraceState
from simulators.backend.settlement import Channel, ecoupon, qr_payment
from simulators.backend.testcodes import CODES, Behaviour, Product, TestCode

#: §15.1 verifyType values.
VERIFY_TYPES = frozenset({"wechatApp", "h5", "aliApp", "pos"})
#: §15.1 scene values.
SCENES = frozenset({"bar_code", "qr_code"})
_BANKS = {"wallet": "二维码支付", "ecoupon": "e-Buy 电子券"}


def qrcode_sale(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Pay totalAmount from a test code's balance (or decline, or offer its products)."""
    trans_date = ctx.trans_date()
    try:
        sale = parse_sale(body, card=False)
        record.total_amount, record.undiscount_amount = sale.total, sale.undiscount
        _check_order_fields(body)
        code = _known_code(body, record)
        _check_usable(code)
        choice = _choice(code, body)
        if choice is None and code.behaviour is Behaviour.OPTIONS:
            return _choose(record, trans_date, code)
        _check_balance(ctx, code, sale.total)
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    ctx.ledger.apply_code(code.code, -sale.total)
    record.balance_delta = -sale.total
    channel = (ecoupon if code.kind == "ecoupon" else qr_payment)(sale.total)
    record.fund_channel = [channel.to_json()]
    response = _approval(ctx, record, body, code, choice or code.product, channel, trans_date)
    if sale.member is not None:
        response["memberDetail"] = dict(sale.member)
    return approved(record, response)


def ecoupon_inquiry(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """A code's balance (canPayAmount) and product(s); "14" unknown, "54" expired. Moves nothing."""
    trans_date = ctx.trans_date()
    try:
        code = _known_code(body, record)
        if code.behaviour is Behaviour.EXPIRED:
            raise Declined(SimCode.EXPIRED, "e-coupon expired")
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    response = success_head(ctx, record, trans_date)
    response["canPayAmount"] = ctx.ledger.code_balance(code.code)
    if code.product is not None:
        response.update(code.product.to_json())
    elif code.products:
        response["activityProductList"] = [product.to_json() for product in code.products]
    return approved(record, response)


def _check_order_fields(body: Mapping[str, Any]) -> None:
    # The §15.1 fields: enumerations, lengths at most 256, extendData an object.
    for name, allowed in (("verifyType", VERIFY_TYPES), ("scene", SCENES)):
        value = text(body, name)
        if value is not None and value not in allowed:
            raise format_error(f"{name} must be one of {', '.join(sorted(allowed))}")
    text(body, "orderSubject")
    text(body, "orderDescription")
    text(body, "activityProductNo", max_len=64)
    if body.get("extendData") is not None and not isinstance(body["extendData"], dict):
        raise format_error("extendData must be an object")


def _known_code(body: Mapping[str, Any], record: TraceRecord) -> TestCode:
    qrcode = text(body, "qrcode", required=True, max_len=512) or ""
    code = CODES.get(qrcode)
    if code is None:
        raise Declined(SimCode.UNKNOWN_CARD, "unknown QR code or e-coupon")
    record.qrcode = code.code
    return code


def _check_usable(code: TestCode) -> None:
    if code.behaviour is Behaviour.DECLINE:
        raise Declined(SimCode.DO_NOT_HONOUR, "do not honour")
    if code.behaviour is Behaviour.EXPIRED:
        raise Declined(SimCode.EXPIRED, "e-coupon expired")


def _check_balance(ctx: SimContext, code: TestCode, total: Decimal) -> None:
    balance = ctx.ledger.code_balance(code.code)
    if balance < total:
        raise Declined(SimCode.INSUFFICIENT_FUNDS, f"insufficient balance: {balance} available, {total} needed")


def _choice(code: TestCode, body: Mapping[str, Any]) -> Product | None:
    # Only a code with options reads activityProductNo; the others ignore it.
    product_no = body.get("activityProductNo")
    if code.behaviour is not Behaviour.OPTIONS or product_no is None:
        return None
    product = code.choice(str(product_no))
    if product is None:
        raise format_error(f"activityProductNo {product_no!r} is not one of the code's activityProductList")
    return product


def _choose(record: TraceRecord, trans_date: str, code: TestCode) -> dict[str, Any]:
    # The first round of a code with options: nothing moves; the reply lists the products.
    response = decline_body(
        record.trace_no,
        trans_date,
        SimCode.CHOOSE_PRODUCT,
        "choose an activity product, then send qrcodeSale again with its activityProductNo",
    )
    response["activityProductList"] = [product.to_json() for product in code.products]
    record.state, record.response = TraceState.DECLINED, response
    return response


def _approval(
    ctx: SimContext,
    record: TraceRecord,
    body: Mapping[str, Any],
    code: TestCode,
    product: Product | None,
    channel: Channel,
    trans_date: str,
) -> dict[str, Any]:
    response = success_head(ctx, record, trans_date)
    paid = body["totalAmount"]  # the request's own number, digits kept
    response.update({"paidAmount": paid, "receiptAmount": paid, "invoiceAmount": paid, "currency": CURRENCY})
    if product is not None:
        response.update(product.to_json())
    response["goodsDetail"] = [
        {**item, "activityNo": product.no if product else trans_date[:8] + "02", "memo": response["orderNo"]}
        for item in body.get("goodsDetail", [])
    ]
    response["fundChannel"] = [channel.to_json()]
    response["printDetail"] = print_detail(code.code, _BANKS[code.kind], "0", trans_date, response["orderNo"])
    return response
