"""The SQLite transaction journal (stdlib :mod:`sqlite3`), used from asyncio.

Durability (reliability-requirements.md §4, R1-R4):

* WAL with ``synchronous=FULL``: a COMMIT that returned survives a power cut, not only a
  process crash.  ``foreign_keys=ON``.
* ``isolation_level=None`` and an explicit ``BEGIN IMMEDIATE ... COMMIT`` around every write,
  so a write is exactly one transaction and never waits to upgrade a read lock.
* Every sqlite call runs on **one** dedicated worker thread that also created the
  connection, so the event loop never blocks on disk and calls are serialised in order.
* ``sqlite3.Error`` is translated to :class:`~misbridge.errors.JournalError` here and only here.
* State changes are compare-and-set on the current state, and a trigger refuses any change
  to a transaction in a final state (:mod:`misbridge.journal.schema`).

A write whose awaiting task is cancelled still runs to completion (or failure) on the worker
thread; re-read with :meth:`Journal.get` to learn which.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

from misbridge.ebuy import jsonio
from misbridge.errors import JournalError
from misbridge.journal.records import TransactionRecord, TransitionRecord, iso_utc, utc_now
from misbridge.journal.schema import immediate_transaction, migrate

__all__ = ["DuplicateTraceNoError", "Journal", "JournalSettings", "StateConflictError"]

_T = TypeVar("_T")

_BUSY_TIMEOUT_S: Final = 5.0  # another process (backup, ops shell) may hold the lock briefly
_SYNCHRONOUS_NAMES: Final = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}
_INTENT_EVENT: Final = "intent"


class DuplicateTraceNoError(JournalError):
    """An intent was recorded for a ``trace_no`` the journal already holds."""

    def __init__(self, trace_no: str) -> None:
        super().__init__(f"transaction {trace_no!r} is already in the journal")
        self.trace_no = trace_no


class StateConflictError(JournalError):
    """A compare-and-set state change found a different state (``actual=None``: no such row)."""

    def __init__(self, trace_no: str, expected: str, actual: str | None) -> None:
        found = "no such transaction" if actual is None else f"it is {actual!r}"
        super().__init__(f"transaction {trace_no!r}: expected state {expected!r} but {found}")
        self.trace_no = trace_no
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class JournalSettings:
    """The durability settings in force on the journal's connection."""

    journal_mode: str
    synchronous: str
    foreign_keys: bool
    schema_version: int


class Journal:
    """The durable record of every transaction and its state changes.

    Open with :meth:`open` (not the constructor) and :meth:`close` when done, or use
    ``async with``.  All methods are coroutines and may be called concurrently; they are
    executed one at a time, in call order, on the journal's thread.

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
    async def open(cls, path: Path, *, clock: Callable[[], datetime] = utc_now) -> Journal:
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

    async def __aenter__(self) -> Journal:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def record_intent(self, record: TransactionRecord) -> None:
        """Insert a new transaction and its first transitions row (``"" -> state``, ``intent``).

        Returns only after the COMMIT: the intent is durable.

        Raises:
            DuplicateTraceNoError: ``record.trace_no`` is already in the journal.
            JournalError: the write failed.
        """
        await self._run("record_intent", _insert_intent, record)

    async def record_transition(
        self,
        trace_no: str,
        from_state: str,
        to_state: str,
        event: str,
        *,
        masked_pan: str | None = None,
        card_type: str | None = None,
        response: dict[str, Any] | None = None,
        return_code: str | None = None,
        detail: str = "",
    ) -> None:
        """Move ``trace_no`` from ``from_state`` to ``to_state`` (compare-and-set) and log it.

        The optional columns are changed only when given (not ``None``).  The update and its
        transitions row are one transaction; this returns after the COMMIT.

        Raises:
            StateConflictError: the transaction is not in ``from_state`` (or does not exist).
            JournalError: the transaction is in a final state (the trigger refused), or the
                write failed.
        """
        change = _Change(
            trace_no=trace_no,
            from_state=from_state,
            to_state=to_state,
            event=event,
            at=self._now(),
            masked_pan=masked_pan,
            card_type=card_type,
            response_json=None if response is None else jsonio.dumps(response),
            return_code=return_code,
            detail=detail,
        )
        await self._run("record_transition", _compare_and_set, change)

    async def get(self, trace_no: str) -> TransactionRecord | None:
        """The transaction ``trace_no``, or ``None`` if the journal has no intent for it.

        Raises:
            JournalError: the read failed or the row is corrupt.
        """
        return await self._run("get", _select_transaction, trace_no)

    async def transitions(self, trace_no: str) -> list[TransitionRecord]:
        """The state changes of ``trace_no``, oldest first (empty if unknown).

        Raises:
            JournalError: the read failed.
        """
        return await self._run("transitions", _select_transitions, trace_no)

    async def list_by_states(self, states: Iterable[str]) -> list[TransactionRecord]:
        """Every transaction in one of ``states``, oldest first (e.g. for start-up recovery).

        Raises:
            JournalError: the read failed or a row is corrupt.
        """
        return await self._run("list_by_states", _select_by_states, tuple(str(s) for s in states))

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"``, or the problems found, one per line.

        Raises:
            JournalError: the check could not run.
        """
        return await self._run("integrity_check", _integrity_check)

    async def count(self) -> int:
        """The number of transactions in the journal.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("count", _count)

    async def settings(self) -> JournalSettings:
        """The journal mode, synchronous level, foreign-key enforcement and schema version in force.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("settings", _settings)

    def _now(self) -> str:
        try:
            return iso_utc(self._clock())
        except ValueError as err:
            raise JournalError(str(err)) from err

    async def _run(self, what: str, func: Callable[..., _T], *args: Any) -> _T:
        if self._closed:
            raise JournalError(f"journal {what}: the journal is closed")
        call = partial(func, self._conn, *args)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        except sqlite3.Error as err:
            raise JournalError(f"journal {what} failed: {err}") from err


# --- Everything below runs on the journal thread. ----------------------------------------


@dataclass(frozen=True)
class _Change:
    trace_no: str
    from_state: str
    to_state: str
    event: str
    at: str
    masked_pan: str | None
    card_type: str | None
    response_json: str | None
    return_code: str | None
    detail: str


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, timeout=_BUSY_TIMEOUT_S)
    try:
        conn.row_factory = sqlite3.Row
        mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if mode.lower() != "wal":
            raise JournalError(f"journal {path}: WAL mode refused (got {mode!r})")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def _insert_intent(conn: sqlite3.Connection, record: TransactionRecord) -> None:
    created_at, updated_at = iso_utc(record.created_at), iso_utc(record.updated_at)
    with immediate_transaction(conn):
        cursor = conn.execute(
            "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, masked_pan,"
            " card_type, response_json, return_code, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (trace_no) DO NOTHING",
            (
                record.trace_no,
                record.action,
                record.state,
                jsonio.dumps(record.request),
                record.request_hash,
                record.masked_pan,
                record.card_type,
                None if record.response is None else jsonio.dumps(record.response),
                record.return_code,
                created_at,
                updated_at,
            ),
        )
        if cursor.rowcount == 0:
            raise DuplicateTraceNoError(record.trace_no)
        _insert_transition(conn, record.trace_no, "", record.state, _INTENT_EVENT, created_at, "")


def _insert_transition(
    conn: sqlite3.Connection, trace_no: str, from_state: str, to_state: str, event: str, at: str, detail: str
) -> None:
    conn.execute(
        "INSERT INTO transitions (trace_no, from_state, to_state, event, at, detail) VALUES (?, ?, ?, ?, ?, ?)",
        (trace_no, from_state, to_state, event, at, detail),
    )


def _compare_and_set(conn: sqlite3.Connection, change: _Change) -> None:
    with immediate_transaction(conn):
        cursor = conn.execute(
            "UPDATE transactions SET state = :to_state, updated_at = :at,"
            " masked_pan = COALESCE(:masked_pan, masked_pan),"
            " card_type = COALESCE(:card_type, card_type),"
            " response_json = COALESCE(:response_json, response_json),"
            " return_code = COALESCE(:return_code, return_code)"
            " WHERE trace_no = :trace_no AND state = :from_state",
            vars(change),
        )
        if cursor.rowcount == 0:
            row = conn.execute("SELECT state FROM transactions WHERE trace_no = ?", (change.trace_no,)).fetchone()
            raise StateConflictError(change.trace_no, change.from_state, None if row is None else str(row[0]))
        _insert_transition(
            conn, change.trace_no, change.from_state, change.to_state, change.event, change.at, change.detail
        )


def _load_dict(text: str, what: str) -> dict[str, Any]:
    try:
        value = jsonio.loads(text)
    except jsonio.JSONDecodeError as err:
        raise JournalError(f"journal {what} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise JournalError(f"journal {what} is not a JSON object")
    return value


def _to_record(row: sqlite3.Row) -> TransactionRecord:
    trace_no = str(row["trace_no"])
    response_json = row["response_json"]
    try:
        return TransactionRecord(
            trace_no=trace_no,
            action=row["action"],
            state=row["state"],
            request=_load_dict(row["request_json"], f"request of {trace_no!r}"),
            request_hash=row["request_hash"],
            created_at=datetime.fromisoformat(row["created_at"]),
            updated_at=datetime.fromisoformat(row["updated_at"]),
            masked_pan=row["masked_pan"],
            card_type=row["card_type"],
            response=None if response_json is None else _load_dict(response_json, f"response of {trace_no!r}"),
            return_code=row["return_code"],
        )
    except (TypeError, ValueError) as err:  # a timestamp that is not ISO-8601 with an offset
        raise JournalError(f"journal row {trace_no!r} is corrupt: {err}") from err


def _select_transaction(conn: sqlite3.Connection, trace_no: str) -> TransactionRecord | None:
    row = conn.execute("SELECT * FROM transactions WHERE trace_no = ?", (trace_no,)).fetchone()
    return None if row is None else _to_record(row)


def _select_transitions(conn: sqlite3.Connection, trace_no: str) -> list[TransitionRecord]:
    rows = conn.execute(
        "SELECT id, trace_no, from_state, to_state, event, at, detail FROM transitions WHERE trace_no = ? ORDER BY id",
        (trace_no,),
    ).fetchall()
    try:
        return [
            TransitionRecord(
                id=row["id"],
                trace_no=row["trace_no"],
                from_state=row["from_state"],
                to_state=row["to_state"],
                event=row["event"],
                at=datetime.fromisoformat(row["at"]),
                detail=row["detail"],
            )
            for row in rows
        ]
    except ValueError as err:
        raise JournalError(f"journal transitions of {trace_no!r} are corrupt: {err}") from err


def _select_by_states(conn: sqlite3.Connection, states: tuple[str, ...]) -> list[TransactionRecord]:
    if not states:
        return []
    placeholders = ", ".join("?" * len(states))
    rows = conn.execute(
        f"SELECT * FROM transactions WHERE state IN ({placeholders}) ORDER BY created_at, trace_no",  # noqa: S608 - only "?" placeholders are formatted in
        states,
    ).fetchall()
    return [_to_record(row) for row in rows]


def _integrity_check(conn: sqlite3.Connection) -> str:
    return "\n".join(str(row[0]) for row in conn.execute("PRAGMA integrity_check").fetchall())


def _count(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0])


def _pragma(conn: sqlite3.Connection, name: str) -> Any:
    return conn.execute(f"PRAGMA {name}").fetchone()[0]


def _settings(conn: sqlite3.Connection) -> JournalSettings:
    synchronous = int(_pragma(conn, "synchronous"))
    return JournalSettings(
        journal_mode=str(_pragma(conn, "journal_mode")),
        synchronous=_SYNCHRONOUS_NAMES.get(synchronous, str(synchronous)),
        foreign_keys=bool(_pragma(conn, "foreign_keys")),
        schema_version=int(_pragma(conn, "user_version")),
    )
