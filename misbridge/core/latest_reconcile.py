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
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Final

from loguru import logger

__all__ = [
    "LATEST_NAME",
    "NOT_A_RECORD",
    "LatestReconcile",
    "LatestReconcileReader",
    "latest_path",
    "read_latest",
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

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "businessDate": self.business_date.isoformat(),
            "runAt": self.run_at.isoformat(),
            "matched": self.matched,
            "mismatches": self.mismatches,
            "report": str(self.report),
        }

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
            return cls(
                business_date=date.fromisoformat(data["businessDate"]),
                run_at=datetime.fromisoformat(data["runAt"]),
                matched=matched,
                mismatches=mismatches,
                report=Path(str(data["report"])),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{NOT_A_RECORD}: {err!r}") from err

    def alert(self) -> str | None:
        """The ``/health`` alert when the run left mismatches open, else None."""
        if not self.mismatches:
            return None
        return f"{self.mismatches} end-of-day mismatch(es) for {self.business_date.isoformat()}: see {self.report}"


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
