"""Row helpers the table modules share: JSON columns, timestamps, and the requests the backend saw.

``backend_calls`` (requests misbridge originated), ``pos_inquiries`` (POS inquiries it
forwarded) and ``pos_queries`` (POS queries and uploads it passed on) have the same life: a row
committed ``sent`` before the request leaves, then exactly one result, ``answered``
(``return_code`` and ``response`` hold the reply) or ``unknown``.
:func:`request_fields` reads the columns they share and :func:`record_result` writes the one
result, compare-and-set on ``sent``.  Everything here runs on the journal thread.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from misbridge.ebuy import jsonio
from misbridge.errors import JournalError
from misbridge.journal.records import storable
from misbridge.journal.schema import immediate_transaction

__all__ = [
    "BACKEND_CALLS",
    "POS_INQUIRIES",
    "POS_QUERIES",
    "SentRequests",
    "exists",
    "load_dict",
    "record_result",
    "request_fields",
    "response_json",
    "time_of",
]


def exists(conn: sqlite3.Connection, query: str, key: str) -> bool:
    """Whether ``query`` (one ``?``) finds a row for ``key``."""
    return conn.execute(query, (key,)).fetchone() is not None


def response_json(response: dict[str, Any] | None) -> str | None:
    """The text the journal stores for ``response``: its :func:`~misbridge.journal.records.storable` JSON."""
    return None if response is None else jsonio.dumps(storable(response))


def load_dict(text: str, what: str) -> dict[str, Any]:
    """The JSON object in ``text``.

    Raises:
        JournalError: ``text`` is not JSON or not an object (``what`` names the column).
    """
    try:
        value = jsonio.loads(text)
    except jsonio.JSONDecodeError as err:
        raise JournalError(f"journal {what} is not JSON: {err}") from err
    if not isinstance(value, dict):
        raise JournalError(f"journal {what} is not a JSON object")
    return value


def time_of(row: sqlite3.Row, column: str) -> datetime:
    """The timestamp in ``column`` (raises ``ValueError`` or ``TypeError`` if it is not ISO-8601)."""
    return datetime.fromisoformat(row[column])


def request_fields(row: sqlite3.Row, what: str) -> dict[str, Any]:
    """The columns ``backend_calls`` and ``pos_inquiries`` share, as record keyword arguments.

    Raises:
        JournalError: the response is not a JSON object (``what`` names the row).
        ValueError: a timestamp is not ISO-8601 (the caller names the corrupt row).
    """
    text = row["response_json"]
    return {
        "trace_no": str(row["trace_no"]),
        "original_trace_no": row["original_trace_no"],
        "state": row["state"],
        "return_code": row["return_code"],
        "response": None if text is None else load_dict(text, f"response of {what}"),
        "created_at": time_of(row, "created_at"),
        "updated_at": time_of(row, "updated_at"),
    }


@dataclass(frozen=True)
class SentRequests:
    """A table of requests the backend saw: its name, key column and how a missing row is named."""

    table: str
    key: str
    missing: str


BACKEND_CALLS: Final = SentRequests("backend_calls", "trace_no", "there is no such call")
POS_INQUIRIES: Final = SentRequests("pos_inquiries", "id", "there is no such row")
POS_QUERIES: Final = SentRequests("pos_queries", "trace_no", "there is no such query")


def record_result(
    conn: sqlite3.Connection,
    rows: SentRequests,
    key: str | int,
    what: str,
    result: tuple[str, str | None, str | None, str],
) -> None:
    """Give the ``sent`` row ``key`` of ``rows`` its one result in one ``BEGIN IMMEDIATE`` transaction.

    ``result`` is ``(state, return_code, response_json, at)``; ``what`` names the row in the error.

    Raises:
        JournalError: there is no such row, or it already has its result.
    """
    with immediate_transaction(conn):
        cursor = conn.execute(
            f"UPDATE {rows.table} SET state = ?, return_code = ?, response_json = ?, updated_at = ?"  # noqa: S608 - names are literals of this module
            f" WHERE {rows.key} = ? AND state = 'sent'",
            (*result, key),
        )
        if cursor.rowcount == 0:
            row = conn.execute(f"SELECT state FROM {rows.table} WHERE {rows.key} = ?", (key,)).fetchone()  # noqa: S608 - as above
            found = rows.missing if row is None else f"it is already {row[0]!r}"
            raise JournalError(f"{what}: {found}")
