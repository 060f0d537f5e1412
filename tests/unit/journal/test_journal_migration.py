"""Schema v1 -> v2: a journal file written by the first misbridge keeps its rows and gains the queue."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal import SCHEMA_VERSION, Journal
from misbridge.journal.schema import immediate_transaction, migrate, schema_v1
from tests.unit.journal.helpers import raw, serial_of

V2_TABLES = {"counters", "backend_calls", "reversals"}


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
        assert (await journal.settings()).schema_version == SCHEMA_VERSION == 2
        assert await journal.count() == 2
        old = await journal.get("OLD1")
        assert old is not None
        assert (old.state, old.return_code, old.response) == ("voiding", "00", {"returnCode": "00"})
        assert str(old.request["totalAmount"]) == "40.80"
        assert [t.event for t in await journal.transitions("OLD2")] == ["intent"]
        assert [r.trace_no for r in await journal.list_by_states(["voiding", "approved"])] == ["OLD1", "OLD2"]

        # the new tables work on the migrated file, the old trigger still guards final states
        assert serial_of(await journal.allocate_call("OLD1", "void")) == 1
        await journal.enqueue_reversal("OLD1", from_state="voiding", event="requeue", to_state="voiding")
        assert [r.original_trace_no for r in await journal.pending_reversals()] == ["OLD1"]
        with pytest.raises(JournalError, match="final state"):
            await journal.record_transition("OLD2", "approved", "voiding", "void_unclaimed")
        assert await journal.integrity_check() == "ok"

    assert version(db_path) == 2
    assert tables(db_path) >= V2_TABLES | {"transactions", "transitions"}


async def test_fresh_file_goes_straight_to_v2(db_path: Path) -> None:
    async with await Journal.open(db_path) as journal:
        assert (await journal.settings()).schema_version == 2
    assert tables(db_path) >= V2_TABLES
    with raw(db_path) as conn:
        assert conn.execute("SELECT name, value FROM counters").fetchall() == [("trace_serial", 0)]


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
        assert (await journal.settings()).schema_version == 2
        assert await journal.count() == 2


def test_migrate_from_v1_reports_the_version_found(db_path: Path) -> None:
    write_v1_file(db_path)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        assert migrate(conn) == 1
        assert migrate(conn) == 2
    finally:
        conn.close()
