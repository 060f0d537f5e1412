"""The end of day and pad provisioning with two POS lanes, on the real simulators.

One daemon serves two lanes (``lane1`` with deviceNo ``POS01``, the default lane, and ``lane2``
with ``POS02``), each with a pad simulator of its own on a pty; the POS requests go through the
e-Buy socket, routed by the envelope's deviceNo. ``misbridge reconcile`` then runs against the
same backend simulator, which books every request under the envelope's deviceNo and answers
``batchUpload`` and ``summary`` per terminal (a record uploaded under another deviceNo comes
back 4, "does not exist"): a lane whose records went up under the wrong deviceNo cannot match.
"""

from __future__ import annotations

import functools
import io
import json
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.provision import provision_pad
from misbridge.app.reconcile import SINCE_LAST, RunPlan, days_to_run, last_reported_day, run_reconcile
from misbridge.app.simulated import (
    SimulatedDaemon,
    lane_device_no,
    launched_simulators,
    simulated_daemon,
    simulated_settings,
)
from misbridge.config.settings import Settings
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.errors import ConfigError
from simulators.crypto import TEST_ROOT_KEY_HEX
from tests.integration.conftest import new_trace_no
from tests.integration.test_reconcile import reconcile_settings, today_of

#: The end of day's calls of one run of both lanes: the default lane's rows carry no lane, lane 2's its name.
BOTH_LANES_CALLS = [("batchUpload", None), ("summary", None), ("batchUpload", "lane2"), ("summary", "lane2")]


@pytest_asyncio.fixture(loop_scope="function")
async def two(tmp_path: Path) -> AsyncIterator[SimulatedDaemon]:
    """A daemon with two lanes, each pad's customer paying with the points-cash card."""
    async with simulated_daemon(tmp_path, card="points-cash", lanes=2, pinpad_args=("--timeout-cap", "0.5")) as running:
        yield running


async def on_lane(bench: SimulatedDaemon, number: int, action: str, body: dict[str, Any]) -> dict[str, Any]:
    """Lane ``number``'s POS sends ``action`` over the socket, its envelope naming the lane's deviceNo; the answer."""
    envelope = envelope_for(action, body, device_no=lane_device_no(number))
    answer = await socket_request(bench.settings.api.host, bench.daemon.socket_port, envelope)
    return answer.body


async def sell(bench: SimulatedDaemon, number: int) -> dict[str, Any]:
    body = card_redemption_request()
    body["traceNo"] = new_trace_no()
    answer = await on_lane(bench, number, "cardRedemption", body)
    assert answer["returnCode"] == "00", answer
    return answer


async def sim_entry(bench: SimulatedDaemon, trace_no: str) -> dict[str, Any]:
    """What the backend simulator holds of ``trace_no`` (``GET /_sim/ledger/{traceNo}``)."""
    async with httpx.AsyncClient() as client:
        reply = await client.get(f"{bench.sims.backend_base}/_sim/ledger/{trace_no}")
    assert reply.status_code == 200, reply.text
    entry: dict[str, Any] = jsonio.loads(reply.content)
    return entry


def eod_calls(journal: Path) -> list[tuple[str, str | None]]:
    """The end of day's journaled requests, oldest first: (kind, lane)."""
    with sqlite3.connect(journal) as conn:
        rows = conn.execute(
            "SELECT kind, lane FROM key_calls WHERE kind IN ('batchUpload', 'summary') ORDER BY rowid"
        ).fetchall()
    return [(str(kind), lane) for kind, lane in rows]


def report_names(settings: Settings, day: date) -> list[str]:
    folder = settings.journal.path.parent / "reports" / day.isoformat()
    return sorted(path.name for path in folder.iterdir()) if folder.is_dir() else []


def latest(settings: Settings) -> dict[str, Any]:
    content: dict[str, Any] = json.loads((settings.journal.path.parent / "reports" / "latest.json").read_text())
    return content


async def test_each_lane_goes_up_under_its_own_device_no_and_matches(two: SimulatedDaemon) -> None:
    lane1_sales = [await sell(two, 1), await sell(two, 1)]
    lane2_sale = await sell(two, 2)
    # Lane 2 voids one of lane 1's sales: the void is lane 2's transaction, the voided sale lane 1's.
    void = await on_lane(
        two, 2, "voidCardSale", {"traceNo": new_trace_no(), "originalTraceNo": lane1_sales[1]["traceNo"]}
    )
    assert void["returnCode"] == "00", void
    now = datetime.now(UTC)
    settings = reconcile_settings(two.settings, now)
    day, after = today_of(settings, now)

    out, err = io.StringIO(), io.StringIO()
    assert await run_reconcile(settings, out, day=day, now=after, as_json=True, err=err) == 0, err.getvalue()
    first, second = jsonio.loads(out.getvalue())
    assert (first["lane"], first["deviceNo"], second["lane"], second["deviceNo"]) == (
        "lane1",
        "POS01",
        "lane2",
        "POS02",
    )
    assert [(r["uploaded"], r["matched"], r["mismatches"]) for r in (first, second)] == [(2, 2, []), (2, 2, [])]
    # Each lane's own summary: lane 1's two sales; lane 2's sale less its void of lane 1's sale.
    assert first["totals"]["backend"]["volume"] == first["totals"]["journal"]["volume"] == 2
    assert first["totals"]["journal"]["totalAmount"] == "81.60"
    assert second["totals"]["journal"] == {"volume": 2, "totalAmount": "0.00"}
    assert (first["totals"]["agree"], second["totals"]["agree"]) == (True, True)
    for report in (first, second):
        for trace_no in (*report["batchUploadTraceNos"], report["summaryTraceNo"]):
            assert (await sim_entry(two, trace_no))["deviceNo"] == report["deviceNo"], (report["lane"], trace_no)
    assert (await sim_entry(two, lane2_sale["traceNo"]))["deviceNo"] == "POS02"
    # The calls' traceNos come from the one counter; their rows carry the lane (the default lane's: none).
    assert eod_calls(settings.journal.path) == BOTH_LANES_CALLS
    names = report_names(settings, day)
    assert len(names) == 4
    assert [n for n in names if n.startswith("reconcile-lane2-")] == names[2:], "the default lane's names are as ever"
    assert latest(settings)["matched"] == 4
    assert [(lane["lane"], lane["matched"], lane["mismatches"]) for lane in latest(settings)["lanes"]] == [
        ("lane1", 2, 0),
        ("lane2", 2, 0),
    ]

    # --lane lane2 reconciles lane 2 alone; the other lane's latest outcome stays.
    async with httpx.AsyncClient() as client:
        told = {"traceNo": lane2_sale["traceNo"], "as": "drop"}
        assert (await client.post(f"{two.sims.backend_base}/_sim/disagree", json=told)).status_code < 300
    out = io.StringIO()
    assert await run_reconcile(settings, out, day=day, now=after + timedelta(minutes=1), lane="lane2") == 3
    assert out.getvalue().startswith(f"misbridge reconcile: lane lane2 (deviceNo POS02), business day {day} ")
    assert "matched 1, mismatched 1" in out.getvalue()
    assert len(report_names(settings, day)) == 6
    assert eod_calls(settings.journal.path)[4:] == [("batchUpload", "lane2"), ("summary", "lane2")]
    after_one = latest(settings)
    assert (after_one["matched"], after_one["mismatches"]) == (3, 1)
    assert [(lane["lane"], lane["mismatches"]) for lane in after_one["lanes"]] == [("lane1", 0), ("lane2", 1)]
    assert after_one["report"] == after_one["lanes"][1]["report"]
    async with httpx.AsyncClient(base_url=f"http://{two.settings.api.host}:{two.daemon.http_port}") as http:
        health = (await http.get("/health")).json()
    assert health["reconcile"]["mismatches"] == 1
    assert health["reconcile"]["lanes"]["lane2"]["mismatches"] == 1
    assert f"lane lane2: 1 end-of-day mismatch(es) for {day}: see {after_one['report']}" in health["alerts"]


async def test_since_last_runs_a_day_for_the_lane_that_has_no_report_of_it(two: SimulatedDaemon) -> None:
    await sell(two, 1)
    await sell(two, 2)
    now = datetime.now(UTC)
    settings = reconcile_settings(two.settings, now)
    day, after = today_of(settings, now)

    assert await run_reconcile(settings, io.StringIO(), day=day, now=after, lane="lane1") == 0
    assert last_reported_day(settings.journal.path) == day
    assert last_reported_day(settings.journal.path, "lane2") is None

    out, err = io.StringIO(), io.StringIO()
    assert await run_reconcile(settings, out, since=SINCE_LAST, now=after, as_json=True, err=err) == 0, err.getvalue()
    [report] = jsonio.loads(out.getvalue())
    assert (report["lane"], report["businessDate"], report["matched"]) == ("lane2", day.isoformat(), 1)
    assert f"misbridge: business day {day} (1 of 1)" in err.getvalue()
    assert eod_calls(settings.journal.path) == BOTH_LANES_CALLS, "lane 1's day was not run again"

    err = io.StringIO()
    assert await run_reconcile(settings, io.StringIO(), since=SINCE_LAST, now=after, err=err) == 0
    assert f"nothing to reconcile: every business day up to {day} has a report" in err.getvalue()
    assert await run_reconcile(settings, io.StringIO(), day=day, now=after, lane="lane9", err=err) == 2
    assert "--lane lane9: no such lane; the lanes are lane1, lane2" in err.getvalue()


def test_since_last_plans_each_lane_from_its_own_newest_report(tmp_path: Path) -> None:
    now = datetime(2026, 5, 10, 12, 0, tzinfo=UTC)
    settings = Settings(
        journal={"path": tmp_path / "journal.db"},
        reconcile={"cut_off": "04:00", "time_zone": "Etc/UTC"},
        lanes=[
            {"name": "lane1", "device_url": "/dev/mispos-a", "device_no": "POS01"},
            {"name": "lane-2", "device_url": "/dev/mispos-b", "device_no": "POS02"},
        ],
    )
    settings.journal.path.write_bytes(b"")
    reports = tmp_path / "reports"
    for folder, name in (
        ("2026-05-08", "reconcile-20260509T043000000000Z.json"),  # the default lane (lane1), up to the 8th
        ("2026-05-06", "reconcile-lane-2-20260507T043000000000Z.json"),  # lane-2, up to the 6th
    ):
        (reports / folder).mkdir(parents=True, exist_ok=True)
        (reports / folder / name).write_text("{}", encoding="utf-8")
    assert last_reported_day(settings.journal.path) == date(2026, 5, 8)
    assert last_reported_day(settings.journal.path, "lane-2") == date(2026, 5, 6)

    plan = functools.partial(days_to_run, settings, now)
    assert plan(since=SINCE_LAST) == RunPlan(
        (date(2026, 5, 7), date(2026, 5, 8), date(2026, 5, 9)),
        partial=((date(2026, 5, 7), ("lane-2",)), (date(2026, 5, 8), ("lane-2",))),
    )
    assert plan(since=SINCE_LAST).lanes_on(date(2026, 5, 9), ["lane1", "lane-2"]) == ("lane1", "lane-2")
    assert plan(since=SINCE_LAST, lanes=[settings.lane_named("lane1")]).days == (date(2026, 5, 9),)


async def test_pad_provision_loads_the_lanes_pad_under_its_device_no(tmp_path: Path) -> None:
    root_key_file = tmp_path / "ebuy-root-key"
    root_key_file.write_text(TEST_ROOT_KEY_HEX + "\n", encoding="utf-8")
    root_key_file.chmod(0o400)
    async with launched_simulators(tmp_path, lanes=2, pinpad_args=("--keys", "unprovisioned")) as sims:
        settings = simulated_settings(sims, tmp_path / "journal.db", keys={"root_key_file": root_key_file})
        with pytest.raises(ConfigError, match="no such lane"):
            await provision_pad(settings, io.StringIO(), lane="lane3")

        out = io.StringIO()
        assert await provision_pad(settings, out, lane="lane2") == 0, out.getvalue()
        text = out.getvalue()
        assert text.startswith(f"lane lane2 (deviceNo POS02, pad {sims.pads[1].device_path})\n")
        assert "master key before: KCV (none)" in text
        assert "provisioned: the pad is ready for card sales" in text
        assert TEST_ROOT_KEY_HEX not in text

        async with httpx.AsyncClient() as client:
            ledger = (await client.get(f"{sims.backend_base}/_sim/ledger")).json()["transactions"]
        key_requests = {entry["action"]: entry["deviceNo"] for entry in ledger.values()}
        assert key_requests == {"DownloadKey": "POS02", "signIn": "POS02"}
        with sqlite3.connect(settings.journal.path) as conn:
            rows = conn.execute("SELECT kind, lane FROM key_calls ORDER BY rowid").fetchall()
        assert rows == [("downloadKey", "lane2"), ("signIn", "lane2")], "lane 2's keeper finds its own sign-in"
