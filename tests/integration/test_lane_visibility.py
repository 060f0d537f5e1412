"""Lanes in the metrics and the log: each lane's series under its ``lane`` label, its lines with ``lane=<name>``.

Real simulated pads and backend, the real socket door (routing by the envelope's deviceNo) and
the real ``GET /metrics``; the log is misbridge's own configuration (``configure_logging``, its
patcher and line format) writing into a string.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.simulated import SimulatedDaemon, lane_device_no, simulated_daemon
from misbridge.ebuy.examples import card_redemption_request
from misbridge.telemetry.logs import configure_logging
from tests.integration.conftest import new_trace_no


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    """Every line the daemon logs (DEBUG and up, as misbridge formats it) while the test runs."""
    sink = io.StringIO()
    configure_logging("DEBUG", stream=sink)
    try:
        yield sink
    finally:
        configure_logging("WARNING")


async def sell(bench: SimulatedDaemon, device_no: str) -> dict[str, Any]:
    """One card sale from the POS whose envelope names ``device_no``; the answer's body."""
    body = card_redemption_request()
    body["traceNo"] = new_trace_no()
    envelope = envelope_for("cardRedemption", body, device_no=device_no)
    answer = await socket_request(bench.settings.api.host, bench.daemon.socket_port, envelope)
    return answer.body


async def scrape(bench: SimulatedDaemon) -> str:
    async with httpx.AsyncClient(base_url=f"http://{bench.settings.api.host}:{bench.daemon.http_port}") as http:
        reply = await http.get("/metrics")
    assert reply.status_code == 200
    return reply.text


def lines_with(log: io.StringIO, text: str) -> list[str]:
    return [line for line in log.getvalue().splitlines() if text in line]


def names_lane(line: str, lane: str) -> bool:
    """The line carries the field ``lane=<lane>`` (misbridge writes bound fields as ``key=value``)."""
    return f"lane={lane}" in line.split()


async def test_two_lanes_count_and_log_under_their_own_names(tmp_path: Path, log: io.StringIO) -> None:
    async with simulated_daemon(tmp_path, card="points-cash", lanes=2) as bench:
        first = await sell(bench, lane_device_no(1))
        second = await sell(bench, lane_device_no(2))
        second_again = await sell(bench, lane_device_no(2))
        metrics = await scrape(bench)
    assert [answer["returnCode"] for answer in (first, second, second_again)] == ["00"] * 3

    sale = 'action="cardRedemption",lane="{}",outcome="approved"'
    assert f"misbridge_transactions_total{{{sale.format('lane1')}}} 1.0" in metrics
    assert f"misbridge_transactions_total{{{sale.format('lane2')}}} 2.0" in metrics
    for lane in ("lane1", "lane2"):
        assert f'misbridge_stage_duration_seconds_count{{lane="{lane}",stage="pin"}}' in metrics
        for gauge in ("device_connected", "signed_in", "pad_working_key_ok", "backend_reachable"):
            assert f'misbridge_{gauge}{{lane="{lane}"}} 1.0' in metrics, (gauge, lane)
        assert f'misbridge_reversal_queue{{lane="{lane}",state="needs_manual"}} 0.0' in metrics
    # The journal's and the door's metrics are the whole daemon's: no lane label.
    assert "misbridge_transactions_unresolved 0.0" in metrics
    assert "misbridge_journal_bytes " in metrics

    # Each sale's lines (its state moves, its backend call) name the lane that ran it.
    for answer, lane in ((first, "lane1"), (second, "lane2"), (second_again, "lane2")):
        lines = lines_with(log, f"traceNo={answer['traceNo']}")
        assert len(lines) >= 5, lines  # four state moves and the backend call
        assert all(names_lane(line, lane) for line in lines), lines
    # So do each lane's start-up sign-in and its pad link's own tasks (started with the lane).
    for lane in ("lane1", "lane2"):
        assert any(names_lane(line, lane) for line in lines_with(log, "signed in (traceNo")), lane
        assert any(names_lane(line, lane) for line in lines_with(log, "session started")), lane
    assert not [line for line in lines_with(log, "session started") if "lane=" not in line]


async def test_one_lane_is_the_default_lane_and_its_lines_name_no_lane(tmp_path: Path, log: io.StringIO) -> None:
    async with simulated_daemon(tmp_path, card="points-cash") as bench:
        answer = await sell(bench, "ANY-DEVICE")  # one lane takes every deviceNo
        metrics = await scrape(bench)
    assert answer["returnCode"] == "00", answer
    assert 'misbridge_transactions_total{action="cardRedemption",lane="default",outcome="approved"} 1.0' in metrics
    assert 'misbridge_device_connected{lane="default"} 1.0' in metrics
    assert len(lines_with(log, f"traceNo={answer['traceNo']}")) >= 4
    assert not lines_with(log, "lane="), lines_with(log, "lane=")[:5]
