"""The management API: ``summary`` (book §11.1) and ``batchUpload`` (§11.2).

``summary`` counts the money transactions decided since the last summary, one ``settleRecord``
(§8.8) per activity, action and customer (the card's bank, or the code's issuer): the activity
is the one the sale's approval named in its goodsDetail (a void's or refund's: its sale's), the
name the action's. Voids and refunds are ``isRefund`` records and are subtracted in the totals.
``batchUpload`` matches each uploaded ``transRecord`` (§8.7) against the ledger and answers its
status, unless a test told the simulator to disagree about that traceNo
(simulators.backend.disagree), which wins.

Both are per terminal, as the envelope's ``deviceNo`` names it (the book is silent; a backend
that knows each POS by its deviceNo books each one's transactions apart): ``summary`` counts the
asking terminal's transactions since *its* last summary, and ``batchUpload`` answers 4 (does not
exist) for a traceNo another terminal's request was booked under. A record with no terminal (a
ledger file from before terminals were kept) counts for whichever terminal asks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from simulators.backend.book import MONEY_SALES, REFUND_ACTIONS, VOID_ACTIONS
from simulators.backend.codes import SUCCESS_DESC, Declined, SimCode
from simulators.backend.context import SimContext, amount, approved, declined, format_error, text
from simulators.backend.records import TraceRecord, TraceState
from simulators.backend.testcodes import CODES

#: Most records one batchUpload may carry (§11.2 "Maximum:5000").
MAX_RECORDS = 5000
#: Ledger transactions older than this are outside batchUpload's matching (§11.2 "within 7 Days").
MATCH_WINDOW = timedelta(days=7)
TIME_FORMAT = "%Y%m%d%H%M%S"
CENT = Decimal("0.01")
#: activityNo (when the sale named none) and activityName of each counted action (the simulator's own;
#: productName is the book's 全场产品).
ACTIVITIES = {
    "cardRedemption": ("SIM01", "银行卡积分兑换"),
    "cardPayment": ("SIM02", "银行卡收单"),
    "qrcodeSale": ("SIM03", "二维码支付"),
    "voidCardSale": ("SIM04", "银行卡撤销"),
    "voidQrcodeSale": ("SIM05", "二维码撤销"),
    "refundCardSale": ("SIM06", "银行卡退货"),
    "refundQrcodeSale": ("SIM07", "二维码退货"),
}
_REFUNDS = (*VOID_ACTIONS, *REFUND_ACTIONS)


@dataclass
class _Group:
    """One settleRecord being added up."""

    action: str
    customer: str
    activity_no: str
    volume: int = 0
    total: Decimal = Decimal(0)

    @property
    def is_refund(self) -> bool:
        return self.action in _REFUNDS

    def to_json(self) -> dict[str, Any]:
        activity_name = ACTIVITIES[self.action][1]
        money = str(self.total.quantize(CENT))  # like the book's "2082.10"
        return {
            "activityNo": self.activity_no,
            "activityName": activity_name,
            "productName": "全场产品",
            "customer": self.customer,
            "isRefund": self.is_refund,
            "volume": self.volume,
            "totalReceiptAmount": money,
            "totalAmount": money,
        }


def summary(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Totals of the sales, voids and refunds decided since the last summary; marks them counted."""
    trans_date = ctx.trans_date()
    counted = [
        r
        for r in ctx.ledger.records()
        if r is not record and not r.summarized and _counts(r) and _booked_for(r, ctx.terminal)
    ]
    groups: dict[tuple[str, str, str], _Group] = {}
    for counted_record in counted:
        customer, activity_no = _customer(ctx, counted_record), _activity(ctx, counted_record)
        key = (activity_no, counted_record.action, customer)
        group = groups.setdefault(key, _Group(counted_record.action, customer, activity_no))
        group.volume += 1
        group.total += counted_record.total_amount or Decimal(0)
        counted_record.summarized = True
    since = ctx.ledger.summary_since
    begin = since.get(ctx.terminal) or min((r.trans_date for r in counted), default=trans_date)
    since[ctx.terminal] = trans_date
    net = sum((-g.total if g.is_refund else g.total for g in groups.values()), Decimal(0)).quantize(CENT)
    response = {
        "traceNo": record.trace_no,
        "transDate": trans_date,
        "returnCode": SimCode.APPROVED.value,
        "returnDesc": SUCCESS_DESC,
        "settleRecord": [group.to_json() for group in groups.values()],
        "beginDate": begin,
        "endDate": trans_date,
        "volume": sum(group.volume for group in groups.values()),
        "totalReceiptAmount": net,
        "totalAmount": net,
    }
    return approved(record, response)


def batch_upload(ctx: SimContext, record: TraceRecord, body: dict[str, Any]) -> dict[str, Any]:
    """Match each uploaded transRecord against the ledger: its status per book §8.7."""
    trans_date = ctx.trans_date()
    try:
        uploaded = _uploaded(body)
    except Declined as refusal:
        return declined(record, trans_date, refusal)
    now = ctx.clock()
    matched = [
        {"traceNo": entry["traceNo"], "paidAmount": entry["paidAmount"], "status": _status(ctx, record, entry, now)}
        for entry in uploaded
    ]
    response = {
        "traceNo": record.trace_no,
        "transDate": trans_date,
        "returnCode": SimCode.APPROVED.value,
        "returnDesc": SUCCESS_DESC,
        "transRecord": matched,
    }
    return approved(record, response)


def _booked_for(record: TraceRecord, terminal: str) -> bool:
    """Whether ``record`` is ``terminal``'s: booked under its deviceNo, or under none known."""
    return record.device_no is None or record.device_no == terminal


def _counts(record: TraceRecord) -> bool:
    # A sale that was approved (voided later or not), an approved void or refund.
    if record.action in MONEY_SALES:
        return record.state in (TraceState.APPROVED, TraceState.VOIDED)
    return record.action in _REFUNDS and record.state is TraceState.APPROVED


def _activity(ctx: SimContext, record: TraceRecord) -> str:
    sale = ctx.ledger.get(record.original_trace_no) if record.original_trace_no else record
    goods = sale.response.get("goodsDetail") if sale is not None else None
    if isinstance(goods, list):
        for item in goods:
            if isinstance(item, dict) and item.get("activityNo"):
                return str(item["activityNo"])
    return ACTIVITIES[record.action][0]


def _customer(ctx: SimContext, record: TraceRecord) -> str:
    if record.card is not None and record.card in ctx.cards:
        return ctx.cards[record.card].bank
    code = CODES.get(record.qrcode or "")
    return "e-Buy 电子券" if code is not None and code.kind == "ecoupon" else "易百支付"


def _uploaded(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    entries = body.get("transRecord")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise format_error("transRecord must be a list of objects")
    if len(entries) > MAX_RECORDS:
        raise format_error(f"transRecord holds {len(entries)} records; at most {MAX_RECORDS}")
    count = body.get("transCount")
    if isinstance(count, bool) or count != len(entries):
        raise format_error("transCount must equal the number of transRecord entries")
    begin, end = _time(body, "beginTime"), _time(body, "endTime")
    if begin > end:
        raise format_error("beginTime is after endTime")
    for entry in entries:
        text(entry, "traceNo", required=True, max_len=64)
        _paid(entry)
    return entries


def _time(body: Mapping[str, Any], name: str) -> datetime:
    value = text(body, name, required=True, max_len=14) or ""
    try:
        return datetime.strptime(value, TIME_FORMAT)
    except ValueError as err:
        raise format_error(f"{name} must be yyyyMMddHHmmss") from err


def _paid(entry: Mapping[str, Any]) -> Decimal:
    # transRecord.paidAmount is a String in §8.7 and a number in §11.2's example: both are read.
    paid = entry.get("paidAmount")
    if isinstance(paid, str):
        try:
            paid = Decimal(paid)
        except ArithmeticError as err:
            raise format_error("paidAmount must be an amount") from err
    return amount({"paidAmount": paid}, "paidAmount")


def _status(ctx: SimContext, upload: TraceRecord, entry: Mapping[str, Any], now: datetime) -> int:
    told = ctx.disagreements.about(str(entry["traceNo"]))
    if told is not None:
        return told.status(_paid(entry))
    found = ctx.ledger.get(str(entry["traceNo"]))
    if found is None or found is upload or found.submissions == 0 or _too_old(found, now):
        return 4  # does not exist in the backend (or outside the 7-day window)
    if not _booked_for(found, upload.device_no or ""):
        return 4  # another terminal's: this one has no such transaction
    if found.state is TraceState.NOT_APPLIED:
        return 7  # received, rolled back without effect (rejected, or dropped before commit)
    if found.in_progress:
        return 0  # initial: not decided yet
    if found.state is TraceState.DECLINED:
        return 5
    if found.state is TraceState.VOIDED:
        return 6
    if found.refunded_amount:
        return 8
    backend, uploaded = found.total_amount or Decimal(0), _paid(entry)
    if backend == uploaded:
        return 1
    return 2 if backend > uploaded else 3


def _too_old(record: TraceRecord, now: datetime) -> bool:
    try:
        decided = datetime.strptime(record.trans_date, TIME_FORMAT)
    except ValueError:
        return False  # not decided: no date to judge by
    return now - decided > MATCH_WINDOW
