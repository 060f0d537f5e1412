"""Who is waiting for a transaction, and how often an unknown original may be asked about.

:class:`Presence` tells a card transaction whether any POS still waits for its answer (a sale
whose POS hung up before its customer was prompted ends with MB29 instead of running unseen);
:class:`InFlight` is one running transaction as the service tracks it; :class:`RateGate` limits
the POS inquiries forwarded about originals misbridge does not know (MB43 beyond).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

#: Margin between the POS's deadline and the last moment misbridge hands it an approval.
CLAIM_MARGIN_S: Final = 2.0


class Presence:
    """Whether anybody still waits for a transaction's answer.

    A door that can tell passes an event it sets when its POS hangs up; a caller that passes
    none counts as waiting for ever. :attr:`all_gone` is set while every caller that joined the
    transaction (the first request and its repeats) has gone, and cleared when one joins again.
    """

    def __init__(self) -> None:
        self.all_gone = asyncio.Event()
        self._waiting = 0
        self._undetectable = False
        self._watchers: set[asyncio.Task[None]] = set()

    def join(self, caller_gone: asyncio.Event | None) -> None:
        """Count one more caller waiting for the answer, until ``caller_gone`` is set."""
        if caller_gone is None:
            self._undetectable = True
        elif not caller_gone.is_set():
            self._waiting += 1
            watcher = asyncio.create_task(self._leave_when(caller_gone), name="POS presence")
            self._watchers.add(watcher)
            watcher.add_done_callback(self._watchers.discard)
        self._update()

    def close(self) -> None:
        """Stop watching (the transaction has ended)."""
        for watcher in list(self._watchers):
            watcher.cancel()

    async def _leave_when(self, caller_gone: asyncio.Event) -> None:
        await caller_gone.wait()
        self._waiting -= 1
        self._update()

    def _update(self) -> None:
        if self._undetectable or self._waiting > 0:
            self.all_gone.clear()
        else:
            self.all_gone.set()


class RateGate:
    """At most ``per_minute`` admissions in any 60 s (a sliding window); 0 admits nothing."""

    WINDOW_S = 60.0

    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._per_minute = per_minute
        self._clock = clock
        self._admitted: deque[float] = deque()
        self._last_refusal_logged = -self.WINDOW_S

    def admit(self) -> bool:
        """True (and counted) when one more fits in the window."""
        now = self._clock()
        while self._admitted and now - self._admitted[0] >= self.WINDOW_S:
            self._admitted.popleft()
        if len(self._admitted) >= self._per_minute:
            return False
        self._admitted.append(now)
        return True

    def should_log_refusal(self) -> bool:
        """True at most once a window, so a flood of refusals writes one log line a minute."""
        now = self._clock()
        if now - self._last_refusal_logged < self.WINDOW_S:
            return False
        self._last_refusal_logged = now
        return True


@dataclass
class InFlight:
    """A running card transaction: its request's fingerprint, its task and who waits for it."""

    fingerprint: str
    task: asyncio.Task[dict[str, Any]]
    presence: Presence
