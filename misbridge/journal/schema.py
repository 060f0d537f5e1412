"""Journal schema: DDL, the final-state trigger and ``PRAGMA user_version`` migrations.

The journal does not import :mod:`misbridge.core` (the import direction is core -> journal),
so the states the trigger treats as final are the constant :data:`FINAL_STATES` here; a
core unit test asserts it equals ``misbridge.core.machine.FINAL_STATES``.

The trigger is created by migration 1, so changing the final states later needs a new
migration that drops and recreates it.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Final

from misbridge.errors import JournalError

__all__ = ["FINAL_STATES", "SCHEMA_VERSION", "immediate_transaction", "migrate", "schema_v1"]

FINAL_STATES: Final[tuple[str, ...]] = ("approved", "declined", "aborted", "voided")
"""States no transaction may leave; enforced by the ``transactions_final_is_final`` trigger."""

SCHEMA_VERSION: Final = 1
"""The ``PRAGMA user_version`` that :func:`migrate` brings a database to."""

_STATE_NAME = re.compile(r"[a-z][a-z0-9_]*")


def _sql_list(states: Sequence[str]) -> str:
    # Trigger bodies cannot take bound parameters, so the names are checked, then quoted.
    bad = [state for state in states if not _STATE_NAME.fullmatch(state)]
    if bad or not states:
        raise ValueError(f"final states must be non-empty lower_snake names, got {list(states)!r}")
    return ", ".join(f"'{state}'" for state in states)


def schema_v1(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements of schema version 1, with the trigger built from ``final_states``.

    Raises:
        ValueError: a state name is not ``lower_snake`` (it is pasted into the trigger).
    """
    return [
        """CREATE TABLE transactions (
            trace_no      TEXT PRIMARY KEY NOT NULL,
            action        TEXT NOT NULL,
            state         TEXT NOT NULL,
            request_json  TEXT NOT NULL,
            request_hash  TEXT NOT NULL,
            masked_pan    TEXT,
            card_type     TEXT,
            response_json TEXT,
            return_code   TEXT,
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL
        ) STRICT""",
        "CREATE INDEX transactions_by_state ON transactions (state, created_at)",
        """CREATE TABLE transitions (
            id         INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_no   TEXT NOT NULL REFERENCES transactions (trace_no),
            from_state TEXT NOT NULL,
            to_state   TEXT NOT NULL,
            event      TEXT NOT NULL,
            at         TEXT NOT NULL,
            detail     TEXT NOT NULL DEFAULT ''
        ) STRICT""",
        "CREATE INDEX transitions_by_trace_no ON transitions (trace_no, id)",
        f"""CREATE TRIGGER transactions_final_is_final
            BEFORE UPDATE OF state ON transactions
            WHEN OLD.state IN ({_sql_list(final_states)})
            BEGIN
                SELECT RAISE(ABORT, 'transaction is in a final state');
            END""",
    ]


_MIGRATIONS: Final[dict[int, Callable[[Sequence[str]], list[str]]]] = {1: schema_v1}
"""Statements that take a database from version ``n - 1`` to version ``n``."""


def migrate(conn: sqlite3.Connection, final_states: Sequence[str] = FINAL_STATES) -> int:
    """Bring the database on ``conn`` to :data:`SCHEMA_VERSION`; return the version found.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with its
    ``user_version`` bump, so a crash leaves the database at a whole version.  ``conn``
    must have ``isolation_level=None``.

    Raises:
        JournalError: the database was written by a newer misbridge.
        sqlite3.Error: the caller translates it.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        raise JournalError(f"journal schema version {found} is newer than this misbridge ({SCHEMA_VERSION})")
    for version in range(found + 1, SCHEMA_VERSION + 1):
        _apply(conn, version, _MIGRATIONS[version](final_states))
    return found


def _apply(conn: sqlite3.Connection, version: int, statements: list[str]) -> None:
    with immediate_transaction(conn):
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version:d}")


@contextmanager
def immediate_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if the body raises.

    IMMEDIATE takes the write lock up front, so a write never fails half-way on lock
    upgrade.  ``conn`` must have ``isolation_level=None`` (no implicit transactions).
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
