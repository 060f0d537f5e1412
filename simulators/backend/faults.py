"""Scripted reply faults: the request IS processed (the ledger changes), then the reply goes wrong.

That is the case misbridge must treat as UNKNOWN (R7): money may have moved although no
usable answer came back. Faults are queued on ``BackendSimulator.faults`` and each is used once.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum


class Fault(StrEnum):
    """What happens to the reply of a processed request."""

    HTTP_500 = "http-500"  # answer HTTP 500 instead of the reply
    NOT_JSON = "not-json"  # answer an HTML error page
    BAD_SIGN = "bad-sign"  # reply with a wrong signature
    NO_SIGN = "no-sign"  # reply without a signature
    WRONG_TRACE = "wrong-trace"  # reply (correctly signed) for another traceNo
    DELAY = "delay"  # hold the reply for ``delay_s`` seconds, then send it


@dataclass(frozen=True)
class ScriptedFault:
    """One queued fault; ``action`` None matches any action."""

    fault: Fault
    action: str | None = None
    delay_s: float = 0.0


class FaultScript:
    """A FIFO of faults; each reply takes the first fault that matches its action."""

    def __init__(self) -> None:
        self._queue: deque[ScriptedFault] = deque()

    def add(self, fault: Fault, *, action: str | None = None, delay_s: float = 0.0, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` replies of ``action`` (or of any action)."""
        for _ in range(times):
            self._queue.append(ScriptedFault(fault, action, delay_s))

    def take(self, action: str) -> ScriptedFault | None:
        """Remove and return the first fault for ``action``, if any."""
        for scripted in self._queue:
            if scripted.action in (None, action):
                self._queue.remove(scripted)
                return scripted
        return None

    def clear(self) -> None:
        """Drop every queued fault."""
        self._queue.clear()

    def __len__(self) -> int:
        return len(self._queue)
