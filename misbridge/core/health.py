"""The ``/health`` view: readiness and what needs a person, built from the pad, the service and the journal.

Ready means the PIN pad link is up, misbridge accepts transactions and recovery has finished.
``alerts`` lists what needs a person: a reversal in NEEDS_MANUAL never clears by itself. Anyone
may read ``/health``, so it shows counts, never a traceNo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from misbridge.device.base import PinPadDriver


class ReversalCounts(Protocol):
    """The journal's reversal counts (``Journal.count_reversals`` fits)."""

    async def count_reversals(self, state: Literal["pending", "needs_manual"]) -> int: ...


@dataclass(frozen=True)
class ServiceStatus:
    """What the transaction service reports of itself."""

    accepting: bool
    recovering: bool
    in_flight: int


async def health_report(
    pinpad: PinPadDriver, reversals: ReversalCounts, status: ServiceStatus
) -> tuple[bool, dict[str, Any]]:
    """Readiness and the details shown by ``/health``."""
    info = pinpad.info
    device = {
        "connected": pinpad.connected,
        "model": info.model if info else None,
        "firmware": info.firmware if info else None,
        "serialNo": info.serial_no if info else None,
    }
    ready = pinpad.connected and status.accepting and not status.recovering
    needs_manual = await reversals.count_reversals("needs_manual")
    alerts = [f"{needs_manual} reversal(s) need manual resolution"] if needs_manual else []
    return ready, {
        "status": "ready" if ready else "not ready",
        "accepting": status.accepting,
        "recovering": status.recovering,
        "device": device,
        "inFlight": status.in_flight,
        "reversals": {"pending": await reversals.count_reversals("pending"), "needsManual": needs_manual},
        "alerts": alerts,
    }
