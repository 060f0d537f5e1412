"""The SQLite transaction journal: intents before effects, compare-and-set state changes.

Public API: :class:`Journal` (``store``), :class:`TransactionRecord` and
:class:`TransitionRecord` (``records``), the errors :class:`DuplicateTraceNoError` and
:class:`StateConflictError`, and :data:`FINAL_STATES` (``schema``), the states the database
refuses to leave.  This package does not import :mod:`misbridge.core`.
"""

from misbridge.journal.records import TransactionRecord, TransitionRecord, iso_utc, request_hash, utc_now
from misbridge.journal.schema import FINAL_STATES, SCHEMA_VERSION
from misbridge.journal.store import DuplicateTraceNoError, Journal, JournalSettings, StateConflictError

__all__ = [
    "FINAL_STATES",
    "SCHEMA_VERSION",
    "DuplicateTraceNoError",
    "Journal",
    "JournalSettings",
    "StateConflictError",
    "TransactionRecord",
    "TransitionRecord",
    "iso_utc",
    "request_hash",
    "utc_now",
]
