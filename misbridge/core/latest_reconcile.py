"""The latest end-of-day outcome, handed from ``misbridge reconcile`` to the running daemon.

``misbridge reconcile`` runs as its own process (by hand, or from ``misbridge-reconcile.timer``),
while ``/health``, ``misbridge status`` and ``/metrics`` are answered by the daemon. A file is
the one channel both already share without new privileges: the journal's directory, which both
own as the misbridge user. So after writing its report a run replaces
``<journal directory>/reports/latest.json`` atomically (``misbridge.app.reconcile.write_latest``:
a temporary name, flushed, renamed over the old one), and the daemon reads it when asked
(:class:`LatestReconcileReader`), re-parsing only when the file changed: a ``stat`` per
``/health`` or scrape.

The file holds counts, the business date and the report's path: nothing ``/health`` (readable
by anyone) must not show.

With several POS lanes each lane is reconciled on its own (issue 16): the file then also holds
``lanes``, each lane's latest outcome in lane order, and its top-level fields add them up (the
counts summed, the newest date and run, the report of the first lane with mismatches, else the
newest run's), so ``/health``, the gauge and ``misbridge status`` read it as before. A run of
one lane (``misbridge reconcile --lane``) replaces that lane's entry and keeps the others'
(:func:`with_lane`). A one-lane configuration writes no ``lanes``: the file it always wrote.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from loguru import logger

__all__ = [
    "LATEST_NAME",
    "NOT_A_RECORD",
    "LaneReconcile",
    "LatestReconcile",
    "LatestReconcileReader",
    "latest_path",
    "read_latest",
    "with_lane",
]

#: The file's name, in ``<journal directory>/reports/``.
LATEST_NAME: Final = "latest.json"
#: How every refusal of a damaged file begins.
NOT_A_RECORD: Final = "not a latest reconcile record"


@dataclass(frozen=True)
class LatestReconcile:
    """The outcome of the latest ``misbridge reconcile`` run that wrote a report."""

    business_date: date
    run_at: datetime
    matched: int
    mismatches: int
    report: Path
    #: With several lanes: each lane's latest outcome, in lane order (the fields above add them up).
    lanes: tuple[LaneReconcile, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        content: dict[str, Any] = {
            "businessDate": self.business_date.isoformat(),
            "runAt": self.run_at.isoformat(),
            "matched": self.matched,
            "mismatches": self.mismatches,
            "report": str(self.report),
        }
        if self.lanes:
            content["lanes"] = [{"lane": lane.lane, **lane.latest.to_json()} for lane in self.lanes]
        return content

    @classmethod
    def of_lanes(cls, lanes: Sequence[LaneReconcile]) -> LatestReconcile:
        """Every lane's latest outcome, added up: the counts summed, the newest date and run, the report to read.

        The report is the first lane's (in ``lanes``' order) that has mismatches, else the newest run's.

        Raises:
            ValueError: ``lanes`` is empty.
        """
        if not lanes:
            raise ValueError("of_lanes needs at least one lane")
        outcomes = [lane.latest for lane in lanes]
        with_mismatches = [outcome for outcome in outcomes if outcome.mismatches]
        shown = with_mismatches[0] if with_mismatches else max(outcomes, key=lambda outcome: outcome.run_at)
        return cls(
            business_date=max(outcome.business_date for outcome in outcomes),
            run_at=max(outcome.run_at for outcome in outcomes),
            matched=sum(outcome.matched for outcome in outcomes),
            mismatches=sum(outcome.mismatches for outcome in outcomes),
            report=shown.report,
            lanes=tuple(lanes),
        )

    @classmethod
    def from_json(cls, data: Any) -> LatestReconcile:
        """Read the file's content back.

        Raises:
            ValueError: a field is missing or of the wrong kind.
        """
        try:
            matched, mismatches = data["matched"], data["mismatches"]
            if not all(type(count) is int and count >= 0 for count in (matched, mismatches)):
                raise TypeError("matched and mismatches must be counts")
            lanes = data.get("lanes", [])
            if not isinstance(lanes, list):
                raise TypeError("lanes must be a list")
            return cls(
                business_date=date.fromisoformat(data["businessDate"]),
                run_at=datetime.fromisoformat(data["runAt"]),
                matched=matched,
                mismatches=mismatches,
                report=Path(str(data["report"])),
                lanes=tuple(LaneReconcile(str(lane["lane"]), cls.from_json(lane)) for lane in lanes),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{NOT_A_RECORD}: {err!r}") from err

    def alert(self) -> str | None:
        """The ``/health`` alert when the run left mismatches open, else None; with lanes, each lane's named."""
        if not self.mismatches:
            return None
        if self.lanes:
            open_lanes = [lane for lane in self.lanes if lane.latest.mismatches]
            return "; ".join(f"lane {lane.lane}: {lane.latest.alert()}" for lane in open_lanes)
        return f"{self.mismatches} end-of-day mismatch(es) for {self.business_date.isoformat()}: see {self.report}"


@dataclass(frozen=True)
class LaneReconcile:
    """One lane's latest outcome, in a several-lane :class:`LatestReconcile`."""

    lane: str
    latest: LatestReconcile


def with_lane(previous: LatestReconcile | None, outcome: LaneReconcile, lanes: Sequence[str]) -> LatestReconcile:
    """The latest outcome once ``outcome`` is in: ``previous``'s other lanes kept, of ``lanes`` and in their order.

    ``lanes`` are the configured lanes' names, the default lane first. A ``previous`` without
    lanes (written while misbridge served one lane) is taken as the default lane's; a lane no
    longer configured is left out.
    """
    kept: dict[str, LatestReconcile] = {}
    if previous is not None and previous.lanes:
        kept = {lane.lane: lane.latest for lane in previous.lanes}
    elif previous is not None and lanes:
        kept = {lanes[0]: previous}
    kept[outcome.lane] = outcome.latest
    ordered = [LaneReconcile(name, kept[name]) for name in lanes if name in kept]
    return LatestReconcile.of_lanes(ordered or [outcome])


def latest_path(journal_path: Path) -> Path:
    """Where the latest outcome lives for the journal at ``journal_path``."""
    return journal_path.parent / "reports" / LATEST_NAME


def read_latest(path: Path) -> LatestReconcile | None:
    """The outcome stored at ``path``; None when there is none yet.

    Raises:
        OSError: the file exists but cannot be read.
        ValueError: the file is not a latest reconcile record.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError as err:  # not UTF-8 (UnicodeDecodeError) or not JSON
        raise ValueError(f"{NOT_A_RECORD}: {err}") from err
    return LatestReconcile.from_json(data)


class LatestReconcileReader:
    """Reads the latest outcome for ``/health`` and the scrape, parsing again only when the file changed.

    A file that cannot be read or parsed counts as no outcome (``/health`` must answer
    regardless), with one WARNING per change of the file rather than one per request.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._latest: LatestReconcile | None = None

    def get(self) -> LatestReconcile | None:
        """The latest outcome, or None when no run has written one (or it is unreadable)."""
        try:
            stat = self.path.stat()
        except OSError:
            self._seen, self._latest = None, None
            return None
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if identity != self._seen:
            self._seen = identity
            try:
                self._latest = read_latest(self.path)
            except (OSError, ValueError) as err:
                logger.warning("the latest reconcile outcome {} is unreadable: {}", self.path, err)
                self._latest = None
        return self._latest
