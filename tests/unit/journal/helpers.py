"""Shared helpers for the journal tests: a settable clock, seeded transactions, raw SQL access."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from misbridge.journal import Journal, TransactionRecord
from tests.seeding import seed_transaction

T0 = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
"""The fake clock's starting time."""


class FakeClock:
    """A journal clock that stays where it is put."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        """Move forward ``seconds`` and return the new time."""
        self.now += timedelta(seconds=seconds)
        return self.now


async def add_transaction(journal: Journal, trace_no: str, state: str = "unknown", *, now: datetime = T0) -> None:
    """Record an intent for ``trace_no`` and walk it to ``state`` by the machine's events."""
    request = {"traceNo": trace_no, "totalAmount": "1.00"}
    await seed_transaction(journal, TransactionRecord.new(trace_no, "cardRedemption", state, request, now=now))


def serial_of(trace_no: str) -> int:
    """The 10-digit serial at the end of a misbridge-allocated traceNo."""
    return int(trace_no[14:])


@contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A second, autocommit connection to the journal file (foreign keys on)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        yield conn
    finally:
        conn.close()


def counter(path: Path) -> int:
    """The current ``trace_serial`` as stored in the file."""
    with raw(path) as conn:
        return int(conn.execute("SELECT value FROM counters WHERE name = 'trace_serial'").fetchone()[0])
