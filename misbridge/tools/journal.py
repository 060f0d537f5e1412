"""``misbridge journal list|show|export|key-calls|purge|resolve``: the journal for support and reconciliation.

``list``, ``show``, ``export`` and ``key-calls`` open the journal **read-only** (SQLite ``mode=ro``), so they
are safe while the daemon runs: they never take the write lock and never change a byte. When
the daemon is not running (no ``-wal``/``-shm`` file beside the database) the file is opened
``immutable`` as well, so a read as root does not leave root-owned ``-wal``/``-shm`` files the
service could not open afterwards.

What they print is the journal's read side (:mod:`misbridge.journal.queries`, the same view the
daemon builds for the HTTP door), masked: the journal holds no card data (the pad's encrypted
fields are never stored), only the masked PAN (first 6 / last 4); every value printed also
passes the log scrubber's rules (:mod:`misbridge.ebuy.redaction`) as a second line of defence.

``key-calls`` (:func:`list_key_calls`) lists the requests misbridge made under a traceNo of its
own that belong to no transaction: the key downloads and daily sign-ins, and the end of day's
``batchUpload`` and ``summary`` (the ``key_calls`` table). It is not named ``calls``: ``show``
already lists a transaction's ``backendCalls`` (the inquiries, voids and options sent about
it), which are another table. The rows hold no key material, only the issued key's check value
(KCV); what is printed is named field by field (:data:`KEY_CALL_COLUMNS`).

POS lanes (schema v8): ``list``, ``export`` and ``key-calls`` take a
:class:`~misbridge.journal.lanes.LaneFilter` (``--lane NAME``, or ``--lane default`` for the
rows of the default lane, whose ``lane`` is empty); ``list`` shows a ``lane`` column when a row
it prints has one, ``export`` always has the ``lane`` column and ``show`` the ``lane`` key.

``purge`` (:mod:`misbridge.app.retention`) deletes final transactions older than
``journal.retention_days`` through :meth:`misbridge.journal.store.Journal.purge` (never a
non-final one), and ``resolve`` records an operator's decision on a ``needs_manual``
transaction (:meth:`misbridge.journal.store.Journal.resolve`); both open the journal writable,
which is safe while the daemon runs (WAL, busy timeout). :func:`purgeable_count` is the
read-only count for ``purge --dry-run``.
"""

from __future__ import annotations

import csv
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import quote

from misbridge.ebuy import jsonio
from misbridge.ebuy.redaction import scrub_text
from misbridge.errors import JournalError
from misbridge.journal import queries
from misbridge.journal.key_calls import DEFAULT_KEY_CALLS_LIMIT, select_key_calls
from misbridge.journal.lanes import LaneFilter
from misbridge.journal.queries import EXPORT_COLUMNS, STATE_FILTERS, STATE_GROUPS, TransactionSummary
from misbridge.journal.records import KeyCallKind, KeyCallRecord, utc_now
from misbridge.journal.schema import SchemaCompat, read_compat

__all__ = [
    "DEFAULT_KEY_CALLS_LIMIT",
    "EXPORT_COLUMNS",
    "KEY_CALL_COLUMNS",
    "NO_RESULT_YET",
    "STATE_FILTERS",
    "STATE_GROUPS",
    "TransactionSummary",
    "export",
    "format_key_calls",
    "key_call_row",
    "list_key_calls",
    "list_transactions",
    "open_readonly",
    "parse_since",
    "purgeable_count",
    "schema_compat",
    "show",
]

_RELATIVE = re.compile(r"(\d+)\s*([dhm])")
_UNITS: Final = {"d": "days", "h": "hours", "m": "minutes"}


# --- opening ---------------------------------------------------------------------------------


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection to the journal at ``path`` (see the module docstring).

    Raises:
        JournalError: the file does not exist or is not a readable SQLite journal.
    """
    if not path.is_file():
        raise JournalError(f"journal {path} does not exist")
    running = path.with_name(path.name + "-wal").exists() and path.with_name(path.name + "-shm").exists()
    uri = f"file:{quote(str(path.resolve()))}?mode=ro" + ("" if running else "&immutable=1")
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("SELECT 1 FROM transactions LIMIT 1").fetchall()
    except sqlite3.Error as err:
        raise JournalError(f"cannot read journal {path}: {err}") from err
    return conn


@contextmanager
def _reading(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(open_readonly(path)) as conn:
        try:
            yield conn
        except sqlite3.Error as err:
            raise JournalError(f"reading journal {path} failed: {err}") from err


def schema_compat(path: Path) -> SchemaCompat:
    """The journal's schema version and the oldest code allowed to open it; nothing is migrated or written.

    Raises:
        JournalError: the file does not exist or is not a readable SQLite journal.
    """
    with _reading(path) as conn:
        return read_compat(conn)


# --- parsing ---------------------------------------------------------------------------------


def parse_since(text: str, *, now: datetime | None = None) -> datetime:
    """``--since``: ``7d`` / ``12h`` / ``30m`` before now, or an ISO date or date-time (local if naive).

    Raises:
        ValueError: neither form.
    """
    relative = _RELATIVE.fullmatch(text.strip())
    if relative:
        moment = utc_now() if now is None else now
        return moment - timedelta(**{_UNITS[relative.group(2)]: int(relative.group(1))})
    try:
        parsed = datetime.fromisoformat(text.strip())
    except ValueError as err:
        raise ValueError(f"--since {text!r}: use 7d, 12h, 30m or an ISO date such as 2026-01-31") from err
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


# --- list / export ---------------------------------------------------------------------------


def list_transactions(
    path: Path,
    *,
    since: datetime | None = None,
    state: str | None = None,
    limit: int | None = 50,
    newest_first: bool = True,
    lane: LaneFilter | None = None,
) -> list[TransactionSummary]:
    """Transactions created at or after ``since``, in ``state`` (or ``final``/``open``), of ``lane`` (``None``: any).

    Raises:
        JournalError: the journal cannot be read.
        ValueError: ``since`` is naive, ``limit`` is negative or ``state`` is unknown (:data:`STATE_FILTERS`).
    """
    with _reading(path) as conn:
        return queries.summaries(conn, since=since, state=state, limit=limit, newest_first=newest_first, lane=lane)


def export(
    path: Path,
    out: TextIO,
    *,
    fmt: str,
    since: datetime | None = None,
    state: str | None = None,
    lane: LaneFilter | None = None,
) -> int:
    """Write every matching transaction, oldest first, as CSV or JSON; return how many.

    Raises:
        JournalError: the journal cannot be read.
        ValueError: ``fmt`` is not ``csv`` or ``json``, or ``state`` is unknown (:data:`STATE_FILTERS`).
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown export format {fmt!r}: csv or json")
    found = list_transactions(path, since=since, state=state, limit=None, newest_first=False, lane=lane)
    rows = [s.as_row() for s in found]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        out.write(jsonio.pretty(rows) + "\n")
    return len(rows)


def format_table(rows: Iterable[TransactionSummary]) -> str:
    """``list``'s text table; a ``lane`` column (``default`` for the default lane) when a row has a named lane.

    A one-lane journal's table is as it was before lanes.
    """
    lines = list(rows)
    columns: tuple[str, ...] = ("traceNo", "createdAt", "action", "state", "returnCode", "maskedPan", "totalAmount")
    named_lanes = any(row.lane for row in lines)
    if named_lanes:
        columns = (*columns, "lane")
    table = [list(columns)] + [[_cell(row, c) for c in columns] for row in lines]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table)


def _cell(row: TransactionSummary, column: str) -> str:
    value = row.as_row()[column]
    return LaneFilter(value or None).label if column == "lane" else value


# --- show ------------------------------------------------------------------------------------


def show(path: Path, trace_no: str) -> dict[str, Any] | None:
    """One transaction in full (:func:`misbridge.journal.queries.transaction_view`); masked.

    ``trace_no`` may also be the traceNo of an inquiry or void misbridge sent, or of a POS
    inquiry it forwarded: the original is shown, with the forwarded inquiries in ``posInquiries``.

    Raises:
        JournalError: the journal cannot be read.
    """
    with _reading(path) as conn:
        return queries.transaction_view(conn, trace_no)


# --- key-calls -------------------------------------------------------------------------------

#: The fields of a ``key-calls`` line, in order: the columns of its table and the keys of its JSON.
KEY_CALL_COLUMNS: Final = (
    "traceNo", "kind", "allocatedLocal", "allocatedUTC", "result", "returnCode", "keyKcv", "resultAtUTC",
)  # fmt: skip
#: What ``result`` says of a request still ``sent``: its traceNo was committed before sending, so
#: the backend may have it (a request in flight now, or one a crash or lost reply left).
NO_RESULT_YET: Final = "none yet: allocated, may have been sent"


def list_key_calls(
    path: Path,
    *,
    kind: KeyCallKind | None = None,
    since: datetime | None = None,
    limit: int = DEFAULT_KEY_CALLS_LIMIT,
    lane: LaneFilter | None = None,
) -> list[KeyCallRecord]:
    """misbridge's own requests (key downloads, sign-ins, end of day), newest first.

    Only ``kind`` ones when given, allocated at or after ``since``, of ``lane``, at most ``limit``
    (:func:`misbridge.journal.key_calls.select_key_calls`).

    Raises:
        JournalError: the journal cannot be read or a row is corrupt.
        ValueError: ``kind`` is unknown, ``since`` is naive or ``limit`` is negative.
    """
    with _reading(path) as conn:
        return select_key_calls(conn, limit, kind, since, lane)


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def key_call_row(call: KeyCallRecord) -> dict[str, str | None]:
    """``call`` keyed by :data:`KEY_CALL_COLUMNS`; ``None`` for what it does not have (yet).

    ``allocatedLocal`` is the allocation time in this machine's zone with its offset,
    ``allocatedUTC`` and ``resultAtUTC`` (when the result was recorded) in UTC; ``result`` is
    ``answered``, ``unknown`` (no usable reply) or ``None`` (none recorded: it may have been
    sent). ``keyKcv`` is a check value: it does not reveal the key.
    """
    answered = call.state != "sent"
    return {
        "traceNo": scrub_text(call.trace_no),
        "kind": call.kind,
        "allocatedLocal": call.created_at.astimezone().isoformat(timespec="seconds"),
        "allocatedUTC": _utc_text(call.created_at),
        "result": call.state if answered else None,
        "returnCode": None if call.return_code is None else scrub_text(call.return_code),
        "keyKcv": call.key_kcv,
        "resultAtUTC": _utc_text(call.updated_at) if answered else None,
    }


def format_key_calls(calls: Iterable[KeyCallRecord]) -> str:
    """``key-calls``' text table: ``-`` for a value a row lacks, :data:`NO_RESULT_YET` for no result.

    The columns are :data:`KEY_CALL_COLUMNS` but ``resultAtUTC`` (the JSON has it), to keep a
    line readable on a technician's terminal.
    """
    columns = KEY_CALL_COLUMNS[:-1]
    table = [list(columns)]
    for call in calls:
        row = key_call_row(call)
        row["result"] = row["result"] or NO_RESULT_YET
        table.append([row[column] or "-" for column in columns])
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table)


# --- retention -------------------------------------------------------------------------------


def purgeable_count(path: Path, cutoff: datetime) -> int:
    """How many transactions :func:`purge` would delete now (read-only; for ``--dry-run``).

    Raises:
        JournalError: the journal cannot be read.
    """
    with _reading(path) as conn:
        return queries.purgeable_count(conn, cutoff)
