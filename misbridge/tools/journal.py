"""``misbridge journal list|show|export|purge``: the journal for support and reconciliation.

``list``, ``show`` and ``export`` open the journal **read-only** (SQLite ``mode=ro``), so they
are safe while the daemon runs: they never take the write lock and never change a byte. When
the daemon is not running (no ``-wal``/``-shm`` file beside the database) the file is opened
``immutable`` as well, so a read as root does not leave root-owned ``-wal``/``-shm`` files the
service could not open afterwards.

What they print is masked: the journal holds no card data (the pad's encrypted fields are
never stored), only the masked PAN (first 6 / last 4); every value printed also passes the
log scrubber (:func:`misbridge.telemetry.logs.scrub_text`) as a second line of defence.

``purge`` deletes final transactions older than ``journal.retention_days`` through
:meth:`misbridge.journal.store.Journal.purge` (never a non-final one); the daemon can run the
same on a timer with :func:`run_retention`.
"""

from __future__ import annotations

import asyncio
import csv
import re
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import quote

from loguru import logger

from misbridge.ebuy import jsonio
from misbridge.ebuy.redaction import masked, scrub_text
from misbridge.errors import JournalError
from misbridge.journal.records import iso_utc, utc_now
from misbridge.journal.schema import FINAL_STATES
from misbridge.journal.store import Journal

__all__ = [
    "EXPORT_COLUMNS",
    "TransactionSummary",
    "export",
    "list_transactions",
    "open_readonly",
    "parse_since",
    "purge",
    "purgeable_count",
    "retention_cutoff",
    "run_retention",
    "show",
]

#: Columns of ``list`` and ``export``, in order.
EXPORT_COLUMNS: Final = (
    "traceNo", "action", "state", "returnCode", "maskedPan", "cardType", "totalAmount", "paidAmount", "orderNo",
    "createdAt", "updatedAt",
)  # fmt: skip
#: ``--state`` shorthands: every final state, or every state that is not final.
STATE_GROUPS: Final = {"final": FINAL_STATES, "open": None}
_RELATIVE = re.compile(r"(\d+)\s*([dhm])")
_UNITS: Final = {"d": "days", "h": "hours", "m": "minutes"}


@dataclass(frozen=True)
class TransactionSummary:
    """One line of ``list`` / ``export``: masked, no card data."""

    trace_no: str
    action: str
    state: str
    return_code: str
    masked_pan: str
    card_type: str
    total_amount: str
    paid_amount: str
    order_no: str
    created_at: str
    updated_at: str

    def as_row(self) -> dict[str, str]:
        """The summary keyed by :data:`EXPORT_COLUMNS`."""
        values = (
            self.trace_no, self.action, self.state, self.return_code, self.masked_pan, self.card_type,
            self.total_amount, self.paid_amount, self.order_no, self.created_at, self.updated_at,
        )  # fmt: skip
        return dict(zip(EXPORT_COLUMNS, values, strict=True))


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


def retention_cutoff(retention_days: int, *, now: datetime | None = None) -> datetime:
    """The moment before which final transactions are purged."""
    return (utc_now() if now is None else now) - timedelta(days=retention_days)


# --- masking ---------------------------------------------------------------------------------


def _text(value: Any) -> str:
    return "" if value is None else scrub_text(str(value))


def _json_field(text: str | None, key: str) -> Any:
    if not text:
        return None
    try:
        value = jsonio.loads(text)
    except jsonio.JSONDecodeError:
        return None
    return value.get(key) if isinstance(value, dict) else None


# --- list / export ---------------------------------------------------------------------------


def _summary(row: sqlite3.Row) -> TransactionSummary:
    return TransactionSummary(
        trace_no=_text(row["trace_no"]),
        action=_text(row["action"]),
        state=_text(row["state"]),
        return_code=_text(row["return_code"]),
        masked_pan=_text(row["masked_pan"]),
        card_type=_text(row["card_type"]),
        total_amount=_text(_json_field(row["request_json"], "totalAmount")),
        paid_amount=_text(_json_field(row["response_json"], "paidAmount")),
        order_no=_text(_json_field(row["response_json"], "orderNo")),
        created_at=_text(row["created_at"]),
        updated_at=_text(row["updated_at"]),
    )


def list_transactions(
    path: Path,
    *,
    since: datetime | None = None,
    state: str | None = None,
    limit: int | None = 50,
    newest_first: bool = True,
) -> list[TransactionSummary]:
    """Transactions created at or after ``since``, in ``state`` (or ``final``/``open``).

    Raises:
        JournalError: the journal cannot be read.
        ValueError: ``since`` is naive or ``limit`` is negative.
    """
    clauses: list[str] = []
    params: list[Any] = []
    if since is not None:
        clauses.append("created_at >= ?")
        params.append(iso_utc(since))
    if state is not None:
        group = STATE_GROUPS.get(state, (state,))
        placeholders = ", ".join("?" * len(FINAL_STATES if group is None else group))
        clauses.append(f"state {'NOT IN' if group is None else 'IN'} ({placeholders})")
        params.extend(FINAL_STATES if group is None else group)
    if limit is not None and limit < 0:
        raise ValueError("limit must not be negative")
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    order = "DESC" if newest_first else "ASC"
    query = f"SELECT * FROM transactions{where} ORDER BY created_at {order}, trace_no {order}"  # noqa: S608 - clauses are literals with "?" placeholders
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    with _reading(path) as conn:
        return [_summary(row) for row in conn.execute(query, params)]


def export(path: Path, out: TextIO, *, fmt: str, since: datetime | None = None, state: str | None = None) -> int:
    """Write every matching transaction, oldest first, as CSV or JSON; return how many.

    Raises:
        JournalError: the journal cannot be read.
        ValueError: ``fmt`` is not ``csv`` or ``json``.
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"unknown export format {fmt!r}: csv or json")
    rows = [s.as_row() for s in list_transactions(path, since=since, state=state, limit=None, newest_first=False)]
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=EXPORT_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        out.write(jsonio.pretty(rows) + "\n")
    return len(rows)


def format_table(rows: Iterable[TransactionSummary]) -> str:
    """``list``'s text table."""
    columns = ("traceNo", "createdAt", "action", "state", "returnCode", "maskedPan", "totalAmount")
    table = [list(columns)] + [[row.as_row()[c] for c in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in table)


# --- show ------------------------------------------------------------------------------------


def show(path: Path, trace_no: str) -> dict[str, Any] | None:
    """One transaction with its request, answer, transitions, backend calls and reversal; masked.

    ``trace_no`` may also be the traceNo of an inquiry or void misbridge sent: the original is shown.

    Raises:
        JournalError: the journal cannot be read.
    """
    with _reading(path) as conn:
        row = conn.execute("SELECT * FROM transactions WHERE trace_no = ?", (trace_no,)).fetchone()
        if row is None:
            call = conn.execute(
                "SELECT original_trace_no FROM backend_calls WHERE trace_no = ?", (trace_no,)
            ).fetchone()
            if call is None:
                return None
            row = conn.execute("SELECT * FROM transactions WHERE trace_no = ?", (call[0],)).fetchone()
        original = str(row["trace_no"])
        transitions = conn.execute(
            "SELECT from_state, to_state, event, at, detail FROM transitions WHERE trace_no = ? ORDER BY id",
            (original,),
        ).fetchall()
        calls = conn.execute(
            "SELECT trace_no, kind, state, return_code, response_json, created_at, updated_at FROM backend_calls"
            " WHERE original_trace_no = ? ORDER BY created_at, rowid",
            (original,),
        ).fetchall()
        reversal = conn.execute("SELECT * FROM reversals WHERE original_trace_no = ?", (original,)).fetchone()
    view: dict[str, Any] = {
        **_summary(row).as_row(),
        "request": _loads(row["request_json"]),
        "response": _loads(row["response_json"]),
        "transitions": [
            {"from": t["from_state"], "to": t["to_state"], "event": t["event"], "at": t["at"], "detail": t["detail"]}
            for t in transitions
        ],
        "backendCalls": [
            {
                "traceNo": c["trace_no"], "kind": c["kind"], "state": c["state"], "returnCode": c["return_code"],
                "response": _loads(c["response_json"]), "createdAt": c["created_at"], "updatedAt": c["updated_at"],
            }
            for c in calls
        ],
        "reversal": None if reversal is None else {
            "state": reversal["state"], "attempts": reversal["attempts"], "lastError": reversal["last_error"],
            "nextAttemptAt": reversal["next_attempt_at"], "createdAt": reversal["created_at"],
            "updatedAt": reversal["updated_at"],
        },
    }
    safe: dict[str, Any] = masked(view)
    return safe


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return jsonio.loads(text)
    except jsonio.JSONDecodeError:
        return text


# --- retention -------------------------------------------------------------------------------


def purgeable_count(path: Path, cutoff: datetime) -> int:
    """How many transactions :func:`purge` would delete now (read-only; for ``--dry-run``).

    Raises:
        JournalError: the journal cannot be read.
    """
    final = ", ".join("?" * len(FINAL_STATES))
    with _reading(path) as conn:
        row = conn.execute(
            f"SELECT COUNT(*) FROM transactions AS t WHERE state IN ({final}) AND updated_at < ?"  # noqa: S608 - "?" placeholders only
            " AND NOT EXISTS (SELECT 1 FROM reversals AS r WHERE r.original_trace_no = t.trace_no"
            " AND r.state <> 'done')",
            (*FINAL_STATES, iso_utc(cutoff)),
        ).fetchone()
    return int(row[0])


async def purge(journal: Journal, retention_days: int, *, now: datetime | None = None) -> int:
    """Purge final transactions older than ``retention_days``; log and return how many.

    Raises:
        JournalError: the purge failed (nothing of the failed batch is deleted).
    """
    cutoff = retention_cutoff(retention_days, now=now)
    deleted = await journal.purge(cutoff)
    logger.bind(retention_days=retention_days, cutoff=iso_utc(cutoff), purged=deleted).info(
        "journal retention: purged {} final transaction(s) last changed before {}", deleted, cutoff.date()
    )
    return deleted


async def run_retention(journal: Journal, retention_days: int, *, interval_s: float = 86400.0) -> None:
    """Purge at once, then every ``interval_s`` seconds, until cancelled (the daemon spawns this).

    A failed purge is logged and tried again at the next interval; it never stops the daemon.
    """
    while True:
        try:
            await purge(journal, retention_days, now=datetime.now(UTC))
        except JournalError as err:
            logger.error("journal retention: purge failed, will try again: {}", err)
        await asyncio.sleep(interval_s)
