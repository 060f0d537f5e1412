"""The backend simulator's clock, which a test may move (``/_sim/clock``, docs/backend.md).

The simulator's date decides which working key a sign-in issues and when a key is too old
(simulators.backend.keydesk), and its time is every reply's transDate. A test that runs the
simulator as a subprocess shows "the next day" by moving this clock forward with an offset
from the real one, so time keeps running there as it does in misbridge.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

#: The furthest a test may move the clock, either way: ten years is any key's whole life.
MAX_OFFSET_S = 10 * 366 * 86400.0


class ClockRequest(BaseModel):
    """The body of ``POST /_sim/clock``: ``{"offset_s": seconds}`` to add to the real clock (0 puts it back)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    offset_s: float = Field(ge=-MAX_OFFSET_S, le=MAX_OFFSET_S, allow_inf_nan=False)


def parse_clock_request(raw: bytes) -> ClockRequest:
    """The body of ``POST /_sim/clock``.

    Raises:
        pydantic.ValidationError: (a ValueError) not JSON, an unknown key, or an offset out of range.
    """
    return ClockRequest.model_validate_json(raw)


class SimClock:
    """Local time as the simulator sees it: ``base()`` plus :attr:`offset`.

    Args:
        base: the real clock (tests in the same process may pass a fixed one).
    """

    def __init__(self, base: Callable[[], datetime] = datetime.now) -> None:
        self._base = base
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        """The simulator's now."""
        return self._base() + self.offset

    def view(self) -> dict[str, str | float]:
        """What ``/_sim/clock`` answers: the simulator's now (ISO 8601, local) and the offset."""
        return {"now": self().isoformat(timespec="seconds"), "offset_s": self.offset.total_seconds()}
