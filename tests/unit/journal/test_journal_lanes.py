"""POS lanes in one journal (schema v8, issue 16): each lane's view writes its lane and finds only its own work.

Two views of one real journal file, the named lane ``lane2`` and the default lane, and the base
journal ``Journal.open`` returns: each view sees its own work (transactions by state, due and
pending reversals, unanswered queries, the last sign-in, the day's rows), while everything keyed
by a traceNo stays journal-wide (a traceNo is used once across lanes; a void finds its original
whichever lane sold it). The default lane writes ``NULL``, exactly as a one-lane journal does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal import DuplicateTraceNoError, Journal, TransactionRecord, queries
from misbridge.journal.errors import BarredTraceNoError
from misbridge.journal.lanes import DEFAULT_LANE_NAME, LaneFilter, check_lane_name
from misbridge.journal.schema import LANE_TABLES
from tests.seeding import seed_transaction
from tests.unit.journal.helpers import T0, FakeClock, add_transaction, raw, serial_of

LANE2 = "lane2"


@pytest.fixture
async def base(db_path: Path) -> AsyncIterator[Journal]:
    opened = await Journal.open(db_path, clock=FakeClock())
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
def lane2(base: Journal) -> Journal:
    return base.for_lane(LANE2, default=False)


@pytest.fixture
def lane1(base: Journal) -> Journal:
    """The default lane's view: a configuration's first lane, called ``lane1`` there."""
    return base.for_lane("lane1", default=True)


def lanes_in(path: Path, table: str) -> dict[str, str | None]:
    """The key of each row of ``table`` and its ``lane`` column, as stored."""
    key = "id" if table == "pos_inquiries" else "trace_no"
    with raw(path) as conn:
        return {str(row[0]): row[1] for row in conn.execute(f"SELECT {key}, lane FROM {table}")}  # noqa: S608 - literals


async def sign_in(journal: Journal, kcv: str) -> str:
    trace_no = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(trace_no, "answered", "00", key_kcv=kcv)
    return trace_no


# --- what a view writes ----------------------------------------------------------------------


async def test_a_named_lane_writes_its_name_and_the_default_lane_and_the_journal_write_null(
    base: Journal, lane1: Journal, lane2: Journal, db_path: Path
) -> None:
    for journal, trace_no in ((base, "B1"), (lane1, "D1"), (lane2, "N1")):
        await add_transaction(journal, trace_no, "received")
        await journal.record_query(f"Q{trace_no}", "summary", {"traceNo": f"Q{trace_no}"})
        await journal.record_pos_inquiry(f"I{trace_no}", f"ELSEWHERE{trace_no}")
        await journal.allocate_key_call("signIn")

    assert lanes_in(db_path, "transactions") == {"B1": None, "D1": None, "N1": LANE2}
    assert lanes_in(db_path, "pos_queries") == {"QB1": None, "QD1": None, "QN1": LANE2}
    assert sorted(lanes_in(db_path, "pos_inquiries").values(), key=str) == [None, None, LANE2]
    assert sorted(lanes_in(db_path, "key_calls").values(), key=str) == [None, None, LANE2]
    # and each reads back with its lane
    assert [(await base.get(t)).lane for t in ("B1", "D1", "N1")] == [None, None, LANE2]  # type: ignore[union-attr]
    assert (await base.query("QN1")).lane == LANE2  # type: ignore[union-attr]
    assert (await base.forwarded_inquiry("IN1")).lane == LANE2  # type: ignore[union-attr]
    assert [call.lane for call in await base.key_calls()] == [LANE2, None, None]


async def test_an_empty_lane_is_refused_by_the_database(lane2: Journal, db_path: Path) -> None:
    await add_transaction(lane2, "T1", "received")
    await lane2.record_query("Q1", "summary", {"traceNo": "Q1"})
    await lane2.record_pos_inquiry("I1", "ELSEWHERE")
    await lane2.allocate_key_call("downloadKey")
    for table in LANE_TABLES:  # every table has a row of lane2's: '' is refused, not read as the default lane
        with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError, match="CHECK"):
            conn.execute(f"UPDATE {table} SET lane = ''")  # noqa: S608 - literals


async def test_a_record_of_another_lane_is_refused(lane2: Journal, lane1: Journal) -> None:
    record = TransactionRecord.new("T1", "cardRedemption", "received", {"traceNo": "T1"})
    with pytest.raises(JournalError, match="lane 'other'"):
        await lane2.record_intent(replace(record, lane="other"))
    with pytest.raises(JournalError, match="lane 'lane2'"):
        await lane1.record_intent(replace(record, lane=LANE2))
    await lane2.record_intent(replace(record, lane=LANE2))  # its own lane is fine
    assert await lane1.get("T1") == replace(record, lane=LANE2)


# --- what a view reads -----------------------------------------------------------------------


async def test_each_lane_sees_only_its_transactions_by_state(base: Journal, lane1: Journal, lane2: Journal) -> None:
    await add_transaction(lane1, "D-UNKNOWN", "unknown")
    await add_transaction(lane2, "N-UNKNOWN", "unknown")
    await add_transaction(lane2, "N-SUBMITTING", "submitting")

    assert [r.trace_no for r in await lane1.list_by_states(["unknown", "submitting"])] == ["D-UNKNOWN"]
    assert [r.trace_no for r in await lane2.list_by_states(["unknown", "submitting"])] == [
        "N-SUBMITTING",  # one clock instant: by traceNo
        "N-UNKNOWN",
    ]
    assert {r.trace_no for r in await base.list_by_states(["unknown", "submitting"])} == {
        "D-UNKNOWN",
        "N-UNKNOWN",
        "N-SUBMITTING",
    }
    assert await lane2.list_by_states([]) == []


async def test_each_lane_sees_only_its_reversals(base: Journal, lane1: Journal, lane2: Journal) -> None:
    await add_transaction(lane1, "D1", "unknown")
    await add_transaction(lane2, "N1", "unknown")
    await add_transaction(lane2, "N2", "unknown")
    later = T0 + timedelta(hours=1)
    await lane1.enqueue_reversal("D1", from_state="unknown", event="give_up")
    await lane2.enqueue_reversal("N1", from_state="unknown", event="give_up")
    await lane2.enqueue_reversal("N2", from_state="unknown", event="give_up", first_attempt_at=later)

    assert [r.original_trace_no for r in await lane1.due_reversals()] == ["D1"]
    assert [r.original_trace_no for r in await lane2.due_reversals()] == ["N1"]
    assert [r.original_trace_no for r in await lane2.due_reversals(later)] == ["N1", "N2"]
    assert [r.original_trace_no for r in await lane1.pending_reversals()] == ["D1"]
    assert [r.original_trace_no for r in await lane2.pending_reversals()] == ["N1", "N2"]
    assert [r.original_trace_no for r in await base.pending_reversals()] == ["D1", "N1", "N2"]
    assert (await lane1.count_reversals("pending"), await lane2.count_reversals("pending")) == (1, 2)
    assert await base.count_reversals("pending") == 3
    # A reversal is found by its traceNo from any lane, and another lane may move it.
    assert (await lane1.reversal("N1")) is not None
    await lane1.complete_reversal("N1")
    assert [r.original_trace_no for r in await lane2.pending_reversals()] == ["N2"]


async def test_each_lane_sees_only_its_unanswered_queries(base: Journal, lane1: Journal, lane2: Journal) -> None:
    await lane1.record_query("DQ", "summary", {"traceNo": "DQ"})
    await lane2.record_query("NQ", "batchUpload", {"traceNo": "NQ"})
    later = T0 + timedelta(seconds=1)

    assert [q.trace_no for q in await lane1.unanswered_queries(later)] == ["DQ"]
    assert [q.trace_no for q in await lane2.unanswered_queries(later)] == ["NQ"]
    assert {q.trace_no for q in await base.unanswered_queries(later)} == {"DQ", "NQ"}
    assert (await lane1.query("NQ")) is not None  # by traceNo: journal-wide


async def test_each_lane_sees_its_own_last_sign_in_and_key_calls(base: Journal, lane1: Journal, lane2: Journal) -> None:
    assert await lane2.last_sign_in() is None
    default_sign_in = await sign_in(lane1, "AAAAAA")
    assert await lane2.last_sign_in() is None, "another lane's sign-in is not this lane's key"
    lane2_sign_in = await sign_in(lane2, "BBBBBB")

    own = await lane1.last_sign_in()
    assert own is not None
    assert (own.trace_no, own.key_kcv, own.lane) == (default_sign_in, "AAAAAA", None)
    other = await lane2.last_sign_in()
    assert other is not None
    assert (other.trace_no, other.key_kcv, other.lane) == (lane2_sign_in, "BBBBBB", LANE2)
    newest = await base.last_sign_in()
    assert newest is not None
    assert newest.trace_no == lane2_sign_in  # the journal itself: every lane, as before lanes
    assert [c.trace_no for c in await lane1.key_calls()] == [default_sign_in]
    assert [c.trace_no for c in await lane2.key_calls(kind="signIn")] == [lane2_sign_in]
    # One counter for every lane: a traceNo is never handed out twice.
    assert serial_of(lane2_sign_in) == serial_of(default_sign_in) + 1


async def test_lookups_by_trace_no_stay_journal_wide(base: Journal, lane1: Journal, lane2: Journal) -> None:
    await add_transaction(lane1, "SALE1", "approved")
    await lane2.record_query("Q2", "summary", {"traceNo": "Q2"})

    assert (await lane2.get("SALE1")) is not None
    assert (await lane2.transitions("SALE1"))[0].event == "intent"
    view = await lane2.transaction_view("SALE1")
    assert view is not None
    assert view["lane"] == ""
    # The same traceNo from another lane is a duplicate; a traceNo another lane's query used is barred.
    with pytest.raises(DuplicateTraceNoError):
        await add_transaction(lane2, "SALE1", "received")
    with pytest.raises(BarredTraceNoError):
        await add_transaction(lane1, "Q2", "received")
    with pytest.raises(DuplicateTraceNoError):
        await lane1.record_query("Q2", "summary", {"traceNo": "Q2"})
    # A void of another lane's sale finds it, and the sale's followers are found from any lane.
    void = {"traceNo": "VOID1", "originalTraceNo": "SALE1", "totalAmount": "1.00"}
    await seed_transaction(lane2, TransactionRecord.new("VOID1", "voidCardSale", "received", void))
    assert [r.trace_no for r in await lane1.followers("SALE1", ["voidCardSale"])] == ["VOID1"]
    call = await lane2.allocate_call("SALE1", "inquiry")
    assert [c.trace_no for c in await lane1.calls("SALE1")] == [call]
    assert await base.count() == 2


async def test_the_day_rows_of_one_lane(base: Journal, lane1: Journal, lane2: Journal) -> None:
    await add_transaction(lane1, "D-SALE", "approved")
    await add_transaction(lane2, "N-SALE", "approved")
    void = {"traceNo": "N-VOID", "originalTraceNo": "D-SALE", "totalAmount": "1.00"}
    await seed_transaction(lane2, TransactionRecord.new("N-VOID", "voidCardSale", "received", void, now=T0))
    begin, end, actions = T0 - timedelta(hours=1), T0 + timedelta(hours=1), ["voidCardSale"]

    every = await base.day_rows(begin, end, actions)
    assert [r.trace_no for r in every.transactions] == ["D-SALE", "N-SALE", "N-VOID"]
    default_day = await lane1.day_rows(begin, end, actions)
    assert [r.trace_no for r in default_day.transactions] == ["D-SALE"]
    assert [r.trace_no for r in default_day.followers] == ["N-VOID"], "a void made on another lane still counts"
    lane2_day = await lane2.day_rows(begin, end, actions)
    assert [r.trace_no for r in lane2_day.transactions] == ["N-SALE", "N-VOID"]
    assert list(lane2_day.originals) == ["D-SALE"], "its void's original, whichever lane sold it"
    explicit = await base.day_rows(begin, end, actions, lane=LaneFilter.named(LANE2))
    assert explicit == lane2_day
    assert (await base.day_rows(begin, end, actions, lane=LaneFilter.default())) == default_day


async def test_the_views_show_the_lane(base: Journal, lane1: Journal, lane2: Journal) -> None:
    await add_transaction(lane1, "D1", "approved")
    await add_transaction(lane2, "N1", "approved")
    default_view, named_view = await base.transaction_view("D1"), await base.transaction_view("N1")
    assert default_view is not None
    assert named_view is not None
    assert (default_view["lane"], named_view["lane"]) == ("", LANE2)
    assert "lane" not in queries.http_view(default_view), "a one-lane misbridge answers as before lanes"
    assert queries.http_view(named_view)["lane"] == LANE2


# --- the view itself -------------------------------------------------------------------------


async def test_a_view_shares_the_journal_and_closing_it_closes_nothing(base: Journal, lane2: Journal) -> None:
    assert (base.lane, base.lane_filter, base.lane_column) == (None, None, None)
    assert (lane2.lane, lane2.lane_filter, lane2.lane_column) == (LANE2, LaneFilter(LANE2), LANE2)
    default = base.for_lane("front", default=True)
    assert (default.lane, default.lane_filter, default.lane_column) == (None, LaneFilter(None), None)

    await lane2.close()
    async with lane2:
        pass
    await add_transaction(lane2, "AFTER", "received")  # the view still works ...
    assert (await base.get("AFTER")) is not None  # ... and so does the journal

    await base.close()
    with pytest.raises(JournalError, match="closed"):
        await lane2.get("AFTER")
    with pytest.raises(JournalError, match="closed"):
        await default.list_by_states(["received"])


async def test_a_view_of_a_view_is_a_view_of_the_journal(base: Journal, lane2: Journal) -> None:
    again = lane2.for_lane("lane3", default=False)
    await add_transaction(again, "L3", "unknown")
    assert [r.trace_no for r in await again.list_by_states(["unknown"])] == ["L3"]
    assert await lane2.list_by_states(["unknown"]) == []
    await again.close()
    assert (await base.get("L3")) is not None


@pytest.mark.parametrize("name", ["", " lane", "lane 2", "-lane", "x" * 33, "lane/2", "läne"])
async def test_a_name_that_cannot_name_a_lane_is_refused(base: Journal, name: str) -> None:
    with pytest.raises(JournalError, match="lane name"):
        base.for_lane(name, default=False)
    with pytest.raises(JournalError, match="lane name"):
        base.for_lane(name, default=True)
    with pytest.raises(ValueError, match="lane name"):
        check_lane_name(name)


async def test_only_the_default_lane_may_be_called_default(base: Journal) -> None:
    with pytest.raises(JournalError, match="default lane"):
        base.for_lane(DEFAULT_LANE_NAME, default=False)
    assert base.for_lane(DEFAULT_LANE_NAME, default=True).lane_filter == LaneFilter.default()
    assert LaneFilter.parse(DEFAULT_LANE_NAME) == LaneFilter(None)
    assert LaneFilter.parse("Lane-2.a_b") == LaneFilter("Lane-2.a_b")
    assert (LaneFilter.default().label, LaneFilter.named(LANE2).label) == (DEFAULT_LANE_NAME, LANE2)
