"""The journal's read side: what support, reconciliation and the POS may see, built once.

Plain functions over a :class:`sqlite3.Connection`, so the same query serves the daemon (on the
journal thread: :meth:`misbridge.journal.store.Journal.transaction_view`) and the read-only
tools (``misbridge journal list|show|export``, which open the file with ``mode=ro``).  They
only read; they work whatever the connection's ``row_factory``.

Everything they return is masked (:func:`misbridge.ebuy.redaction.masked`): the journal holds
no card data (only the masked PAN, first 6 / last 4), and every value shown also passes the log
scrubber's rules as a second line of defence.

* :func:`transaction_view`: one transaction in full (request, answer, transitions, the
  requests misbridge originated about it, its reversal, and the POS inquiries misbridge
  forwarded about it); :func:`http_view` is the part ``GET /v1/transactions/{traceNo}`` shows.
* :func:`summaries`: the lines of ``list`` and ``export``; :func:`purgeable_count`: what a
  purge would delete now.

The POS lane of a transaction (schema v8, :mod:`misbridge.journal.lanes`) is its ``lane``: the
lane's name, ``""`` for the default lane (as every value a row lacks). :func:`summaries` takes a
:class:`~misbridge.journal.lanes.LaneFilter`. The HTTP view names the lane only for a named lane,
so a one-lane misbridge answers the POS exactly as before lanes. A file from before version 8 (the
tools read a file as they find it) has only the default lane.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from misbridge.core.kinds import JOURNALED_STATES
from misbridge.ebuy import jsonio
from misbridge.ebuy.redaction import masked, scrub_text
from misbridge.journal.lanes import LaneFilter
from misbridge.journal.records import iso_utc
from misbridge.journal.retention import PURGEABLE
from misbridge.journal.schema import FINAL_STATES

__all__ = [
    "EXPORT_COLUMNS",
    "STATE_FILTERS",
    "STATE_GROUPS",
    "TransactionSummary",
    "http_view",
    "purgeable_count",
    "summaries",
    "transaction_view",
]

#: Columns of ``list`` and ``export``, in order; the first keys of :func:`transaction_view`. ``lane``
#: (schema v8) comes last so that the columns before it stay where a reader of the CSV had them.
EXPORT_COLUMNS: Final = (
    "traceNo", "action", "state", "returnCode", "maskedPan", "cardType", "totalAmount", "paidAmount", "orderNo",
    "createdAt", "updatedAt", "lane",
)  # fmt: skip
#: ``state`` shorthands: every final state, or every state that is not final.
STATE_GROUPS: Final = {"final": FINAL_STATES, "open": None}
#: Every ``state`` a filter may name: a state a transaction can be in, then the shorthands. Any other
#: would match no row, and an empty list would read as "none of those" when the name was wrong.
STATE_FILTERS: Final[tuple[str, ...]] = (*(str(state) for state in JOURNALED_STATES), *STATE_GROUPS)


@dataclass(frozen=True)
class TransactionSummary:
    """One line of ``list`` / ``export``: masked, no card data, ``""`` for a value the row lacks."""

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
    lane: str = ""  # the lane's name; "" for the default lane

    def as_row(self) -> dict[str, str]:
        """The summary keyed by :data:`EXPORT_COLUMNS`."""
        values = (
            self.trace_no, self.action, self.state, self.return_code, self.masked_pan, self.card_type,
            self.total_amount, self.paid_amount, self.order_no, self.created_at, self.updated_at, self.lane,
        )  # fmt: skip
        return dict(zip(EXPORT_COLUMNS, values, strict=True))


def _rows(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[sqlite3.Row]:
    cursor = conn.cursor()
    cursor.row_factory = sqlite3.Row
    return cursor.execute(sql, params).fetchall()


def _one(conn: sqlite3.Connection, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> sqlite3.Row | None:
    rows = _rows(conn, sql, params)
    return rows[0] if rows else None


def _text(value: Any) -> str:
    return "" if value is None else scrub_text(str(value))


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return jsonio.loads(text)
    except jsonio.JSONDecodeError:
        return text


def _json_field(text: str | None, key: str) -> Any:
    value = _loads(text) if text else None
    return value.get(key) if isinstance(value, dict) else None


def _has_lane(conn: sqlite3.Connection, table: str) -> bool:
    """Whether ``table`` has the ``lane`` column (schema v8); ``table`` is a literal of this module."""
    return any(row[1] == "lane" for row in _rows(conn, f"PRAGMA table_info({table})"))


def _lane_of(row: sqlite3.Row) -> Any:
    # A row of a file from before version 8 has no lane: it is the default lane's.
    return row["lane"] if "lane" in row.keys() else None  # noqa: SIM118 - sqlite3.Row: `in` looks at the values, keys() has the names


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
        lane=_text(_lane_of(row)),
    )


def summaries(
    conn: sqlite3.Connection,
    *,
    since: datetime | None = None,
    state: str | None = None,
    limit: int | None = 50,
    newest_first: bool = True,
    lane: LaneFilter | None = None,
) -> list[TransactionSummary]:
    """Transactions created at or after ``since``, in ``state`` (or ``final``/``open``), of ``lane`` (``None``: any).

    Raises:
        ValueError: ``since`` is naive, ``limit`` is negative or ``state`` is none of :data:`STATE_FILTERS`.
        sqlite3.Error: the read failed.
    """
    if state is not None and state not in STATE_FILTERS:
        raise ValueError(f"no transaction state {state!r}: use one of {', '.join(STATE_FILTERS)}")
    clauses: list[str] = []
    params: list[Any] = []
    if lane is not None and _has_lane(conn, "transactions"):
        clauses.append("lane IS ?")
        params.append(lane.value)
    elif lane is not None and lane.value is not None:
        return []  # a file from before version 8 has the default lane only
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
    return [_summary(row) for row in _rows(conn, query, params)]


def purgeable_count(conn: sqlite3.Connection, cutoff: datetime) -> int:
    """How many transactions a purge with ``cutoff`` would delete now (``Journal.purge``'s condition).

    Raises:
        ValueError: ``cutoff`` is naive.
        sqlite3.Error: the read failed.
    """
    row = _one(
        conn,
        f"SELECT COUNT(*) AS n FROM transactions AS t WHERE {PURGEABLE}",  # noqa: S608 - a literal with "?" placeholders
        (*FINAL_STATES, iso_utc(cutoff)),
    )
    return 0 if row is None else int(row["n"])


def _original_of(conn: sqlite3.Connection, trace_no: str) -> str:
    """The traceNo ``trace_no`` is about: itself, or the original of a call or forwarded inquiry with it."""
    if _one(conn, "SELECT 1 FROM transactions WHERE trace_no = ?", (trace_no,)) is not None:
        return trace_no
    call = _one(conn, "SELECT original_trace_no FROM backend_calls WHERE trace_no = ?", (trace_no,))
    if call is not None:
        return str(call[0])
    inquiry = _one(conn, "SELECT original_trace_no FROM pos_inquiries WHERE trace_no = ? ORDER BY id", (trace_no,))
    return trace_no if inquiry is None else str(inquiry[0])


#: A ``pos_queries`` row in the columns of a ``transactions`` row (it has no card); then its lane.
_QUERY_AS_TRANSACTION: Final = (
    "SELECT trace_no, action, state, request_json, request_hash, NULL AS masked_pan, NULL AS card_type,"
    " response_json, return_code, created_at, updated_at, {lane} AS lane FROM pos_queries WHERE trace_no = ?"
)


def _query_row(conn: sqlite3.Connection, trace_no: str) -> sqlite3.Row | None:
    """The query or upload ``trace_no`` as a transaction row; ``None`` also for a file from before them."""
    if _one(conn, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'pos_queries'") is None:
        return None
    lane = "lane" if _has_lane(conn, "pos_queries") else "NULL"
    return _one(conn, _QUERY_AS_TRANSACTION.format(lane=lane), (trace_no,))


def transaction_view(conn: sqlite3.Connection, trace_no: str) -> dict[str, Any] | None:
    """One transaction in full, masked; ``None`` when the journal knows nothing of ``trace_no``.

    ``trace_no`` may also be the traceNo of an inquiry or void misbridge sent, or of a POS
    inquiry misbridge forwarded: the view is the original's.  The keys are
    :data:`EXPORT_COLUMNS` (text, ``""`` when absent, as in ``export``), then ``request``,
    ``response``, ``transitions``, ``backendCalls``, ``reversal`` and ``posInquiries`` (the
    forwarded POS inquiries with the original as their own traceNo or as their original).  A
    forwarded inquiry's original is never journaled (the inquiry is forwarded only then, and
    the traceNo is barred afterwards), so its view has ``action`` and ``state`` ``""`` and only
    ``posInquiries``. A query or upload the POS sent (``pos_queries``) is shown as a transaction
    without transitions: its action, its state (``sent``, ``answered``, ``unknown``), its request
    and the answer the POS got. ``lane`` is the transaction's (or query's) lane, ``""`` for the
    default lane.

    Raises:
        sqlite3.Error: the read failed.
    """
    original = _original_of(conn, trace_no)
    row = _one(conn, "SELECT * FROM transactions WHERE trace_no = ?", (original,)) or _query_row(conn, original)
    inquiries = _rows(
        conn, "SELECT * FROM pos_inquiries WHERE trace_no = :t OR original_trace_no = :t ORDER BY id", {"t": original}
    )
    if row is None and not inquiries:
        return None
    transitions = _rows(
        conn,
        "SELECT from_state, to_state, event, at, detail FROM transitions WHERE trace_no = ? ORDER BY id",
        (original,),
    )
    calls = _rows(
        conn,
        "SELECT trace_no, kind, state, return_code, response_json, created_at, updated_at FROM backend_calls"
        " WHERE original_trace_no = ? ORDER BY created_at, rowid",
        (original,),
    )
    reversal = _one(conn, "SELECT * FROM reversals WHERE original_trace_no = ?", (original,))
    head = _summary(row).as_row() if row is not None else dict.fromkeys(EXPORT_COLUMNS, "") | {"traceNo": original}
    view: dict[str, Any] = {
        **head,
        "request": None if row is None else _loads(row["request_json"]),
        "response": None if row is None else _loads(row["response_json"]),
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
        "posInquiries": [
            {
                "traceNo": i["trace_no"], "originalTraceNo": i["original_trace_no"], "state": i["state"],
                "returnCode": i["return_code"], "response": _loads(i["response_json"]),
                "createdAt": i["created_at"], "updatedAt": i["updated_at"],
            }
            for i in inquiries
        ],
    }  # fmt: skip
    safe: dict[str, Any] = masked(view)
    return safe


def _http_time(text: str) -> str:
    # The HTTP view has always shown a timestamp as Python's isoformat() of the stored time,
    # which leaves out a zero fraction of a second.
    return datetime.fromisoformat(text).isoformat() if text else text


def http_view(view: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a :func:`transaction_view` that ``GET /v1/transactions/{traceNo}`` shows.

    A value the transaction lacks is ``null`` (``maskedPan``, ``returnCode``); the transitions,
    the reversal and the originated requests are shown without their answers. ``lane`` is there
    only for a named lane's transaction: the default lane's view is exactly what misbridge
    showed before lanes.
    """
    reversal = view["reversal"]
    lane = view.get("lane") or None
    return {
        "traceNo": view["traceNo"],
        "action": view["action"],
        "state": view["state"],
        "maskedPan": view["maskedPan"] or None,
        "returnCode": view["returnCode"] or None,
        "response": view["response"],
        "createdAt": _http_time(view["createdAt"]),
        "updatedAt": _http_time(view["updatedAt"]),
        "transitions": [{**t, "at": _http_time(t["at"])} for t in view["transitions"]],
        "reversal": None if reversal is None else {
            "state": reversal["state"], "attempts": reversal["attempts"], "lastError": reversal["lastError"],
            "nextAttemptAt": _http_time(reversal["nextAttemptAt"]), "createdAt": _http_time(reversal["createdAt"]),
        },
        "backendCalls": [
            {"traceNo": c["traceNo"], "kind": c["kind"], "state": c["state"], "returnCode": c["returnCode"]}
            for c in view["backendCalls"]
        ],
        "posInquiries": [
            {**i, "createdAt": _http_time(i["createdAt"]), "updatedAt": _http_time(i["updatedAt"])}
            for i in view["posInquiries"]
        ],
    } | ({} if lane is None else {"lane": lane})  # fmt: skip
