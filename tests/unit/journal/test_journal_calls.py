"""Requests misbridge originates: traceNo allocation, the backend_calls rows and their results."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal import CallRecord, DuplicateTraceNoError, Journal
from tests.unit.journal.helpers import T0, FakeClock, add_transaction, counter, raw, serial_of

TRACE_NO = re.compile(r"^\d{14}\d{10}$")
CST = timezone(timedelta(hours=8))


async def test_trace_no_format_and_row(journal: Journal) -> None:
    await add_transaction(journal, "T1")
    local = datetime(2026, 5, 1, 23, 59, 58, 999999, tzinfo=CST)
    trace_no = await journal.allocate_call("T1", "inquiry", local_now=local)
    assert TRACE_NO.fullmatch(trace_no)
    assert trace_no == "20260501235958" + "0000000001"  # local wall time as given, first serial 1

    [call] = await journal.calls("T1")
    assert call.trace_no == trace_no
    assert (call.original_trace_no, call.kind, call.state) == ("T1", "inquiry", "sent")
    assert (call.return_code, call.response) == (None, None)
    assert call.created_at == call.updated_at
    assert call.created_at.tzinfo is not None


async def test_default_prefix_is_the_clock_in_local_time(db_path: Path) -> None:
    clock = FakeClock()
    async with await Journal.open(db_path, clock=clock) as journal:
        await add_transaction(journal, "T1")
        trace_no = await journal.allocate_call("T1", "void")
    assert trace_no[:14] == T0.astimezone().strftime("%Y%m%d%H%M%S")


async def test_a_thousand_allocations_strictly_increase(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    same_second = datetime(2026, 5, 1, 9, 0, tzinfo=CST)
    trace_nos = [await journal.allocate_call("T1", "inquiry", local_now=same_second) for _ in range(1000)]
    assert all(TRACE_NO.fullmatch(t) for t in trace_nos)
    serials = [serial_of(t) for t in trace_nos]
    assert serials == list(range(1, 1001))
    assert len(set(trace_nos)) == 1000  # one second, 1000 distinct traceNos
    assert [c.trace_no for c in await journal.calls("T1")] == trace_nos  # oldest first
    assert counter(db_path) == 1000


async def test_concurrent_allocations_are_distinct(journal: Journal) -> None:
    await asyncio.gather(*(add_transaction(journal, f"C{n}") for n in range(10)))
    trace_nos = await asyncio.gather(*(journal.allocate_call(f"C{n % 10}", "void") for n in range(50)))
    assert sorted(serial_of(t) for t in trace_nos) == list(range(1, 51))


async def test_two_connections_on_one_file_never_share_a_serial(db_path: Path) -> None:
    async with await Journal.open(db_path) as one, await Journal.open(db_path) as two:
        await add_transaction(one, "T1")
        trace_nos = await asyncio.gather(*(j.allocate_call("T1", "inquiry") for _ in range(50) for j in (one, two)))
        assert sorted(serial_of(t) for t in trace_nos) == list(range(1, 101))
        assert len(await two.calls("T1")) == 100


async def test_an_allocation_waits_for_another_writer(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    with raw(db_path) as other:
        other.execute("BEGIN IMMEDIATE")  # e.g. an ops shell holding the write lock
        allocation = asyncio.ensure_future(journal.allocate_call("T1", "inquiry"))
        await asyncio.sleep(0.2)
        assert not allocation.done()
        assert other.execute("SELECT COUNT(*) FROM backend_calls").fetchone()[0] == 0
        other.execute("COMMIT")
        assert serial_of(await allocation) == 1
    assert counter(db_path) == 1


async def test_serial_survives_reopen_and_day_rollover(db_path: Path) -> None:
    before_midnight = datetime(2026, 5, 1, 23, 59, 59, tzinfo=CST)
    after_midnight = before_midnight + timedelta(seconds=1)
    async with await Journal.open(db_path) as journal:
        await add_transaction(journal, "T1")
        first = [await journal.allocate_call("T1", "inquiry", local_now=before_midnight) for _ in range(3)]
    async with await Journal.open(db_path) as journal:
        second = [await journal.allocate_call("T1", "void", local_now=after_midnight) for _ in range(3)]
        assert [c.trace_no for c in await journal.calls("T1")] == first + second
    assert [serial_of(t) for t in first + second] == [1, 2, 3, 4, 5, 6]  # not reset at the new day
    assert second[0].startswith("20260502000000")


async def test_unknown_original_allocates_nothing(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    await journal.allocate_call("T1", "inquiry")
    with pytest.raises(JournalError, match="no transaction 'NOPE'"):
        await journal.allocate_call("NOPE", "inquiry")
    assert counter(db_path) == 1  # the bump was rolled back with the failed allocation
    assert serial_of(await journal.allocate_call("T1", "inquiry")) == 2


async def test_unknown_kind_is_refused(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    with pytest.raises(JournalError, match="CHECK constraint"):
        await journal.allocate_call("T1", "refund")  # type: ignore[arg-type]
    assert counter(db_path) == 0
    assert await journal.calls("T1") == []


async def test_naive_local_now_is_refused(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    with pytest.raises(JournalError, match="timezone-aware"):
        await journal.allocate_call("T1", "inquiry", local_now=datetime(2026, 5, 1, 12))
    assert counter(db_path) == 0


async def test_serial_exhaustion_is_refused_not_wrapped(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    with raw(db_path) as conn:
        conn.execute("UPDATE counters SET value = 9999999999 WHERE name = 'trace_serial'")
    with pytest.raises(JournalError, match="exhausted"):
        await journal.allocate_call("T1", "inquiry")
    assert counter(db_path) == 9999999999
    assert await journal.calls("T1") == []


async def test_a_serial_that_would_repeat_a_pos_trace_no_is_skipped(journal: Journal) -> None:
    local = datetime(2026, 5, 1, 12, 0, tzinfo=CST)
    await add_transaction(journal, "202605011200000000000001")  # a POS may send 24 digits too
    trace_no = await journal.allocate_call("202605011200000000000001", "inquiry", local_now=local)
    assert trace_no == "202605011200000000000002"


async def test_pos_intent_may_not_reuse_a_call_trace_no(journal: Journal) -> None:
    await add_transaction(journal, "T1")
    trace_no = await journal.allocate_call("T1", "void")
    with pytest.raises(DuplicateTraceNoError, match=trace_no):
        await add_transaction(journal, trace_no)
    assert await journal.get(trace_no) is None


async def test_record_answered_result(journal: Journal) -> None:
    trace_no = await _inquiry(journal)
    response = {"returnCode": "00", "returnDesc": "交易成功", "balance": Decimal("59.20")}
    await journal.record_call_result(trace_no, state="answered", return_code="00", response=response)
    [call] = await journal.calls("T1")
    assert (call.state, call.return_code, call.response) == ("answered", "00", response)
    assert call.response is not None
    assert str(call.response["balance"]) == "59.20"
    assert call.updated_at >= call.created_at


async def test_record_unknown_result(journal: Journal) -> None:
    trace_no = await _inquiry(journal)
    await journal.record_call_result(trace_no, state="unknown")
    [call] = await journal.calls("T1")
    assert (call.state, call.return_code, call.response) == ("unknown", None, None)


async def test_a_call_gets_exactly_one_result(journal: Journal) -> None:
    trace_no = await _inquiry(journal)
    await journal.record_call_result(trace_no, state="unknown")
    with pytest.raises(JournalError, match="already 'unknown'"):
        await journal.record_call_result(trace_no, state="answered", return_code="00", response={})
    with pytest.raises(JournalError, match="no such call"):
        await journal.record_call_result("NOPE", state="answered")
    with pytest.raises(JournalError, match="state must be one of"):
        await journal.record_call_result(trace_no, state="sent")  # type: ignore[arg-type]
    [call] = await journal.calls("T1")
    assert (call.state, call.response) == ("unknown", None)


async def test_calls_are_per_original_oldest_first(db_path: Path) -> None:
    clock = FakeClock()
    async with await Journal.open(db_path, clock=clock) as journal:
        await add_transaction(journal, "A")
        await add_transaction(journal, "B")
        a1 = await journal.allocate_call("A", "inquiry")
        b1 = await journal.allocate_call("B", "inquiry")
        a2 = await journal.allocate_call("A", "inquiry")  # same clock instant: allocation order
        clock.advance(1)
        a3 = await journal.allocate_call("A", "void")
        assert [(c.trace_no, c.kind) for c in await journal.calls("A")] == [
            (a1, "inquiry"),
            (a2, "inquiry"),
            (a3, "void"),
        ]
        assert [c.trace_no for c in await journal.calls("B")] == [b1]
        assert await journal.calls("C") == []
        assert (await journal.calls("A"))[-1].created_at == T0 + timedelta(seconds=1)


def test_call_record_checks_its_values() -> None:
    with pytest.raises(ValueError, match="call kind"):
        CallRecord("X", "T1", "refund", "sent", None, None, T0, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="call state"):
        CallRecord("X", "T1", "void", "lost", None, None, T0, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        CallRecord("X", "T1", "void", "sent", None, None, T0, datetime(2026, 1, 1))


async def test_corrupt_call_row_raises_journal_error(journal: Journal, db_path: Path) -> None:
    await _inquiry(journal)
    with raw(db_path) as conn:
        conn.execute("UPDATE backend_calls SET created_at = 'noon'")
    with pytest.raises(JournalError, match="corrupt"):
        await journal.calls("T1")


async def test_database_guards_against_hand_written_sql(journal: Journal, db_path: Path) -> None:
    trace_no = await _inquiry(journal)
    await journal.record_call_result(trace_no, state="answered", return_code="00")
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="only grows"):
            conn.execute("UPDATE counters SET value = 0")
        with pytest.raises(sqlite3.IntegrityError, match="only grows"):
            conn.execute("UPDATE counters SET name = 'other'")
        with pytest.raises(sqlite3.IntegrityError, match="never deleted"):
            conn.execute("DELETE FROM counters")
        with pytest.raises(sqlite3.IntegrityError, match="already has its result"):
            conn.execute("UPDATE backend_calls SET state = 'sent'")
        with pytest.raises(sqlite3.IntegrityError, match="used by a transaction"):
            conn.execute(
                "INSERT INTO backend_calls (trace_no, original_trace_no, kind, state, created_at, updated_at)"
                " VALUES ('T1', 'T1', 'void', 'sent', 't', 't')"
            )
        with pytest.raises(sqlite3.IntegrityError, match="used by a backend call"):
            conn.execute(
                "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at,"
                " updated_at) VALUES (?, 'a', 'received', '{}', 'h', 't', 't')",
                (trace_no,),
            )
        with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
            conn.execute(
                "INSERT INTO backend_calls (trace_no, original_trace_no, kind, state, created_at, updated_at)"
                " VALUES ('X', 'NOPE', 'void', 'sent', 't', 't')"
            )
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert counter(db_path) == 1
    assert await journal.integrity_check() == "ok"


async def _inquiry(journal: Journal) -> str:
    """Seed transaction T1 and allocate one inquiry about it; return the inquiry's traceNo."""
    await add_transaction(journal, "T1")
    return await journal.allocate_call("T1", "inquiry")
