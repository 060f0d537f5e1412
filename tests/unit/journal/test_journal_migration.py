"""Schema migrations: a journal file written by an older misbridge opens and keeps its rows.

v1 -> v2 adds the traceNo serial, the backend calls and the reversal queue; v2 -> v3 the POS
inquiries forwarded to the backend (issue 10); v3 -> v4 the POS's queries and uploads passed on,
and the request hash of a forwarded inquiry; v4 -> v5 the ``option`` kind of backend call (the
table rebuilt with its rows and guards); v5 -> v6 misbridge's own key requests (issue 14) and the
``purges`` table adopted with a count of them; v6 -> v7 the end of day's own calls (the key_calls
table rebuilt); v7 -> v8 the POS lane of a row (issue 16), every earlier row the default lane's; v8 -> v9
the ``schema_compat`` row (issue 17), every earlier trigger kept.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from misbridge.errors import InvalidTransition, JournalError
from misbridge.journal import SCHEMA_VERSION, Journal, TransactionRecord, queries
from misbridge.journal.schema import (
    LANE_TABLES,
    PURGES_TABLE,
    immediate_transaction,
    migrate,
    schema_v1,
    schema_v2,
    schema_v3,
    schema_v4,
    schema_v5,
    schema_v6,
    schema_v7,
)
from misbridge.journal.store import BarredTraceNoError
from tests.seeding import seed_transaction
from tests.unit.journal.helpers import add_transaction, raw, serial_of

V2_TABLES = {"counters", "backend_calls", "reversals"}
V3_TABLES = {"pos_inquiries"}
V4_TABLES = {"pos_queries"}
V6_TABLES = {"key_calls", "purges"}


def write_v1_file(path: Path) -> None:
    """A version-1 journal as the first misbridge left it: one voiding and one approved transaction."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        with immediate_transaction(conn):
            for statement in schema_v1():
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 1")
        for trace_no, state in (("OLD1", "voiding"), ("OLD2", "approved")):
            conn.execute(
                "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, response_json,"
                " return_code, created_at, updated_at) VALUES (?, 'cardRedemption', ?, ?, 'h', ?, '00', ?, ?)",
                (
                    trace_no,
                    state,
                    f'{{"traceNo":"{trace_no}","totalAmount":40.80}}',
                    '{"returnCode":"00"}',
                    "2026-04-30T10:00:00.000000+00:00",
                    "2026-04-30T10:00:01.000000+00:00",
                ),
            )
            conn.execute(
                "INSERT INTO transitions (trace_no, from_state, to_state, event, at) VALUES (?, '', ?, 'intent', ?)",
                (trace_no, state, "2026-04-30T10:00:00.000000+00:00"),
            )
    finally:
        conn.close()


def tables(path: Path) -> set[str]:
    with raw(path) as conn:
        return {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def version(path: Path) -> int:
    with raw(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


async def test_v1_file_is_migrated_and_keeps_its_rows(db_path: Path) -> None:
    write_v1_file(db_path)
    assert version(db_path) == 1
    assert not V2_TABLES & tables(db_path)

    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 9
        assert await journal.count() == 2
        old = await journal.get("OLD1")
        assert old is not None
        assert (old.state, old.return_code, old.response) == ("voiding", "00", {"returnCode": "00"})
        assert str(old.request["totalAmount"]) == "40.80"
        assert [t.event for t in await journal.transitions("OLD2")] == ["intent"]
        assert [r.trace_no for r in await journal.list_by_states(["voiding", "approved"])] == ["OLD1", "OLD2"]

        # the new tables work on the migrated file, the old trigger still guards final states
        assert serial_of(await journal.allocate_call("OLD1", "void")) == 1
        await seed_transaction(journal, TransactionRecord.new("NEW1", "cardRedemption", "unknown", {"traceNo": "NEW1"}))
        await journal.enqueue_reversal("NEW1", from_state="unknown", event="give_up")
        assert [r.original_trace_no for r in await journal.pending_reversals()] == ["NEW1"]
        with pytest.raises(InvalidTransition, match="'void_unclaimed' is not allowed in state 'approved'"):
            await journal.record_transition("OLD2", "approved", "void_unclaimed")
        with raw(db_path) as conn, pytest.raises(sqlite3.IntegrityError, match="final state"):
            conn.execute("UPDATE transactions SET state = 'voiding' WHERE trace_no = 'OLD2'")
        assert await journal.integrity_check() == "ok"

    assert version(db_path) == SCHEMA_VERSION
    assert tables(db_path) >= V2_TABLES | V3_TABLES | {"transactions", "transitions"}


async def test_fresh_file_goes_straight_to_the_latest_version(db_path: Path) -> None:
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
    assert tables(db_path) >= V2_TABLES | V3_TABLES | V4_TABLES | V6_TABLES
    with raw(db_path) as conn:
        assert conn.execute("SELECT name, value FROM counters").fetchall() == [("trace_serial", 0)]
        assert "key_calls" in {str(row[1]) for row in conn.execute("PRAGMA table_info(purges)")}


async def test_a_failed_v2_step_leaves_a_whole_v1_file(db_path: Path) -> None:
    write_v1_file(db_path)
    with raw(db_path) as conn:
        conn.execute("CREATE TABLE reversals (x)")  # makes step 2 fail half-way (after counters)
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(db_path)
    assert version(db_path) == 1
    assert "counters" not in tables(db_path)  # the half-done step was rolled back
    with raw(db_path) as conn:
        conn.execute("DROP TABLE reversals")
    async with await Journal.open(db_path) as journal:  # and the next start finishes it
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
        assert await journal.count() == 2


def test_migrate_from_v1_reports_the_version_found(db_path: Path) -> None:
    write_v1_file(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn) == 1
        assert migrate(conn) == SCHEMA_VERSION
    finally:
        conn.close()


def write_v2_file(path: Path) -> None:
    """A version-2 journal as the issue-4 misbridge left it: the v1 rows, an inquiry and a pending void."""
    write_v1_file(path)
    at = "2026-04-30T10:00:02.000000+00:00"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with immediate_transaction(conn):
            for statement in schema_v2():
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 2")
        with immediate_transaction(conn):
            conn.execute("UPDATE counters SET value = 1 WHERE name = 'trace_serial'")
            conn.execute(
                "INSERT INTO backend_calls (trace_no, original_trace_no, kind, state, return_code, created_at,"
                " updated_at) VALUES ('202604301000020000000001', 'OLD1', 'inquiry', 'answered', '25', ?, ?)",
                (at, at),
            )
            conn.execute(
                "INSERT INTO reversals (original_trace_no, state, attempts, next_attempt_at, created_at, updated_at)"
                " VALUES ('OLD1', 'pending', 2, ?, ?, ?)",
                (at, at, at),
            )
    finally:
        conn.close()


async def test_v2_file_is_migrated_keeps_its_rows_and_gains_the_forwarded_inquiries(db_path: Path) -> None:
    write_v2_file(db_path)
    assert version(db_path) == 2
    assert not V3_TABLES & tables(db_path)

    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
        assert await journal.count() == 2
        assert [(c.trace_no, c.return_code) for c in await journal.calls("OLD1")] == [
            ("202604301000020000000001", "25")
        ]
        pending = await journal.pending_reversals()
        assert [(r.original_trace_no, r.attempts) for r in pending] == [("OLD1", 2)]
        assert serial_of(await journal.allocate_call("OLD1", "void")) == 2, "the serial carries on"

        inquiry = await journal.record_pos_inquiry("INQ1", "FUTURE1")
        await journal.record_pos_inquiry_result(inquiry, "answer", return_code="25")
        assert await journal.barred_as("FUTURE1") is not None
        with pytest.raises(BarredTraceNoError):
            await add_transaction(journal, "FUTURE1", "received")
        assert await journal.integrity_check() == "ok"
    assert version(db_path) == SCHEMA_VERSION


async def test_a_failed_v3_step_leaves_a_whole_v2_file(db_path: Path) -> None:
    write_v2_file(db_path)
    with raw(db_path) as conn:
        conn.execute("CREATE TABLE pos_inquiries_by_original (x)")  # the index name is taken: step 3 fails
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(db_path)
    assert version(db_path) == 2
    assert "pos_inquiries" not in tables(db_path)
    with raw(db_path) as conn:
        conn.execute("DROP TABLE pos_inquiries_by_original")
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
        assert [r.original_trace_no for r in await journal.pending_reversals()] == ["OLD1"]


def write_v3_file(path: Path) -> None:
    """A version-3 journal as issue 10's misbridge left it: the v2 rows and an answered forwarded inquiry."""
    write_v2_file(path)
    at = "2026-04-30T10:00:03.000000+00:00"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        with immediate_transaction(conn):
            for statement in schema_v3():
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 3")
        conn.execute(
            "INSERT INTO pos_inquiries (trace_no, original_trace_no, state, return_code, response_json, created_at,"
            " updated_at) VALUES ('INQ0', 'ELSEWHERE', 'answered', '25', '{\"returnCode\":\"25\"}', ?, ?)",
            (at, at),
        )
    finally:
        conn.close()


async def test_v3_file_is_migrated_keeps_its_rows_and_gains_the_queries(db_path: Path) -> None:
    write_v3_file(db_path)
    assert version(db_path) == 3
    assert not V4_TABLES & tables(db_path)

    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 9
        assert await journal.count() == 2
        old = await journal.forwarded_inquiry("INQ0")
        assert old is not None
        assert (old.original_trace_no, old.state, old.return_code, old.request_hash) == (
            "ELSEWHERE",
            "answered",
            "25",
            None,
        )
        assert [r.original_trace_no for r in await journal.pending_reversals()] == ["OLD1"]

        inquiry = await journal.record_pos_inquiry("INQ1", "FUTURE1", "hash1")
        new = await journal.forwarded_inquiry("INQ1")
        assert new is not None
        assert (new.id, new.request_hash) == (inquiry, "hash1")
        await journal.record_query("SUM1", "summary", {"traceNo": "SUM1"})
        assert (
            await journal.record_query_result(
                "SUM1", "summary", "answer", response={"returnCode": "00"}, return_code="00"
            )
            == "answered"
        )
        with pytest.raises(BarredTraceNoError):
            await add_transaction(journal, "SUM1", "received")
        assert await journal.integrity_check() == "ok"
    assert version(db_path) == SCHEMA_VERSION


async def test_a_failed_v4_step_leaves_a_whole_v3_file(db_path: Path) -> None:
    write_v3_file(db_path)
    with raw(db_path) as conn:
        # the column exists already: step 4 fails at its last statement, after pos_queries
        conn.execute("ALTER TABLE pos_inquiries ADD COLUMN request_hash TEXT")
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(db_path)
    assert version(db_path) == 3
    assert "pos_queries" not in tables(db_path)  # the half-done step was rolled back
    with raw(db_path) as conn:
        conn.execute("ALTER TABLE pos_inquiries DROP COLUMN request_hash")
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
        assert (await journal.forwarded_inquiry("INQ0")) is not None


def test_the_read_side_reads_a_v3_file_it_has_not_migrated(db_path: Path) -> None:
    write_v3_file(db_path)  # the read-only tools open a file as they find it
    with raw(db_path) as conn:
        assert queries.transaction_view(conn, "NOPE") is None
        view = queries.transaction_view(conn, "OLD2")
        assert view is not None
        assert view["state"] == "approved"


async def test_v4_file_is_migrated_keeps_its_calls_and_guards_and_takes_an_option_call(db_path: Path) -> None:
    write_v3_file(db_path)
    with raw(db_path) as conn, immediate_transaction(conn):
        for statement in schema_v4():
            conn.execute(statement)
        conn.execute("PRAGMA user_version = 4")
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 9
        assert [(c.trace_no, c.kind, c.return_code) for c in await journal.calls("OLD1")] == [
            ("202604301000020000000001", "inquiry", "25")
        ]
        option_no = await journal.allocate_call("OLD2", "option")
        assert [c.kind for c in await journal.calls("OLD2")] == ["option"]
        with pytest.raises(JournalError):  # the guard came back: a call's traceNo is no transaction's
            await add_transaction(journal, option_no, "received")
        await journal.record_call_result(option_no, state="answered", return_code="00")
        with pytest.raises(JournalError):  # and a call still gets one result
            await journal.record_call_result(option_no, state="unknown")
        assert await journal.integrity_check() == "ok"
    with raw(db_path) as conn:
        names = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"backend_calls_by_original", "backend_calls_trace_no_is_new", "backend_calls_result_is_final"} <= names
    assert "backend_calls_v5" not in names


def write_v5_file(path: Path) -> None:
    """A version-5 journal as the misbridge before issue 14 left it: the v3 rows, a query, an option call, a purge."""
    write_v3_file(path)
    at = "2026-04-30T10:00:05.000000+00:00"
    with raw(path) as conn:
        for version, statements in ((4, schema_v4()), (5, schema_v5())):
            with immediate_transaction(conn):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")
        with immediate_transaction(conn):
            conn.execute(
                "INSERT INTO pos_queries (trace_no, action, state, request_json, request_hash, return_code,"
                " response_json, created_at, updated_at) VALUES ('SUM0', 'summary', 'answered', ?, 'h', '00', ?, ?, ?)",
                ('{"traceNo":"SUM0"}', '{"returnCode":"00"}', at, at),
            )
            conn.execute("UPDATE counters SET value = 2 WHERE name = 'trace_serial'")
            conn.execute(
                "INSERT INTO backend_calls (trace_no, original_trace_no, kind, state, created_at, updated_at)"
                " VALUES ('202604301000050000000002', 'OLD2', 'option', 'sent', ?, ?)",
                (at, at),
            )
            conn.execute(PURGES_TABLE)  # a v5 purge made it
            conn.execute("INSERT INTO purges (at, cutoff, transactions, transitions) VALUES (?, ?, 3, 9)", (at, at))


#: The columns later versions added to a table, by version: purges.key_calls (6), every lane (8).
LATER_COLUMNS = {6: {("purges", "key_calls")}, 8: {(table, "lane") for table in LANE_TABLES}}
#: The tables later versions added, by version: key_calls (6), schema_compat (9).
LATER_TABLES = {6: "key_calls", 9: "schema_compat"}


def snapshot(path: Path, *, since: int = 5) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table of a version-``since`` file (5, 7 or 8), in the columns that version has."""
    later = {column for added, columns in LATER_COLUMNS.items() if added > since for column in columns}
    skipped = {"sqlite_sequence"} | {name for added, name in LATER_TABLES.items() if added > since}
    with raw(path) as conn:
        names = sorted(str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        snap = {}
        for name in (name for name in names if name not in skipped):
            columns = [str(row[1]) for row in conn.execute(f"PRAGMA table_info({name})")]
            kept = ", ".join(column for column in columns if (name, column) not in later)
            snap[name] = conn.execute(f"SELECT {kept} FROM {name} ORDER BY rowid").fetchall()  # noqa: S608 - names from sqlite_master
        return snap


async def test_v5_file_is_migrated_keeps_every_row_and_gains_the_key_calls(db_path: Path) -> None:
    write_v5_file(db_path)
    assert version(db_path) == 5
    assert "key_calls" not in tables(db_path)
    before = snapshot(db_path)
    assert all(before[name] for name in ("transactions", "backend_calls", "pos_inquiries", "pos_queries", "purges"))

    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 9
        assert snapshot(db_path) == before
        assert await journal.key_calls() == []
        trace_no = await journal.allocate_key_call("signIn")
        assert serial_of(trace_no) == 3, "the serial carries on from version 5's"
        with pytest.raises(BarredTraceNoError, match="key request"):
            await add_transaction(journal, trace_no, "received")
        await journal.record_key_call_result(trace_no, "answered", "00")
        with pytest.raises(JournalError, match="already 'answered'"):
            await journal.record_key_call_result(trace_no, "unknown", None)
        with pytest.raises(JournalError, match="key request"):  # the old tables' new guards work too
            await journal.record_query(trace_no, "summary", {"traceNo": trace_no})
        assert await journal.integrity_check() == "ok"
    with raw(db_path) as conn:
        assert conn.execute("SELECT transactions, key_calls FROM purges").fetchall() == [(3, 0)]
        names = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}
    assert {
        "key_calls_trace_no_is_new",
        "key_calls_result_is_final",
        "transactions_trace_no_not_keyed",
        "backend_calls_trace_no_not_keyed",
        "pos_queries_trace_no_not_keyed",
        "pos_queries_trace_no_is_new",
        "transactions_trace_no_is_new",
    } <= names
    assert version(db_path) == SCHEMA_VERSION


async def test_a_failed_v6_step_leaves_a_whole_v5_file(db_path: Path) -> None:
    write_v5_file(db_path)
    before = snapshot(db_path)
    with raw(db_path) as conn:  # the column exists already: step 6 fails at its last statement
        conn.execute("ALTER TABLE purges ADD COLUMN key_calls INTEGER NOT NULL DEFAULT 0")
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(db_path)
    assert version(db_path) == 5
    assert "key_calls" not in tables(db_path)  # the half-done step was rolled back
    with raw(db_path) as conn:
        conn.execute("ALTER TABLE purges DROP COLUMN key_calls")
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
        assert snapshot(db_path) == before


async def test_v6_file_is_migrated_keeps_its_key_calls_and_takes_the_end_of_days_calls(db_path: Path) -> None:
    write_v5_file(db_path)
    at = "2026-04-30T10:00:06.000000+00:00"
    with raw(db_path) as conn:
        with immediate_transaction(conn):
            for statement in schema_v6():
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 6")
        with immediate_transaction(conn):
            conn.execute("UPDATE counters SET value = 3 WHERE name = 'trace_serial'")
            conn.execute(
                "INSERT INTO key_calls (trace_no, kind, state, return_code, key_kcv, created_at, updated_at)"
                " VALUES ('202604301000060000000003', 'signIn', 'answered', '00', 'ABC123', ?, ?)",
                (at, at),
            )
        with pytest.raises(sqlite3.IntegrityError):  # version 6 knows only the key requests
            conn.execute(
                "INSERT INTO key_calls (trace_no, kind, state, created_at, updated_at)"
                " VALUES ('X1', 'batchUpload', 'sent', ?, ?)",
                (at, at),
            )
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 9
        [kept] = await journal.key_calls()
        assert (kept.trace_no, kept.kind, kept.key_kcv) == ("202604301000060000000003", "signIn", "ABC123")
        upload = await journal.allocate_key_call("batchUpload")
        summary = await journal.allocate_key_call("summary")
        assert [serial_of(upload), serial_of(summary)] == [4, 5], "the serial carries on from version 6's"
        with pytest.raises(BarredTraceNoError, match="key request"):  # barred like a key request's
            await add_transaction(journal, upload, "received")
        await journal.record_key_call_result(upload, "answered", "00")
        with pytest.raises(JournalError, match="already 'answered'"):  # and one result
            await journal.record_key_call_result(upload, "unknown", None)
        assert await journal.integrity_check() == "ok"
    with raw(db_path) as conn:
        names = {str(row[0]) for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"key_calls_trace_no_is_new", "key_calls_result_is_final", "transactions_trace_no_not_keyed"} <= names
    assert "key_calls_v7" not in names


def write_v7_file(path: Path) -> None:
    """A version-7 journal as the misbridge before issue 16 left it: the v5 rows, a sign-in, an open query."""
    write_v5_file(path)
    at = "2026-04-30T10:00:07.000000+00:00"
    with raw(path) as conn:
        for version, statements in ((6, schema_v6()), (7, schema_v7())):
            with immediate_transaction(conn):
                for statement in statements:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")
        with immediate_transaction(conn):
            conn.execute("UPDATE counters SET value = 4 WHERE name = 'trace_serial'")
            conn.execute(
                "INSERT INTO key_calls (trace_no, kind, state, return_code, key_kcv, created_at, updated_at)"
                " VALUES ('202604301000070000000003', 'signIn', 'answered', '00', 'ABC123', ?, ?)",
                (at, at),
            )
            conn.execute(
                "INSERT INTO key_calls (trace_no, kind, state, created_at, updated_at)"
                " VALUES ('202604301000070000000004', 'batchUpload', 'sent', ?, ?)",
                (at, at),
            )
            conn.execute(
                "INSERT INTO pos_queries (trace_no, action, state, request_json, request_hash, created_at, updated_at)"
                " VALUES ('UP0', 'batchUpload', 'sent', '{\"traceNo\":\"UP0\"}', 'h', ?, ?)",
                (at, at),
            )


def schema_objects(path: Path, kind: str) -> dict[str, str]:
    with raw(path) as conn:
        rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE type = ?", (kind,)).fetchall()
    return {str(name): str(sql) for name, sql in rows}


async def test_v7_file_is_migrated_keeps_every_row_and_reads_it_as_the_default_lanes(db_path: Path) -> None:
    write_v7_file(db_path)
    assert version(db_path) == 7
    before = snapshot(db_path, since=7)
    triggers = schema_objects(db_path, "trigger")
    assert all(before[name] for name in ("transactions", "backend_calls", "pos_inquiries", "pos_queries", "key_calls"))

    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 9
        assert snapshot(db_path, since=7) == before, "no row changed"
        default, lane2 = journal.for_lane("lane1", default=True), journal.for_lane("lane2", default=False)
        old = await journal.get("OLD1")
        assert old is not None
        assert (old.state, old.lane) == ("voiding", None)
        # The default lane's work is every row of before: lane2 has none of it.
        assert [r.trace_no for r in await default.list_by_states(["voiding", "approved"])] == ["OLD1", "OLD2"]
        assert await lane2.list_by_states(["voiding", "approved"]) == []
        assert [r.original_trace_no for r in await default.pending_reversals()] == ["OLD1"]
        assert await lane2.pending_reversals() == []
        later = datetime(2026, 5, 1, tzinfo=UTC)
        assert [q.trace_no for q in await default.unanswered_queries(later)] == ["UP0"]
        assert await lane2.unanswered_queries(later) == []
        signed = await default.last_sign_in()
        assert signed is not None
        assert (signed.key_kcv, signed.lane) == ("ABC123", None)
        assert await lane2.last_sign_in() is None
        # Old and new lanes share the counter and the barred traceNos.
        assert serial_of(await lane2.allocate_key_call("signIn")) == 5
        with pytest.raises(BarredTraceNoError):
            await add_transaction(lane2, "UP0", "received")
        assert await journal.integrity_check() == "ok"

    after = schema_objects(db_path, "trigger")
    assert {name: after[name] for name in triggers} == triggers, "every trigger as it was"
    assert set(after) - set(triggers) == {"schema_compat_only_grows", "schema_compat_is_kept"}, "version 9's own"
    with raw(db_path) as conn:
        for table in LANE_TABLES:
            lanes = [row[0] for row in conn.execute(f"SELECT lane FROM {table} ORDER BY rowid")]  # noqa: S608 - literals
            expected = [None] * len(before[table]) + (["lane2"] if table == "key_calls" else [])
            assert lanes == expected, table
    assert {"transactions_by_lane", "pos_queries_by_lane", "key_calls_by_lane"} <= set(schema_objects(db_path, "index"))


async def test_a_failed_v8_step_leaves_a_whole_v7_file(db_path: Path) -> None:
    write_v7_file(db_path)
    before = snapshot(db_path, since=7)
    with raw(db_path) as conn:  # the name is taken: step 8 fails at its last statement, after the columns
        conn.execute("CREATE TABLE key_calls_by_lane (x)")
    with pytest.raises(JournalError, match="cannot open journal"):
        await Journal.open(db_path)
    assert version(db_path) == 7
    with raw(db_path) as conn:  # the half-done step was rolled back
        assert all(
            "lane" not in {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")} for table in LANE_TABLES
        )
        conn.execute("DROP TABLE key_calls_by_lane")
    async with await Journal.open(db_path) as journal:  # and the next start finishes it
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
    assert snapshot(db_path, since=7) == before


@pytest.mark.parametrize("write", [write_v1_file, write_v2_file, write_v3_file, write_v5_file, write_v7_file])
async def test_every_older_file_is_the_default_lanes(db_path: Path, write: Callable[[Path], None]) -> None:
    write(db_path)
    async with await Journal.open(db_path) as journal:
        default, lane2 = journal.for_lane("lane1", default=True), journal.for_lane("lane2", default=False)
        every = await journal.list_by_states(["voiding", "approved"])
        assert [r.trace_no for r in every] == ["OLD1", "OLD2"]
        assert all(record.lane is None for record in every)
        assert await default.list_by_states(["voiding", "approved"]) == every
        assert await lane2.list_by_states(["voiding", "approved"]) == []
        await add_transaction(lane2, "NEW2", "received")
    with raw(db_path) as conn:
        for table in LANE_TABLES:
            lanes = {row[0] for row in conn.execute(f"SELECT lane FROM {table}")}  # noqa: S608 - literals
            assert lanes <= ({None, "lane2"} if table == "transactions" else {None}), table
        assert conn.execute("SELECT lane FROM transactions WHERE trace_no = 'NEW2'").fetchone() == ("lane2",)
