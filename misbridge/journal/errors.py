"""The journal's own errors: each says what a write expected and what it found.

All are :class:`~misbridge.errors.JournalError`; :class:`~misbridge.errors.InvalidTransition`
(an event the kind's machine does not allow) comes from :mod:`misbridge.core.machine`.
"""

from __future__ import annotations

from misbridge.errors import JournalError

__all__ = [
    "BarredTraceNoError",
    "DuplicateTraceNoError",
    "KnownOriginalError",
    "ReversalConflictError",
    "StateConflictError",
]


class DuplicateTraceNoError(JournalError):
    """An intent was recorded for a ``trace_no`` the journal already holds."""

    def __init__(self, trace_no: str) -> None:
        super().__init__(f"transaction {trace_no!r} is already in the journal")
        self.trace_no = trace_no


class BarredTraceNoError(DuplicateTraceNoError):
    """An intent was recorded for a traceNo the backend has already seen in another request.

    ``seen_as`` says how: the traceNo of a request misbridge originated, or the traceNo or
    ``originalTraceNo`` of a POS inquiry misbridge forwarded. A sale with it would be refused by
    the backend as a duplicate, after the customer typed the PIN.
    """

    def __init__(self, trace_no: str, seen_as: str) -> None:
        super().__init__(trace_no)
        self.args = (f"traceNo {trace_no!r} was already seen by the backend as {seen_as}",)
        self.seen_as = seen_as


class KnownOriginalError(JournalError):
    """A POS inquiry was to be forwarded about an original the journal holds (answer from it instead)."""

    def __init__(self, original_trace_no: str) -> None:
        super().__init__(f"transaction {original_trace_no!r} is in the journal")
        self.original_trace_no = original_trace_no


class StateConflictError(JournalError):
    """A compare-and-set state change found a different state (``actual=None``: no such row)."""

    def __init__(self, trace_no: str, expected: str, actual: str | None) -> None:
        found = "no such transaction" if actual is None else f"it is {actual!r}"
        super().__init__(f"transaction {trace_no!r}: expected state {expected!r} but {found}")
        self.trace_no = trace_no
        self.expected = expected
        self.actual = actual


class ReversalConflictError(JournalError):
    """A reversal queue change found the entry in another state (``actual=None``: no entry).

    ``expected`` is the state the change needed, or ``None`` when it needed no entry at all
    (``Journal.enqueue_reversal`` of an original that is already queued).
    """

    def __init__(self, original_trace_no: str, expected: str | None, actual: str | None) -> None:
        wanted = "no entry" if expected is None else f"state {expected!r}"
        found = "there is none" if actual is None else f"it is {actual!r}"
        super().__init__(f"reversal of {original_trace_no!r}: expected {wanted} but {found}")
        self.original_trace_no = original_trace_no
        self.expected = expected
        self.actual = actual
