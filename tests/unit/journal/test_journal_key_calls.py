"""misbridge's own key requests (schema v6, issue 14): DownloadKey and sign-in traceNos, their rows and results."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal import BarredTraceNoError, Journal, KeyCallRecord
from misbridge.journal.key_calls import select_key_calls
from tests.unit.journal.helpers import T0, FakeClock, add_transaction, counter, raw, serial_of

TRACE_NO = re.compile(r"^\d{14}\d{10}$")
CST = timezone(timedelta(hours=8))
NOON = datetime(2026, 5, 1, 12, 0, tzinfo=CST)
SEEN_AS = "the traceNo of a key request misbridge sent"


async def test_trace_no_format_and_row(journal: Journal) -> None:
    local = datetime(2026, 5, 1, 23, 59, 58, 999999, tzinfo=CST)
    trace_no = await journal.allocate_key_call("signIn", local_now=local)
    assert trace_no == "20260501235958" + "0000000001"  # the format and counter of allocate_call
    [call] = await journal.key_calls()
    assert (call.trace_no, call.kind, call.state, call.return_code) == (trace_no, "signIn", "sent", None)
    assert call.created_at == call.updated_at
    assert call.created_at.tzinfo is not None


async def test_default_prefix_is_the_clock_in_local_time(db_path: Path) -> None:
    async with await Journal.open(db_path, clock=FakeClock()) as journal:
        trace_no = await journal.allocate_key_call("downloadKey")
    assert trace_no[:14] == T0.astimezone().strftime("%Y%m%d%H%M%S")


async def test_key_requests_and_calls_share_one_serial_that_grows_across_a_reopen(db_path: Path) -> None:
    async with await Journal.open(db_path) as journal:
        await add_transaction(journal, "T1")
        first = [
            await journal.allocate_key_call("downloadKey", local_now=NOON),
            await journal.allocate_call("T1", "inquiry", local_now=NOON),
            await journal.allocate_key_call("signIn", local_now=NOON),
        ]
    async with await Journal.open(db_path) as journal:  # a restart: the serial carries on
        second = [
            await journal.allocate_key_call("signIn", local_now=NOON),
            await journal.allocate_call("T1", "void", local_now=NOON),
        ]
        assert [c.trace_no for c in await journal.key_calls()] == [second[0], first[2], first[0]]  # newest first
    trace_nos = first + second
    assert all(TRACE_NO.fullmatch(t) for t in trace_nos)
    assert [serial_of(t) for t in trace_nos] == [1, 2, 3, 4, 5]  # one second, one counter, all distinct
    assert counter(db_path) == 5


async def test_concurrent_allocations_are_distinct(journal: Journal) -> None:
    await add_transaction(journal, "T1")
    keys = [journal.allocate_key_call("signIn", local_now=NOON) for _ in range(30)]
    calls = [journal.allocate_call("T1", "void", local_now=NOON) for _ in range(30)]
    trace_nos = await asyncio.gather(*keys, *calls)
    assert sorted(serial_of(t) for t in trace_nos) == list(range(1, 61))
    assert len(await journal.key_calls(limit=100)) == 30


async def test_a_key_request_trace_no_is_barred_for_a_pos_transaction(journal: Journal) -> None:
    trace_no = await journal.allocate_key_call("signIn")
    assert await journal.barred_as(trace_no) == SEEN_AS
    with pytest.raises(BarredTraceNoError, match="key request") as caught:
        await add_transaction(journal, trace_no, "received")
    assert caught.value.seen_as == SEEN_AS
    assert await journal.get(trace_no) is None


async def test_a_key_request_trace_no_is_barred_for_a_pos_query(journal: Journal) -> None:
    trace_no = await journal.allocate_key_call("downloadKey")
    with pytest.raises(BarredTraceNoError, match="key request"):
        await journal.record_query(trace_no, "summary", {"traceNo": trace_no})
    assert await journal.query(trace_no) is None


async def test_allocate_call_skips_a_key_request_trace_no(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    taken = "202605011200000000000001"  # what the next allocate_call at NOON would give
    with raw(db_path) as conn:  # a key request numbered past the counter (hand-written, or a restored file)
        conn.execute(
            "INSERT INTO key_calls (trace_no, kind, state, created_at, updated_at)"
            " VALUES (?, 'signIn', 'sent', 't', 't')",
            (taken,),
        )
    assert await journal.allocate_call("T1", "inquiry", local_now=NOON) == "202605011200000000000002"


@pytest.mark.parametrize("used_by", ["transaction", "backend call", "pos query", "pos inquiry", "inquired original"])
async def test_allocate_key_call_skips_a_trace_no_already_used(journal: Journal, used_by: str) -> None:
    taken = "202605011200000000000001"  # what the next allocation at NOON would give; a POS may send 24 digits
    if used_by == "transaction":
        await add_transaction(journal, taken)
    elif used_by == "backend call":
        await add_transaction(journal, "T1")
        assert await journal.allocate_call("T1", "inquiry", local_now=NOON) == taken
    elif used_by == "pos query":
        await journal.record_query(taken, "summary", {"traceNo": taken})
    elif used_by == "pos inquiry":
        await journal.record_pos_inquiry(taken, "ELSEWHERE")
    else:
        await journal.record_pos_inquiry("INQ1", taken)
    assert await journal.allocate_key_call("signIn", local_now=NOON) == "202605011200000000000002"


async def test_record_answered_and_unknown_results(journal: Journal) -> None:
    answered = await journal.allocate_key_call("downloadKey")
    lost = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(answered, "answered", "00")
    await journal.record_key_call_result(lost, "unknown", None)
    by_trace_no = {c.trace_no: c for c in await journal.key_calls()}
    assert (by_trace_no[answered].state, by_trace_no[answered].return_code) == ("answered", "00")
    assert (by_trace_no[lost].state, by_trace_no[lost].return_code) == ("unknown", None)
    assert by_trace_no[answered].updated_at >= by_trace_no[answered].created_at


async def test_a_key_request_gets_exactly_one_result(journal: Journal) -> None:
    trace_no = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(trace_no, "answered", "A0")
    with pytest.raises(JournalError, match="already 'answered'"):
        await journal.record_key_call_result(trace_no, "unknown", None)
    with pytest.raises(JournalError, match="already 'answered'"):
        await journal.record_key_call_result(trace_no, "answered", "00")
    with pytest.raises(JournalError, match="no such key request"):
        await journal.record_key_call_result("NOPE", "answered", "00")
    with pytest.raises(JournalError, match="result must be one of"):
        await journal.record_key_call_result(trace_no, "sent", None)  # type: ignore[arg-type]
    [call] = await journal.key_calls()
    assert (call.state, call.return_code) == ("answered", "A0")


async def test_unknown_kind_and_naive_time_allocate_nothing(journal: Journal, db_path: Path) -> None:
    with pytest.raises(JournalError, match="kind must be one of"):
        await journal.allocate_key_call("void")  # type: ignore[arg-type]
    with pytest.raises(JournalError, match="timezone-aware"):
        await journal.allocate_key_call("signIn", local_now=datetime(2026, 5, 1, 12))
    assert counter(db_path) == 0
    assert await journal.key_calls() == []


async def test_serial_exhaustion_is_refused_not_wrapped(journal: Journal, db_path: Path) -> None:
    with raw(db_path) as conn:
        conn.execute("UPDATE counters SET value = 9999999999 WHERE name = 'trace_serial'")
    with pytest.raises(JournalError, match="exhausted"):
        await journal.allocate_key_call("signIn")
    assert await journal.key_calls() == []


async def test_key_calls_are_newest_first_and_limited(db_path: Path) -> None:
    clock = FakeClock()
    async with await Journal.open(db_path, clock=clock) as journal:
        first = await journal.allocate_key_call("downloadKey")
        second = await journal.allocate_key_call("signIn")  # same clock instant: allocation order
        clock.advance(86400)
        third = await journal.allocate_key_call("signIn")
        assert [c.trace_no for c in await journal.key_calls()] == [third, second, first]
        assert [c.trace_no for c in await journal.key_calls(limit=2)] == [third, second]
        assert await journal.key_calls(limit=0) == []
        with pytest.raises(JournalError, match="negative"):
            await journal.key_calls(limit=-1)
        assert (await journal.key_calls())[0].created_at == T0 + timedelta(days=1)


def test_key_call_record_checks_its_values() -> None:
    with pytest.raises(ValueError, match="key request kind"):
        KeyCallRecord("X", "inquiry", "sent", None, T0, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key request state"):
        KeyCallRecord("X", "signIn", "lost", None, T0, T0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timezone-aware"):
        KeyCallRecord("X", "signIn", "sent", None, T0, datetime(2026, 1, 1))


async def test_corrupt_row_raises_journal_error(journal: Journal, db_path: Path) -> None:
    await journal.allocate_key_call("signIn")
    with raw(db_path) as conn:
        conn.execute("UPDATE key_calls SET created_at = 'noon'")
    with pytest.raises(JournalError, match="corrupt"):
        await journal.key_calls()


async def test_the_table_has_no_room_for_key_material(journal: Journal, db_path: Path) -> None:
    del journal  # opened, so the file is at the latest version
    with raw(db_path) as conn:
        columns = [str(row[1]) for row in conn.execute("PRAGMA table_info(key_calls)")]
    # A check value of the issued key, and nothing else of it: no ciphertext, no reply.
    assert columns == ["trace_no", "kind", "state", "return_code", "key_kcv", "created_at", "updated_at", "lane"]


async def test_database_guards_against_hand_written_sql(journal: Journal, db_path: Path) -> None:
    await add_transaction(journal, "T1")
    call_no = await journal.allocate_call("T1", "inquiry")
    trace_no = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(trace_no, "answered", "00")
    insert_key = "INSERT INTO key_calls (trace_no, kind, state, created_at, updated_at) VALUES (?, ?, 'sent', 't', 't')"
    with raw(db_path) as conn:
        with pytest.raises(sqlite3.IntegrityError, match="already has its result"):
            conn.execute("UPDATE key_calls SET state = 'sent'")
        for used in ("T1", call_no):
            with pytest.raises(sqlite3.IntegrityError, match="already used"):
                conn.execute(insert_key, (used, "signIn"))
        with pytest.raises(sqlite3.IntegrityError, match="CHECK constraint"):
            conn.execute(insert_key, ("NEW1", "pinKey"))
        with pytest.raises(sqlite3.IntegrityError, match="used by a key request"):
            conn.execute(
                "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at,"
                " updated_at) VALUES (?, 'a', 'received', '{}', 'h', 't', 't')",
                (trace_no,),
            )
        with pytest.raises(sqlite3.IntegrityError, match="used by a key request"):
            conn.execute(
                "INSERT INTO backend_calls (trace_no, original_trace_no, kind, state, created_at, updated_at)"
                " VALUES (?, 'T1', 'void', 'sent', 't', 't')",
                (trace_no,),
            )
        with pytest.raises(sqlite3.IntegrityError, match="used by a key request"):
            conn.execute(
                "INSERT INTO pos_queries (trace_no, action, state, request_json, request_hash, created_at, updated_at)"
                " VALUES (?, 'summary', 'sent', '{}', 'h', 't', 't')",
                (trace_no,),
            )
    assert [(c.trace_no, c.state) for c in await journal.key_calls()] == [(trace_no, "answered")]
    assert await journal.integrity_check() == "ok"


async def test_purge_deletes_only_answered_key_requests_older_than_the_cutoff(db_path: Path) -> None:
    clock = FakeClock()
    async with await Journal.open(db_path, clock=clock) as journal:
        await add_transaction(journal, "OLD-SALE", "approved", now=T0)
        old_answered = await journal.allocate_key_call("downloadKey")
        await journal.record_key_call_result(old_answered, "answered", "00")
        old_unknown = await journal.allocate_key_call("signIn")
        await journal.record_key_call_result(old_unknown, "unknown", None)
        old_sent = await journal.allocate_key_call("signIn")  # e.g. a crash before its answer
        clock.advance(10 * 86400)
        new_answered = await journal.allocate_key_call("signIn")
        await journal.record_key_call_result(new_answered, "answered", "00")

        # batches of one: the key requests are deleted and counted once, not once per batch
        assert await journal.purge(T0 + timedelta(days=1), batch_size=1) == 1
        assert {c.trace_no for c in await journal.key_calls()} == {old_unknown, old_sent, new_answered}
        assert serial_of(await journal.allocate_key_call("signIn")) == 5  # the counter is kept
        assert await journal.purge(T0 + timedelta(days=1)) == 0
    with raw(db_path) as conn:
        purges = conn.execute("SELECT transactions, key_calls FROM purges ORDER BY id").fetchall()
    assert purges == [(1, 1), (0, 0)]


async def test_the_last_approved_sign_in_is_found_with_its_key_kcv(journal: Journal) -> None:
    assert await journal.last_sign_in() is None
    first = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(first, "answered", "00", key_kcv="A1A2A3")
    declined = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(declined, "answered", "96")
    lost = await journal.allocate_key_call("signIn")
    await journal.record_key_call_result(lost, "unknown", None)
    found = await journal.last_sign_in()
    assert found is not None
    assert (found.trace_no, found.key_kcv) == (first, "A1A2A3")


async def test_a_key_kcv_that_is_not_6_hex_is_refused(journal: Journal) -> None:
    trace_no = await journal.allocate_key_call("signIn")
    for bad in ("A1A2A", "a1a2a3", "A1A2A3A4", "11" * 16):
        with pytest.raises(JournalError, match="key_kcv"):
            await journal.record_key_call_result(trace_no, "answered", "00", key_kcv=bad)


async def test_key_calls_filter_by_kind_and_since(db_path: Path) -> None:
    clock = FakeClock()
    async with await Journal.open(db_path, clock=clock) as journal:
        old_sign_in = await journal.allocate_key_call("signIn")
        clock.advance(86400)
        upload = await journal.allocate_key_call("batchUpload")
        summary = await journal.allocate_key_call("summary")
        new_sign_in = await journal.allocate_key_call("signIn")
        assert [c.trace_no for c in await journal.key_calls(kind="signIn")] == [new_sign_in, old_sign_in]
        day_two = T0 + timedelta(days=1)
        assert [c.trace_no for c in await journal.key_calls(since=day_two)] == [new_sign_in, summary, upload]
        assert await journal.key_calls(since=day_two + timedelta(microseconds=1)) == []  # since is inclusive
        assert [c.trace_no for c in await journal.key_calls(kind="batchUpload", since=day_two)] == [upload]
        assert [c.trace_no for c in await journal.key_calls(1, kind="signIn")] == [new_sign_in]
        with pytest.raises(JournalError, match="kind must be one of"):
            await journal.key_calls(kind="void")  # type: ignore[arg-type]
        with pytest.raises(JournalError, match="timezone-aware"):
            await journal.key_calls(since=datetime(2026, 5, 1))


def test_select_key_calls_reads_a_journal_from_before_the_table(tmp_path: Path) -> None:
    # A read-only tool may meet a file the daemon has not migrated yet (schema < 6): no rows, no error.
    with closing(sqlite3.connect(tmp_path / "old.db")) as conn:
        conn.execute("CREATE TABLE transactions (trace_no TEXT)")
        assert select_key_calls(conn) == []
