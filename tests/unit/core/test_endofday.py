"""The end of day's records (misbridge.core.endofday) from a real journal file seeded with transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from misbridge.config.settings import ReconcileSettings
from misbridge.core.endofday import (
    BookStatus,
    BusinessDay,
    DayRecords,
    batches,
    business_day,
    business_day_at,
    day_records,
)
from misbridge.core.kinds import TABLES
from misbridge.core.machine import kind_of
from misbridge.ebuy import jsonio
from misbridge.journal import Journal, TransactionRecord
from misbridge.journal.records import iso_utc, request_hash
from tests.seeding import events_to

D = Decimal
SHANGHAI = ZoneInfo("Asia/Shanghai")
CUT_OFF = time(4, 0)
DAY = date(2026, 5, 1)
#: Business day 2026-05-01 in Shanghai: 2026-05-01 04:00 to 2026-05-02 04:00 local.
MAY_1 = BusinessDay.of(DAY, CUT_OFF, SHANGHAI)
#: Noon local on 2026-05-01, well inside MAY_1.
NOON = datetime(2026, 5, 1, 12, 0, tzinfo=SHANGHAI)


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    opened = await Journal.open(tmp_path / "journal.db")
    try:
        yield opened
    finally:
        await opened.close()


def approval(trace_no: str, **amounts: Any) -> dict[str, Any]:
    return {"traceNo": trace_no, "orderNo": "260501000001", "returnCode": "00", "returnDesc": "SUCCESS", **amounts}


def decline(trace_no: str) -> dict[str, Any]:
    return {"traceNo": trace_no, "orderNo": "", "returnCode": "51", "returnDesc": "insufficient", "paidAmount": 0}


async def seed(
    journal: Journal,
    trace_no: str,
    action: str,
    state: str,
    request: dict[str, Any] | None = None,
    *,
    at: datetime = NOON,
    response: dict[str, Any] | None = None,
) -> None:
    """A ``action`` transaction created ``at``, walked to ``state``; its last move records ``response``."""
    body = {"traceNo": trace_no, **(request if request is not None else {"totalAmount": D("40.80")})}
    initial = TABLES[kind_of(action)].initial
    await journal.record_intent(TransactionRecord.new(trace_no, action, initial, body, now=at))
    events = events_to(kind_of(action), state)
    current: str = initial
    for index, event in enumerate(events):
        last = index == len(events) - 1
        current = await journal.record_transition(trace_no, current, event, response=response if last else None)


async def sale(
    journal: Journal, trace_no: str, state: str = "approved", total: str = "40.80", *, at: datetime = NOON
) -> None:
    response = approval(trace_no, paidAmount=D(total)) if state == "approved" else None
    await seed(journal, trace_no, "cardRedemption", state, {"totalAmount": D(total)}, at=at, response=response)


def by_trace_no(records: DayRecords) -> dict[str, tuple[BookStatus, Decimal]]:
    return {record.journal_trace_no: (record.status, record.paid_amount) for record in records.records}


# --- the business day ---------------------------------------------------------------------------


async def test_the_cut_off_puts_a_night_sale_on_the_day_before(journal: Journal) -> None:
    await sale(journal, "before", at=datetime(2026, 5, 1, 3, 59, 59, tzinfo=SHANGHAI))
    await sale(journal, "opening", at=datetime(2026, 5, 1, 4, 0, tzinfo=SHANGHAI))
    await sale(journal, "night", at=datetime(2026, 5, 2, 2, 0, tzinfo=SHANGHAI))
    await sale(journal, "next-day", at=datetime(2026, 5, 2, 4, 0, tzinfo=SHANGHAI))
    records = await day_records(journal, MAY_1)
    assert [r.journal_trace_no for r in records.records] == ["opening", "night"]
    assert [r.trans_time for r in records.records] == ["20260501040000", "20260502020000"]
    assert (MAY_1.begin_time, MAY_1.end_time) == ("20260501040000", "20260502035959")
    before = await day_records(journal, BusinessDay.of(date(2026, 4, 30), CUT_OFF, SHANGHAI))
    assert [r.journal_trace_no for r in before.records] == ["before"]
    assert business_day_at(datetime(2026, 5, 2, 2, 0, tzinfo=SHANGHAI), CUT_OFF, SHANGHAI) == DAY
    assert business_day_at(datetime(2026, 5, 2, 4, 0, tzinfo=SHANGHAI), CUT_OFF, SHANGHAI) == date(2026, 5, 2)


async def test_the_time_zone_decides_the_day_and_the_local_time(journal: Journal) -> None:
    instant = datetime(2026, 5, 1, 21, 0, tzinfo=UTC)  # Shanghai: 2026-05-02 05:00
    await sale(journal, "evening", at=instant)
    utc_day = await day_records(journal, BusinessDay.of(DAY, CUT_OFF, ZoneInfo("UTC")))
    assert [r.trans_time for r in utc_day.records] == ["20260501210000"]
    assert (await day_records(journal, MAY_1)).records == ()
    shanghai_next = await day_records(journal, BusinessDay.of(date(2026, 5, 2), CUT_OFF, SHANGHAI))
    assert [r.trans_time for r in shanghai_next.records] == ["20260502050000"]


def test_a_daylight_saving_day_still_ends_at_the_cut_off() -> None:
    new_york = ZoneInfo("America/New_York")  # clocks go forward at 02:00 on 2026-03-08
    short = BusinessDay.of(date(2026, 3, 7), CUT_OFF, new_york)
    # Aware datetimes of one zone subtract as wall clocks: the real length is measured in UTC.
    assert short.end.astimezone(UTC) - short.begin.astimezone(UTC) == timedelta(hours=23)
    assert (short.begin_time, short.end_time) == ("20260307040000", "20260308035959")
    normal = BusinessDay.of(date(2026, 3, 8), CUT_OFF, new_york)
    assert normal.end.astimezone(UTC) - normal.begin.astimezone(UTC) == timedelta(hours=24)


def test_the_settings_make_the_day() -> None:
    day = business_day(ReconcileSettings(cut_off="05:30", time_zone="Asia/Shanghai"), DAY)
    assert (day.begin, day.end) == (
        datetime(2026, 5, 1, 5, 30, tzinfo=SHANGHAI),
        datetime(2026, 5, 2, 5, 30, tzinfo=SHANGHAI),
    )


# --- which status misbridge believes ------------------------------------------------------------


async def test_each_final_state_has_its_status(journal: Journal) -> None:
    await sale(journal, "s-approved", total="12.34")
    await sale(journal, "s-declined", "declined", total="99.99")
    await sale(journal, "s-aborted", "aborted")
    await sale(journal, "s-voided", "voided", total="7.70")  # misbridge voided it (outcome unknown)
    await sale(journal, "s-void-pos", total="30.00")
    await seed(journal, "v-approved", "voidCardSale", "approved", {"originalTraceNo": "s-void-pos"})
    await sale(journal, "s-refunded", total="50.00")
    await seed(
        journal,
        "r-approved",
        "refundCardSale",
        "approved",
        {"originalTraceNo": "s-refunded", "refundAmount": D("20.5")},
        response=approval("r-approved", refundAmount=D("20.50")),
    )
    await sale(journal, "s-refund-declined", total="8.00")
    await seed(
        journal,
        "r-declined",
        "refundCardSale",
        "declined",
        {"originalTraceNo": "s-refund-declined", "refundAmount": D("1.00")},
    )
    await seed(journal, "v-aborted", "voidCardSale", "aborted", {"originalTraceNo": "s-refund-declined"})
    await seed(journal, "v-declined", "voidCardSale", "declined", {"originalTraceNo": "s-approved"})
    await seed(
        journal,
        "acc",
        "accumulating",
        "approved",
        {"totalAmount": D("15.00"), "memberDetail": {"memberId": "M1"}},
        response=approval("acc"),
    )
    records = await day_records(journal, MAY_1)
    assert by_trace_no(records) == {
        "s-approved": (BookStatus.EQUAL, D("12.34")),
        "s-declined": (BookStatus.FAILED, D("99.99")),
        "s-voided": (BookStatus.REVERSED, D("7.70")),
        "s-void-pos": (BookStatus.REVERSED, D("30.00")),
        "v-approved": (BookStatus.EQUAL, D("30.00")),  # a void's amount is its sale's
        "s-refunded": (BookStatus.REFUNDED, D("50.00")),
        "r-approved": (BookStatus.EQUAL, D("20.50")),
        "s-refund-declined": (BookStatus.EQUAL, D("8.00")),  # a declined refund moved nothing
        "r-declined": (BookStatus.FAILED, D("1.00")),
        "v-declined": (BookStatus.FAILED, D("12.34")),
        "acc": (BookStatus.EQUAL, D("15.00")),  # the approval has no paidAmount: the request's total
    }  # s-aborted and v-aborted never reached the backend: not uploaded
    assert records.set_aside == ()
    book_form = {record["traceNo"]: record for record in records.trans_records()}
    assert book_form["s-approved"] == {"traceNo": "s-approved", "paidAmount": D("12.34"), "status": 1}
    assert book_form["s-refunded"]["status"] == 8


async def test_a_refund_on_a_later_day_changes_the_sales_status(journal: Journal) -> None:
    await sale(journal, "monday")
    tuesday = NOON + timedelta(days=1)
    await seed(
        journal,
        "refund-tuesday",
        "refundCardSale",
        "approved",
        {"originalTraceNo": "monday", "refundAmount": D("1")},
        at=tuesday,
    )
    assert by_trace_no(await day_records(journal, MAY_1)) == {"monday": (BookStatus.REFUNDED, D("40.80"))}
    next_day = await day_records(journal, BusinessDay.of(date(2026, 5, 2), CUT_OFF, SHANGHAI))
    assert by_trace_no(next_day) == {"refund-tuesday": (BookStatus.EQUAL, D("1"))}


async def test_a_void_of_a_sale_of_an_earlier_day_takes_that_sales_amount(journal: Journal) -> None:
    await sale(journal, "old", total="3.21", at=NOON - timedelta(days=3))
    await seed(journal, "void-today", "voidQrcodeSale", "approved", {"originalTraceNo": "old"})
    assert by_trace_no(await day_records(journal, MAY_1)) == {"void-today": (BookStatus.EQUAL, D("3.21"))}


async def test_the_activity_is_the_sales_goods_activity_for_it_and_its_follow_ups(journal: Journal) -> None:
    def goods(*activities: str) -> list[dict[str, Any]]:
        return [{"goodsId": f"G{n}", "activityNo": activity} for n, activity in enumerate(activities)]

    for trace_no, activities in (("one", ("ACT1", "ACT1")), ("two", ("ACT1", "ACT2")), ("none", ())):
        response = approval(trace_no, paidAmount=D("1.00"), goodsDetail=goods(*activities))
        await seed(journal, trace_no, "cardRedemption", "approved", {"totalAmount": D("1.00")}, response=response)
    await sale(journal, "old", at=NOON - timedelta(days=3))  # an approval without goodsDetail
    await seed(journal, "void-one", "voidCardSale", "approved", {"originalTraceNo": "one"})
    await seed(journal, "refund-old", "refundCardSale", "approved", {"originalTraceNo": "old", "refundAmount": D(1)})
    records = await day_records(journal, MAY_1)
    activity = {record.journal_trace_no: record.activity_no for record in records.records}
    # several activities in one sale: the amount per activity is unknown, so none is named
    assert activity == {"one": "ACT1", "two": "", "none": "", "void-one": "ACT1", "refund-old": ""}


async def test_amounts_stay_exact_decimals(journal: Journal) -> None:
    await sale(journal, "big", total="99999999.99")
    await sale(journal, "dime", total="0.10")
    await sale(journal, "tenths", total="0.3")
    records = await day_records(journal, MAY_1)
    paid = {record.journal_trace_no: record.paid_amount for record in records.records}
    assert paid == {"big": D("99999999.99"), "dime": D("0.10"), "tenths": D("0.3")}
    assert all(type(amount) is Decimal for amount in paid.values())
    assert [str(amount) for amount in paid.values()] == ["99999999.99", "0.10", "0.3"]
    assert sum(paid.values(), D(0)) == D("100000000.39")
    assert jsonio.dumps(records.trans_records()[1]) == '{"traceNo":"dime","paidAmount":0.10,"status":1}'


async def test_an_options_sale_is_named_as_the_backend_knows_it(journal: Journal) -> None:
    await seed(
        journal,
        "pos-qr",
        "qrcodeSale",
        "approved",
        {"totalAmount": D("10"), "qrcode": "280123121234567890"},
        response=approval("pos-qr", paidAmount=D("10")),
    )
    second_round = await journal.allocate_call("pos-qr", "option")
    (record,) = (await day_records(journal, MAY_1)).records
    assert (record.trace_no, record.journal_trace_no) == (second_round, "pos-qr")
    assert record.trans_record()["traceNo"] == second_round


# --- set aside, not guessed ---------------------------------------------------------------------


async def test_open_transactions_are_set_aside(journal: Journal) -> None:
    await sale(journal, "unknown", "unknown")
    await sale(journal, "manual", "needs_manual")
    await sale(journal, "voiding", "voiding")
    await sale(journal, "on-the-pad", "reading_pin")
    await sale(journal, "refund-open")
    await seed(
        journal, "refund-unknown", "refundCardSale", "unknown", {"originalTraceNo": "refund-open", "refundAmount": 1}
    )
    await seed(journal, "void-of-a-stranger", "voidQrcodeSale", "approved", {"originalTraceNo": "not-ours"})
    await sale(journal, "settled", total="1.00")
    records = await day_records(journal, MAY_1)
    assert by_trace_no(records) == {"settled": (BookStatus.EQUAL, D("1.00"))}
    aside = {entry.trace_no: (entry.state, entry.reason) for entry in records.set_aside}
    assert set(aside) == {
        "unknown", "manual", "voiding", "on-the-pad", "refund-open", "refund-unknown", "void-of-a-stranger",
    }  # fmt: skip
    assert aside["manual"] == ("needs_manual", "not final (needs_manual): its outcome is not known yet")
    assert "refundCardSale refund-unknown (unknown)" in aside["refund-open"][1]
    assert "not in the journal" in aside["void-of-a-stranger"][1]


# --- batches ------------------------------------------------------------------------------------


def _insert_approved_sales(path: Path, count: int, at: datetime) -> None:
    """``count`` approved sales created ``at``, written straight into the file in one transaction."""
    stamp = iso_utc(at)
    rows = []
    for serial in range(count):
        trace_no = f"bulk{serial:06d}"
        request = {"traceNo": trace_no, "totalAmount": D(serial) / 100}
        response = approval(trace_no, paidAmount=D(serial) / 100)
        rows.append((trace_no, jsonio.dumps(request), request_hash(request), jsonio.dumps(response), stamp, f"{stamp}"))
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, response_json,"
            " return_code, created_at, updated_at) VALUES (?, 'cardRedemption', 'approved', ?, ?, ?, '00', ?, ?)",
            rows,
        )
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_day_of_12000_records_goes_up_in_three_batches(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    await (await Journal.open(path)).close()  # the schema
    _insert_approved_sales(path, 12_000, NOON)
    async with await Journal.open(path) as journal:
        records = await day_records(journal, MAY_1)
    split = records.batches(ReconcileSettings().batch_size)
    assert [len(batch) for batch in split] == [5000, 5000, 2000]
    assert [record for batch in split for record in batch] == records.trans_records()
    assert split[2][-1] == {"traceNo": "bulk011999", "paidAmount": D("119.99"), "status": 1}
    assert [len(batch) for batch in records.batches(4000)] == [4000, 4000, 4000]


def test_the_splitter_keeps_order_and_refuses_impossible_sizes() -> None:
    assert batches(list(range(7)), 3) == [[0, 1, 2], [3, 4, 5], [6]]
    assert batches([], 5) == []
    assert batches([1], 5000) == [[1]]
    for size in (0, 5001):
        with pytest.raises(ValueError, match="1 to 5000"):
            batches([1], size)
