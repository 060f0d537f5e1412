"""The ``/health`` view: readiness and what needs a person, built from the pad, the keys, the backend and the journal.

Ready means: the PIN pad link is up and its working-key slot holds today's key, misbridge
signed in, the backend answered within ``backend.healthy_within_s``, misbridge accepts
transactions and recovery has finished. When not ready, ``reasons`` says why in a
technician's words. ``alerts`` lists what needs a person: a reversal in NEEDS_MANUAL never
clears by itself, and neither does the latest end-of-day run's mismatches (``reconcile``)
until a later run matches. Anyone may read ``/health``, so it shows counts and check values, never a
traceNo or key material.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from misbridge import __version__
from misbridge.core.keys import KeyStatus, Reachability
from misbridge.core.latest_reconcile import LatestReconcile
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


@dataclass(frozen=True)
class BackendView:
    """The backend as ``/health`` judges it: how long since it answered, and the limit."""

    reach: Reachability
    healthy_within_s: float


async def health_report(
    pinpad: PinPadDriver,
    reversals: ReversalCounts,
    status: ServiceStatus,
    keys: KeyStatus | None = None,
    backend: BackendView | None = None,
    reconcile: LatestReconcile | None = None,
) -> tuple[bool, dict[str, Any]]:
    """Readiness and the details shown by ``/health``.

    ``keys`` and ``backend`` are None only where no keeper runs (core's unit tests): then
    neither is judged. ``reconcile`` is the latest end-of-day outcome, None before the first
    run: mismatches are an alert, never a reason, since the pad lane can still sell.
    """
    pad = _pad_view(pinpad)
    reasons = _service_reasons(status)
    if not pinpad.connected:
        reasons.append("the PIN pad is not connected")
    backend_view: dict[str, Any] = {}
    if keys is not None:
        backend_view |= {"signed_in": keys.signed_in, "signed_in_at": _iso(keys)}
        backend_view["working_key_kcv"] = keys.working_key_kcv
        pad["key_ok"] = keys.pad_key_ok
        if keys.problem is not None and pinpad.connected:
            reasons.append(keys.problem)
    if backend is not None:
        age = backend.reach.last_ok_age_s()
        backend_view["last_ok_s"] = None if age is None else round(age, 1)
        backend_view["reachable"] = backend_reachable(backend.reach, backend.healthy_within_s)
        if not backend_view["reachable"]:
            reasons.append(_backend_reason(backend, age))
    ready = not reasons
    needs_manual = await reversals.count_reversals("needs_manual")
    alerts = [needs_manual_alert(needs_manual)] if needs_manual else []
    end_of_day_alert = reconcile.alert() if reconcile is not None else None
    if end_of_day_alert is not None:
        alerts.append(end_of_day_alert)
    detail: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        # Which release answers: the package's restart checks it (misbridgectl restart).
        "version": __version__,
        "reasons": reasons,
        "accepting": status.accepting,
        "recovering": status.recovering,
        "pad": pad,
    }
    if backend_view:
        detail["backend"] = backend_view
    detail |= {
        "inFlight": status.in_flight,
        "reversals": {"pending": await reversals.count_reversals("pending"), "needsManual": needs_manual},
        "alerts": alerts,
    }
    if reconcile is not None:
        detail["reconcile"] = _reconcile_view(reconcile)
    return ready, detail


def _reconcile_view(reconcile: LatestReconcile) -> dict[str, Any]:
    """``/health``'s ``reconcile``: the date, the open mismatches, the report; with lanes, each lane's too."""
    view: dict[str, Any] = {
        "date": reconcile.business_date.isoformat(),
        "mismatches": reconcile.mismatches,
        "report": str(reconcile.report),
    }
    if reconcile.lanes:
        view["lanes"] = {lane.lane: _reconcile_view(lane.latest) for lane in reconcile.lanes}
    return view


def needs_manual_alert(count: int) -> str:
    """The alert ``/health`` raises while ``count`` reversals need a person."""
    return f"{count} reversal(s) need manual resolution"


def _pad_view(pinpad: PinPadDriver) -> dict[str, Any]:
    info = pinpad.info if pinpad.connected else None
    return {
        "connected": pinpad.connected,
        "model": info.model if info else None,
        "firmware": info.firmware if info else None,
        "serialNo": info.serial_no if info else None,
        "master_key_kcv": (info.master_key_kcv or None) if info else None,
        "working_key_kcv": (info.working_key_kcv or None) if info else None,
    }


def _service_reasons(status: ServiceStatus) -> list[str]:
    reasons = []
    if not status.accepting:
        reasons.append("misbridge is shutting down")
    if status.recovering:
        reasons.append("misbridge is finishing interrupted transactions")
    return reasons


def backend_reachable(reach: Reachability, healthy_within_s: float) -> bool:
    """The one rule of ``/health`` and the gauge: no failed connect since, and an answer within the limit."""
    age = reach.last_ok_age_s()
    return not reach.known_down and age is not None and age <= healthy_within_s


def _backend_reason(backend: BackendView, age: float | None) -> str:
    if backend.reach.known_down:
        return "the e-Buy backend is unreachable (the last call could not connect)"
    if age is None:
        return "the e-Buy backend has not answered since misbridge started"
    return f"the e-Buy backend has not answered for {age:.0f} s"


def _iso(keys: KeyStatus) -> str | None:
    return None if keys.signed_in_at is None else keys.signed_in_at.isoformat(timespec="seconds")
