"""Retention (R16): deleting final transactions after ``journal.retention_days``, journaled.

:meth:`Retention.purge` is the one write; :data:`PURGEABLE` is the condition it deletes by,
shared with the read-only count (:func:`misbridge.journal.queries.purgeable_count`).  Only a
transaction in a final state (:data:`~misbridge.journal.schema.FINAL_STATES`) whose reversal,
if any, is ``done`` is ever deleted; of misbridge's own key requests, only an ``answered`` one
(:data:`PURGEABLE_KEY_CALLS`).  The periodic run is the daemon's (:mod:`misbridge.app.retention`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import datetime
from typing import Final

from misbridge.errors import JournalError
from misbridge.journal.connection import JournalBase, iso
from misbridge.journal.schema import FINAL_STATES, immediate_transaction

__all__ = ["PURGEABLE", "PURGEABLE_KEY_CALLS", "Retention"]

_PURGE_BATCH: Final = 500
_FINAL: Final = ", ".join("?" * len(FINAL_STATES))
PURGEABLE: Final = (
    f"state IN ({_FINAL}) AND updated_at < ?"  # noqa: S608 - only "?" placeholders are formatted in
    " AND NOT EXISTS (SELECT 1 FROM reversals AS r WHERE r.original_trace_no = t.trace_no AND r.state <> 'done')"
)
"""The ``WHERE`` condition on ``transactions AS t`` of a purge; parameters ``(*FINAL_STATES, cutoff)``."""
PURGEABLE_KEY_CALLS: Final = "state = 'answered' AND updated_at < ?"
"""The ``WHERE`` condition on ``key_calls`` of a purge; parameter ``(cutoff,)``.

A key request still ``sent`` may be in flight, and an ``unknown`` one is what an operator asks
about when the pad has no working key, so only answered ones go.
"""


class Retention(JournalBase):
    """The retention purge."""

    async def purge(self, older_than: datetime, *, batch_size: int = _PURGE_BATCH) -> int:
        """Delete final transactions last changed before ``older_than``; return how many.

        Retention (R16): a transaction in a final state (:data:`~misbridge.journal.schema.FINAL_STATES`)
        whose ``updated_at`` is before ``older_than`` is deleted together with its transitions,
        the backend calls misbridge made about it and its ``done`` reversal. A transaction in any
        other state, or with a reversal that is not ``done``, is never touched, however old.
        misbridge's own key requests (``key_calls``) answered before ``older_than`` go too (in
        the first batch; there are a few a day). The counters are kept, so a
        misbridge-originated traceNo is still never reused.

        The purge records itself in the ``purges`` table: one row per call (time, cutoff and
        the rows deleted per table), written in the same commit as each batch of at most
        ``batch_size`` transactions, so the daemon's writes never wait long. The return value
        counts transactions only.

        Raises:
            JournalError: ``older_than`` is naive, ``batch_size`` < 1, or the write failed.
        """
        if batch_size < 1:
            raise JournalError("journal purge: batch_size must be at least 1")
        cutoff = iso("older_than", older_than)
        purge_id: int | None = None
        total = 0
        while True:
            purge_id, deleted = await self._run("purge", _purge_batch, cutoff, self._now(), purge_id, batch_size)
            total += deleted
            if deleted < batch_size:
                return total


# --- Everything below runs on the journal thread. ----------------------------------------


def _purge_batch(
    conn: sqlite3.Connection, cutoff: str, at: str, purge_id: int | None, batch_size: int
) -> tuple[int, int]:
    """Delete up to ``batch_size`` purgeable transactions; return (purge row id, transactions deleted)."""
    with immediate_transaction(conn):
        key_calls = 0
        if purge_id is None:  # the first batch: the purge's row, and the few key requests
            purge_id = int(conn.execute("INSERT INTO purges (at, cutoff) VALUES (?, ?)", (at, cutoff)).lastrowid or 0)
            key_calls = conn.execute(f"DELETE FROM key_calls WHERE {PURGEABLE_KEY_CALLS}", (cutoff,)).rowcount  # noqa: S608 - a literal with a "?" placeholder
        victims = [
            (str(row[0]),)
            for row in conn.execute(
                f"SELECT trace_no FROM transactions AS t WHERE {PURGEABLE} ORDER BY updated_at LIMIT ?",  # noqa: S608 - a literal with "?" placeholders
                (*FINAL_STATES, cutoff, batch_size),
            )
        ]
        counts = {
            "transitions": _delete_each(conn, "DELETE FROM transitions WHERE trace_no = ?", victims),
            "backend_calls": _delete_each(conn, "DELETE FROM backend_calls WHERE original_trace_no = ?", victims),
            "reversals": _delete_each(
                conn, "DELETE FROM reversals WHERE original_trace_no = ? AND state = 'done'", victims
            ),
            "transactions": _delete_each(
                conn,
                f"DELETE FROM transactions WHERE trace_no = ? AND state IN ({_FINAL})",  # noqa: S608 - placeholders only
                [(trace_no, *FINAL_STATES) for (trace_no,) in victims],
            ),
        }
        conn.execute(
            "UPDATE purges SET transactions = transactions + :transactions, transitions = transitions + :transitions,"
            " backend_calls = backend_calls + :backend_calls, reversals = reversals + :reversals,"
            " key_calls = key_calls + :key_calls WHERE id = :id",
            {**counts, "key_calls": key_calls, "id": purge_id},
        )
    return purge_id, counts["transactions"]


def _delete_each(conn: sqlite3.Connection, statement: str, rows: Iterable[tuple[str, ...]]) -> int:
    return sum(conn.execute(statement, row).rowcount for row in rows)
