"""Journal schema: migrations and the final-state trigger built from a list of states."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal.schema import FINAL_STATES, SCHEMA_VERSION, immediate_transaction, migrate, schema_v1


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(tmp_path / "schema.db", isolation_level=None)
    try:
        yield connection
    finally:
        connection.close()


def _version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _insert(conn: sqlite3.Connection, trace_no: str, state: str) -> None:
    conn.execute(
        "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at, updated_at)"
        " VALUES (?, 'a', ?, '{}', 'h', 't', 't')",
        (trace_no, state),
    )


def test_migrate_creates_the_latest_version_once(conn: sqlite3.Connection) -> None:
    assert migrate(conn) == 0
    assert _version(conn) == SCHEMA_VERSION == 9
    assert migrate(conn) == SCHEMA_VERSION  # nothing to do the second time
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"transactions", "transitions", "transactions_final_is_final"} <= names
    assert {"counters", "backend_calls", "reversals", "reversals_done_is_final"} <= names
    assert {"pos_inquiries", "transactions_trace_no_not_barred", "pos_inquiries_are_kept"} <= names
    assert {"key_calls", "key_calls_trace_no_is_new", "key_calls_result_is_final", "purges"} <= names
    assert {"transactions_by_lane", "pos_queries_by_lane", "key_calls_by_lane"} <= names
    assert {"schema_compat", "schema_compat_only_grows", "schema_compat_is_kept"} <= names
    assert conn.execute("SELECT only_row, min_reader FROM schema_compat").fetchall() == [(1, 9)]


def test_newer_database_is_refused(conn: sqlite3.Connection) -> None:
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1:d}")
    with pytest.raises(JournalError, match="newer"):
        migrate(conn)


def test_trigger_uses_the_given_final_states(conn: sqlite3.Connection) -> None:
    migrate(conn, final_states=["done"])
    _insert(conn, "A", "done")
    _insert(conn, "B", "approved")  # not final in this schema
    conn.execute("UPDATE transactions SET state = 'other' WHERE trace_no = 'B'")
    with pytest.raises(sqlite3.IntegrityError, match="final state"):
        conn.execute("UPDATE transactions SET state = 'other' WHERE trace_no = 'A'")


def test_default_final_states() -> None:
    assert FINAL_STATES == ("approved", "declined", "aborted", "voided")


@pytest.mark.parametrize("states", [[], ["ok'); DROP TABLE transactions; --"], ["Approved"], [""]])
def test_final_state_names_are_checked(states: list[str]) -> None:
    with pytest.raises(ValueError, match="lower_snake"):
        schema_v1(states)


def test_a_failed_migration_leaves_version_0(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE transitions (x)")  # makes step 1 fail half-way
    with pytest.raises(sqlite3.OperationalError):
        migrate(conn)
    assert _version(conn) == 0
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'transactions'").fetchone() is None


def test_immediate_transaction_rolls_back_on_error(conn: sqlite3.Connection) -> None:
    migrate(conn)

    def insert_then_fail() -> None:
        with immediate_transaction(conn):
            _insert(conn, "A", "received")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        insert_then_fail()
    assert not conn.in_transaction
    assert conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 0
    with immediate_transaction(conn):
        _insert(conn, "A", "received")
    assert conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 1


def test_transitions_reference_transactions(conn: sqlite3.Connection) -> None:
    migrate(conn)
    conn.execute("PRAGMA foreign_keys = ON")
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        conn.execute(
            "INSERT INTO transitions (trace_no, from_state, to_state, event, at) VALUES ('X', '', 'a', 'e', 't')"
        )
