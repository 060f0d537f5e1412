"""The SQLite transaction journal (stdlib :mod:`sqlite3`), used from asyncio: :class:`Journal`.

:class:`Journal` is the one class callers use; it is made of one part per table, each in its
own module with the functions that run on the journal thread:

* :mod:`~misbridge.journal.connection`: opening, the durability PRAGMAs, the one worker
  thread every sqlite call runs on, and the translation of ``sqlite3.Error`` to
  :class:`~misbridge.errors.JournalError` (only there);
* :mod:`~misbridge.journal.transactions`: intents and compare-and-set state changes, the
  target always the kind's machine's (``next_state(kind, state, event)``);
* :mod:`~misbridge.journal.calls`: the requests misbridge originates and the traceNo counter;
* :mod:`~misbridge.journal.key_calls`: misbridge's own key requests (DownloadKey, sign-in);
* :mod:`~misbridge.journal.pos_inquiries`: the POS inquiries misbridge forwarded;
* :mod:`~misbridge.journal.pos_queries`: the POS's queries and uploads misbridge passed on;
* :mod:`~misbridge.journal.reversals`: the durable reversal queue, and the operator's
  resolution of a transaction left ``needs_manual``;
* :mod:`~misbridge.journal.retention`: the purge;
* :mod:`~misbridge.journal.day`: the end of day's reads (one business day's transactions);
* :mod:`~misbridge.journal.lanes`: a row's POS lane and the filter on it (``Journal.for_lane``);
* :mod:`~misbridge.journal.queries`: the read side shared with the read-only tools (the
  transaction view).

Every write is one ``BEGIN IMMEDIATE ... COMMIT``; a compare-and-set that finds another state
raises an error naming the state expected and the one found (:mod:`~misbridge.journal.errors`).
A write whose awaiting task is cancelled still runs to completion (or failure) on the worker
thread; re-read with :meth:`Journal.get` to learn which.
"""

from __future__ import annotations

from typing import Any

from misbridge.journal import queries
from misbridge.journal.calls import BackendCalls
from misbridge.journal.connection import JournalSettings
from misbridge.journal.day import BusinessDayReads
from misbridge.journal.errors import (
    BarredTraceNoError,
    DuplicateTraceNoError,
    KnownOriginalError,
    ReversalConflictError,
    StateConflictError,
)
from misbridge.journal.key_calls import KeyCalls
from misbridge.journal.pos_inquiries import PosInquiries
from misbridge.journal.pos_queries import PosQueries
from misbridge.journal.records import PosInquiryRecord, PosQueryRecord
from misbridge.journal.retention import Retention
from misbridge.journal.reversals import ReversalQueue

__all__ = [
    "BarredTraceNoError",
    "DuplicateTraceNoError",
    "Journal",
    "JournalSettings",
    "KnownOriginalError",
    "PosInquiryRecord",
    "PosQueryRecord",
    "ReversalConflictError",
    "StateConflictError",
]


class Journal(ReversalQueue, BackendCalls, KeyCalls, PosInquiries, PosQueries, Retention, BusinessDayReads):
    """The durable record of every transaction and its state changes.

    Open with :meth:`open` (not the constructor) and :meth:`close` when done, or use
    ``async with``.  All methods are coroutines and may be called concurrently; they are
    executed one at a time, in call order, on the journal's thread.  :meth:`for_lane` gives
    one POS lane's view of it (schema v8, :mod:`misbridge.journal.lanes`): its rows carry the
    lane and its work reads see the lane's rows only; the journal itself sees every lane.

    Args:
        conn: a connection made by the journal thread.
        executor: the one-thread executor that owns ``conn``.
        clock: returns the current timezone-aware time for ``updated_at`` and ``at``.
    """

    async def transaction_view(self, trace_no: str) -> dict[str, Any] | None:
        """The full, masked view of ``trace_no`` (:func:`misbridge.journal.queries.transaction_view`).

        ``None`` when the journal knows nothing of ``trace_no``; the traceNo of a request
        misbridge sent or of a POS inquiry it forwarded gives the original's view.
        :func:`misbridge.journal.queries.http_view` is the part the POS's HTTP door shows.

        Raises:
            JournalError: the read failed.
        """
        return await self._run("transaction_view", queries.transaction_view, trace_no)
