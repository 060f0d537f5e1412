"""``misbridge reconcile`` against the real backend simulator and a real journal.

The days that must match or disagree are made of real sales: a POS sends them through the
daemon, the pad simulator on a pty, the backend simulator over HTTP (each test has its own
bench, so the backend's ``summary``, which counts since the previous summary, sees only the
test's own day). The backend is told to disagree about chosen traceNos (``/_sim/disagree``).
The 12 000-record day and the subprocess runs use seeded journal rows (raw SQL, as the end of
day's unit tests do, or the journal's own writes), honest there because what is checked is the
upload and the report, and the backend then answers 4 (it never saw them).
"""

from __future__ import annotations

import asyncio
import csv
import functools
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from loguru import logger

from bench.common import insert_approved_sales
from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.cli import main
from misbridge.app.reconcile import (
    SINCE_LAST,
    RunPlan,
    days_to_run,
    last_reported_day,
    remove_stale_temporaries,
    report_paths,
    run_reconcile,
    write_report,
)
from misbridge.app.simulated import launched_backend, simulated_daemon, write_signing_key
from misbridge.config.settings import ReconcileSettings, Settings
from misbridge.core.kinds import TABLES
from misbridge.core.machine import kind_of
from misbridge.core.reconcile import ReconcileReport, SummaryTotals, Totals
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.journal import Journal, TransactionRecord
from tests.integration.conftest import Bench, bench_settings, new_trace_no
from tests.seeding import events_to, seed_transaction

REPO_ROOT = Path(__file__).resolve().parents[2]
D = Decimal


def far_from_cut_off(now: datetime) -> ReconcileSettings:
    """``[reconcile]`` whose business day holds ``now`` with hours to spare on both sides.

    The zone is chosen so local time is about noon and the cut-off is 04:00: the test's sales
    never straddle two business days, whenever (UTC) the test runs.
    """
    offset = 12 - now.astimezone(UTC).hour  # hours east of UTC that make it about noon
    zone = "Etc/UTC" if offset == 0 else f"Etc/GMT{-offset:+d}"  # Etc/GMT-3 is UTC+3
    return ReconcileSettings(cut_off="04:00", time_zone=zone)


def reconcile_settings(base: Settings, now: datetime, **backend: Any) -> Settings:
    """``base`` with :func:`far_from_cut_off` and, optionally, backend settings changed."""
    update: dict[str, Any] = {"reconcile": far_from_cut_off(now)}
    if backend:
        update["backend"] = base.backend.model_copy(update=backend)
    return base.model_copy(update=update)


def today_of(settings: Settings, now: datetime) -> tuple[date, datetime]:
    """The business date holding ``now``, and a moment just after that day ends (when to reconcile it)."""
    local = now.astimezone(ZoneInfo(settings.reconcile.time_zone))
    day = local.date() if local.hour >= 4 else local.date() - timedelta(days=1)
    end = datetime.combine(day + timedelta(days=1), settings.reconcile.cut_off_time(), tzinfo=local.tzinfo)
    return day, end + timedelta(minutes=5)


@pytest_asyncio.fixture(loop_scope="function")
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    """A daemon and both simulators of the test's own (a fresh backend ledger)."""
    settings = functools.partial(bench_settings, workdir=tmp_path)
    async with simulated_daemon(tmp_path, settings, pinpad_args=("--timeout-cap", "0.3")) as running:
        base = f"http://{running.settings.api.host}:{running.daemon.http_port}"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            yield Bench(running.daemon, running.sims, http)


async def sell(bench: Bench, card: str = "points-cash") -> dict[str, Any]:
    """One card redemption through the e-Buy socket, the customer presenting ``card``; the answer."""
    await bench.customer(card)
    body = card_redemption_request()
    body["traceNo"] = new_trace_no()
    answer = await socket_request(bench.host, bench.daemon.socket_port, envelope_for("cardRedemption", body))
    return answer.body


async def disagree(bench: Bench, trace_no: str, told: str, amount: str | None = None) -> None:
    order: dict[str, str] = {"traceNo": trace_no, "as": told}
    if amount is not None:
        order["amount"] = amount
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{bench.sims.backend_base}/_sim/disagree", json=order)
    assert reply.status_code < 300, reply.text


def own_calls(path: Path) -> list[tuple[str, str, str | None]]:
    """The end of day's journaled requests: (kind, state, returnCode), oldest first."""
    with sqlite3.connect(path) as conn:
        rows = conn.execute(
            "SELECT kind, state, return_code FROM key_calls WHERE kind IN ('batchUpload', 'summary') ORDER BY rowid"
        ).fetchall()
    return [(str(kind), str(state), code) for kind, state, code in rows]


def transactions(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT * FROM transactions ORDER BY trace_no").fetchall()


def report_files(settings: Settings, day: date) -> list[Path]:
    """The day's report files: JSON first, then CSV, each in run order."""
    folder = settings.journal.path.parent / "reports" / day.isoformat()
    found = list(folder.iterdir()) if folder.is_dir() else []
    return sorted(found, key=lambda path: (path.suffix != ".json", path.name))


async def void(bench: Bench, sale: dict[str, Any], card: str = "points-cash") -> dict[str, Any]:
    """The POS voids ``sale`` through the e-Buy socket, the customer presenting the same card; the answer."""
    await bench.customer(card)
    body = {"traceNo": new_trace_no(), "originalTraceNo": sale["traceNo"]}
    answer = await socket_request(bench.host, bench.daemon.socket_port, envelope_for("voidCardSale", body))
    return answer.body


async def test_a_day_that_matches_exits_0_after_a_backend_down_run_that_exits_1(bench: Bench) -> None:
    approved = [await sell(bench), await sell(bench), await sell(bench)]
    declined = await sell(bench, "unknown")
    voided = await void(bench, approved[2])
    assert [a["returnCode"] for a in approved] == ["00", "00", "00"]
    assert declined["returnCode"] == "14"
    assert voided["returnCode"] == "00", voided
    now = datetime.now(UTC)
    settings = reconcile_settings(bench.daemon.settings, now)
    day, after = today_of(settings, now)
    journal = settings.journal.path
    before = transactions(journal)

    # The backend is down (nothing listens on its port): exit 1, the call is journaled, no report.
    down = reconcile_settings(settings, now, url="http://127.0.0.1:9/ebuyweb-posp", request_deadline_s=1.0)
    out, err = io.StringIO(), io.StringIO()
    assert await run_reconcile(down, out, day=day, now=after, err=err) == 1
    assert "batchUpload" in err.getvalue()
    assert "run misbridge reconcile again" in err.getvalue()
    assert own_calls(journal) == [("batchUpload", "unknown", None)]
    assert report_files(settings, day) == []

    # The backend is back: the re-run matches, with new traceNos.
    out = io.StringIO()
    assert await run_reconcile(settings, out, day=day, now=after) == 0, out.getvalue()
    table = out.getvalue()
    assert "matched 5, mismatched 0" in table  # the voided sale (6) and its void (1) too
    assert "totals   journal: 4 transaction(s), net 81.60" in table
    assert "4 transaction(s), net 81.60  -> agree" in table
    assert "result: everything matches" in table
    assert own_calls(journal)[1:] == [("batchUpload", "answered", "00"), ("summary", "answered", "00")]
    json_file, csv_file = report_files(settings, day)
    report = json.loads(json_file.read_text(encoding="utf-8"))
    assert report["matched"] == 5
    assert report["mismatches"] == []
    assert report["exitStatus"] == 0
    assert report["totals"]["journal"] == {"volume": 4, "totalAmount": "81.60"}
    assert report["totals"]["backend"]["volume"] == 4
    assert report["totals"]["backend"]["totalAmount"] == "81.60"
    assert report["totals"]["agree"] is True
    # Per activity: the card sales' activity (their goodsDetail's activityNo), sales and the void apart.
    by_activity = report["totals"]["byActivity"]
    assert [(line["isRefund"], line["journal"], line["agree"]) for line in by_activity] == [
        (False, {"volume": 3, "totalAmount": "122.40"}, True),
        (True, {"volume": 1, "totalAmount": "40.80"}, True),
    ]
    assert {line["activityNo"] for line in by_activity} == {approved[0]["goodsDetail"][0]["activityNo"]}
    assert "refunds: 1 40.80 | 1 40.80  -> agree" in table
    assert [row["kind"] for row in csv.DictReader(csv_file.open(encoding="utf-8"))] == [
        "journal_totals",
        "backend_totals",
        *["activity_journal", "activity_backend"] * 2,
    ]

    # A re-run of the same day writes a new run file and changes no transaction.
    later = after + timedelta(minutes=1)
    out = io.StringIO()
    assert await run_reconcile(settings, out, day=day, now=later, as_json=True) == 0
    again = json.loads(out.getvalue())
    assert again["matched"] == 5
    assert again["totals"]["agree"] is False
    assert again["totals"]["backend"]["volume"] == 0
    assert len(report_files(settings, day)) == 4
    assert transactions(journal) == before
    assert not [p for p in journal.parent.rglob(".*.tmp")], "no temporary file is left"

    # A store whose summary only this run asks may let the totals decide: the re-run's differ.
    decided = settings.model_copy(update={"reconcile": settings.reconcile.model_copy(update={"totals_decide": True})})
    out = io.StringIO()
    assert await run_reconcile(decided, out, day=day, now=later + timedelta(minutes=1)) == 3
    assert "matched 5, mismatched 0" in out.getvalue()
    assert "result: the TOTALS DIFFER and decide here" in out.getvalue()
    latest = json.loads((journal.parent / "reports" / "latest.json").read_text(encoding="utf-8"))
    assert latest["mismatches"] == 1, "a deciding totals difference raises the alert"


async def test_every_planted_disagreement_is_a_report_line_with_its_advice(bench: Bench) -> None:
    sales = [await sell(bench) for _ in range(8)]
    assert all(sale["returnCode"] == "00" for sale in sales), sales
    plants = [
        ("drop", None, "4 not in the backend", "status 4, journal approved: the backend has no record: call e-Buy"),
        ("amount", "50.00", "2 the backend holds more", "status 2: the backend charged more than the till"),
        ("amount", "10.00", "3 the backend holds less", "status 3: the backend charged less than the till"),
        ("reversed", None, "6 reversed", "status 6, journal approved: the backend reversed it"),
        ("refunded", None, "8 refunded", "status 8, journal approved: the backend holds a refund"),
        ("failed", None, "5 failed", "status 5, journal approved: the backend says it failed"),
        ("rolled_back", None, "7 rolled back", "status 7, journal approved: the backend rolled it back"),
    ]
    for sale, (told, amount, _, _) in zip(sales, plants, strict=False):
        await disagree(bench, sale["traceNo"], told, amount)
    now = datetime.now(UTC)
    settings = reconcile_settings(bench.daemon.settings, now)
    day, after = today_of(settings, now)

    out = io.StringIO()
    assert await run_reconcile(settings, out, day=day, now=after) == 3
    lines = out.getvalue().splitlines()
    assert "matched 1, mismatched 7" in out.getvalue()
    for sale, (_, _, status, what) in zip(sales, plants, strict=False):
        [index] = [i for i, line in enumerate(lines) if line.startswith(f"  {sale['traceNo']}  ")]
        assert lines[index].endswith(f"cardRedemption  approved 40.80  ->  {status}"), lines[index]
        assert lines[index + 1].startswith(f"      what to do: {what}"), lines[index + 1]
        assert f"orderNo {sale['orderNo']} and traceNo {sale['traceNo']}" in lines[index + 1]
    assert "8 transaction(s), net 326.40  -> agree" in out.getvalue()  # summary does not see the plants
    json_file, csv_file = report_files(settings, day)
    report = json.loads(json_file.read_text(encoding="utf-8"))
    assert sorted(m["backendStatus"] for m in report["mismatches"]) == [2, 3, 4, 5, 6, 7, 8]
    rows = list(csv.DictReader(csv_file.open(encoding="utf-8")))
    assert {row["backend_status"] for row in rows if row["kind"] == "mismatch"} == {"2", "3", "4", "5", "6", "7", "8"}


async def test_mismatches_reach_the_running_daemon_as_alerts_without_not_ready(
    bench: Bench, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 3: one ERROR line with its alert field, latest.json, /health, the gauge and status, still READY."""
    sales = [await sell(bench), await sell(bench)]
    await disagree(bench, sales[0]["traceNo"], "drop")
    now = datetime.now(UTC)
    settings = reconcile_settings(bench.daemon.settings, now)
    day, after = today_of(settings, now)
    before = await bench.http.get("/health")
    assert "reconcile" not in before.json()
    assert bench.daemon.metrics.value("misbridge_reconcile_mismatches") == 0

    records: list[dict[str, Any]] = []
    sink = logger.add(lambda message: records.append(dict(message.record)), level="ERROR")
    try:
        assert await run_reconcile(settings, io.StringIO(), day=day, now=after) == 3
    finally:
        logger.remove(sink)
    [alert] = [r for r in records if r["extra"].get("alert") == "RECONCILE_MISMATCH"]
    assert alert["level"].name == "ERROR"
    [json_file, _] = report_files(settings, day)
    assert alert["message"] == f"reconcile: 1 end-of-day mismatch(es) for {day.isoformat()}: see {json_file}"
    latest = json.loads((settings.journal.path.parent / "reports" / "latest.json").read_text(encoding="utf-8"))
    assert latest == {
        "businessDate": day.isoformat(), "runAt": after.isoformat(), "matched": 1, "mismatches": 1,
        "report": str(json_file),
    }  # fmt: skip

    health = await bench.http.get("/health")
    body = health.json()
    assert (health.status_code, body["status"]) == (before.status_code, before.json()["status"])
    assert body["reasons"] == before.json()["reasons"]
    assert body["reconcile"] == {"date": day.isoformat(), "mismatches": 1, "report": str(json_file)}
    assert f"1 end-of-day mismatch(es) for {day.isoformat()}: see {json_file}" in body["alerts"]
    assert sales[0]["traceNo"] not in health.text, "/health is public: no traceNo"
    assert b"misbridge_reconcile_mismatches 1.0" in (await bench.http.get("/metrics")).content

    url = f"http://{bench.host}:{bench.daemon.http_port}"
    capsys.readouterr()
    code = await asyncio.to_thread(main, ["status", "--url", url])
    lines = capsys.readouterr().out.splitlines()
    assert code == (0 if before.status_code == 200 else 1), lines
    assert f"reconcile    {day.isoformat()}: 1 MISMATCH(ES), see {json_file}" in lines

    # A later run that matches clears the alert and the gauge (the planted drop is forgotten).
    async with httpx.AsyncClient() as client:
        assert (await client.delete(f"{bench.sims.backend_base}/_sim/disagree")).status_code < 300
    assert await run_reconcile(settings, io.StringIO(), day=day, now=after + timedelta(minutes=1)) == 0
    body = (await bench.http.get("/health")).json()
    assert body["reconcile"]["mismatches"] == 0
    assert not [a for a in body["alerts"] if "end-of-day" in a]
    assert b"misbridge_reconcile_mismatches 0.0" in (await bench.http.get("/metrics")).content


async def seed_answered(journal: Journal, record: TransactionRecord, answer: dict[str, Any]) -> None:
    """``record`` walked to its state by the journal's own writes, its last move recording ``answer``."""
    kind = kind_of(record.action)
    state: str = TABLES[kind].initial
    await journal.record_intent(replace(record, state=state))
    events = events_to(kind, record.state)
    for index, event in enumerate(events):
        state = await journal.record_transition(
            record.trace_no, state, event, response=answer if index == len(events) - 1 else None
        )


def backend_only_settings(workdir: Path, url: str, key_file: Path, now: datetime) -> Settings:
    return Settings(
        backend={"url": url, "signing": {"key_file": key_file}},
        journal={"path": workdir / "journal.db"},
        reconcile=far_from_cut_off(now).model_dump(),
    )


async def test_a_day_of_12000_records_goes_up_in_three_batch_uploads(tmp_path: Path) -> None:
    key_file = write_signing_key(tmp_path)
    now = datetime.now(UTC)
    async with launched_backend(tmp_path, key_file) as url:
        settings = backend_only_settings(tmp_path, url, key_file, now)
        await (await Journal.open(settings.journal.path)).close()  # the schema
        insert_approved_sales(settings.journal.path, 12_000, now)
        day, after = today_of(settings, now)
        out = io.StringIO()
        assert await run_reconcile(settings, out, day=day, now=after, as_json=True) == 3
    report = jsonio.loads(out.getvalue())
    assert len(report["batchUploadTraceNos"]) == 3
    assert report["uploaded"] == 12_000
    assert len(report["mismatches"]) == 12_000
    assert own_calls(settings.journal.path) == [("batchUpload", "answered", "00")] * 3 + [("summary", "answered", "00")]
    assert report["totals"]["journal"] == {"volume": 12_000, "totalAmount": "12000.00"}


async def test_the_command_runs_as_a_process(tmp_path: Path) -> None:
    key_file = write_signing_key(tmp_path)
    now = datetime.now(UTC)
    async with launched_backend(tmp_path, key_file) as url:
        settings = backend_only_settings(tmp_path, url, key_file, now)
        yesterday = now - timedelta(days=1)  # the last complete business day (the command's default)
        async with await Journal.open(settings.journal.path) as journal:
            body = {"traceNo": "SEEDED1", "totalAmount": D("12.34")}
            answer = {"traceNo": "SEEDED1", "orderNo": "ORD77", "returnCode": "00", "paidAmount": D("12.34")}
            await seed_answered(
                journal, TransactionRecord.new("SEEDED1", "cardPayment", "approved", body, now=yesterday), answer
            )
            open_body = {**body, "traceNo": "OPEN1"}
            await seed_transaction(
                journal, TransactionRecord.new("OPEN1", "cardPayment", "unknown", open_body, now=yesterday)
            )
        config = tmp_path / "misbridge.toml"
        config.write_text(
            f'[backend]\nurl = "{url}"\n[backend.signing]\nkey_file = "{key_file}"\n'
            f'[journal]\npath = "{settings.journal.path}"\n'
            f'[reconcile]\ncut_off = "04:00"\ntime_zone = "{settings.reconcile.time_zone}"\n',
            encoding="utf-8",
        )
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        env.pop("MISBRIDGE_CONFIG", None)
        run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, timeout=60, check=False)
        done = run([sys.executable, "-m", "misbridge", "reconcile", "--config", str(config)])
        assert done.returncode == 3, done.stderr
        assert "Traceback" not in done.stderr
        assert "status 4, journal approved: the backend has no record: call e-Buy with orderNo ORD77" in done.stdout
        assert "OPEN1  cardPayment  unknown: not final (unknown)" in done.stdout
        assert "report: " in done.stdout

        future = run([sys.executable, "-m", "misbridge", "reconcile", "--config", str(config), "--date", "2999-01-01"])
        assert (future.returncode, future.stdout) == (2, "")
        assert "has not ended yet" in future.stderr
        bad = run([sys.executable, "-m", "misbridge", "reconcile", "--config", str(config), "--date", "May 1"])
        assert bad.returncode == 2
        assert "not a date YYYY-MM-DD" in bad.stderr
        assert "Traceback" not in bad.stderr


async def fault(url: str, order: dict[str, Any]) -> None:
    base = url.split("/ebuyweb-posp")[0]
    async with httpx.AsyncClient() as client:
        reply = await client.post(f"{base}/_sim/faults", json=order)
    assert reply.status_code < 300, reply.text


async def test_a_backend_failing_mid_way_exits_1_and_leaves_the_calls_journaled(tmp_path: Path) -> None:
    key_file = write_signing_key(tmp_path)
    now = datetime.now(UTC)
    async with launched_backend(tmp_path, key_file) as url:
        settings = backend_only_settings(tmp_path, url, key_file, now)
        settings = settings.model_copy(update={"reconcile": settings.reconcile.model_copy(update={"batch_size": 1})})
        await (await Journal.open(settings.journal.path)).close()
        insert_approved_sales(settings.journal.path, 2, now)
        day, after = today_of(settings, now)
        journal = settings.journal.path

        await fault(url, {"action": "summary", "fault": "decline", "code": "96"})
        err = io.StringIO()
        assert await run_reconcile(settings, io.StringIO(), day=day, now=after, err=err) == 1
        assert "summary" in err.getvalue()
        assert "the backend refused it: 96" in err.getvalue()
        assert own_calls(journal) == [("batchUpload", "answered", "00")] * 2 + [("summary", "answered", "96")]

        await fault(url, {"action": "upload", "fault": "http-500-after-commit"})
        err = io.StringIO()
        assert await run_reconcile(settings, io.StringIO(), day=day, now=after, err=err) == 1
        assert "could not be reached or gave no answer" in err.getvalue()
        assert own_calls(journal)[3:] == [("batchUpload", "unknown", None)]
        assert report_files(settings, day) == []

        assert await run_reconcile(settings, io.StringIO(), day=day, now=after) == 3  # the backend never saw them
    with sqlite3.connect(journal) as conn:
        trace_nos = [row[0] for row in conn.execute("SELECT trace_no FROM key_calls")]
    assert len(trace_nos) == len(set(trace_nos)) == 7, "every call had its own traceNo"


def test_a_report_file_is_written_whole_and_never_replaced(tmp_path: Path) -> None:
    shown = ReconcileReport(
        business_date=date(2026, 5, 1),
        run_at=datetime(2026, 5, 2, 4, 5, 6, 789, tzinfo=UTC),
        begin_time="20260501040000",
        end_time="20260502035959",
        upload_trace_nos=(),
        summary_trace_no="S1",
        uploaded=0,
        matched=0,
        mismatches=(),
        set_aside=(),
        journal=Totals(0, D(0)),
        backend=SummaryTotals(Totals(0, D(0)), "20260501040000", "20260502040000"),
    )
    paths = report_paths(tmp_path / "journal.db", shown)
    assert paths == (
        tmp_path / "reports/2026-05-01/reconcile-20260502T040506000789Z.json",
        tmp_path / "reports/2026-05-01/reconcile-20260502T040506000789Z.csv",
    )
    write_report(shown, paths)
    first = paths[0].read_bytes()
    assert json.loads(first)["exitStatus"] == 0
    with pytest.raises(FileExistsError):
        write_report(shown, paths)
    assert paths[0].read_bytes() == first
    assert sorted(p.name for p in paths[0].parent.iterdir()) == sorted(p.name for p in paths)  # no temporary left


def test_the_days_a_run_reconciles(tmp_path: Path) -> None:
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    settings = Settings(
        journal={"path": tmp_path / "journal.db"}, reconcile={"cut_off": "04:00", "time_zone": "Etc/UTC"}
    )
    settings.journal.path.write_bytes(b"")  # it exists; days_to_run never opens it
    plan = functools.partial(days_to_run, settings, now)
    assert plan().days == (date(2026, 5, 9),)
    assert plan(day=date(2026, 5, 4)).days == (date(2026, 5, 4),)
    assert "older than 7 days" in str(plan(day=date(2026, 5, 2)).refusal)
    assert plan(since=date(2026, 5, 7)) == RunPlan((date(2026, 5, 7), date(2026, 5, 8), date(2026, 5, 9)))
    assert plan(since=date(2026, 5, 9)).days == (date(2026, 5, 9),)
    assert "--since 2026-05-10: that business day has not ended yet" in str(plan(since=date(2026, 5, 10)).refusal)
    assert "--since 2026-05-01: business day 2026-05-01 is older than 7 days" in str(
        plan(since=date(2026, 5, 1)).refusal
    )

    assert plan(since=SINCE_LAST) == RunPlan((date(2026, 5, 9),)), "no report yet: the last complete day alone"
    reports = tmp_path / "reports"
    (reports / "2026-05-06").mkdir(parents=True)
    (reports / "2026-05-06" / ".reconcile-x.json.1.tmp").write_text("", encoding="utf-8")  # never given its name
    (reports / "not-a-date").mkdir()
    assert last_reported_day(settings.journal.path) is None
    (reports / "2026-05-06" / "reconcile-20260507T043000000000Z.json").write_text("{}", encoding="utf-8")
    assert last_reported_day(settings.journal.path) == date(2026, 5, 6)
    assert plan(since=SINCE_LAST).days == (date(2026, 5, 7), date(2026, 5, 8), date(2026, 5, 9))
    (reports / "2026-05-09").mkdir()
    (reports / "2026-05-09" / "reconcile-20260510T043000000000Z.json").write_text("{}", encoding="utf-8")
    assert plan(since=SINCE_LAST) == RunPlan(
        (), None, ("nothing to reconcile: every business day up to 2026-05-09 has a report",)
    )

    # A machine off for ten days: the days batchUpload can no longer match are named, not uploaded.
    later = plan.func(settings, now + timedelta(days=10), since=SINCE_LAST)
    assert later.days == tuple(date(2026, 5, 14) + timedelta(days=n) for n in range(6))
    assert later.notes == (
        "business days 2026-05-10 to 2026-05-13 were never reconciled and are older than 7 days: batchUpload "
        "can no longer match them; compare them with e-Buy by hand (docs/operations.md)",
    )


async def test_since_reconciles_every_day_in_order_and_last_catches_up(tmp_path: Path) -> None:
    key_file = write_signing_key(tmp_path)
    now = datetime.now(UTC)
    async with launched_backend(tmp_path, key_file) as url:
        settings = backend_only_settings(tmp_path, url, key_file, now)
        await (await Journal.open(settings.journal.path)).close()
        insert_approved_sales(settings.journal.path, 2, now - timedelta(days=2))  # the backend never saw them
        today, after = today_of(settings, now)
        first = today - timedelta(days=2)

        out, err = io.StringIO(), io.StringIO()
        assert await run_reconcile(settings, out, since=first, now=after, as_json=True, err=err) == 3, err.getvalue()
        reports = jsonio.loads(out.getvalue())
        assert [r["businessDate"] for r in reports] == [str(first + timedelta(days=n)) for n in range(3)]
        assert [r["uploaded"] for r in reports] == [2, 0, 0]
        assert [r["exitStatus"] for r in reports] == [3, 0, 0]
        assert [line for line in err.getvalue().splitlines() if "of 3" in line] == [
            f"misbridge: business day {first + timedelta(days=n)} ({n + 1} of 3)" for n in range(3)
        ]
        assert last_reported_day(settings.journal.path) == today

        # Nothing new: --since last has nothing to do, and says so.
        out, err = io.StringIO(), io.StringIO()
        assert await run_reconcile(settings, out, since=SINCE_LAST, now=after, err=err) == 0
        assert out.getvalue() == ""
        assert f"nothing to reconcile: every business day up to {today} has a report" in err.getvalue()

        # Two days later the timer's --since last runs both days it missed, oldest first.
        out = io.StringIO()
        assert (
            await run_reconcile(settings, out, since=SINCE_LAST, now=after + timedelta(days=2), err=io.StringIO()) == 0
        )
        tables = out.getvalue()
        assert tables.index(f"business day {today + timedelta(days=1)}") < tables.index(
            f"business day {today + timedelta(days=2)}"
        )
        assert last_reported_day(settings.journal.path) == today + timedelta(days=2)

        # A backend that is down stops the run at its first day: no report, so the next run retries it.
        down = settings.model_copy(
            update={
                "backend": settings.backend.model_copy(
                    update={"url": "http://127.0.0.1:9/ebuyweb-posp", "request_deadline_s": 1.0}
                )
            }
        )
        err = io.StringIO()
        assert await run_reconcile(down, io.StringIO(), since=SINCE_LAST, now=after + timedelta(days=4), err=err) == 1
        assert err.getvalue().count("could not be reached") == 1
        assert last_reported_day(settings.journal.path) == today + timedelta(days=2)


def test_a_run_removes_the_temporaries_of_killed_runs_and_leaves_a_live_runs(tmp_path: Path) -> None:
    """A temporary is stale when its writer is gone or is this process (a pid reused after a kill)."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    dead_pid = int(gone.stdout)
    with subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE) as live:
        names = {
            "killed": f".reconcile-1.json.{dead_pid}.tmp",
            "mine": f".latest.json.{os.getpid()}.tmp",
            "live": f".reconcile-2.csv.{live.pid}.tmp",
            "report": "reconcile-1.csv",
            "hidden": ".keep",
        }
        for name in names.values():
            (tmp_path / name).write_text("x", encoding="utf-8")
        removed = remove_stale_temporaries(tmp_path)
        assert live.stdin is not None
        live.stdin.close()
    assert sorted(path.name for path in removed) == sorted([names["killed"], names["mine"]])
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([names["live"], names["report"], names["hidden"]])
    assert remove_stale_temporaries(tmp_path / "absent") == []
