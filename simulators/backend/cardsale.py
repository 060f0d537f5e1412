"""Card sales: ``cardRedemption`` (book §10.2) and ``cardPayment`` (§10.1, plus ``acquirer``).

The card and PIN come in the older book's ``cardInfo`` (§8.5), encrypted with the working key;
the card's usage decides the fund channels (simulators.backend.settlement).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from simulators.backend.book import CARD_PAYMENT
from simulators.backend.codes import Declined
from simulators.backend.context import (
    CURRENCY,
    SimContext,
    amount,
    approved,
    declined,
    format_error,
    goods_of,
    identify_card,
    member_of,
    success_head,
    text,
)
from simulators.backend.records import TraceRecord
from simulators.backend.settlement import Settlement, settle
from simulators.cards import TestCard, Usage


@dataclass(frozen=True)
class _Sale:
    total: Decimal
    undiscount: Decimal
    goods: list[dict[str, Any]]
    member: dict[str, Any] | None
    card_info: Any


def card_redemption(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Decrypt the card and PIN, apply the card's usage, answer like the book's §10.2 example.

    cardPayment (§10.1, the same body plus a mandatory ``acquirer``) is handled alike; the
    acquirer is kept, since voiding a cardPayment must name it (§10.5).
    """
    trans_date = ctx.trans_date()
    try:
        sale = parse_sale(body)
        record.total_amount, record.undiscount_amount = sale.total, sale.undiscount
        if record.action == CARD_PAYMENT:
            record.acquirer = text(body, "acquirer", required=True)
        card = identify_card(ctx, sale.card_info, record)
        usage = card.usage or Usage.POINTS  # identify_card refuses cards without a usage
        settlement = settle(usage, ctx.ledger.account(card.name), sale.total, sale.undiscount)
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    ctx.ledger.apply(card.name, points_delta=-settlement.points_used, balance_delta=-settlement.balance_used)
    record.points_delta, record.balance_delta = -settlement.points_used, -settlement.balance_used
    record.fund_channel = settlement.fund_channel()
    return approved(record, _approval(ctx, record, body, sale, card, settlement, trans_date))


def parse_sale(body: Mapping[str, Any], *, card: bool = True) -> _Sale:
    """The amounts, goods and member of a sale body (and its cardInfo, left for :func:`identify_card`).

    Raises:
        Declined: "30" for a bad amount, goodsDetail or memberDetail.
    """
    total, undiscount = amount(body, "totalAmount"), amount(body, "undiscountAmount")
    if total <= 0 or undiscount > total:
        raise format_error("totalAmount must be positive and not below undiscountAmount")
    goods, member = goods_of(body), member_of(body)
    if card and body.get("cardInfo") is None:
        raise format_error("cardInfo is required")
    return _Sale(total, undiscount, goods, member, body.get("cardInfo"))


def _approval(
    ctx: SimContext,
    record: TraceRecord,
    body: Mapping[str, Any],
    sale: _Sale,
    card: TestCard,
    settlement: Settlement,
    trans_date: str,
) -> dict[str, Any]:
    response = success_head(ctx, record, trans_date)
    order_no = response["orderNo"]
    paid = body["totalAmount"]  # the request's own number, digits kept (40.8 stays 40.8)
    response.update(
        {
            "paidAmount": paid,
            "receiptAmount": paid,
            "invoiceAmount": paid,
            "currency": CURRENCY,
            "goodsDetail": [{**item, "activityNo": trans_date[:8] + "01", "memo": order_no} for item in sale.goods],
            "fundChannel": settlement.fund_channel(),
            "printDetail": print_detail(card.pan, card.bank, str(settlement.points_used), trans_date, order_no),
        }
    )
    member = _member_detail(ctx, sale, card)
    if member is not None:
        response["memberDetail"] = member
    return response


def print_detail(pan: str, bank: str, point_sale: str, trans_date: str, order_no: str) -> dict[str, str]:
    """printDetail with the book's §10.2 keys; ``cardNo64`` is first 6 + ``****`` + last 4 (``622562****8888``)."""
    return {
        "cardNo64": pan[:6] + "****" + pan[-4:],
        "bank": bank,
        "paymentOrderNo": trans_date[:8] + order_no.rjust(16, "0"),
        "pointSale": point_sale,
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
