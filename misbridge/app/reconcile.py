"""``misbridge reconcile``: upload a business day to the backend, compare, and write the report.

The end of day (docs/operations.md, "End of day"): the day's records
(:func:`misbridge.core.endofday.day_records`) go up with ``batchUpload`` in calls of at most
``reconcile.batch_size`` records, then ``summary`` is asked; :mod:`misbridge.core.reconcile`
compares. Every request has its own traceNo from the journal's one counter, committed before
it leaves and given its one result after (``key_calls`` rows of kind ``batchUpload`` and
``summary``, schema v7), so a traceNo the backend may have seen is never sent again, crash or
not. Uploading changes nothing in the journal's transactions: a re-run of the same day makes
new calls and a new report file, and that is all.

The report goes to standard output (a table, or ``--json``) and, as JSON and CSV, to
``<journal directory>/reports/<business date>/reconcile-<run time>.json|.csv``, each written to
a temporary name, flushed to disk and only then given its name, so a crash never leaves half a
report. A killed run may leave such a temporary (``.<name>.<pid>.tmp``, never read); the next
run removes the ones whose process is gone before it writes (:func:`remove_stale_temporaries`).
The crash points ``reconcile.*`` (:mod:`misbridge.host.crashpoints`) prove it:
tests/crash/test_reconcile_crash.py kills the command at each.

Exit status: 0 everything matches, 3 mismatches, 1 the backend could not be reached or failed
mid-way (the calls made are journaled; run again), 2 a configuration or usage error.

**Lanes** (issue 16). The backend knows each POS lane by its own deviceNo, so with several
lanes every business day is reconciled once per lane, in lane order: the lane's records (its
journal view, :meth:`misbridge.journal.store.Journal.for_lane`) go up under the lane's
identity (deviceNo, shopNo), with a ``summary`` of the lane's own; the calls' traceNos come from
the journal's one counter and their ``key_calls`` rows carry the lane. ``--lane`` runs one lane.
Each lane's report names the lane, and its files do too, except the default lane's, whose names
are the ones a one-lane store always had: ``reconcile-<run time>.json`` for the default lane,
``reconcile-<lane>-<run time>.json`` for the others (a lane name has no capital letter, so the
two never mix). ``latest.json`` keeps each lane's latest outcome and adds them up
(:func:`misbridge.core.latest_reconcile.with_lane`). ``--since last`` takes a day as done for a
lane once that lane has a report of it, and runs each day for the lanes that have none. The
exit status is the worst lane's; a 1 or 2 stops the run there. A one-lane configuration runs
as before lanes: the whole journal, ``[identity]``, no lane in the report or its names.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Final, Literal, TextIO

from loguru import logger

from misbridge.app.daemon import load_signing_key
from misbridge.app.journal_file import open_journal
from misbridge.backend.client import BackendClient, BackendReply
from misbridge.config.settings import Lane, Settings
from misbridge.core.endofday import BusinessDay, DayRecords, business_day, business_day_at, day_records
from misbridge.core.latest_reconcile import LaneReconcile, LatestReconcile, latest_path, read_latest, with_lane
from misbridge.core.reconcile import (
    EXIT_MATCHED,
    ReconcileReport,
    ReportLane,
    SettleLine,
    SummaryTotals,
    Totals,
    by_activity,
    compare,
    exact_amount,
    journal_totals,
    settle_lines,
)
from misbridge.ebuy import jsonio
from misbridge.errors import BackendError, ConfigError, JournalError, ReconcileFailed
from misbridge.host.crashpoints import crash_point
from misbridge.journal.records import KeyCallKind
from misbridge.journal.store import Journal

__all__ = [
    "EXIT_FAILED",
    "EXIT_USAGE",
    "MATCH_WINDOW",
    "SINCE_LAST",
    "RunPlan",
    "days_to_run",
    "lanes_to_reconcile",
    "last_complete_day",
    "last_reported_day",
    "publish_latest",
    "reconcile",
    "remove_stale_temporaries",
    "report_paths",
    "run_reconcile",
    "write_latest",
]

#: Exit status: the backend could not be reached, or failed mid-way.
EXIT_FAILED: Final = 1
#: Exit status: a configuration or usage error.
EXIT_USAGE: Final = 2
#: batchUpload matches only the transactions of the last 7 days (book §11.2).
MATCH_WINDOW: Final = timedelta(days=7)
_RUN_TIME_FORMAT: Final = "%Y%m%dT%H%M%S%fZ"
#: A temporary of :func:`_write_atomically`: ``.<the file's name>.<the writer's pid>.tmp``.
_TEMPORARY: Final = re.compile(r"\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp")
#: A report's JSON file: ``reconcile-<run time>.json`` (the default lane's) or ``reconcile-<lane>-<run time>.json``.
_REPORT_NAME: Final = re.compile(r"reconcile-(?:(?P<lane>.+)-)?[0-9]{8}T[0-9]{12}Z\.json")


@dataclass(frozen=True)
class _Summary:
    trace_no: str
    totals: SummaryTotals


def last_complete_day(settings: Settings, now: datetime) -> date:
    """The last business day that has ended at ``now`` (aware): the one before ``now``'s own."""
    reconcile = settings.reconcile
    return business_day_at(now, reconcile.cut_off_time(), reconcile.zone()) - timedelta(days=1)


async def run_reconcile(
    settings: Settings,
    out: TextIO,
    *,
    day: date | None = None,
    since: date | Literal["last"] | None = None,
    as_json: bool = False,
    now: datetime | None = None,
    err: TextIO | None = None,
    lane: str | None = None,
) -> int:
    """``misbridge reconcile``: 0 matched, 3 mismatches, 1 backend unreachable or failed, 2 usage error.

    ``day`` defaults to :func:`last_complete_day`; ``since`` (a date, or :data:`SINCE_LAST`)
    runs every business day from it to the last complete one instead (:func:`days_to_run`),
    oldest first, stopping at the first that exits 1 or 2. Each day is reconciled once per
    lane, in lane order (module text); ``lane`` names the one lane to run
    (:func:`lanes_to_reconcile`). ``now`` (aware, default the clock) is when the run happens.
    The report goes to ``out`` (several days or lanes: one table each, or one JSON list); the
    reason of a 1 or 2 to ``err`` (default ``out``) as one line starting ``misbridge:``, and
    with ``since`` a progress line per day.

    Raises:
        ConfigError: the settings are unusable (no signing key, a bad time zone): exit 2.
    """
    now = datetime.now(UTC) if now is None else now
    err = out if err is None else err
    try:
        lanes = lanes_to_reconcile(settings, lane)
    except ValueError as unknown:
        print(f"misbridge: {unknown}", file=err)
        return EXIT_USAGE
    try:
        plan = days_to_run(settings, now, day=day, since=since, lanes=lanes)
    except ValueError as bad_zone:
        raise ConfigError(f"reconcile.time_zone: {bad_zone}") from bad_zone
    for note in plan.notes:
        print(f"misbridge: {note}", file=err)
    if plan.refusal is not None:
        print(f"misbridge: {plan.refusal}", file=err)
        return EXIT_USAGE
    listed = as_json and (since is not None or len(lanes) > 1)  # several reports: one JSON list
    shown: _Shown = "none" if listed else "json" if as_json else "table"
    reports: list[ReconcileReport] = []
    worst = EXIT_MATCHED
    for number, chosen, day_lane in _runs(plan, lanes):
        if since is not None and number is not None:
            print(f"misbridge: business day {chosen} ({number} of {len(plan.days)})", file=err)
        status, report = await _run_day(settings, chosen, now, out, shown=shown, err=err, lane=day_lane)
        if report is not None:
            reports.append(report)
        if status in (EXIT_FAILED, EXIT_USAGE):
            worst = status
            break
        worst = max(worst, status)
    if listed:
        print(jsonio.pretty([report.to_json() for report in reports]), file=out)
    return worst


def lanes_to_reconcile(settings: Settings, name: str | None = None) -> list[Lane]:
    """The lanes a run reconciles: every configured lane in order, or the one called ``name``.

    ``default`` names the default lane whatever it is called, as ``misbridge journal --lane``
    does (:meth:`misbridge.config.settings.Settings.lane_named`).

    Raises:
        ValueError: no lane is called ``name``; the message lists the lanes.
    """
    return settings.lane_list() if name is None else [settings.lane_named(name)]


def _several_lanes(settings: Settings) -> bool:
    """Whether misbridge serves several lanes: each is then reconciled on its own view and identity."""
    return len(settings.lane_list()) > 1


def _runs(plan: RunPlan, lanes: Sequence[Lane]) -> Iterator[tuple[int | None, date, Lane]]:
    """Each (day, lane) of ``plan`` in order; the day's number (1-based) with its first lane only."""
    for number, chosen in enumerate(plan.days, start=1):
        names = plan.lanes_on(chosen, [lane.name for lane in lanes])
        for index, lane in enumerate(lane for lane in lanes if lane.name in names):
            yield (number if index == 0 else None), chosen, lane


@dataclass(frozen=True)
class RunPlan:
    """The business days one run reconciles, oldest first; a refusal (exit 2) instead; notes for the operator.

    ``partial`` names the days on which only some lanes run (``--since last``: the others have a
    report of it already), with those lanes; every other day runs every lane.
    """

    days: tuple[date, ...]
    refusal: str | None = None
    notes: tuple[str, ...] = ()
    partial: tuple[tuple[date, tuple[str, ...]], ...] = ()

    def lanes_on(self, day: date, lanes: Sequence[str]) -> tuple[str, ...]:
        """Which of ``lanes`` (names, in order) run on ``day``."""
        only = dict(self.partial).get(day)
        return tuple(lanes) if only is None else tuple(name for name in lanes if name in only)


#: ``--since last``: every day after the newest one with a report, up to the last complete day.
SINCE_LAST: Final[Literal["last"]] = "last"


def days_to_run(
    settings: Settings,
    now: datetime,
    *,
    day: date | None = None,
    since: date | Literal["last"] | None = None,
    lanes: Sequence[Lane] | None = None,
) -> RunPlan:
    """Which business days a run reconciles, for which of ``lanes`` (default: every configured lane).

    * neither: the last complete business day;
    * ``day``: that day (it must have ended and lie within batchUpload's 7 days);
    * ``since`` a date: every day from it to the last complete one (the same limits);
    * ``since`` :data:`SINCE_LAST`: for each lane, every day after the newest business day that
      has a report of the lane (:func:`last_reported_day`) to the last complete one, or with no
      report yet the last complete day alone; the plan's days are every lane's, and a day some
      lanes have a report of runs for the others only (:attr:`RunPlan.partial`). Days past
      batchUpload's 7 days are skipped with a note (they can no longer be matched). Nothing to
      do is no error: no days, a note.

    Raises:
        ValueError: ``reconcile.time_zone`` names no zone.
    """
    last = last_complete_day(settings, now)
    if since is None:
        chosen = last if day is None else day
        refusal = _refusal(business_day(settings.reconcile, chosen), now, settings.journal.path)
        return RunPlan((chosen,), refusal)
    if isinstance(since, date):
        first = since
        if first > last:
            return RunPlan((), f"--since {first}: that business day has not ended yet (the last ended is {last})")
        refusal = _refusal(business_day(settings.reconcile, first), now, settings.journal.path)
        return RunPlan(_days(first, last), None if refusal is None else f"--since {first}: {refusal}")
    firsts = _first_unreported(settings, settings.lane_list() if lanes is None else lanes, last)
    days = _days(min(firsts.values()), last)
    kept = tuple(d for d in days if now - business_day(settings.reconcile, d).begin <= MATCH_WINDOW)
    notes = []
    if len(kept) < len(days):
        skipped = days[: len(days) - len(kept)]
        notes.append(
            f"business days {skipped[0]} to {skipped[-1]} were never reconciled and are older than 7 days: "
            "batchUpload can no longer match them; compare them with e-Buy by hand (docs/operations.md)"
        )
    if not kept:
        notes.append(f"nothing to reconcile: every business day up to {last} has a report")
        return RunPlan((), None, tuple(notes))
    refusal = _refusal(business_day(settings.reconcile, kept[0]), now, settings.journal.path)
    partial = tuple(
        (d, tuple(name for name, first in firsts.items() if first <= d))
        for d in kept
        if any(first > d for first in firsts.values())
    )
    return RunPlan(kept, refusal, tuple(notes), partial)


def _first_unreported(settings: Settings, lanes: Sequence[Lane], last: date) -> dict[str, date]:
    """Each lane's first day to run for ``--since last``: the day after its newest report, else ``last``."""
    firsts: dict[str, date] = {}
    for lane in lanes:
        reported = last_reported_day(settings.journal.path, _file_lane(settings, lane))
        firsts[lane.name] = last if reported is None else reported + timedelta(days=1)
    return firsts


def _days(first: date, last: date) -> tuple[date, ...]:
    return tuple(first + timedelta(days=n) for n in range((last - first).days + 1))


def _file_lane(settings: Settings, lane: Lane) -> str | None:
    """The lane as report file names carry it: None for the default lane (and for one lane), else its name."""
    return None if lane.default or not _several_lanes(settings) else lane.name


def last_reported_day(journal_path: Path, lane: str | None = None) -> date | None:
    """The newest business day with a report of ``lane`` (``reports/<date>/reconcile-*.json``); None when none has one.

    ``lane`` None is the default lane, whose files carry no lane name (a one-lane store's
    reports, as ever); a name counts only the files of that lane (``reconcile-<lane>-*.json``).
    """
    reports = journal_path.parent / "reports"
    newest: date | None = None
    for folder in reports.glob("????-??-??"):
        try:
            reported = date.fromisoformat(folder.name)
        except ValueError:
            continue
        if _has_report(folder, lane) and (newest is None or reported > newest):
            newest = reported
    return newest


def _has_report(folder: Path, lane: str | None) -> bool:
    for path in folder.glob("reconcile-*.json"):
        named = _REPORT_NAME.fullmatch(path.name)
        if named is not None and named["lane"] == lane:
            return True
    return False


#: How a day's report is printed: a table, JSON, or not at all (the caller prints a list of several).
_Shown = Literal["table", "json", "none"]


async def _run_day(
    settings: Settings, chosen: date, now: datetime, out: TextIO, *, shown: _Shown, err: TextIO, lane: Lane
) -> tuple[int, ReconcileReport | None]:
    """Reconcile one business day of ``lane`` and print it as ``shown``: its exit status, and the report if written."""
    window = business_day(settings.reconcile, chosen)
    refusal = _refusal(window, now, settings.journal.path)
    if refusal is not None:
        print(f"misbridge: {refusal}", file=err)
        return EXIT_USAGE, None
    try:
        report = await reconcile(settings, window, now, lane=lane if _several_lanes(settings) else None)
    except ReconcileFailed as failed:
        print(
            f"misbridge: {failed.message}; the calls made are in the journal, run misbridge reconcile again", file=err
        )
        return EXIT_FAILED, None
    except JournalError as broken:
        print(f"misbridge: {broken}", file=err)
        return EXIT_FAILED, None
    try:
        json_path, csv_path = write_report(report, report_paths(settings.journal.path, report))
    except OSError as unwritable:
        print(f"misbridge: the report could not be written: {unwritable}", file=err)
        return EXIT_FAILED, None
    crash_point("reconcile.after_report")
    try:
        publish_latest(settings.journal.path, report, json_path, lanes=[lane.name for lane in settings.lane_list()])
    except OSError as unwritable:
        # The report is written and its exit status stands; only the daemon's view is stale.
        print(f"misbridge: warning: {latest_path(settings.journal.path)} not updated: {unwritable}", file=err)
    if shown == "json":
        print(jsonio.pretty(report.to_json()), file=out)
    elif shown == "table":
        print(report.table(), file=out)
        print(f"report: {json_path}\n        {csv_path}", file=out)
    return report.exit_status, report


def publish_latest(
    journal_path: Path, report: ReconcileReport, json_path: Path, *, lanes: Sequence[str] = ()
) -> LatestReconcile:
    """Tell the running daemon about this run (``reports/latest.json``) and raise the alert on mismatches.

    The ERROR line carries ``alert="RECONCILE_MISMATCH"`` like the reversal queue's
    ``NEEDS_MANUAL``, so the same journald/log-shipper rule catches both; it names the count,
    the date and the report (and a lane's report its lane), never a traceNo (those are in the
    report). A lane's report replaces its lane's entry of the file and keeps the other lanes'
    (``lanes``: the configured lanes' names, in order; :func:`with_lane`).

    Raises:
        OSError: the reports directory is not writable.
    """
    own = LatestReconcile(
        business_date=report.business_date,
        run_at=report.run_at,
        matched=report.matched,
        mismatches=report.to_act_on,
        report=json_path,
    )
    # The alert first: an unwritable latest.json must not swallow it.
    if own.mismatches:
        named = "" if report.lane is None else f"lane {report.lane.name}: "
        logger.bind(alert="RECONCILE_MISMATCH").error(
            "reconcile: {}{} end-of-day mismatch(es) for {}: see {}",
            named,
            own.mismatches,
            own.business_date.isoformat(),
            json_path,
        )
    path = latest_path(journal_path)
    latest = own if report.lane is None else with_lane(_previous(path), LaneReconcile(report.lane.name, own), lanes)
    write_latest(path, latest)
    return latest


def _previous(path: Path) -> LatestReconcile | None:
    """The latest outcome written so far; None when there is none or it is unreadable (this run replaces it)."""
    try:
        return read_latest(path)
    except (OSError, ValueError) as unreadable:
        logger.warning("reconcile: {} is unreadable, the other lanes' outcomes are lost: {}", path, unreadable)
        return None


def _refusal(window: BusinessDay, now: datetime, journal_path: Path) -> str | None:
    if window.end > now:
        return f"business day {window.business_date} has not ended yet (it ends {window.end.isoformat()})"
    if now - window.begin > MATCH_WINDOW:
        return f"business day {window.business_date} is older than 7 days: batchUpload matches only the last 7 days"
    if not journal_path.is_file():
        return f"journal {journal_path} does not exist (journal.path)"
    return None


async def reconcile(
    settings: Settings, window: BusinessDay, now: datetime, *, lane: Lane | None = None
) -> ReconcileReport:
    """Upload business day ``window``, ask the summary, compare: the report (no file written).

    ``lane`` None reconciles the whole journal under ``[identity]`` (one lane, as ever); a lane
    reconciles its own rows (its journal view) under its own identity, and the report names it.

    Raises:
        ConfigError: no signing key while signing is on.
        ReconcileFailed: the backend could not be reached, or answered a request with a refusal
            or a reply this cannot read.
        JournalError: the journal could not be read or written.
    """
    signing_key = load_signing_key(settings)
    identity = settings.identity if lane is None else lane.identity
    async with await open_journal(settings.journal) as whole:
        journal = whole if lane is None else whole.for_lane(lane.name, default=lane.default)
        records = await day_records(journal, window)
        backend = BackendClient(settings.backend, identity, signing_key)
        try:
            statuses, upload_trace_nos = await _upload(journal, backend, records, settings.reconcile.batch_size)
            summary = await _summary(journal, backend)
        finally:
            await backend.aclose()
        order_nos = await _order_nos(journal, records, statuses)
        self_voided = await _self_voided(journal, records)
    matched, mismatches = compare(records.records, statuses, order_nos)
    return ReconcileReport(
        business_date=window.business_date,
        run_at=now,
        begin_time=window.begin_time,
        end_time=window.end_time,
        upload_trace_nos=tuple(upload_trace_nos),
        summary_trace_no=summary.trace_no,
        uploaded=len(records.records),
        matched=matched,
        mismatches=tuple(mismatches),
        set_aside=records.set_aside,
        journal=journal_totals(records.records, self_voided),
        backend=summary.totals,
        activities=by_activity(records.records, self_voided, summary.totals.settle),
        totals_decide=settings.reconcile.totals_decide,
        lane=None if lane is None else ReportLane(lane.name, identity.device_no, identity.shop_no, lane.default),
    )


async def _upload(
    journal: Journal, backend: BackendClient, records: DayRecords, size: int
) -> tuple[dict[str, int], list[str]]:
    """Every batch up; the status answered per traceNo and the calls' traceNos, in order."""
    statuses: dict[str, int] = {}
    trace_nos: list[str] = []
    window = records.day
    for batch in records.batches(size):
        body = {
            "transCount": len(batch),
            "beginTime": window.begin_time,
            "endTime": window.end_time,
            "transRecord": batch,
        }
        trace_no, reply = await _call(journal, backend, "batchUpload", body)
        trace_nos.append(trace_no)
        statuses.update(_statuses(trace_no, reply.body))
    return statuses, trace_nos


async def _summary(journal: Journal, backend: BackendClient) -> _Summary:
    trace_no, reply = await _call(journal, backend, "summary", {})
    body = reply.body
    try:
        total = exact_amount(body["totalAmount"])
        if total is None:
            raise ValueError(f"totalAmount {body['totalAmount']!r} is not an amount")
        totals = Totals(int(body["volume"]), total)
        begin, end = str(body["beginDate"]), str(body["endDate"])
    except (KeyError, TypeError, ValueError, ArithmeticError) as err:
        raise ReconcileFailed(f"summary {trace_no}: the reply has no readable volume/totalAmount ({err})") from err
    return _Summary(trace_no, SummaryTotals(totals, begin, end, _settle_lines(trace_no, body.get("settleRecord"))))


def _settle_lines(trace_no: str, entries: object) -> tuple[SettleLine, ...] | None:
    try:
        return settle_lines(entries)
    except ValueError as err:
        raise ReconcileFailed(f"summary {trace_no}: {err}") from err


async def _call(
    journal: Journal, backend: BackendClient, kind: KeyCallKind, body: Mapping[str, Any]
) -> tuple[str, BackendReply]:
    """One request under a new journaled traceNo, its result recorded; the approved reply.

    Raises:
        ReconcileFailed: not reached, outcome unknown, or a refusal (returnCode not "00").
    """
    trace_no = await journal.allocate_key_call(kind)  # committed before anything leaves
    crash_point("reconcile.after_alloc")
    try:
        reply = await backend.submit(kind, {"traceNo": trace_no, **body})
    except BackendError as err:
        await journal.record_key_call_result(trace_no, "unknown", None)
        raise ReconcileFailed(f"{kind} {trace_no}: the backend could not be reached or gave no answer ({err})") from err
    crash_point("reconcile.after_reply")
    await journal.record_key_call_result(trace_no, "answered", reply.return_code)
    if not reply.approved:
        described = reply.body.get("returnDesc", "")
        raise ReconcileFailed(f"{kind} {trace_no}: the backend refused it: {reply.return_code} {described}".rstrip())
    logger.info("reconcile {} {} answered", kind, trace_no)
    return trace_no, reply


def _statuses(trace_no: str, body: Mapping[str, Any]) -> dict[str, int]:
    entries = body.get("transRecord")
    if not isinstance(entries, list):
        raise ReconcileFailed(f"batchUpload {trace_no}: the reply has no transRecord list")
    statuses: dict[str, int] = {}
    for entry in entries:
        try:
            status = entry["status"]
            if isinstance(status, bool):
                raise TypeError("status is a boolean")
            statuses[str(entry["traceNo"])] = int(status)
        except (KeyError, TypeError, ValueError) as err:
            raise ReconcileFailed(f"batchUpload {trace_no}: a transRecord of the reply is unreadable ({err})") from err
    return statuses


async def _order_nos(journal: Journal, records: DayRecords, statuses: Mapping[str, int]) -> dict[str, str]:
    """The journal's orderNo of each record the backend disagrees about, by backend traceNo."""
    order_nos: dict[str, str] = {}
    for record in records.records:
        if statuses.get(record.trace_no) == int(record.status):
            continue
        found = await journal.get(record.journal_trace_no)
        answer = (found.response if found is not None else None) or {}
        order_nos[record.trace_no] = str(answer.get("orderNo") or "")
    return order_nos


async def _self_voided(journal: Journal, records: DayRecords) -> set[str]:
    """The backend traceNos of the day's sales misbridge voided itself: an approved void call of its own."""
    voided: set[str] = set()
    for record in records.records:
        if record.state != "voided":
            continue
        calls = await journal.calls(record.journal_trace_no)
        if any(call.kind == "void" and call.return_code == "00" for call in calls):
            voided.add(record.trace_no)
    return voided


def report_paths(journal_path: Path, report: ReconcileReport) -> tuple[Path, Path]:
    """Where ``report``'s JSON and CSV go: ``<journal dir>/reports/<date>/reconcile-<run time UTC>.json|.csv``.

    A lane's other than the default lane's: ``reconcile-<lane>-<run time UTC>.json|.csv``.
    """
    folder = journal_path.parent / "reports" / report.business_date.isoformat()
    lane = "" if report.lane is None or report.lane.default else f"{report.lane.name}-"
    stem = f"reconcile-{lane}{report.run_at.astimezone(UTC).strftime(_RUN_TIME_FORMAT)}"
    return folder / f"{stem}.json", folder / f"{stem}.csv"


def write_report(report: ReconcileReport, paths: Sequence[Path]) -> tuple[Path, Path]:
    """Write ``report`` as JSON and CSV to ``paths`` atomically; the paths written.

    Raises:
        OSError: the state directory is not writable, or the run's file exists already.
    """
    json_path, csv_path = paths
    json_path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(json_path.parent)
    _write_atomically(json_path, jsonio.pretty(report.to_json()) + "\n")
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=report.csv_columns, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(report.csv_rows())
    _write_atomically(csv_path, text.getvalue())
    return json_path, csv_path


def write_latest(path: Path, latest: LatestReconcile) -> None:
    """Replace ``path`` with ``latest`` atomically: the daemon reads the old file or the new one, never half.

    Raises:
        OSError: the directory is not writable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    _write_atomically(path, json.dumps(latest.to_json(), indent=2) + "\n", replace=True)


def remove_stale_temporaries(folder: Path) -> list[Path]:
    """Remove the temporaries a killed run left in ``folder`` (not below it); the ones removed.

    A temporary's name carries the pid of the run that wrote it. It is stale when that process
    is gone, or is this one: a pid can come back after a kill (a container starts its processes
    with the same pids), and this run has not begun writing, so the file is an earlier run's and
    would otherwise make its own temporary's exclusive open fail. A temporary of another live
    run is left alone: that run is writing it now. Nothing reads a temporary, so one left until
    the next run does no harm meanwhile.

    Raises:
        OSError: ``folder`` cannot be listed or a stale temporary cannot be removed.
    """
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        found = _TEMPORARY.fullmatch(path.name)
        if found is None or not _is_stale(int(found["pid"])):
            continue
        path.unlink(missing_ok=True)  # missing: another run removed it first
        logger.info("reconcile: removed {}, left by a run that was killed", path)
        removed.append(path)
    return removed


def _is_stale(pid: int) -> bool:
    """Whether a temporary written by process ``pid`` can no longer be in the middle of its write."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # it exists, as another user
    except OverflowError:
        return True  # no such pid can exist
    return False


def _write_atomically(path: Path, text: str, *, replace: bool = False) -> None:
    """``text`` to ``path`` via a temporary name, flushed to disk, then given its name, the directory synced.

    ``replace`` False (a run's report): a hard link, which refuses an existing name, so a run file
    is never replaced. True (``latest.json``): a rename over the old file.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with temporary.open("x", encoding="utf-8", newline="") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        crash_point("reconcile.file.before_name")  # whole and synced under its temporary name only
        if replace:
            temporary.replace(path)
        else:
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the new name itself survives a crash
    finally:
        os.close(directory)
