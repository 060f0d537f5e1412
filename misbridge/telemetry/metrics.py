"""Prometheus metrics: what the service, the PIN-pad link and the backend client count and time.

Every metric lives in the :class:`Metrics` object's own ``CollectorRegistry`` (never the
process-global default one), so two daemons in one test process do not collide and a test
can read exact values. The composition root makes one :class:`Metrics`, hands each lane's
service, pad driver and backend client that lane's :class:`LaneMetrics`
(:meth:`Metrics.for_lane`), tells it where the journal, the pads, the keys and the backend
clients are (:meth:`Metrics.watch`, one :class:`LaneWatch` per lane), and serves
:meth:`Metrics.render` as ``GET /metrics``.

Everything about one POS lane (its transactions, its pad link, its keys, its backend client,
its reversal queue) carries a ``lane`` label: the lane's name, ``default`` for a daemon without
``[[lanes]]``. What is the whole daemon's (the journal file, the transactions being resolved,
the HTTP door's refusals, the end-of-day run, the build) has none.

Gauges that describe stored state (reversal queue, transactions being resolved, journal
size) are read from the journal when scraped, so they are right after a restart too; the
pad's ``connected`` flag, the keys (signed in, the pad's working key) and the backend's
reachability, and the latest end-of-day run's mismatches (``reports/latest.json``), are read at
scrape time as well. Counters and histograms start at
zero with each process, as Prometheus expects (``rate()`` handles restarts).

Label values are clamped to known sets (unknown actions become ``other``): a POS sending
random action names must not create unbounded series. Lane names come from the configuration.

Names (see docs/operations.md, "Metrics"):

=======================================================  =====================================
``misbridge_transactions_total{lane,action,outcome}``    card transactions finished
``misbridge_stage_duration_seconds{lane,stage}``         card, pin, backend and total latency
``misbridge_link_naks_total{lane,direction}``            NAKs sent / received on the pad link
``misbridge_link_retransmits_total{lane,cause}``         frames sent again (nak / timeout)
``misbridge_link_resyncs_total{lane}``                   bad frames or garbage skipped to resync
``misbridge_link_duplicates_total{lane}``                frames the pad sent twice, suppressed
``misbridge_backend_retries_total{lane,action}``         NOT SENT requests tried again
``misbridge_inquiries_total{lane,verdict}``              inquiries misbridge sent, by result
``misbridge_api_refusals_total{status}``                 HTTP requests refused (401/403/421)
``misbridge_reversal_queue{lane,state}``                 reversal queue: pending, needs_manual
``misbridge_transactions_unresolved``                    unknown / inquiring / voiding right now
``misbridge_device_connected{lane}``                     1 when the PIN-pad link is up
``misbridge_journal_bytes``                              journal file + its WAL, in bytes
``misbridge_signed_in{lane}``                            1 when today's sign-in succeeded
``misbridge_pad_working_key_ok{lane}``                   1 when the pad holds the sign-in's key
``misbridge_backend_reachable{lane}``                    1 when the backend counts as reachable
``misbridge_backend_last_ok_seconds{lane}``              seconds since its last answer; NaN: never
``misbridge_reconcile_mismatches``                       open mismatches of the latest end-of-day run
=======================================================  =====================================
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Final, Protocol

from loguru import logger
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from misbridge import __version__
from misbridge.ebuy.requests import BOOK_ACTIONS, REQUEST_MODELS
from misbridge.errors import JournalError
from misbridge.journal.records import ReversalState
from misbridge.link.events import DuplicateSuppressed, FrameRejected, GarbageDiscarded, LinkEvent, Retransmitted

__all__ = [
    "OUTCOMES", "REVERSAL_STATES", "STAGES", "UNRESOLVED_STATES", "JournalStats", "LaneMetrics", "LaneWatch",
    "Metrics", "ReversalStats",
]  # fmt: skip

#: The timed stages of a card transaction.
STAGES: Final = ("card", "pin", "code", "backend", "total")
#: Outcome label values: the journal state a transaction ended in, or ``refused`` (never started).
OUTCOMES: Final = (
    "approved", "declined", "aborted", "voided", "voiding", "needs_manual", "unknown", "inquiring", "choosing",
    "refused",
)  # fmt: skip
#: Inquiry verdicts (``misbridge.core.inquiry.Verdict.kind``): what an inquiry established.
VERDICTS: Final = ("approved", "failed", "pending", "unknown")
#: Journal states of a transaction whose outcome misbridge is still resolving.
UNRESOLVED_STATES: Final = ("unknown", "inquiring", "voiding")
#: The reversal queue states the gauge reports.
REVERSAL_STATES: Final[tuple[ReversalState, ...]] = ("pending", "needs_manual")
_ACTIONS: Final = frozenset(REQUEST_MODELS) | frozenset(BOOK_ACTIONS)
_OTHER: Final = "other"
#: Seconds; a customer step takes seconds to a minute, a backend call up to its 50 s deadline.
_BUCKETS: Final = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 180.0, 300.0)
_STATUS = re.compile(r"[1-5]\d\d")


class JournalStats(Protocol):
    """What the scrape reads from the whole journal (``misbridge.journal.store.Journal`` has it)."""

    async def count_reversals(self, state: ReversalState) -> int: ...

    async def list_by_states(self, states: Iterable[str]) -> list[Any]: ...


class ReversalStats(Protocol):
    """What the scrape reads from one lane's view of the journal (``Journal.for_lane`` has it)."""

    async def count_reversals(self, state: ReversalState) -> int: ...


@dataclass(frozen=True)
class LaneWatch:
    """Where one lane's scrape-time gauges come from (:meth:`Metrics.watch`); None: no source (yet).

    Attributes:
        lane: the lane's name, the ``lane`` label (``default`` for a daemon without ``[[lanes]]``).
        journal: the lane's view of the journal, whose reversal queue is the lane's.
        device_connected: whether the lane's PIN-pad link is up.
        signed_in: whether the lane's sign-in of the current period succeeded.
        pad_key_ok: whether the lane pad's working-key slot holds the key of that sign-in.
        backend_last_ok_s: seconds since the backend last answered the lane's client, None if never.
        backend_reachable: whether the backend counts as reachable for the lane (``/health``'s rule).
    """

    lane: str
    journal: ReversalStats | None = None
    device_connected: Callable[[], bool] | None = None
    signed_in: Callable[[], bool] | None = None
    pad_key_ok: Callable[[], bool] | None = None
    backend_last_ok_s: Callable[[], float | None] | None = None
    backend_reachable: Callable[[], bool] | None = None

    def over(self, older: LaneWatch) -> LaneWatch:
        """This watch set, keeping ``older``'s sources where this one gives none."""
        given = {spec.name: value for spec in fields(self) if (value := getattr(self, spec.name)) is not None}
        return replace(older, **given)


def _clamp(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else _OTHER


class Metrics:
    """The misbridge metrics, in a registry of their own.

    Args:
        registry: where to register; a new private ``CollectorRegistry`` by default.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.transactions = Counter(
            "misbridge_transactions", "Card transactions finished, by lane, action and outcome (final journal state)",
            ["lane", "action", "outcome"], registry=reg,
        )  # fmt: skip
        self.stage_seconds = Histogram(
            "misbridge_stage_duration_seconds", "Duration of a transaction stage: card, pin, backend, total",
            ["lane", "stage"], buckets=_BUCKETS, registry=reg,
        )  # fmt: skip
        self.link_naks = Counter(
            "misbridge_link_naks", "NAKs on the PIN-pad link: sent (a bad frame arrived) or received",
            ["lane", "direction"], registry=reg,
        )  # fmt: skip
        self.link_retransmits = Counter(
            "misbridge_link_retransmits", "Frames sent again to the PIN pad, by cause (nak, timeout)",
            ["lane", "cause"], registry=reg,
        )  # fmt: skip
        self.link_resyncs = Counter(
            "misbridge_link_resyncs", "Times the link decoder skipped a bad frame or stray bytes to resync",
            ["lane"], registry=reg,
        )  # fmt: skip
        self.link_duplicates = Counter(
            "misbridge_link_duplicates", "Frames the pad sent twice (our ACK was lost), suppressed", ["lane"],
            registry=reg,
        )  # fmt: skip
        self.backend_retries = Counter(
            "misbridge_backend_retries", "Backend requests tried again because they were provably not sent",
            ["lane", "action"], registry=reg,
        )  # fmt: skip
        self.inquiries = Counter(
            "misbridge_inquiries", "Inquiries misbridge sent to resolve an unknown outcome, by verdict",
            ["lane", "verdict"], registry=reg,
        )  # fmt: skip
        self.api_refusals = Counter(
            "misbridge_api_refusals", "HTTP requests refused by the door's security rules, by status",
            ["status"], registry=reg,
        )  # fmt: skip
        self.reversal_queue = Gauge(
            "misbridge_reversal_queue",
            "Reversal queue entries by lane and state (pending, needs_manual), read at scrape",
            ["lane", "state"], registry=reg,
        )  # fmt: skip
        self.unresolved = Gauge(
            "misbridge_transactions_unresolved",
            "Transactions whose outcome is being resolved (unknown, inquiring, voiding), read at scrape",
            registry=reg,
        )
        self.device_connected = Gauge(
            "misbridge_device_connected", "1 when the lane's PIN-pad link is up, else 0", ["lane"], registry=reg
        )
        self.journal_bytes = Gauge(
            "misbridge_journal_bytes", "Size of the journal database plus its WAL file, in bytes", registry=reg
        )
        self.signed_in = Gauge(
            "misbridge_signed_in",
            "1 when the lane signed in for the current period (working key issued), else 0",
            ["lane"], registry=reg,
        )  # fmt: skip
        self.pad_working_key_ok = Gauge(
            "misbridge_pad_working_key_ok", "1 when the lane's PIN pad holds the working key of the sign-in, else 0",
            ["lane"], registry=reg,
        )  # fmt: skip
        self.backend_reachable = Gauge(
            "misbridge_backend_reachable",
            "1 when the e-Buy backend answered the lane recently enough for /health, else 0",
            ["lane"], registry=reg,
        )  # fmt: skip
        self.backend_last_ok_seconds = Gauge(
            "misbridge_backend_last_ok_seconds",
            "Seconds since the e-Buy backend last answered the lane; NaN if it never has",
            ["lane"], registry=reg,
        )  # fmt: skip
        self.reconcile_mismatches = Gauge(
            "misbridge_reconcile_mismatches",
            "Mismatches left open by the latest end-of-day reconcile run (0 before the first run), read at scrape",
            registry=reg,
        )
        self.build_info = Gauge("misbridge_build_info", "Always 1; the version label", ["version"], registry=reg)
        self.build_info.labels(version=__version__).set(1)
        self._per_lane: dict[str, LaneMetrics] = {}
        self._watched: dict[str, LaneWatch] = {}
        self._journal: JournalStats | None = None
        self._journal_path: Path | None = None
        self._reconcile_mismatches: Callable[[], int] | None = None

    # -- wiring --------------------------------------------------------------------------------

    def for_lane(self, lane: str) -> LaneMetrics:
        """Lane ``lane``'s recording calls (the same object for the same name).

        The lane's series exist from here on: its unlabelled-before counters and flags at 0,
        its reversal queue at 0, its backend age NaN (0 would read as "answered just now").
        """
        known = self._per_lane.get(lane)
        if known is not None:
            return known
        recorder = self._per_lane[lane] = LaneMetrics(self, lane)
        for counter in (self.link_resyncs, self.link_duplicates):
            counter.labels(lane=lane)
        for gauge in (self.device_connected, self.signed_in, self.pad_working_key_ok, self.backend_reachable):
            gauge.labels(lane=lane)
        for state in REVERSAL_STATES:
            self.reversal_queue.labels(lane=lane, state=state)
        self.backend_last_ok_seconds.labels(lane=lane).set(math.nan)
        return recorder

    def watch(
        self,
        *,
        journal: JournalStats | None = None,
        journal_path: Path | None = None,
        reconcile_mismatches: Callable[[], int] | None = None,
        lanes: Iterable[LaneWatch] = (),
    ) -> None:
        """Say where the scrape-time gauges come from (each source given replaces the old one).

        Args:
            journal: the whole journal: the transactions being resolved, whichever lane's.
            journal_path: the database file whose size (with its WAL) is reported.
            reconcile_mismatches: the open mismatches of the latest end-of-day run (0 when none ran).
            lanes: each lane's sources; a lane watched before keeps the ones a new set leaves out.
        """
        if journal is not None:
            self._journal = journal
        if journal_path is not None:
            self._journal_path = journal_path
        if reconcile_mismatches is not None:
            self._reconcile_mismatches = reconcile_mismatches
        for lane in lanes:
            self.for_lane(lane.lane)
            older = self._watched.get(lane.lane)
            self._watched[lane.lane] = lane if older is None else lane.over(older)

    # -- recording that is no lane's ------------------------------------------------------------

    def api_refused(self, status: int) -> None:
        """Count one HTTP request the door's security rules refused."""
        text = str(status)
        self.api_refusals.labels(status=text if _STATUS.fullmatch(text) else _OTHER).inc()

    # -- scraping -----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Read the scrape-time gauges: each lane's pad, keys and backend, the journal, the latest reconcile run."""
        for lane in self._watched.values():
            self._refresh_lane(lane)
        if self._reconcile_mismatches is not None:
            self.reconcile_mismatches.set(self._reconcile_mismatches())
        if self._journal_path is not None:
            self.journal_bytes.set(journal_size(self._journal_path))
        try:
            await self._refresh_from_journal()
        except JournalError as err:
            logger.warning("metrics: journal gauges not refreshed: {}", err)

    def _refresh_lane(self, lane: LaneWatch) -> None:
        for gauge, source in (
            (self.device_connected, lane.device_connected),
            (self.signed_in, lane.signed_in),
            (self.pad_working_key_ok, lane.pad_key_ok),
            (self.backend_reachable, lane.backend_reachable),
        ):
            if source is not None:
                gauge.labels(lane=lane.lane).set(1 if source() else 0)
        if lane.backend_last_ok_s is not None:
            age = lane.backend_last_ok_s()
            self.backend_last_ok_seconds.labels(lane=lane.lane).set(math.nan if age is None else max(age, 0.0))

    async def _refresh_from_journal(self) -> None:
        """Each lane's reversal queue from its view, the unresolved transactions from the whole journal."""
        for lane in self._watched.values():
            if lane.journal is not None:
                for state in REVERSAL_STATES:
                    count = await lane.journal.count_reversals(state)
                    self.reversal_queue.labels(lane=lane.lane, state=state).set(count)
        if self._journal is not None:
            self.unresolved.set(len(await self._journal.list_by_states(UNRESOLVED_STATES)))

    async def render(self) -> tuple[bytes, str]:
        """Refresh, then the text exposition format and its content type (for ``GET /metrics``)."""
        await self.refresh()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (0 if absent), e.g. ``value("misbridge_link_resyncs_total")``."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else float(found)


class LaneMetrics:
    """One lane's recording calls, its ``lane`` label bound (made by :meth:`Metrics.for_lane`).

    It fits ``misbridge.core.observe.TransactionMetrics`` (the lane's service and inquiry loop),
    the lane's pad driver's ``on_link_event`` and its backend client's ``on_attempt``.
    """

    def __init__(self, metrics: Metrics, lane: str) -> None:
        self._metrics = metrics
        #: The lane's name: the ``lane`` label of everything recorded here.
        self.lane = lane

    def transaction_finished(self, action: str, outcome: str) -> None:
        """Count one card transaction that ended in ``outcome`` (its journal state, or ``refused``)."""
        self._metrics.transactions.labels(
            lane=self.lane, action=_clamp(action, _ACTIONS), outcome=_clamp(outcome, OUTCOMES)
        ).inc()

    def observe_stage(self, stage: str, seconds: float) -> None:
        """Record how long ``stage`` (``card``, ``pin``, ``code``, ``backend`` or ``total``) took.

        Raises:
            ValueError: ``stage`` is not one of :data:`STAGES`.
        """
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        self._metrics.stage_seconds.labels(lane=self.lane, stage=stage).observe(max(seconds, 0.0))

    @contextmanager
    def time_stage(self, stage: str) -> Iterator[None]:
        """``with lane_metrics.time_stage("card"): ...`` records the block's duration (also on error)."""
        started = time.monotonic()
        try:
            yield
        finally:
            self.observe_stage(stage, time.monotonic() - started)

    def inquiry_sent(self, verdict: str) -> None:
        """Count one inquiry misbridge originated, by what it established."""
        self._metrics.inquiries.labels(lane=self.lane, verdict=_clamp(verdict, VERDICTS)).inc()

    def record_link_event(self, event: LinkEvent | object) -> None:
        """Count a PIN-pad link diagnostic event (every event may be passed; others are ignored)."""
        metrics, lane = self._metrics, self.lane
        if isinstance(event, FrameRejected):
            metrics.link_resyncs.labels(lane=lane).inc()
            if event.nak_sent:
                metrics.link_naks.labels(lane=lane, direction="sent").inc()
        elif isinstance(event, Retransmitted):
            metrics.link_retransmits.labels(lane=lane, cause=event.cause).inc()
            if event.cause == "nak":
                metrics.link_naks.labels(lane=lane, direction="received").inc()
        elif isinstance(event, GarbageDiscarded):
            metrics.link_resyncs.labels(lane=lane).inc()
        elif isinstance(event, DuplicateSuppressed):
            metrics.link_duplicates.labels(lane=lane).inc()

    def backend_attempt(self, action: str, attempt: int) -> None:
        """Tell of attempt number ``attempt`` (1, 2, ...) of a backend request; 2 and up are retries."""
        if attempt > 1:
            self._metrics.backend_retries.labels(lane=self.lane, action=_clamp(action, _ACTIONS)).inc()


def journal_size(path: Path) -> int:
    """Bytes of the journal database and its ``-wal`` file (0 for a file that is missing)."""
    total = 0
    for candidate in (path, path.with_name(path.name + "-wal")):
        try:
            total += candidate.stat().st_size
        except FileNotFoundError:
            continue
    return total
