"""Issue 16: the crash-point harness with 2 POS lanes in flight at the crash: 0 lost, 0 doubled, 0 stuck.

Every daemon the harness forks serves two POS lanes (``[[lanes]]`` lane1/POS01, lane2/POS02, a pad
simulator each) and every run sells on both at the same moment (tests/crash/pos_lanes.py). The
harness forks daemons, so it runs in its own process, as tests/crash/test_crash_points.py runs it.
``make test`` runs every plain card sale point once (about 10 s on 2 cores); ``make soak``
(``-m soak``) every such point x 100. docs/reliability.md, "Two POS lanes in flight", has the table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.crash.checker import COLUMNS as VIOLATIONS
from tests.crash.invoke import run_harness
from tests.crash.pos_lanes import POS_LANES_POINTS

#: Where each POS lane's row must be: the default lane's (lane1) has ``lane`` NULL.
JOURNAL_LANES = {"lane1": None, "lane2": "lane2"}


def run_two_lanes(
    runs: int, tmp_path: Path, timeout_s: float, capsys: pytest.CaptureFixture[str] | None = None
) -> None:
    data = run_harness(["--pos-lanes", "2", "--jobs", "2"], runs, tmp_path, timeout_s, capsys)
    assert data["pos_lanes"] == 2
    rows = {row["point"]: row for row in data["rows"]}
    assert list(rows) == list(POS_LANES_POINTS)
    for row in rows.values():
        assert row["runs"] == runs, row
        assert row["reached"] == runs, f"{row['point']} was not reached in every run: {row}"
        assert all(row[column] == 0 for column in VIOLATIONS), row
    for result in data["results"]:
        assert_both_lanes_finished(result)


def assert_both_lanes_finished(result: dict[str, Any]) -> None:
    """Independently of the checker: each POS lane's sale is final, in its own lane, charged as journaled."""
    sales = result["pos_lanes"]
    assert [sale["lane"] for sale in sales] == list(JOURNAL_LANES), result
    assert len({sale["trace_no"] for sale in sales}) == len(sales), result
    for sale in sales:
        assert sale["journal_lane"] == JOURNAL_LANES[sale["lane"]], sale
        assert sale["state"] in {"approved", "declined", "aborted", "voided"}, sale
        assert sale["reversal"] in {None, "done"}, sale
        assert sale["submissions"] <= 1, sale
        # A charge stands exactly when the journal approved it; a voided sale's charge was given back.
        assert (sale["ledger"] == "approved") == (sale["state"] == "approved"), sale


@pytest.mark.timeout(300)
def test_two_pos_lanes_in_flight_at_every_card_sale_crash_point(tmp_path: Path) -> None:
    run_two_lanes(1, tmp_path, timeout_s=280)


@pytest.mark.soak
@pytest.mark.timeout(3 * 3600)
def test_two_pos_lanes_in_flight_100_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_two_lanes(100, tmp_path, timeout_s=3 * 3600 - 60, capsys=capsys)
