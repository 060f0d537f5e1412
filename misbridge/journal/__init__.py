"""The SQLite transaction journal: intents before effects, compare-and-set state changes.

Public API: :class:`Journal` (``store``); :class:`TransactionRecord`,
:class:`TransitionRecord`, :class:`CallRecord` and :class:`ReversalRecord` (``records``); the
errors :class:`DuplicateTraceNoError`, :class:`StateConflictError` and
:class:`ReversalConflictError`; and :data:`FINAL_STATES` (``schema``), the states the
database refuses to leave.  Besides the transactions, the journal numbers the requests
misbridge originates (``Journal.allocate_call``) and holds the durable reversal queue
(``Journal.enqueue_reversal`` and friends).  Of :mod:`misbridge.core` it imports only the pure
transition table (:mod:`misbridge.core.machine`): a state is written only as the machine's
``next_state(kind, state, event)``.
"""

from misbridge.journal.records import (
    CallKind,
    CallRecord,
    CallState,
    ReversalRecord,
    ReversalState,
    TransactionRecord,
    TransitionRecord,
    iso_utc,
    request_hash,
    utc_now,
)
from misbridge.journal.schema import FINAL_STATES, SCHEMA_VERSION
from misbridge.journal.store import (
    DuplicateTraceNoError,
    Journal,
    JournalSettings,
    ReversalConflictError,
    StateConflictError,
)

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "CallKind",
    "CallRecord",
    "CallState",
    "DuplicateTraceNoError",
    "Journal",
    "JournalSettings",
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
