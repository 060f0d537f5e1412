"""The journal's read side for the end of day: one business day's transactions and what they need.

:meth:`BusinessDayReads.day_rows` reads, in one read transaction (one snapshot of the file):

* every transaction created in ``[begin, end)``, oldest first;
* the follow-ups (voids, refunds) naming one of them as ``originalTraceNo``, whenever made: a
  sale's status depends on them;
* the originals the window's own follow-ups name, whenever made: a void's amount is its sale's;
* the traceNo the backend knows each of the window's options sales by (its last ``option``
  round, :func:`misbridge.core.flow.sent_as`).

The rule deciding which records to upload lives in :mod:`misbridge.core.endofday`.

Lanes (schema v8): the end of day runs per lane, each lane's ``batchUpload`` with its own
``deviceNo``. A lane filter narrows the window's transactions (and so their options rounds) to
one lane's; the follow-ups and originals they need are read whatever lane made them, since a
void or refund may be made on another lane than its sale.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from misbridge.journal.connection import JournalBase
from misbridge.journal.lanes import LaneFilter
from misbridge.journal.records import TransactionRecord, iso_utc
from misbridge.journal.transactions import to_record

__all__ = ["BusinessDayReads", "DayRows"]

#: The window's transactions, by when the POS asked (created_at), oldest first; with ``:lane``, of one lane.
_ALL_LANES: Final = "SELECT * FROM transactions WHERE created_at >= :begin AND created_at < :end"
_ONE_LANE: Final = f"{_ALL_LANES} AND lane IS :lane"
_ORIGINAL: Final = "json_extract(request_json, '$.originalTraceNo')"


def _in_window(window: dict[str, str | None]) -> str:
    """The window's transactions: of one lane when ``window`` names one (``"lane"``)."""
    return _ONE_LANE if "lane" in window else _ALL_LANES


@dataclass(frozen=True)
class DayRows:
    """What :meth:`BusinessDayReads.day_rows` read; see the module text."""

    transactions: tuple[TransactionRecord, ...]
    followers: tuple[TransactionRecord, ...]
    originals: dict[str, TransactionRecord]
    sent_as: dict[str, str]


class BusinessDayReads(JournalBase):
    """The end of day's reads (a part of :class:`misbridge.journal.store.Journal`)."""

    async def day_rows(
        self, begin: datetime, end: datetime, follow_up_actions: Iterable[str], *, lane: LaneFilter | None = None
    ) -> DayRows:
        """The transactions created at or after ``begin`` and before ``end``, and what they need (module text).

        ``follow_up_actions`` are the actions that name an original (voids and refunds).
        ``lane`` keeps the window's transactions of that lane only; without it, the journal's
        own: every lane's on the journal ``Journal.open`` returns (as before lanes), the lane's
        on a lane view (``Journal.for_lane``), so the end of day can run per lane unchanged.

        Raises:
            ValueError: ``begin`` or ``end`` is naive.
            JournalError: the read failed or a row is corrupt.
        """
        window: dict[str, str | None] = {"begin": iso_utc(begin), "end": iso_utc(end)}
        lanes = self.lane_filter if lane is None else lane
        if lanes is not None:
            window["lane"] = lanes.value
        return await self._run("day_rows", _read_day, window, tuple(follow_up_actions))


def _read_day(conn: sqlite3.Connection, window: dict[str, str | None], actions: tuple[str, ...]) -> DayRows:
    # A deferred read transaction: the four reads see one snapshot, even while the daemon writes.
    conn.execute("BEGIN")
    try:
        return DayRows(
            transactions=tuple(_records(conn, f"{_in_window(window)} ORDER BY created_at, trace_no", window)),
            followers=tuple(_followers(conn, window, actions)),
            originals={record.trace_no: record for record in _originals(conn, window, actions)},
            sent_as=_option_rounds(conn, window),
        )
    finally:
        conn.execute("COMMIT")


def _records(conn: sqlite3.Connection, sql: str, params: dict[str, str | None]) -> list[TransactionRecord]:
    return [to_record(row) for row in conn.execute(sql, params).fetchall()]


def _actions_in(actions: tuple[str, ...], params: dict[str, str | None]) -> str:
    """``(:a0, :a1, …)``, with ``params`` given the action names."""
    names = [f"a{index}" for index in range(len(actions))]
    params.update(zip(names, actions, strict=True))
    return "(" + ", ".join(f":{name}" for name in names) + ")" if names else "(NULL)"


def _followers(
    conn: sqlite3.Connection, window: dict[str, str | None], actions: tuple[str, ...]
) -> list[TransactionRecord]:
    params = dict(window)
    in_actions = _actions_in(actions, params)
    sql = (
        f"SELECT * FROM transactions WHERE action IN {in_actions}"  # noqa: S608 - only named placeholders
        f" AND {_ORIGINAL} IN (SELECT trace_no FROM ({_in_window(window)}))"
        " ORDER BY created_at, trace_no"
    )
    return _records(conn, sql, params)


def _originals(
    conn: sqlite3.Connection, window: dict[str, str | None], actions: tuple[str, ...]
) -> list[TransactionRecord]:
    params = dict(window)
    in_actions = _actions_in(actions, params)
    named = f"SELECT {_ORIGINAL} FROM ({_in_window(window)}) WHERE action IN {in_actions}"  # noqa: S608 - placeholders
    return _records(conn, f"SELECT * FROM transactions WHERE trace_no IN ({named})", params)  # noqa: S608


def _option_rounds(conn: sqlite3.Connection, window: dict[str, str | None]) -> dict[str, str]:
    # The option rounds misbridge sent for the window's sales, oldest first.
    sql = (
        "SELECT original_trace_no, trace_no FROM backend_calls WHERE kind = 'option'"  # noqa: S608 - literals only
        f" AND original_trace_no IN (SELECT trace_no FROM ({_in_window(window)})) ORDER BY created_at, rowid"
    )
    rows = conn.execute(sql, window).fetchall()
    # The last round wins: the backend knows the sale by the round that paid it.
    return {str(row[0]): str(row[1]) for row in rows}
