"""The SQLite transaction journal: intents before effects, compare-and-set state changes.

Public API: :class:`Journal` (``store``, one part per table in ``connection``, ``transactions``,
``calls``, ``key_calls``, ``pos_inquiries``, ``pos_queries``, ``reversals`` and ``retention``);
:class:`TransactionRecord`, :class:`TransitionRecord`, :class:`CallRecord`, :class:`KeyCallRecord`,
:class:`PosInquiryRecord`, :class:`PosQueryRecord` and :class:`ReversalRecord` (``records``);
the errors (``errors``) :class:`DuplicateTraceNoError`, :class:`BarredTraceNoError`,
:class:`KnownOriginalError`, :class:`StateConflictError` and :class:`ReversalConflictError`; and
:data:`FINAL_STATES` (``schema``), the states the database refuses to leave; :class:`LaneFilter`
and :data:`DEFAULT_LANE_NAME` (``lanes``), a row's POS lane (``Journal.for_lane`` gives one lane's
view of the journal). Besides the
transactions, the journal numbers the requests misbridge originates (``Journal.allocate_call``;
``Journal.allocate_key_call`` for DownloadKey and the sign-in) and holds the durable reversal
queue (``Journal.enqueue_reversal`` and friends). Of
:mod:`misbridge.core` it imports only the pure transition table (:mod:`misbridge.core.machine`):
a state is written only as the machine's
``next_state(kind, state, event)``.
"""

from misbridge.journal.connection import JournalSettings
from misbridge.journal.errors import (
    BarredTraceNoError,
    DuplicateTraceNoError,
    KnownOriginalError,
    ReversalConflictError,
    StateConflictError,
)
from misbridge.journal.lanes import DEFAULT_LANE_NAME, LaneFilter
from misbridge.journal.records import (
    CallKind,
    CallRecord,
    CallState,
    KeyCallKind,
    KeyCallRecord,
    PosInquiryRecord,
    PosQueryRecord,
    ReversalRecord,
    ReversalState,
    TransactionRecord,
    TransitionRecord,
    iso_utc,
    request_hash,
    utc_now,
)
from misbridge.journal.schema import FINAL_STATES, SCHEMA_VERSION
from misbridge.journal.store import Journal

__all__ = [
    "DEFAULT_LANE_NAME",
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "BarredTraceNoError",
    "CallKind",
    "CallRecord",
    "CallState",
    "DuplicateTraceNoError",
    "Journal",
    "JournalSettings",
    "KeyCallKind",
    "KeyCallRecord",
    "KnownOriginalError",
    "LaneFilter",
    "PosInquiryRecord",
    "PosQueryRecord",
    "ReversalConflictError",
    "ReversalRecord",
    "ReversalState",
    "StateConflictError",
    "TransactionRecord",
    "TransitionRecord",
    "iso_utc",
    "request_hash",
    "utc_now",
]
