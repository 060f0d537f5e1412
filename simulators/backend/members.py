"""Points to members: ``accumulating`` (book §10.10; memberDetail §8.4).

The member is the request's ``memberDetail.memberId`` (one of simulators.backend.testcodes.MEMBERS).
``points`` given: the cashier accumulates them (the book: "收银机集点时填写", fill in when the
cashier terminal accumulates). Absent: the backend accumulates one point per whole yuan of
``totalAmount``. The reply's ``memberDetail.pointBalance`` is the member's new balance.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any

from simulators.backend.codes import Declined, SimCode
from simulators.backend.context import (
    SimContext,
    amount,
    approved,
    declined,
    format_error,
    goods_of,
    member_of,
    success_head,
    text,
)
from simulators.backend.records import TraceRecord

#: The name the reply gives the simulator's own accumulation activity.
ACTIVITY_NAME = "会员积分累计"
#: Most points one request may add.
MAX_POINTS = 10_000_000


def accumulating(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Add points to a known member; "14" unknown member, "30" no memberDetail or bad points."""
    trans_date = ctx.trans_date()
    try:
        total, undiscount = amount(body, "totalAmount"), amount(body, "undiscountAmount", default=Decimal(0))
        if total <= 0 or undiscount > total:
            raise format_error("totalAmount must be positive and not below undiscountAmount")
        goods_of(body)
        member, member_id = _member(ctx, body)
        activity_no = text(body, "activityNo", max_len=64)
        points = _points(body, total)
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    record.total_amount, record.undiscount_amount = total, undiscount
    record.member_id, record.points_delta = member_id, points
    balance = ctx.ledger.apply_member(member_id, points)
    response = success_head(ctx, record, trans_date)
    response.update(
        {
            "activityProductNo": activity_no or trans_date[:8] + "03",
            "activityProductName": ACTIVITY_NAME,
            "points": points,
            "memberDetail": {**member, "pointBalance": balance},
        }
    )
    return approved(record, response)


def _member(ctx: SimContext, body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    member = member_of(body)
    if member is None:
        raise format_error("memberDetail is required to accumulate points")
    member_id = member.get("memberId")
    if not isinstance(member_id, str) or not member_id:
        raise format_error("memberDetail.memberId is required")
    try:
        ctx.ledger.member_points(member_id)
    except KeyError as err:
        raise Declined(SimCode.UNKNOWN_CARD, "unknown member") from err
    return member, member_id


def _points(body: Mapping[str, Any], total: Decimal) -> int:
    points = body.get("points")
    if points is None:
        return int(total.to_integral_value(rounding=ROUND_DOWN))
    if isinstance(points, bool) or not isinstance(points, int) or not 0 < points <= MAX_POINTS:
        raise format_error(f"points must be an integer from 1 to {MAX_POINTS}")
    return points
