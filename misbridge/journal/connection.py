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

**Lanes** (schema v8, :mod:`~misbridge.journal.lanes`): :meth:`JournalBase.for_lane` makes a
*view* of the same open journal for one POS lane: the same connection, worker thread and clock,
another :attr:`JournalBase.lane_filter`. The table modules write :attr:`JournalBase.lane_column`
in the ``lane`` column of the rows they create and pass :attr:`JournalBase.lane_filter` to the
reads that find work. The journal :meth:`JournalBase.open` returns has no filter and writes
``NULL``: exactly the journal of one lane.
"""

from __future__ import annotations

import asyncio
import copy
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
from misbridge.journal.lanes import LaneFilter, check_lane_name
from misbridge.journal.records import iso_utc, utc_now
from misbridge.journal.upgrade import BackupPolicy, upgrade_schema

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


@dataclass
class _Lifetime:
    """Whether the connection is closed: one object shared by a journal and all its lane views."""

    closed: bool = False


def iso(name: str, moment: datetime) -> str:
    """``moment`` as journal timestamp text; a naive ``moment`` is a :class:`JournalError` naming ``name``."""
    try:
        return iso_utc(moment)
    except ValueError as err:
        raise JournalError(f"journal {name}: {err}") from err


class JournalBase:
    """The connection, its one worker thread and the clock; see :class:`~misbridge.journal.store.Journal`.

    Open with :meth:`open` (not the constructor) and :meth:`close` when done, or use
    ``async with``. :meth:`for_lane` gives one POS lane's view of it.

    Args:
        conn: a connection made by the journal thread.
        executor: the one-thread executor that owns ``conn``.
        clock: returns the current timezone-aware time for ``updated_at`` and ``at``.
    """

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, clock: Callable[[], datetime]) -> None:
        self._conn = conn
        self._executor = executor
        self._clock = clock
        self._lifetime = _Lifetime()
        self._is_view = False
        self._lane_name: str | None = None
        self._lane_filter: LaneFilter | None = None  # None: every lane (the journal open() returns)

    @classmethod
    async def open(
        cls, path: Path, *, clock: Callable[[], datetime] = utc_now, backups: BackupPolicy | None = None
    ) -> Self:
        """Open (creating and migrating if needed) the journal file at ``path``.

        A journal at an older schema version is first copied to ``backups/`` next to it, as
        ``backups`` says (default :class:`~misbridge.journal.upgrade.BackupPolicy`: keep 5),
        then migrated and checked (:func:`~misbridge.journal.upgrade.upgrade_schema`). A newer
        one is opened without migrating when its ``min_reader`` allows this code.

        Raises:
            JournalError: the file cannot be opened, WAL cannot be enabled, the schema is
                newer than this code may read, there is no room for the backup or it cannot be
                written, or the migrated database fails its integrity or foreign-key check.
        """
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="misbridge-journal")
        opening = partial(_connect, path, backups or BackupPolicy(), clock())
        try:
            conn = await asyncio.get_running_loop().run_in_executor(executor, opening)
        except sqlite3.Error as err:
            executor.shutdown(wait=False)
            raise JournalError(f"cannot open journal {path}: {err}") from err
        except OSError as err:  # the backup's file or folder
            executor.shutdown(wait=False)
            raise JournalError(f"cannot back up journal {path} before its schema upgrade: {err}") from err
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(conn, executor, clock)

    def for_lane(self, name: str, *, default: bool) -> Self:
        """A view of this open journal for the POS lane ``name``: its rows only, where work is found.

        The view shares this journal's connection, worker thread and clock (its calls queue with
        every other call, in order). It differs in two ways:

        * the rows it creates carry the lane: ``record_intent``'s transaction, ``record_query``'s
          query, ``allocate_key_call``'s key request and ``record_pos_inquiry``'s forwarded
          inquiry get ``lane = name``, or ``NULL`` when ``default`` is true (the default lane
          writes what a one-lane journal writes);
        * the reads that find work see only the lane's rows: ``list_by_states``,
          ``due_reversals``, ``pending_reversals`` and ``count_reversals`` (a reversal is its
          transaction's lane's), ``unanswered_queries``, ``last_sign_in``, ``key_calls``, and
          ``day_rows`` unless given a lane; the default lane's view sees ``lane IS NULL``.

        Everything keyed by a traceNo stays journal-wide, so a traceNo is used once across all
        lanes and a void or refund finds its original whichever lane sold it: ``get``,
        ``transitions``, ``followers``, ``transaction_view``, ``reversal``, ``query``,
        ``pos_inquiries``, ``forwarded_inquiry``, ``calls``, ``barred_as``, the duplicate and
        barred checks of every write, and the traceNo counter of ``allocate_call`` and
        ``allocate_key_call``. ``count``, ``purge``, ``resolve`` and the compare-and-set moves
        act on the whole journal too.

        :meth:`close` on a view does nothing (nor does leaving ``async with`` on it): the
        connection is the journal's, closed by whoever opened it; once it is, every view's calls
        raise :class:`JournalError` as the journal's do.

        Raises:
            JournalError: ``name`` cannot name a lane (:func:`misbridge.journal.lanes.check_lane_name`),
                or a named lane (``default`` false) is called ``"default"``, the tools' name for
                the default lane.
        """
        try:
            lanes = LaneFilter.default() if default else LaneFilter.named(name)
            check_lane_name(name)
        except ValueError as err:
            raise JournalError(f"journal for_lane: {err}") from err
        view = copy.copy(self)  # shares the connection, executor, clock and lifetime
        view._is_view = True
        view._lane_name = None if default else name
        view._lane_filter = lanes
        return view

    @property
    def lane(self) -> str | None:
        """This view's lane name; ``None`` for the default lane's view and for the journal itself."""
        return self._lane_name

    @property
    def lane_filter(self) -> LaneFilter | None:
        """The rows this journal's work reads see: one lane's (a view), or ``None``, every lane."""
        return self._lane_filter

    @property
    def lane_column(self) -> str | None:
        """What the rows this journal creates hold in ``lane``: a named view's name, else ``NULL``."""
        return None if self._lane_filter is None else self._lane_filter.value

    async def close(self) -> None:
        """Finish queued calls, close the connection and stop the thread.  Idempotent.

        On a lane view (:meth:`for_lane`) it does nothing: the journal that opened the
        connection closes it.
        """
        if self._is_view or self._lifetime.closed:
            return
        self._lifetime.closed = True
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
        if self._lifetime.closed:
            raise JournalError(f"journal {what}: the journal is closed")
        call = partial(func, self._conn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as err:
            raise JournalError(f"journal {what} failed: {err}") from err


# --- Everything below runs on the journal thread. ----------------------------------------


def _connect(path: Path, backups: BackupPolicy, now: datetime) -> sqlite3.Connection:
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
        upgrade_schema(conn, path, backups, now)
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
