"""The journal's connection: one SQLite file, one worker thread, used from asyncio.

Durability (reliability-requirements.md §4, R1-R4):

* WAL with ``synchronous=FULL``: a COMMIT that returned survives a power cut, not only a
  process crash.  ``foreign_keys=ON``.
* ``isolation_level=None`` and an explicit ``BEGIN IMMEDIATE ... COMMIT``
  (:func:`~misbridge.journal.schema.immediate_transaction`) around every write, so a write is
  exactly one transaction and never waits to upgrade a read lock.
* Every sqlite call runs on **one** dedicated worker thread that also created the
  connection, so the event loop never blocks on disk and calls are serialised in order.
* ``sqlite3.Error`` is translated to :class:`~misbridge.errors.JournalError` here and only here
  (:meth:`JournalBase._run`).

:class:`JournalBase` is what every table's part of :class:`~misbridge.journal.store.Journal`
builds on: opening and closing, the worker, the clock.  The table modules hold the functions
that run on the worker thread, each taking the connection first.

A write whose awaiting task is cancelled still runs to completion (or failure) on the worker
thread; re-read with ``Journal.get`` to learn which.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self, TypeVar

from misbridge.errors import JournalError
from misbridge.journal.records import iso_utc, utc_now
from misbridge.journal.schema import migrate

__all__ = ["JournalBase", "JournalSettings", "iso"]

_T = TypeVar("_T")

_BUSY_TIMEOUT_S: Final = 5.0  # another process (backup, ops shell) may hold the lock briefly
_SYNCHRONOUS_NAMES: Final = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
#: SQLite page cache per connection, KiB (negative cache_size = KiB).
_PAGE_CACHE_KIB = 512


@dataclass(frozen=True)
class JournalSettings:
    """The durability settings in force on the journal's connection."""

    journal_mode: str
    synchronous: str
    foreign_keys: bool
    schema_version: int
    page_cache_kib: int


def iso(name: str, moment: datetime) -> str:
    """``moment`` as journal timestamp text; a naive ``moment`` is a :class:`JournalError` naming ``name``."""
    try:
        return iso_utc(moment)
    except ValueError as err:
        raise JournalError(f"journal {name}: {err}") from err


class JournalBase:
    """The connection, its one worker thread and the clock; see :class:`~misbridge.journal.store.Journal`.

    Open with :meth:`open` (not the constructor) and :meth:`close` when done, or use
    ``async with``.

    Args:
        conn: a connection made by the journal thread.
        executor: the one-thread executor that owns ``conn``.
        clock: returns the current timezone-aware time for ``updated_at`` and ``at``.
    """

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self._executor = executor
        self._clock = clock
        self._closed = False

    @classmethod
    async def open(cls, path: Path, *, clock: Callable[[], datetime] = utc_now) -> Self:
        """Open (creating and migrating if needed) the journal file at ``path``.

        Raises:
            JournalError: the file cannot be opened, WAL cannot be enabled, or the schema is
                newer than this code.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="misbridge-journal")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, _connect, path)
        except sqlite3.Error as err:
            executor.shutdown(wait=False)
            raise JournalError(f"cannot open journal {path}: {err}") from err
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, clock)

    async def close(self) -> None:
        """Finish queued calls, close the connection and stop the thread.  Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        except sqlite3.Error as err:
            raise JournalError(f"closing the journal failed: {err}") from err
        finally:
            # The worker is idle once close() ran on it, so this returns at once.
            self._executor.shutdown(wait=True)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"``, or the problems found, one per line.

        Raises:
            JournalError: the check could not run.
        """
        return await self._run("integrity_check", _integrity_check)

    async def settings(self) -> JournalSettings:
        """The journal mode, synchronous level, foreign-key enforcement, schema version and page cache in force.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("settings", _settings)

    def _now(self) -> str:
        return iso("clock time", self._clock())

    async def _run(self, what: str, func: Callable[..., _T], *args: Any) -> _T:
        """``func(conn, *args)`` on the worker thread; ``sqlite3.Error`` becomes :class:`JournalError`."""
        if self._closed:
            raise JournalError(f"journal {what}: the journal is closed")
        call = partial(func, self._conn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as err:
            raise JournalError(f"journal {what} failed: {err}") from err


# --- Everything below runs on the journal thread. ----------------------------------------


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        conn.row_factory = sqlite3.Row
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            raise JournalError(f"journal {path}: WAL mode refused (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        # The working set is a few recent rows and the index roots; the OS page cache keeps the
        # rest. SQLite's default 2 MiB page cache only fills as the file grows, which showed as
        # daemon RSS growth over 10 000 sales (docs/performance.md).
        conn.execute(f"PRAGMA cache_size = -{_PAGE_CACHE_KIB:d}")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _integrity_check(conn: sqlite3.Connection) -> str:
    return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall())


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _settings(conn: sqlite3.Connection) -> JournalSettings:
    synchronous = int(_pragma(conn, "synchronous"))
    return JournalSettings(
        journal_mode=str(_pragma(conn, "journal_mode")),
        synchronous=_SYNCHRONOUS_NAMES.get(synchronous, str(synchronous)),
        foreign_keys=bool(_pragma(conn, "foreign_keys")),
        schema_version=int(_pragma(conn, "user_version")),
        page_cache_kib=-int(_pragma(conn, "cache_size")),
    )
