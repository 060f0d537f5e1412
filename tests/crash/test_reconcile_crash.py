"""``misbridge reconcile`` killed at each of its crash points, then run again: nothing half-written, nothing changed.

The end of day is a command, not the daemon, so the daemon harness (tests/crash/harness.py) does not
run it; this test kills the real command, ``python -m misbridge reconcile --date D --config C``, as a
process with ``MISBRIDGE_TEST_HOOKS=1 MISBRIDGE_CRASH_AT=<point>[:<nth>]``, at every point of
:data:`misbridge.host.crashpoints.RECONCILE_POINTS`, and at each later pass that is another step
(the second batchUpload, the summary; the report's CSV, latest.json). One backend simulator serves
every case, started on a ledger that holds the day's five sales, so a clean run matches all five
(exit 0); each case has its own journal, a copy of one seeded day with ``reconcile.batch_size = 3``
(two batchUploads, then the summary).

After the kill (exit 137) the case checks what an operator would find:

* the journal's transactions are the rows they were before, byte for byte;
* every ``key_calls`` row is the one result of its call or the one call allocated and never given a
  result: exactly the calls that answered before the crash, then the one it interrupted;
* ``reports/<date>/`` holds only complete report files (each JSON parses, each CSV has every row
  its JSON's report makes) and at most one temporary, named with the killed process's pid;
* ``reports/latest.json`` is still the previous run's, byte for byte.

Then the same command runs without the hook and must exit 0 with a new report of five matched, made
under three new traceNos none of the earlier calls used, leave no temporary anywhere under
``reports/`` (it removes the killed run's), leave the killed run's calls and every transaction as
they were, and point ``latest.json`` at its own report.
"""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bench.common import insert_approved_sales, write_config
from bench.reconcile import write_ledger, zone_at_noon
from misbridge.app.reconcile import write_latest
from misbridge.app.simulated import write_signing_key
from misbridge.core.latest_reconcile import LatestReconcile, latest_path
from misbridge.core.reconcile import CSV_COLUMNS
from misbridge.host.crashpoints import ENV_ENABLE, ENV_POINT, EXIT_CODE, RECONCILE_POINTS
from misbridge.journal import Journal
from misbridge.journal.schema import TRACE_SERIAL
from tests.crash.bench import ROOT, SimProcess

#: The day's sales, and the batch size that sends them in two batchUploads.
SALES = 5
BATCH_SIZE = 3
#: The calls of a complete run, in order.
KINDS = ("batchUpload", "batchUpload", "summary")
#: Seconds one run of the command may take (it takes about one).
RUN_TIMEOUT_S = 60.0
#: Each case's journal starts its traceNo serial this far after the previous case's: the cases share
#: one simulator, which refuses a traceNo it has seen (94), and two fresh journals in the same
#: second would otherwise both number their first call ``<that second>0000000001``.
SERIAL_SPACING = 1000


@dataclass(frozen=True)
class Case:
    """One kill: where, and what the killed run must have left."""

    crash_at: str
    #: Calls answered (and recorded) before the kill.
    answered: int
    #: The kill interrupted a call: its traceNo is committed, its result never recorded.
    pending: bool
    #: The killed run's report files that got their names: "json", "csv".
    named: tuple[str, ...] = ()
    #: The file whose temporary the kill left: "json", "csv" or "latest" (None: no temporary).
    temporary: str | None = None


CASES: tuple[Case, ...] = (
    Case("reconcile.after_alloc", answered=0, pending=True),
    Case("reconcile.after_alloc:2", answered=1, pending=True),
    Case("reconcile.after_alloc:3", answered=2, pending=True),  # the summary's
    Case("backend.batchUpload.after_write", answered=0, pending=True),
    Case("backend.batchUpload.after_write:2", answered=1, pending=True),
    Case("backend.summary.after_write", answered=2, pending=True),
    Case("reconcile.after_reply", answered=0, pending=True),
    Case("reconcile.after_reply:2", answered=1, pending=True),
    Case("reconcile.after_reply:3", answered=2, pending=True),  # the summary's
    Case("reconcile.file.before_name", answered=3, pending=False, temporary="json"),
    Case("reconcile.file.before_name:2", answered=3, pending=False, named=("json",), temporary="csv"),
    Case("reconcile.file.before_name:3", answered=3, pending=False, named=("json", "csv"), temporary="latest"),
    Case("reconcile.after_report", answered=3, pending=False, named=("json", "csv")),
)


@dataclass(frozen=True)
class Day:
    """The seeded business day and the simulator every case reconciles it against."""

    workdir: Path
    template: Path
    business_date: date
    zone: str
    backend_url: str
    key_file: Path


@dataclass(frozen=True)
class Run:
    """One run of the command."""

    pid: int
    returncode: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Call:
    """A ``key_calls`` row of the end of day."""

    trace_no: str
    kind: str
    state: str
    return_code: str | None


async def _create_journal(path: Path) -> None:
    await (await Journal.open(path)).close()


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Day]:
    """Yesterday's five sales in a template journal and on the simulator's ledger; the simulator running."""
    workdir = tmp_path_factory.mktemp("reconcile-crash")
    now = datetime.now(UTC)
    sold_at = now - timedelta(days=1)  # a business day that has ended, well within batchUpload's 7 days
    zone = zone_at_noon(now)  # about noon there: the day's sales are hours from its 04:00 cut-off
    template = workdir / "template.db"
    asyncio.run(_create_journal(template))
    trace_nos = insert_approved_sales(template, SALES, sold_at)
    ledger = workdir / "ledger.json"
    write_ledger(ledger, trace_nos, sold_at)
    key_file = write_signing_key(workdir)
    backend = SimProcess(
        ["backend", "--port", "0", "--key-file", str(key_file), "--ledger-file", str(ledger)], workdir / "backend.log"
    )
    try:
        url = backend.ready_line().split()[-1]
        business_date = sold_at.astimezone(ZoneInfo(zone)).date()
        yield Day(workdir, template, business_date, zone, url, key_file)
    finally:
        backend.stop()


def fresh_journal(day: Day, path: Path, serial_from: int) -> None:
    """A copy of the day's template journal whose traceNo serial continues from ``serial_from``."""
    source, copy = sqlite3.connect(day.template), sqlite3.connect(path)
    try:
        source.backup(copy)  # a consistent copy, whatever is still in the template's WAL
        with copy:
            copy.execute("UPDATE counters SET value = ? WHERE name = ?", (serial_from, TRACE_SERIAL))
    finally:
        source.close()
        copy.close()


def run_command(config: Path, business_date: date, crash_at: str | None = None) -> Run:
    """``python -m misbridge reconcile --date D --config C`` as its own process, the hook armed when ``crash_at``."""
    env = {k: v for k, v in os.environ.items() if k not in ("MISBRIDGE_CONFIG", ENV_POINT, ENV_ENABLE)}
    env["PYTHONPATH"] = str(ROOT)
    if crash_at is not None:
        env |= {ENV_ENABLE: "1", ENV_POINT: crash_at}
    command = [sys.executable, "-m", "misbridge", "reconcile", "--date", business_date.isoformat()]
    with subprocess.Popen(  # noqa: S603 - our own interpreter and module
        [*command, "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT,
    ) as process:  # fmt: skip
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_S)
    return Run(process.pid, process.returncode, stdout, stderr)


def transactions(journal: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
        return conn.execute("SELECT * FROM transactions ORDER BY trace_no").fetchall()


def calls(journal: Path) -> list[Call]:
    """The end of day's calls, oldest first."""
    with sqlite3.connect(f"file:{journal}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT trace_no, kind, state, return_code FROM key_calls ORDER BY rowid").fetchall()
    return [Call(*row) for row in rows]


def complete_json(path: Path) -> dict[str, Any]:
    """A report JSON that parses whole, with its last field."""
    report: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    assert "exitStatus" in report, path
    return report


def assert_complete_csv(path: Path) -> None:
    """A report CSV with every row of its JSON sibling's report, each row whole."""
    text = path.read_bytes().decode("utf-8")  # as written: read_text would translate the CRLFs
    assert text.endswith("\r\n"), path
    rows = list(csv.reader(text.splitlines()))
    assert rows[0] == list(CSV_COLUMNS), path
    assert all(len(row) == len(CSV_COLUMNS) for row in rows), path
    report = complete_json(path.with_suffix(".json"))
    activities = report["totals"]["byActivity"] or []
    expected = len(report["mismatches"]) + len(report["setAside"]) + 2 + 2 * len(activities)  # 2: the totals
    assert len(rows) - 1 == expected, path


def named_reports(folder: Path) -> list[Path]:
    """The report files that have their names (``reconcile-*``), in name order."""
    return sorted(path for path in folder.glob("reconcile-*") if path.is_file()) if folder.is_dir() else []


def temporaries(reports: Path) -> list[Path]:
    return sorted(reports.rglob(".*.tmp"))


def old_latest(journal: Path, business_date: date) -> bytes:
    """An earlier day's ``latest.json``, as the previous run left it; its bytes."""
    earlier = business_date - timedelta(days=1)
    report = journal.parent / "reports" / earlier.isoformat() / "reconcile-earlier.json"
    path = latest_path(journal)
    write_latest(path, LatestReconcile(earlier, datetime.now(UTC) - timedelta(days=1), 4, 0, report))
    return path.read_bytes()


def check_what_the_kill_left(case: Case, killed: Run, reports: Path, folder: Path) -> list[Path]:
    """Complete files only (and the one temporary expected), nothing else; the named report files."""
    named = named_reports(folder)
    assert [path.suffix.lstrip(".") for path in sorted(named, key=lambda p: p.suffix != ".json")] == list(case.named)
    for path in named:
        if path.suffix == ".json":
            assert complete_json(path)["matched"] == SALES
        else:
            assert_complete_csv(path)
    left = temporaries(reports)
    if case.temporary is None:
        assert left == []
    else:
        [temporary] = left
        where = reports if case.temporary == "latest" else folder
        assert temporary.parent == where
        suffix = "json" if case.temporary == "latest" else case.temporary
        assert temporary.name.endswith(f".{suffix}.{killed.pid}.tmp"), temporary
    others = (set(folder.iterdir()) if folder.is_dir() else set()) - set(named) - set(left)
    others |= set(reports.iterdir()) - {reports / "latest.json", folder, *left}
    assert others == set(), f"{case.crash_at} left {others}"
    return named


@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", CASES, ids=lambda case: case.crash_at)
def test_a_killed_reconcile_leaves_nothing_half_written_and_the_next_run_completes(
    day: Day, case: Case, tmp_path: Path
) -> None:
    journal = tmp_path / "journal.db"
    fresh_journal(day, journal, (CASES.index(case) + 1) * SERIAL_SPACING)
    config = write_config(
        tmp_path / "misbridge.toml",
        {
            "backend": {"url": day.backend_url},
            "backend.signing": {"key_file": str(day.key_file)},
            "journal": {"path": str(journal)},
            "reconcile": {"cut_off": "04:00", "time_zone": day.zone, "batch_size": BATCH_SIZE},
        },
    )
    folder = tmp_path / "reports" / day.business_date.isoformat()
    latest = latest_path(journal)
    latest_before = old_latest(journal, day.business_date)
    rows_before = transactions(journal)
    assert len(rows_before) == SALES

    killed = run_command(config, day.business_date, crash_at=case.crash_at)
    assert killed.returncode == EXIT_CODE, f"{case.crash_at} was not reached: {killed.stderr[-3000:]}"
    assert "report:" not in killed.stdout
    assert transactions(journal) == rows_before
    left_calls = calls(journal)
    expected: list[tuple[str, str, str | None]] = [(kind, "answered", "00") for kind in KINDS[: case.answered]]
    if case.pending:
        expected.append((KINDS[case.answered], "sent", None))
    assert [(c.kind, c.state, c.return_code) for c in left_calls] == expected
    killed_files = check_what_the_kill_left(case, killed, tmp_path / "reports", folder)
    assert latest.read_bytes() == latest_before

    again = run_command(config, day.business_date)
    assert again.returncode == 0, again.stdout + again.stderr[-3000:]
    assert transactions(journal) == rows_before
    now_calls = calls(journal)
    assert now_calls[: len(left_calls)] == left_calls, "the killed run's calls are as it left them"
    new_calls = now_calls[len(left_calls) :]
    assert [(c.kind, c.state, c.return_code) for c in new_calls] == [(kind, "answered", "00") for kind in KINDS]
    earlier = {c.trace_no for c in left_calls}
    assert not earlier & {c.trace_no for c in new_calls}, "a traceNo is never sent again"
    assert len({c.trace_no for c in now_calls}) == len(now_calls)

    assert temporaries(tmp_path / "reports") == [], "the next run removes what the killed one left"
    new_files = [path for path in named_reports(folder) if path not in killed_files]
    assert [path.suffix for path in new_files] == [".csv", ".json"], "the killed run's files stay, the new run adds two"
    new_csv, new_json = new_files
    assert new_csv.stem == new_json.stem
    assert_complete_csv(new_csv)
    report = complete_json(new_json)
    assert (report["uploaded"], report["matched"], report["mismatches"], report["exitStatus"]) == (SALES, SALES, [], 0)
    assert report["batchUploadTraceNos"] == [c.trace_no for c in new_calls[:2]]
    assert report["summaryTraceNo"] == new_calls[2].trace_no
    published = json.loads(latest.read_text(encoding="utf-8"))
    assert published["businessDate"] == day.business_date.isoformat()
    assert (published["matched"], published["mismatches"], published["report"]) == (SALES, 0, str(new_json))


def test_every_reconcile_point_and_every_step_of_a_run_has_a_case() -> None:
    points = [case.crash_at.split(":")[0] for case in CASES]
    assert set(points) == set(RECONCILE_POINTS)
    # The three calls pass each call point, the three files the file point.
    for point in ("reconcile.after_alloc", "reconcile.after_reply", "reconcile.file.before_name"):
        assert points.count(point) == len(KINDS), point
