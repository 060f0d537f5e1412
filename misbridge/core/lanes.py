"""Lanes: one daemon serving several POS terminals, each with its own PIN pad (docs/operations.md, "Lanes").

A lane is a :class:`~misbridge.core.service.TransactionService` of its own: its pad, its busy
guard, its backend identity (``deviceNo``, ``shopNo``), its key keeper, its reversal-queue
worker and its recovery, over its view of the one journal. :class:`LaneRouter` puts each
request on a lane:

* the HTTP door by the path (``/v1/lanes/{lane}/{action}``; the plain ``/v1/{action}`` is the
  default lane);
* the e-Buy socket door by the envelope's ``deviceNo`` (book §6.1), or by a lane's own port;
* a request whose traceNo runs on a lane right now goes to that lane whatever it named, so the
  repeat of a sale joins the sale instead of prompting a second customer: idempotency stays by
  traceNo across lanes (the journal is shared, so a finished traceNo is answered from it on
  every lane).

A request naming no lane that exists gets MB19, and nothing is journaled.

With several lanes, every log line made on behalf of a lane carries ``lane=<name>``
(:func:`lane_log_context`); a one-lane daemon's lines stay as they were before lanes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Final, Protocol

from loguru import logger

from misbridge import __version__
from misbridge.config.settings import Lane
from misbridge.core import answers
from misbridge.core.answers import Response
from misbridge.core.health import needs_manual_alert
from misbridge.errors import RequestError, ReturnCode

__all__ = ["LANE_LOG_FIELD", "LaneDoor", "LaneRouter", "LaneService", "lane_log_context"]

#: The log field naming the lane a line was made for (only when the daemon has several lanes).
LANE_LOG_FIELD: Final = "lane"


def lane_log_context(name: str, *, several: bool) -> AbstractContextManager[None]:
    """Inside the block, log lines carry ``lane=<name>`` when ``several`` lanes run; else nothing changes.

    loguru keeps the field in a context variable, so the tasks created inside the block (a
    transaction's own task, a pad driver's link tasks, a background worker) carry it too. A
    one-lane daemon adds nothing: its lines stay exactly as they were before lanes.
    """
    if not several:
        return contextlib.nullcontext()
    return logger.contextualize(**{LANE_LOG_FIELD: name})


class LaneService(Protocol):
    """What the router needs of a lane's service (:class:`~misbridge.core.service.TransactionService`)."""

    async def handle(
        self, action: str, body: Mapping[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> Response: ...

    async def transaction(self, trace_no: str) -> dict[str, Any] | None: ...

    async def health(self) -> tuple[bool, dict[str, Any]]: ...

    def running(self, trace_no: str) -> bool: ...


@dataclass(frozen=True)
class _Served:
    lane: Lane
    service: LaneService


class LaneRouter:
    """Every lane of the daemon, the default lane first; routes requests to them.

    Args:
        lanes: each lane with its service, the default lane first (``Settings.lane_list()``).
    """

    def __init__(self, lanes: Sequence[tuple[Lane, LaneService]]) -> None:
        if not lanes:
            raise ValueError("a router needs at least one lane")
        self._lanes = {lane.name: _Served(lane, service) for lane, service in lanes}
        self._default = lanes[0][0].name
        self._by_device_no = {lane.identity.device_no: lane.name for lane, _ in lanes}
        self._several = len(self._lanes) > 1  # only then do log lines name their lane

    @property
    def names(self) -> list[str]:
        """The lanes' names, the default lane first."""
        return list(self._lanes)

    @property
    def default(self) -> str:
        """The default lane's name."""
        return self._default

    def service(self, name: str) -> LaneService | None:
        """Lane ``name``'s service, or None when there is no such lane."""
        served = self._lanes.get(name)
        return None if served is None else served.service

    def door(self, name: str) -> LaneDoor | None:
        """What a door serving only lane ``name`` calls (the HTTP lane path, a lane's own port); None: no such lane."""
        return LaneDoor(self, name) if name in self._lanes else None

    def front(self) -> LaneDoor:
        """What the HTTP door's plain paths call: the default lane's requests, the whole daemon's ``/health``."""
        return LaneDoor(self, self._default, whole=True)

    def by_device_no(self, device_no: str) -> LaneDoor | None:
        """The lane a socket request's envelope names by ``deviceNo``.

        With one lane, every deviceNo is that lane's (a one-lane POS never had to send the
        right one); with several, an unknown deviceNo names no lane.
        """
        name = self._by_device_no.get(device_no)
        if name is None and len(self._lanes) == 1:
            name = self._default
        return None if name is None else LaneDoor(self, name)

    async def handle(
        self, lane: str, action: str, body: Mapping[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> Response:
        """Run one request on ``lane``, or on the lane where its traceNo runs right now.

        Checking the other lanes and starting the transaction happen without an await in
        between (the service registers a transaction before its first await), so two lanes
        can never both start the same traceNo. Its log lines (and its transaction task's) name
        the lane it runs on, when there are several.
        """
        served = self._lanes.get(lane)
        if served is None:
            return unknown_lane(body, f"no lane named {lane!r}; lanes: {', '.join(self._lanes)}")
        trace_no = body.get("traceNo")
        if isinstance(trace_no, str):
            served = next((other for other in self._lanes.values() if other.service.running(trace_no)), served)
        with lane_log_context(served.lane.name, several=self._several):
            return await served.service.handle(action, body, caller_gone=caller_gone)

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        """The journal's view of ``trace_no``, whichever lane ran it (the journal is shared)."""
        return await self._lanes[self._default].service.transaction(trace_no)

    async def health(self, lane: str | None = None) -> tuple[bool, dict[str, Any]]:
        """``/health``: one lane's, or (``lane`` None) the daemon's.

        With one lane the daemon's health is that lane's, as it always was. With several it is
        ready only when every lane is; ``reasons`` name their lane, and ``lanes`` holds each
        lane's own report.

        Raises:
            KeyError: there is no lane ``lane``.
        """
        if lane is not None:
            return await self._lanes[lane].service.health()
        if len(self._lanes) == 1:
            return await self._lanes[self._default].service.health()
        reports = {name: await served.service.health() for name, served in self._lanes.items()}
        return _combined(reports, self._lanes)


class LaneDoor:
    """One lane as a door sees it: the same calls as a service, bound to the lane's name."""

    def __init__(self, router: LaneRouter, lane: str, *, whole: bool = False) -> None:
        self._router = router
        self.lane = lane
        self._whole = whole  # health() reports every lane (the plain /health)

    async def handle(
        self, action: str, body: Mapping[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> Response:
        """Run one request on this lane (:meth:`LaneRouter.handle`)."""
        return await self._router.handle(self.lane, action, body, caller_gone=caller_gone)

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        """The journal's view of ``trace_no`` (any lane's)."""
        return await self._router.transaction(trace_no)

    async def health(self) -> tuple[bool, dict[str, Any]]:
        """This lane's ``/health`` (the daemon's, for the front door)."""
        return await self._router.health(None if self._whole else self.lane)


def unknown_lane(body: Mapping[str, Any], message: str) -> Response:
    """The MB19 answer to a request that names no lane (nothing journaled, nobody prompted)."""
    trace_no = body.get("traceNo")
    shown = trace_no if isinstance(trace_no, str) else ""
    return answers.refusal(shown, RequestError(message, return_code=ReturnCode.UNKNOWN_LANE))


def _combined(
    reports: Mapping[str, tuple[bool, dict[str, Any]]], lanes: Mapping[str, _Served]
) -> tuple[bool, dict[str, Any]]:
    ready = all(lane_ready for lane_ready, _ in reports.values())
    reasons = [f"lane {name}: {reason}" for name, (_, detail) in reports.items() for reason in detail["reasons"]]
    default = next(iter(reports.values()))[1]
    # Each lane counts its own reversals; the end-of-day alert is the journal's, the same in every lane.
    pending = sum(d["reversals"]["pending"] for _, d in reports.values())
    needs_manual = sum(d["reversals"]["needsManual"] for _, d in reports.values())
    own = needs_manual_alert(default["reversals"]["needsManual"])
    alerts = [needs_manual_alert(needs_manual)] if needs_manual else []
    alerts += [alert for alert in default.get("alerts", []) if alert != own]
    detail: dict[str, Any] = {
        "status": "ready" if ready else "not ready",
        "version": __version__,
        "reasons": reasons,
        "accepting": all(d["accepting"] for _, d in reports.values()),
        "recovering": any(d["recovering"] for _, d in reports.values()),
        "inFlight": sum(d["inFlight"] for _, d in reports.values()),
        "reversals": {"pending": pending, "needsManual": needs_manual},
        "alerts": alerts,
        "lanes": {
            name: {"deviceNo": lanes[name].lane.identity.device_no, **lane_detail}
            for name, (_, lane_detail) in reports.items()
        },
    }
    if "reconcile" in default:
        detail["reconcile"] = default["reconcile"]
    return ready, detail
