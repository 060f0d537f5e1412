"""The simulator's action handlers: cardRedemption / cardPayment, inquiry and voidCardSale.

Each handler gets the decoded request body and the traceNo's ledger record (already counted,
already checked to be unused, and marked in progress), decides, records the outcome and
returns the response body. Handlers never await: a decision is one step, so the ledger never
shows half of one.
"""

from __future__ import annotations

import copy
import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from simulators.backend.codes import SUCCESS_DESC, Declined, SimCode
from simulators.backend.ledger import SALE_ACTIONS, Ledger, TraceRecord, TraceState
from simulators.backend.settlement import Settlement, settle
from simulators.cards import TestCard, Usage
from simulators.crypto import decrypt_pin, decrypt_text

CARD_REDEMPTION = "cardRedemption"
CARD_PAYMENT = "cardPayment"
INQUIRY = "inquiry"
VOID_CARD_SALE = "voidCardSale"
CURRENCY = "CNY"
_MAX_DECIMALS = 2


@dataclass
class SimContext:
    """What handlers share: the ledger (which also numbers orders), the cards, the working key, the clock."""

    ledger: Ledger
    cards: Mapping[str, TestCard]
    working_key: bytes
    clock: Callable[[], datetime] = datetime.now

    def card_by_pan(self, pan: str) -> TestCard | None:
        """The test card with this PAN, if the simulated bank knows it."""
        return next((card for card in self.cards.values() if card.pan == pan), None)

    def trans_date(self) -> str:
        """Local time as yyyyMMddHHmmss."""
        return self.clock().strftime("%Y%m%d%H%M%S")

    def next_order_no(self, trans_date: str) -> str:
        """A 12-digit orderNo, unique within this simulator: yyMMdd + a 6-digit sequence."""
        return f"{trans_date[2:8]}{self.ledger.next_order_serial() % 1_000_000:06d}"


@dataclass(frozen=True)
class _Sale:
    total: Decimal
    undiscount: Decimal
    goods: list[dict[str, Any]]
    member: dict[str, Any] | None
    card_info: dict[str, Any]


Handler = Callable[[SimContext, TraceRecord, dict[str, Any]], dict[str, Any]]


def decline_body(trace_no: str, trans_date: str, code: SimCode | str, desc: str) -> dict[str, Any]:
    """A decline in the book's field order: traceNo, orderNo "", transDate, returnCode, returnDesc, paidAmount 0."""
    return {
        "traceNo": trace_no,
        "orderNo": "",
        "transDate": trans_date,
        "returnCode": str(code),
        "returnDesc": desc,
        "paidAmount": 0,
    }


def card_redemption(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Decrypt the card and PIN, apply the card's usage, answer like the book's §10.2 example.

    cardPayment (§10.1, the same body plus ``acquirer``) is handled alike.
    """
    trans_date = ctx.trans_date()
    try:
        sale = _parse_sale(body)
        record.total_amount, record.undiscount_amount = sale.total, sale.undiscount
        card, usage = _identify_card(ctx, record, sale.card_info)
        settlement = settle(usage, ctx.ledger.account(card.name), sale.total, sale.undiscount)
    except Declined as declined:
        return _declined(record, decline_body(record.trace_no, trans_date, declined.code, declined.desc))
    ctx.ledger.apply(card.name, points_delta=-settlement.points_used, balance_delta=-settlement.balance_used)
    record.points_delta, record.balance_delta = -settlement.points_used, -settlement.balance_used
    record.fund_channel = settlement.fund_channel()
    response = _approval(ctx, body, sale, card, settlement, trans_date)
    record.state, record.response = TraceState.APPROVED, response
    return response


def inquiry(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Answer with the original's response (own traceNo, originalTraceNo added), or 23 / 25 / 26."""
    trans_date = ctx.trans_date()
    try:
        original = _original(ctx, record, body)
        if original.state is TraceState.VOIDED:
            raise Declined(SimCode.ORIGINAL_VOIDED, "original transaction was voided")
    except Declined as declined:
        return _declined(record, decline_body(record.trace_no, trans_date, declined.code, declined.desc))
    response: dict[str, Any] = {"traceNo": record.trace_no, "originalTraceNo": original.trace_no}
    for name, value in original.response.items():
        response.setdefault(name, copy.deepcopy(value))
    record.response = response
    record.state = TraceState.APPROVED if original.return_code == SimCode.APPROVED else TraceState.DECLINED
    return response


def void_card_sale(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Reverse an approved sale's effect on the card (a system void: no card or PIN needed).

    An original still in progress is not voided ("26": ask again once it is decided).
    """
    trans_date = ctx.trans_date()
    try:
        original = _original(ctx, record, body)
        card_name = _voidable_card(original)
    except Declined as declined:
        return _declined(record, decline_body(record.trace_no, trans_date, declined.code, declined.desc))
    account = ctx.ledger.apply(
        card_name, points_delta=-original.points_delta, balance_delta=-original.balance_delta
    )
    original.state, original.voided_by = TraceState.VOIDED, record.trace_no
    record.card, record.total_amount = card_name, original.total_amount
    record.points_delta, record.balance_delta = -original.points_delta, -original.balance_delta
    record.fund_channel = copy.deepcopy(original.fund_channel)
    response: dict[str, Any] = {
        "traceNo": record.trace_no,
        "orderNo": ctx.next_order_no(trans_date),
        "transDate": trans_date,
        "returnCode": SimCode.APPROVED.value,
        "returnDesc": SUCCESS_DESC,
        "originalTraceNo": original.trace_no,
        "fundChannel": copy.deepcopy(original.fund_channel),
    }
    member = original.response.get("memberDetail")
    if isinstance(member, dict) and ctx.cards[card_name].usage is Usage.MEMBER:
        response["memberDetail"] = {**member, "balance": account.balance}
    record.state, record.response = TraceState.APPROVED, response
    return response


#: The actions the simulator implements.
HANDLERS: dict[str, Handler] = {
    CARD_REDEMPTION: card_redemption,
    CARD_PAYMENT: card_redemption,
    INQUIRY: inquiry,
    VOID_CARD_SALE: void_card_sale,
}


def _declined(record: TraceRecord, response: dict[str, Any]) -> dict[str, Any]:
    record.state, record.response = TraceState.DECLINED, response
    return response


def _format_error(what: str) -> Declined:
    return Declined(SimCode.FORMAT_ERROR, f"format error: {what}")


def _amount(body: Mapping[str, Any], name: str) -> Decimal:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int | Decimal):
        raise _format_error(f"{name} must be a number")
    amount = Decimal(value)
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or amount < 0 or (isinstance(exponent, int) and exponent < -_MAX_DECIMALS):
        raise _format_error(f"{name} must be a non-negative amount with at most 2 decimals")
    return amount


def _parse_sale(body: Mapping[str, Any]) -> _Sale:
    total, undiscount = _amount(body, "totalAmount"), _amount(body, "undiscountAmount")
    if total <= 0 or undiscount > total:
        raise _format_error("totalAmount must be positive and not below undiscountAmount")
    goods = body.get("goodsDetail", [])
    if not isinstance(goods, list) or not all(isinstance(item, dict) for item in goods):
        raise _format_error("goodsDetail must be a list of objects")
    member = body.get("memberDetail")
    if member is not None and not isinstance(member, dict):
        raise _format_error("memberDetail must be an object")
    card_info = body.get("cardInfo")
    if not isinstance(card_info, dict):
        raise _format_error("cardInfo is required")
    return _Sale(total, undiscount, goods, member, card_info)


def _identify_card(
    ctx: SimContext, record: TraceRecord, card_info: Mapping[str, Any]
) -> tuple[TestCard, Usage]:
    card_no, password = card_info.get("cardNo"), card_info.get("password")
    if not isinstance(card_no, str) or not isinstance(password, str):
        raise _format_error("cardInfo.cardNo and cardInfo.password are required")
    try:
        pan = decrypt_text(card_no, ctx.working_key)
    except ValueError as err:
        raise _format_error("cardInfo.cardNo cannot be decrypted") from err
    card = ctx.card_by_pan(pan)
    if card is None or card.usage is None:
        raise Declined(SimCode.UNKNOWN_CARD, "unknown card")
    record.card = card.name
    try:
        pin = decrypt_pin(password, pan, ctx.working_key)
    except ValueError as err:
        raise Declined(SimCode.INCORRECT_PIN, "incorrect PIN") from err
    if not hmac.compare_digest(pin.encode(), card.pin.encode()):
        raise Declined(SimCode.INCORRECT_PIN, "incorrect PIN")
    return card, card.usage


def _approval(
    ctx: SimContext, body: Mapping[str, Any], sale: _Sale, card: TestCard, settlement: Settlement, trans_date: str
) -> dict[str, Any]:
    order_no = ctx.next_order_no(trans_date)
    paid = body["totalAmount"]  # the request's own number, digits kept (40.8 stays 40.8)
    response: dict[str, Any] = {
        "traceNo": body["traceNo"],
        "orderNo": order_no,
        "transDate": trans_date,
        "returnCode": SimCode.APPROVED.value,
        "returnDesc": SUCCESS_DESC,
        "paidAmount": paid,
        "receiptAmount": paid,
        "invoiceAmount": paid,
        "currency": CURRENCY,
        "goodsDetail": [{**item, "activityNo": trans_date[:8] + "01", "memo": order_no} for item in sale.goods],
        "fundChannel": settlement.fund_channel(),
        "printDetail": _print_detail(card, settlement, trans_date, order_no),
    }
    member = _member_detail(ctx, sale, card)
    if member is not None:
        response["memberDetail"] = member
    return response


def _print_detail(card: TestCard, settlement: Settlement, trans_date: str, order_no: str) -> dict[str, str]:
    return {
        "cardNo64": card.pan[:6] + "****" + card.pan[-4:],  # exactly like the book's "622562****8888"
        "bank": card.bank,
        "paymentOrderNo": trans_date[:8] + order_no.rjust(16, "0"),
        "pointSale": str(settlement.points_used),
        "qrCode1": "",
        "qrCode2": "",
        "qrCode3": "",
        "barCode1": "",
        "barCode2": "",
        "barCode3": "",
    }


def _member_detail(ctx: SimContext, sale: _Sale, card: TestCard) -> dict[str, Any] | None:
    if card.usage is not Usage.MEMBER:
        return copy.deepcopy(sale.member)
    member: dict[str, Any] = copy.deepcopy(sale.member) if sale.member else {"memberId": card.member_id}
    member["balance"] = ctx.ledger.balance(card.name)
    return member


def _original(ctx: SimContext, record: TraceRecord, body: Mapping[str, Any]) -> TraceRecord:
    original_no = body.get("originalTraceNo")
    if not isinstance(original_no, str) or not original_no:
        raise _format_error("originalTraceNo is required")
    record.original_trace_no = original_no
    original = ctx.ledger.get(original_no)
    if original is None or not original.used or original is record:
        if original is not record:
            ctx.ledger.bar(original_no)  # "not found" must stay true: a late original is refused
        raise Declined(SimCode.ORIGINAL_NOT_FOUND, "original transaction not found")
    if original.in_progress:
        raise Declined(SimCode.ORIGINAL_IN_PROGRESS, "original transaction in progress")
    return original


def _voidable_card(original: TraceRecord) -> str:
    if original.state is TraceState.VOIDED:
        raise Declined(SimCode.ALREADY_VOIDED, "already voided")
    approved_sale = original.action in SALE_ACTIONS and original.state is TraceState.APPROVED
    if not approved_sale or original.card is None:
        raise Declined(SimCode.ORIGINAL_NOT_FOUND, "original transaction is not an approved sale; nothing to void")
    return original.card
