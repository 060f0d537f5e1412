"""What the transaction flow reports for metrics; ``misbridge.telemetry.metrics.LaneMetrics`` (one lane's) fits it.

core does not import the metrics module (layering): the composition root hands it in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol


class TransactionMetrics(Protocol):
    """The recording calls the service and the inquiry loop make."""

    def transaction_finished(self, action: str, outcome: str) -> None: ...

    def observe_stage(self, stage: str, seconds: float) -> None: ...

    def inquiry_sent(self, verdict: str) -> None: ...


class NoMetrics:
    """Records nothing (tests, tools)."""

    def transaction_finished(self, action: str, outcome: str) -> None:
        """Ignore."""

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Ignore."""

    def inquiry_sent(self, verdict: str) -> None:
        """Ignore."""


@contextmanager
def timed(metrics: TransactionMetrics, stage: str) -> Iterator[None]:
    """Record how long the block took as ``stage`` (also when it raises)."""
    started = time.monotonic()
    try:
        yield
    finally:
        metrics.observe_stage(stage, time.monotonic() - started)
