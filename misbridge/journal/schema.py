"""Journal schema: DDL, the guard triggers and ``PRAGMA user_version`` migrations.

The journal does not import :mod:`misbridge.core` (the import direction is core -> journal),
so the states the trigger treats as final are the constant :data:`FINAL_STATES` here; a
core unit test asserts it equals ``misbridge.core.kinds.JOURNALED_FINAL_STATES``.

The trigger is created by migration 1, so changing the final states later needs a new
migration that drops and recreates it.

Versions:

1. ``transactions`` and ``transitions``, and the final-state trigger.
2. What misbridge originates itself (issue #4): ``counters`` (the ``trace_serial`` that
   numbers every request misbridge sends, which only grows), ``backend_calls`` (one row per
   originated ``inquiry`` or void) and ``reversals`` (the durable store-and-forward void
   queue), each with triggers that keep the money-safety rules even against hand-written SQL.
3. What the POS asked the backend through misbridge (issue 10): ``pos_inquiries``, one row per
   POS ``inquiry`` forwarded to the backend (the original was not in the journal). The backend
   bars both traceNos of such an inquiry, so the rows are the record of traceNos a sale must not
   use: a trigger refuses a transaction with one, and the rows are never deleted.
4. The pass-through requests (the whole book): ``pos_queries``, one row per ``ecouponInquiry``,
   ``summary`` (``query`` kind) or ``batchUpload`` (``upload`` kind) the POS sent, keyed by its
   traceNo and committed ``sent`` before it leaves, then its one result by the kind's machine:
   ``answered`` (the reply, passed on unchanged) or ``unknown`` (no usable reply; never resent
   under that traceNo). They move nothing, so they are not ``transactions`` rows and the
   final-state trigger is unchanged; their ``request_hash`` tells a repeat from a conflicting
   request (MB41). Their traceNos are seen by the backend, so they are barred like a forwarded
   inquiry's: a trigger refuses a transaction with one and a query with a traceNo already used,
   and the rows are never deleted. ``pos_inquiries`` gains ``request_hash`` (NULL on rows from
   version 3), so the repeat of a forwarded inquiry gets its stored answer.
5. ``backend_calls.kind`` gains ``option`` (the second round of a QR sale with options).
6. misbridge's own key requests (issue 14): ``key_calls``, one row per ``downloadKey`` or
   ``signIn``, numbered from the same ``trace_serial`` as ``backend_calls`` and committed ``sent``
   before the request leaves, then ``answered`` or ``unknown``. They have no original and move no
   money, and no key material is stored: traceNo, kind, state, return code and times only. Their
   traceNos are barred like a call's (triggers refuse a transaction, call or query with one, and a
   key request with a used traceNo). The ``purges`` table becomes part of the schema and counts
   the ``key_calls`` rows a purge deletes.
7. ``key_calls.kind`` gains ``batchUpload`` and ``summary`` (issue 15, ``misbridge reconcile``):
   the end of day's own requests are numbered, barred and given one result exactly like a key
   request; they too have no original and move no money. The table is rebuilt with its rows, as
   version 5 rebuilt ``backend_calls``.
8. POS lanes (issue 16, :mod:`misbridge.journal.lanes`): ``transactions``, ``pos_queries``,
   ``key_calls`` and ``pos_inquiries`` gain a nullable ``lane`` (the lane whose pad, ``deviceNo``
   and ``shopNo`` the row's request went out with; ``NULL`` is the default lane, so every earlier
   row is the default lane's and a one-lane journal writes what it wrote before). A named lane is
   never ``''``. Indexes serve the reads that find one lane's work: transactions by state,
   unanswered queries, the latest sign-in. Columns are added, no table is rebuilt, so every
   trigger stays as it was. (A later rebuild of one of these tables must carry ``lane`` and make
   its ``*_by_lane`` index again.)
9. Expand/contract (issue 17, :mod:`misbridge.journal.upgrade`): ``schema_compat``, one row whose
   ``min_reader`` is the oldest schema version of code allowed to open this database. A release
   only *adds* (tables, nullable columns, indexes), which code of the version before can ignore,
   and leaves ``min_reader`` as it was; dropping or renaming happens in a later release, which
   raises ``min_reader`` past every version that still used the old shape. Code that finds a
   ``user_version`` newer than its own opens the file without migrating it when
   ``min_reader`` is at most its own version, and refuses it otherwise. ``min_reader`` starts at
   9, not 8: the code of version 8 predates the rule and refuses any newer ``user_version``.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Final

from misbridge.errors import JournalError

__all__ = [
    "CALL_KINDS",
    "CALL_STATES",
    "COMPAT_SINCE",
    "FINAL_STATES",
    "KEY_CALL_KINDS",
    "LANE_TABLES",
    "POS_INQUIRY_STATES",
    "POS_QUERY_ACTIONS",
    "PURGES_TABLE",
    "REVERSAL_STATES",
    "SCHEMA_VERSION",
    "TRACE_SERIAL",
    "SchemaCompat",
    "immediate_transaction",
    "migrate",
    "read_compat",
    "schema_v1",
    "schema_v2",
    "schema_v3",
    "schema_v4",
    "schema_v5",
    "schema_v6",
    "schema_v7",
    "schema_v8",
    "schema_v9",
]

FINAL_STATES: Final[tuple[str, ...]] = ("approved", "declined", "aborted", "voided")
"""States no transaction may leave; enforced by the ``transactions_final_is_final`` trigger."""

SCHEMA_VERSION: Final = 9
"""The ``PRAGMA user_version`` that :func:`migrate` brings a database to."""

COMPAT_SINCE: Final = 9
"""The first version with the ``schema_compat`` table (its ``min_reader``)."""

TRACE_SERIAL: Final = "trace_serial"
"""The ``counters`` row that numbers the requests misbridge originates; it never goes down."""

CALL_KINDS: Final[tuple[str, ...]] = ("inquiry", "void", "option")
"""The requests misbridge originates (``backend_calls.kind``); ``option`` since version 5."""
_V2_CALL_KINDS: Final[tuple[str, ...]] = ("inquiry", "void")

CALL_STATES: Final[tuple[str, ...]] = ("sent", "answered", "unknown")
"""``backend_calls.state``: ``sent`` until the one result, ``answered`` or ``unknown``."""

REVERSAL_STATES: Final[tuple[str, ...]] = ("pending", "done", "needs_manual")
"""``reversals.state``: ``done`` is final, a ``pending`` entry is never deleted."""

POS_INQUIRY_STATES: Final[tuple[str, ...]] = CALL_STATES
"""``pos_inquiries.state``: ``sent`` (committed before the request leaves), then ``answered`` or ``unknown``."""

POS_QUERY_ACTIONS: Final[tuple[str, ...]] = ("ecouponInquiry", "summary", "batchUpload")
"""The actions whose requests are ``pos_queries`` rows (``pos_queries.action``)."""

KEY_CALL_KINDS: Final[tuple[str, ...]] = ("downloadKey", "signIn", "batchUpload", "summary")
"""The requests without an original misbridge originates (``key_calls.kind``): the key requests since
version 6, the end of day's ``batchUpload`` and ``summary`` since version 7."""
_V6_KEY_CALL_KINDS: Final[tuple[str, ...]] = ("downloadKey", "signIn")

PURGES_TABLE: Final = """CREATE TABLE IF NOT EXISTS purges (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    cutoff        TEXT NOT NULL,
    transactions  INTEGER NOT NULL DEFAULT 0,
    transitions   INTEGER NOT NULL DEFAULT 0,
    backend_calls INTEGER NOT NULL DEFAULT 0,
    reversals     INTEGER NOT NULL DEFAULT 0
) STRICT"""
"""The retention purge's own record (R16: the purge is itself journaled): one row per purge run.

Up to version 5 the first :meth:`~misbridge.journal.store.Journal.purge` created it (``IF NOT
EXISTS``); migration 6 adopts it (creating it if no purge ever ran) and adds the ``key_calls``
count, so from version 6 on it is always there.
"""

_STATE_NAME = re.compile(r"[a-z][a-z0-9_]*")
_ACTION_NAME = re.compile(r"[a-z][A-Za-z0-9]*")


def _sql_list(states: Sequence[str], name: re.Pattern[str] = _STATE_NAME) -> str:
    # Trigger bodies cannot take bound parameters, so the names are checked, then quoted.
    bad = [state for state in states if not name.fullmatch(state)]
    if bad or not states:
        raise ValueError(f"final states must be non-empty lower_snake names, got {list(states)!r}")
    return ", ".join(f"'{state}'" for state in states)


def _backend_calls_table(name: str, kinds: Sequence[str]) -> str:
    return f"""CREATE TABLE {name} (
            trace_no          TEXT PRIMARY KEY NOT NULL,
            original_trace_no TEXT NOT NULL REFERENCES transactions (trace_no),
            kind              TEXT NOT NULL CHECK (kind IN ({_sql_list(kinds)})),
            state             TEXT NOT NULL CHECK (state IN ({_sql_list(CALL_STATES)})),
            return_code       TEXT,
            response_json     TEXT,
            created_at        TEXT NOT NULL,
            updated_at        TEXT NOT NULL
        ) STRICT"""


_BACKEND_CALLS_INDEX: Final = "CREATE INDEX backend_calls_by_original ON backend_calls (original_trace_no, created_at)"
_BACKEND_CALLS_NEW: Final = """CREATE TRIGGER backend_calls_trace_no_is_new
            BEFORE INSERT ON backend_calls
            WHEN EXISTS (SELECT 1 FROM transactions WHERE trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo is already used by a transaction');
            END"""
_BACKEND_CALLS_RESULT_FINAL: Final = """CREATE TRIGGER backend_calls_result_is_final
            BEFORE UPDATE ON backend_calls
            WHEN OLD.state <> 'sent'
            BEGIN
                SELECT RAISE(ABORT, 'backend call already has its result');
            END"""


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


def schema_v2(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 1 to version 2: traceNo serial, backend calls, reversals.

    ``final_states`` is not used (the final-state trigger belongs to version 1); it is taken
    so every migration step has the same signature.

    Guards, as triggers so that hand-written SQL cannot break them either:

    * ``trace_serial`` only grows and no counter is renamed or deleted, so no serial is reused;
    * a misbridge-originated traceNo never equals a POS traceNo in ``transactions``;
    * a backend call gets exactly one result: once not ``sent``, its row does not change;
    * a ``done`` reversal never changes again, ``attempts`` never goes down, and a
      ``pending`` reversal is never deleted (store-and-forward: never dropped).
    """
    del final_states  # same signature as schema_v1
    return [
        """CREATE TABLE counters (
            name  TEXT PRIMARY KEY NOT NULL,
            value INTEGER NOT NULL CHECK (value >= 0)
        ) STRICT""",
        f"INSERT INTO counters (name, value) VALUES ('{TRACE_SERIAL}', 0)",  # noqa: S608 - a module constant
        """CREATE TRIGGER counters_only_grow
            BEFORE UPDATE ON counters
            WHEN NEW.value < OLD.value OR NEW.name IS NOT OLD.name
            BEGIN
                SELECT RAISE(ABORT, 'a counter only grows');
            END""",
        """CREATE TRIGGER counters_are_kept
            BEFORE DELETE ON counters
            BEGIN
                SELECT RAISE(ABORT, 'a counter is never deleted');
            END""",
        _backend_calls_table("backend_calls", _V2_CALL_KINDS),
        _BACKEND_CALLS_INDEX,
        _BACKEND_CALLS_NEW,
        """CREATE TRIGGER transactions_trace_no_is_new
            BEFORE INSERT ON transactions
            WHEN EXISTS (SELECT 1 FROM backend_calls WHERE trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo is already used by a backend call');
            END""",
        _BACKEND_CALLS_RESULT_FINAL,
        f"""CREATE TABLE reversals (
            original_trace_no TEXT PRIMARY KEY NOT NULL REFERENCES transactions (trace_no),
            state             TEXT NOT NULL CHECK (state IN ({_sql_list(REVERSAL_STATES)})),
            attempts          INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
            next_attempt_at   TEXT NOT NULL,
            created_at        TEXT NOT NULL,
            updated_at        TEXT NOT NULL,
            last_error        TEXT NOT NULL DEFAULT ''
        ) STRICT""",
        "CREATE INDEX reversals_by_state ON reversals (state, next_attempt_at)",
        """CREATE TRIGGER reversals_done_is_final
            BEFORE UPDATE ON reversals
            WHEN OLD.state = 'done'
            BEGIN
                SELECT RAISE(ABORT, 'reversal is done');
            END""",
        """CREATE TRIGGER reversals_attempts_only_grow
            BEFORE UPDATE OF attempts ON reversals
            WHEN NEW.attempts < OLD.attempts
            BEGIN
                SELECT RAISE(ABORT, 'reversal attempts only grow');
            END""",
        """CREATE TRIGGER reversals_pending_is_kept
            BEFORE DELETE ON reversals
            WHEN OLD.state = 'pending'
            BEGIN
                SELECT RAISE(ABORT, 'a pending reversal is never dropped');
            END""",
    ]


def schema_v3(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 2 to version 3: the POS inquiries forwarded to the backend.

    ``final_states`` is not used (same signature as every step).

    Guards, as triggers:

    * a transaction is never created with a traceNo the backend saw in a forwarded inquiry, as
      the inquiry's own traceNo or as its ``originalTraceNo`` (the backend would refuse the sale
      as a duplicate after the customer typed the PIN);
    * an inquiry is forwarded only about an original the journal does not hold;
    * a forwarded inquiry gets exactly one result, and its row is never deleted.
    """
    del final_states  # same signature as schema_v1
    return [
        f"""CREATE TABLE pos_inquiries (
            id                INTEGER PRIMARY KEY AUTOINCREMENT,
            trace_no          TEXT NOT NULL,
            original_trace_no TEXT NOT NULL,
            state             TEXT NOT NULL CHECK (state IN ({_sql_list(POS_INQUIRY_STATES)})),
            return_code       TEXT,
            response_json     TEXT,
            created_at        TEXT NOT NULL,
            updated_at        TEXT NOT NULL
        ) STRICT""",
        "CREATE INDEX pos_inquiries_by_original ON pos_inquiries (original_trace_no)",
        "CREATE INDEX pos_inquiries_by_trace_no ON pos_inquiries (trace_no)",
        """CREATE TRIGGER transactions_trace_no_not_barred
            BEFORE INSERT ON transactions
            WHEN EXISTS (SELECT 1 FROM pos_inquiries
                         WHERE original_trace_no = NEW.trace_no OR trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo was seen by the backend in a forwarded inquiry');
            END""",
        """CREATE TRIGGER pos_inquiries_original_is_unknown
            BEFORE INSERT ON pos_inquiries
            WHEN EXISTS (SELECT 1 FROM transactions WHERE trace_no = NEW.original_trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'the original is in the journal: answer from it');
            END""",
        """CREATE TRIGGER pos_inquiries_result_is_final
            BEFORE UPDATE ON pos_inquiries
            WHEN OLD.state <> 'sent'
            BEGIN
                SELECT RAISE(ABORT, 'forwarded inquiry already has its result');
            END""",
        """CREATE TRIGGER pos_inquiries_are_kept
            BEFORE DELETE ON pos_inquiries
            BEGIN
                SELECT RAISE(ABORT, 'a forwarded inquiry is never deleted: it records barred traceNos');
            END""",
    ]


def schema_v4(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 3 to version 4: the pass-through queries and uploads.

    ``final_states`` is not used (same signature as every step).

    Guards, as triggers:

    * a query's traceNo is new: no transaction, request misbridge sent or forwarded inquiry has
      it (the backend refuses a traceNo it has seen), and no transaction is created with a
      query's traceNo;
    * a query gets exactly one result, and its row is never deleted.
    """
    del final_states  # same signature as schema_v1
    return [
        f"""CREATE TABLE pos_queries (
            trace_no      TEXT PRIMARY KEY NOT NULL,
            action        TEXT NOT NULL CHECK (action IN ({_sql_list(POS_QUERY_ACTIONS, _ACTION_NAME)})),
            state         TEXT NOT NULL CHECK (state IN ({_sql_list(POS_INQUIRY_STATES)})),
            request_json  TEXT NOT NULL,
            request_hash  TEXT NOT NULL,
            return_code   TEXT,
            response_json TEXT,
            created_at    TEXT NOT NULL,
            updated_at    TEXT NOT NULL
        ) STRICT""",
        """CREATE TRIGGER pos_queries_trace_no_is_new
            BEFORE INSERT ON pos_queries
            WHEN EXISTS (SELECT 1 FROM transactions WHERE trace_no = NEW.trace_no)
              OR EXISTS (SELECT 1 FROM backend_calls WHERE trace_no = NEW.trace_no)
              OR EXISTS (SELECT 1 FROM pos_inquiries
                         WHERE trace_no = NEW.trace_no OR original_trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo is already used');
            END""",
        """CREATE TRIGGER transactions_trace_no_not_queried
            BEFORE INSERT ON transactions
            WHEN EXISTS (SELECT 1 FROM pos_queries WHERE trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo was seen by the backend in a query');
            END""",
        """CREATE TRIGGER pos_queries_result_is_final
            BEFORE UPDATE ON pos_queries
            WHEN OLD.state <> 'sent'
            BEGIN
                SELECT RAISE(ABORT, 'query already has its result');
            END""",
        """CREATE TRIGGER pos_queries_are_kept
            BEFORE DELETE ON pos_queries
            BEGIN
                SELECT RAISE(ABORT, 'a query is never deleted: it records a traceNo the backend saw');
            END""",
        "ALTER TABLE pos_inquiries ADD COLUMN request_hash TEXT",
    ]


def schema_v5(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 4 to version 5: ``backend_calls.kind`` gains ``option``.

    The table is rebuilt with its rows; dropping it drops its index and its own two triggers,
    which are made again.  ``legacy_alter_table`` keeps the rename from re-checking the other
    tables' triggers that name ``backend_calls`` (they resolve to the new table by name).
    """
    del final_states  # same signature as schema_v1
    columns = "trace_no, original_trace_no, kind, state, return_code, response_json, created_at, updated_at"
    return [
        "PRAGMA legacy_alter_table = ON",
        _backend_calls_table("backend_calls_v5", CALL_KINDS),
        f"INSERT INTO backend_calls_v5 ({columns}) SELECT {columns} FROM backend_calls",  # noqa: S608 - constants
        "DROP TABLE backend_calls",
        "ALTER TABLE backend_calls_v5 RENAME TO backend_calls",
        "PRAGMA legacy_alter_table = OFF",
        _BACKEND_CALLS_INDEX,
        _BACKEND_CALLS_NEW,
        _BACKEND_CALLS_RESULT_FINAL,
    ]


def _trace_no_not_keyed(table: str) -> str:
    # A trigger of its own beside the ones ``table`` has: adding it leaves the earlier
    # versions' triggers as they are.
    return f"""CREATE TRIGGER {table}_trace_no_not_keyed
            BEFORE INSERT ON {table}
            WHEN EXISTS (SELECT 1 FROM key_calls WHERE trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo is already used by a key request');
            END"""  # noqa: S608 - table is a literal of schema_v6


def _key_calls_table(name: str, kinds: Sequence[str]) -> str:
    return f"""CREATE TABLE {name} (
            trace_no    TEXT PRIMARY KEY NOT NULL,
            kind        TEXT NOT NULL CHECK (kind IN ({_sql_list(kinds, _ACTION_NAME)})),
            state       TEXT NOT NULL CHECK (state IN ({_sql_list(CALL_STATES)})),
            return_code TEXT,
            key_kcv     TEXT CHECK (key_kcv IS NULL OR (length(key_kcv) = 6 AND NOT key_kcv GLOB '*[^0-9A-F]*')),
            created_at  TEXT NOT NULL,
            updated_at  TEXT NOT NULL
        ) STRICT"""


_KEY_CALLS_NEW: Final = """CREATE TRIGGER key_calls_trace_no_is_new
            BEFORE INSERT ON key_calls
            WHEN EXISTS (SELECT 1 FROM transactions WHERE trace_no = NEW.trace_no)
              OR EXISTS (SELECT 1 FROM backend_calls WHERE trace_no = NEW.trace_no)
              OR EXISTS (SELECT 1 FROM pos_inquiries
                         WHERE trace_no = NEW.trace_no OR original_trace_no = NEW.trace_no)
              OR EXISTS (SELECT 1 FROM pos_queries WHERE trace_no = NEW.trace_no)
            BEGIN
                SELECT RAISE(ABORT, 'traceNo is already used');
            END"""
_KEY_CALLS_RESULT_FINAL: Final = """CREATE TRIGGER key_calls_result_is_final
            BEFORE UPDATE ON key_calls
            WHEN OLD.state <> 'sent'
            BEGIN
                SELECT RAISE(ABORT, 'key request already has its result');
            END"""


def schema_v6(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 5 to version 6: misbridge's own key requests (issue 14).

    ``final_states`` is not used (same signature as every step).

    Guards, as triggers:

    * a key request's traceNo is new: no transaction, request misbridge sent, forwarded inquiry
      or query has it; and no transaction, call or query is created with a key request's traceNo
      (the backend refuses a traceNo it has seen);
    * a key request gets exactly one result: once not ``sent``, its row does not change.

    The ``purges`` table, made by a purge (:data:`PURGES_TABLE`) or here if none ever ran, gains
    the count of ``key_calls`` rows each purge deleted.
    """
    del final_states  # same signature as schema_v1
    return [
        _key_calls_table("key_calls", _V6_KEY_CALL_KINDS),
        _KEY_CALLS_NEW,
        _KEY_CALLS_RESULT_FINAL,
        *(_trace_no_not_keyed(table) for table in ("transactions", "backend_calls", "pos_queries")),
        PURGES_TABLE,
        "ALTER TABLE purges ADD COLUMN key_calls INTEGER NOT NULL DEFAULT 0",
    ]


def schema_v7(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 6 to version 7: ``key_calls.kind`` gains ``batchUpload`` and ``summary``.

    The table is rebuilt with its rows, as :func:`schema_v5` rebuilt ``backend_calls``: dropping
    it drops its own two triggers, which are made again; the other tables' triggers that name
    ``key_calls`` resolve to the new table by name (``legacy_alter_table``).
    """
    del final_states  # same signature as schema_v1
    columns = "trace_no, kind, state, return_code, key_kcv, created_at, updated_at"
    return [
        "PRAGMA legacy_alter_table = ON",
        _key_calls_table("key_calls_v7", KEY_CALL_KINDS),
        f"INSERT INTO key_calls_v7 ({columns}) SELECT {columns} FROM key_calls",  # noqa: S608 - constants
        "DROP TABLE key_calls",
        "ALTER TABLE key_calls_v7 RENAME TO key_calls",
        "PRAGMA legacy_alter_table = OFF",
        _KEY_CALLS_NEW,
        _KEY_CALLS_RESULT_FINAL,
    ]


LANE_TABLES: Final[tuple[str, ...]] = ("transactions", "pos_queries", "key_calls", "pos_inquiries")
"""The tables whose rows carry the lane they belong to (``lane``, version 8)."""


def schema_v8(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 7 to version 8: the ``lane`` of a row (issue 16).

    ``final_states`` is not used (same signature as every step). ``ADD COLUMN`` gives every
    existing row ``NULL``, the default lane, and leaves the tables, their triggers and their
    rows as they are; the step and its ``user_version`` are one transaction, as every step.
    """
    del final_states  # same signature as schema_v1
    return [
        *(f"ALTER TABLE {table} ADD COLUMN lane TEXT CHECK (lane <> '')" for table in LANE_TABLES),
        # list_by_states: one lane's transactions in some states, oldest first
        "CREATE INDEX transactions_by_lane ON transactions (lane, state, created_at)",
        # unanswered_queries: one lane's queries still 'sent', oldest first
        "CREATE INDEX pos_queries_by_lane ON pos_queries (lane, state, created_at)",
        # last_sign_in and key_calls: one lane's requests of a kind, newest first
        "CREATE INDEX key_calls_by_lane ON key_calls (lane, kind, created_at)",
    ]


def schema_v9(final_states: Sequence[str] = FINAL_STATES) -> list[str]:
    """The statements that take version 8 to version 9: ``schema_compat``, the expand/contract record.

    ``final_states`` is not used (same signature as every step). One row (``only_row = 1``):
    ``min_reader``, the oldest schema version of code that may open the database. It only
    grows (a contract step raises it; nothing lowers it, a rollback included) and the row is
    never deleted, as triggers guard.
    """
    del final_states  # same signature as schema_v1
    return [
        """CREATE TABLE schema_compat (
            only_row   INTEGER PRIMARY KEY NOT NULL CHECK (only_row = 1),
            min_reader INTEGER NOT NULL CHECK (min_reader >= 1)
        ) STRICT""",
        f"INSERT INTO schema_compat (only_row, min_reader) VALUES (1, {COMPAT_SINCE:d})",  # noqa: S608 - a module constant
        """CREATE TRIGGER schema_compat_only_grows
            BEFORE UPDATE ON schema_compat
            WHEN NEW.min_reader < OLD.min_reader OR NEW.only_row IS NOT OLD.only_row
            BEGIN
                SELECT RAISE(ABORT, 'min_reader only grows');
            END""",
        """CREATE TRIGGER schema_compat_is_kept
            BEFORE DELETE ON schema_compat
            BEGIN
                SELECT RAISE(ABORT, 'the schema_compat row is never deleted');
            END""",
    ]


_MIGRATIONS: Final[dict[int, Callable[[Sequence[str]], list[str]]]] = {
    1: schema_v1,
    2: schema_v2,
    3: schema_v3,
    4: schema_v4,
    5: schema_v5,
    6: schema_v6,
    7: schema_v7,
    8: schema_v8,
    9: schema_v9,
}
"""Statements that take a database from version ``n - 1`` to version ``n``."""


@dataclass(frozen=True)
class SchemaCompat:
    """A database's schema version and the oldest schema version of code allowed to open it.

    ``min_reader`` comes from ``schema_compat`` (version 9 on). Before version 9 there is no
    such row and code of an older schema refused a newer ``user_version`` outright, so a file
    of version ``n`` < 9 is readable by code of schema ``n`` or later (and migrated by it);
    so is a newer file that lacks the row. An empty file (version 0) is readable by any code.
    """

    version: int
    min_reader: int

    def readable_by(self, known: int) -> bool:
        """Whether code whose :data:`SCHEMA_VERSION` is ``known`` may open the database."""
        return self.version <= known or self.min_reader <= known

    def refusal(self, where: str, known: int = SCHEMA_VERSION) -> JournalError:
        """The error of code of schema ``known`` that may not open this database (``where`` names it)."""
        return JournalError(
            f"{where}: this misbridge refuses to open a newer schema than it knows: the journal is at schema "
            f"version {self.version} and needs code of schema {self.min_reader} or later, this misbridge knows "
            f"{known}; upgrade misbridge, or roll back with the backup taken before the upgrade (the journal's "
            "backups/ folder)"
        )

    def describe(self, known: int = SCHEMA_VERSION) -> str:
        """One line for people and package scripts: the version, who may read it, what this code knows."""
        return f"schema {self.version}, readable by code >= {self.min_reader}, this misbridge knows {known}"


def read_compat(conn: sqlite3.Connection) -> SchemaCompat:
    """The database's :class:`SchemaCompat`, read without changing anything (any connection, read-only too).

    Raises:
        sqlite3.Error: the caller translates it.
    """
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version < COMPAT_SINCE:
        return SchemaCompat(version, version)
    has_table = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_compat'").fetchone()
    row = conn.execute("SELECT min_reader FROM schema_compat WHERE only_row = 1").fetchone() if has_table else None
    # A newer file without the row promises nothing to older code: it needs its own version.
    return SchemaCompat(version, version if row is None else int(row[0]))


def migrate(
    conn: sqlite3.Connection,
    final_states: Sequence[str] = FINAL_STATES,
    *,
    verify: Callable[[sqlite3.Connection], None] | None = None,
) -> int:
    """Bring the database on ``conn`` to :data:`SCHEMA_VERSION`; return the version found.

    Each step runs in its own ``BEGIN IMMEDIATE`` transaction together with its
    ``user_version`` bump, so a crash leaves the database at a whole version.  ``conn``
    must have ``isolation_level=None``.

    A database newer than :data:`SCHEMA_VERSION` is left as it is when its ``min_reader``
    allows this code (an additive change, :class:`SchemaCompat`), and refused otherwise.

    ``verify`` runs inside the last step's transaction, after its statements and before its
    COMMIT: if it raises, that step is rolled back, so a database that fails it is never at
    :data:`SCHEMA_VERSION` and every later start checks it again (rather than one failed start
    followed by a start that finds nothing left to migrate).

    Raises:
        JournalError: the database was written by a newer misbridge that this one may not read,
            or ``verify`` raised it.
        sqlite3.Error: the caller translates it.
    """
    found = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if found > SCHEMA_VERSION:
        compat = read_compat(conn)
        if not compat.readable_by(SCHEMA_VERSION):
            raise compat.refusal("journal")
        return found
    for version in range(found + 1, SCHEMA_VERSION + 1):
        last_check = verify if version == SCHEMA_VERSION else None
        _apply(conn, version, _MIGRATIONS[version](final_states), last_check)
    return found


def _apply(
    conn: sqlite3.Connection,
    version: int,
    statements: list[str],
    verify: Callable[[sqlite3.Connection], None] | None = None,
) -> None:
    with immediate_transaction(conn):
        for statement in statements:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version:d}")
        if verify is not None:
            verify(conn)


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
