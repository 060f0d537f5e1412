"""What looks back at an original sale: ``inquiry`` (book §10.4), the voids (§10.5, §10.6) and
the refunds (§10.7, §10.8).

Ledger rules (docs/backend.md, "Each action's ledger rule"):

* a void gives the whole sale back, once; refused if the sale was voided ("22"), (partly)
  refunded ("24"), is unknown or not an approved sale ("25"), is of the other family ("58"),
  or, for a card void carrying ``cardInfo``, was paid with another card ("57");
* a refund gives back ``refundAmount``, channel by channel, up to what is left ("13" beyond);
  a voided sale is not refunded ("23");
* a card void or refund of a ``cardPayment`` must name the sale's ``acquirer`` ("30");
* an inquiry answers its original's reply; "23" for a voided sale; a refunded sale's reply
  gains ``refundedAmount`` (the refunds' sum so far).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from simulators.backend.book import CARD_PAYMENT, MONEY_SALES, is_card_family
from simulators.backend.codes import Declined, SimCode
from simulators.backend.context import (
    SimContext,
    amount,
    approved,
    declined,
    format_error,
    identify_card,
    original_of,
    success_head,
    text,
)
from simulators.backend.records import TraceRecord, TraceState
from simulators.backend.settlement import (
    BALANCE_CHANNELS,
    CODE_CHANNELS,
    POINTS_CHANNELS,
    POINTS_PER_YUAN,
    Channel,
    refund_portions,
)
from simulators.cards import Usage


def inquiry(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Answer with the original's response (own traceNo, originalTraceNo added), or 23 / 25 / 26."""
    trans_date = ctx.trans_date()
    try:
        original = original_of(ctx, record, body)
        if original.state is TraceState.VOIDED:
            raise Declined(SimCode.ORIGINAL_VOIDED, "original transaction was voided")
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    response: dict[str, Any] = {"traceNo": record.trace_no, "originalTraceNo": original.trace_no}
    for name, value in original.response.items():
        response.setdefault(name, copy.deepcopy(value))
    if original.refunded_amount:
        response["refundedAmount"] = original.refunded_amount
    record.response = response
    record.state = TraceState.APPROVED if original.return_code == SimCode.APPROVED else TraceState.DECLINED
    return response


def void_sale(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Give an approved sale's whole effect back (voidCardSale, voidQrcodeSale).

    A card void without ``cardInfo`` is a system void (misbridge's reversal, docs/backend.md,
    "System void"); with it, the card must be the sale's.
    """
    trans_date = ctx.trans_date()
    try:
        original = original_of(ctx, record, body)
        if original.state is TraceState.VOIDED:
            raise Declined(SimCode.ALREADY_VOIDED, "already voided")
        _check_sale_of_family(original, record.action, "void")
        if original.refunded_amount:
            raise Declined(SimCode.ORIGINAL_REFUNDED, "original transaction was refunded; refund the rest instead")
        _check_card_and_acquirer(ctx, original, body, acquirer_required=True)
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    _give_back(ctx, record, original, -original.points_delta, -original.balance_delta)
    original.state, original.voided_by = TraceState.VOIDED, record.trace_no
    record.total_amount = original.total_amount
    record.fund_channel = copy.deepcopy(original.fund_channel)
    response = success_head(ctx, record, trans_date)
    response.update({"originalTraceNo": original.trace_no, "fundChannel": copy.deepcopy(original.fund_channel)})
    _add_member(ctx, original, response)
    return approved(record, response)


def refund_sale(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Give ``refundAmount`` of an approved sale back (refundCardSale, refundQrcodeSale), partly if asked."""
    trans_date = ctx.trans_date()
    try:
        original = original_of(ctx, record, body)
        if original.state is TraceState.VOIDED:
            raise Declined(SimCode.ORIGINAL_VOIDED, "original transaction was voided; nothing to refund")
        _check_sale_of_family(original, record.action, "refund")
        refund = _refund_amount(body, original)
        _check_card_and_acquirer(ctx, original, body, acquirer_required=False)
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    portions = refund_portions(original.fund_channel, original.refunded_amount, refund)
    points, balance = _restores(portions)
    _give_back(ctx, record, original, points, balance)
    original.refunded_amount += refund
    original.refunded_by.append(record.trace_no)
    record.total_amount = refund
    record.fund_channel = [portion.to_json() for portion in portions]
    response = success_head(ctx, record, trans_date)
    response.update(
        {"refundAmount": body["refundAmount"], "originalTraceNo": original.trace_no, "fundChannel": record.fund_channel}
    )
    _add_member(ctx, original, response)
    return approved(record, response)


def _check_sale_of_family(original: TraceRecord, action: str, what: str) -> None:
    if original.action not in MONEY_SALES or original.state is not TraceState.APPROVED:
        raise Declined(SimCode.ORIGINAL_NOT_FOUND, f"original transaction is not an approved sale; nothing to {what}")
    if is_card_family(original.action) != is_card_family(action):
        family = "card" if is_card_family(original.action) else "QR"
        raise Declined(SimCode.WRONG_FAMILY, f"original transaction is a {family} sale; use the {family} {what}")


def _refund_amount(body: Mapping[str, Any], original: TraceRecord) -> Decimal:
    refund = amount(body, "refundAmount")
    if refund <= 0:
        raise format_error("refundAmount must be positive")
    if refund > original.refundable:
        raise Declined(
            SimCode.AMOUNT_EXCEEDS, f"refundAmount {refund} exceeds what is left to refund ({original.refundable})"
        )
    return refund


def _check_card_and_acquirer(
    ctx: SimContext, original: TraceRecord, body: Mapping[str, Any], *, acquirer_required: bool
) -> None:
    if not is_card_family(original.action):
        return
    acquirer = text(body, "acquirer", required=acquirer_required and original.action == CARD_PAYMENT)
    if acquirer is not None and original.acquirer is not None and acquirer != original.acquirer:
        raise format_error(f"acquirer {acquirer!r} is not the original's")
    if body.get("cardInfo") is not None and identify_card(ctx, body["cardInfo"]).name != original.card:
        raise Declined(SimCode.CARD_MISMATCH, "card does not match the original sale's card")


def _restores(portions: list[Channel]) -> tuple[int, Decimal]:
    # What the channels give back: points (1000 a yuan) and stored value or code balance.
    points = sum((p.amount for p in portions if p.code in POINTS_CHANNELS), Decimal(0))
    balance = sum((p.amount for p in portions if p.code in BALANCE_CHANNELS | CODE_CHANNELS), Decimal(0))
    return int(points * POINTS_PER_YUAN), balance


def _give_back(ctx: SimContext, record: TraceRecord, original: TraceRecord, points: int, balance: Decimal) -> None:
    # Apply the restore to the card or the code the sale was paid with, and record it.
    if original.card is not None:
        ctx.ledger.apply(original.card, points_delta=points, balance_delta=balance)
    elif original.qrcode is not None:
        ctx.ledger.apply_code(original.qrcode, balance)
    record.card, record.qrcode, record.acquirer = original.card, original.qrcode, original.acquirer
    record.points_delta, record.balance_delta = points, balance


def _add_member(ctx: SimContext, original: TraceRecord, response: dict[str, Any]) -> None:
    # A member card's void or refund shows the member's new balance, as the sale did.
    member = original.response.get("memberDetail")
    if isinstance(member, dict) and original.card is not None and ctx.cards[original.card].usage is Usage.MEMBER:
        response["memberDetail"] = {**member, "balance": ctx.ledger.balance(original.card)}
