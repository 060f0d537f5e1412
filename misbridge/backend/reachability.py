"""What the backend client's own exchanges say about whether the backend host answers.

Before the PIN pad prompts a customer, the service asks whether the backend is known to be
down, so a customer is not asked for a card and a PIN for a sale that cannot be sent. The record
is kept per attempt, not per call: a call whose attempts could not connect ends with the host
down even when the request deadline cut its last attempt, and a call whose last attempt
connected does not, whatever the money classification of that call (docs/backend.md, "Is the
backend reachable?").
"""

from __future__ import annotations

import time
from collections.abc import Callable

#: The longest ``last_error`` kept: a line for /health, not a report.
_ERROR_MAX_CHARS = 200


class Reachability:
    """The backend host's last known state, updated by every attempt and every probe.

    Args:
        clock: monotonic seconds (injected by tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._answered_at: float | None = None
        self._down = False
        self._last_error: str | None = None

    def answered(self) -> None:
        """An HTTP response came back (any status, any content): the host is up."""
        self._answered_at = self._clock()
        self._down = False

    def not_connected(self) -> None:
        """An attempt failed before a byte was written (refused, connect timeout, TLS handshake)."""
        self._down = True

    def connected_without_answer(self) -> None:
        """An attempt failed after the host took the connection (read timeout, reset): not down."""
        self._down = False

    def failed(self, reason: str) -> None:
        """Remember why the last call or probe failed; ``reason`` must hold no body and no key."""
        self._last_error = reason[:_ERROR_MAX_CHARS]

    @property
    def down(self) -> bool:
        """The last attempt could not connect, and nothing has answered since."""
        return self._down

    @property
    def last_error(self) -> str | None:
        """The most recent failure, kept after later successes (None if nothing ever failed)."""
        return self._last_error

    def last_ok_age_s(self) -> float | None:
        """Seconds since the last HTTP response, or None if there never was one."""
        if self._answered_at is None:
            return None
        return self._clock() - self._answered_at
