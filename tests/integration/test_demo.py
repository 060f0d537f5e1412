"""``misbridge demo`` as a newcomer runs it: every scenario, as a real process, ends as it says.

Each scenario starts both simulators and a daemon of its own; the test checks the exit code, the
closing verdict, and that the output shows no whole card number (the simulated cards' PANs are
printed only as first 6 / last 4, if at all).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from misbridge.app.demo_list import DEMO_SCENARIOS
from simulators.cards import CARDS

ROOT = Path(__file__).resolve().parents[2]


def run_demo(scenario: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and package
        [sys.executable, "-m", "misbridge", "demo", "--scenario", scenario],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip


@pytest.mark.timeout(300)
@pytest.mark.parametrize("scenario", list(DEMO_SCENARIOS))
def test_every_demo_scenario_ends_as_expected(scenario: str) -> None:
    completed = run_demo(scenario)
    assert completed.returncode == 0, completed.stdout[-4000:] + completed.stderr[-4000:]
    assert completed.stdout.rstrip().endswith("as expected"), completed.stdout[-2000:]
    assert "NOT as expected" not in completed.stdout
    assert "Traceback" not in completed.stderr


def test_the_day_runs_every_action_of_the_book_through_both_doors() -> None:
    completed = run_demo("day")
    assert completed.returncode == 0, completed.stdout[-4000:]
    rows = [line.split() for line in completed.stdout.splitlines() if line.startswith(("socket ", "http "))]
    doors = {row[0] for row in rows}
    actions = {row[1] for row in rows}
    assert doors == {"socket", "http"}
    assert len(actions) == 12, actions
    assert all(row[-1] == "ok" for row in rows), rows
    assert "12 of the book's 12 actions answered as the book's rules say" in completed.stdout


@pytest.mark.parametrize("scenario", ["approve", "void"])
def test_the_demo_shows_no_whole_card_number(scenario: str) -> None:
    completed = run_demo(scenario)
    shown = completed.stdout + completed.stderr
    assert completed.returncode == 0
    pan = CARDS["points-cash"].pan
    assert scenario == "void" or f"{pan[:6]}****{pan[-4:]}" in shown  # the receipt's card line
    for card in CARDS.values():
        assert card.pan not in shown, card.masked_pan


def test_the_end_of_day_report_names_the_planted_sale_and_the_rest_match() -> None:
    completed = run_demo("end-of-day")
    assert completed.returncode == 0, completed.stdout[-4000:]
    out = completed.stdout
    assert "uploaded 3 record(s) in 1 batchUpload call(s); matched 2, mismatched 1" in out, out[-3000:]
    planted = next(line.split()[5] for line in out.splitlines() if line.startswith("backend simulator   told"))
    assert f"{planted}  cardRedemption  approved 40.80  ->  2 the backend holds more" in out, out[-3000:]
    assert "the backend charged more than the till (40.80)" in out
    assert "working key KCV" in out  # the start-up sign-in, shown before the day
