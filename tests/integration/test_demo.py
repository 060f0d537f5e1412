"""``misbridge demo`` as a newcomer runs it: every scenario, as a real process, ends as it says.

Each scenario starts both simulators and a daemon of its own; the test checks the exit code, the
closing verdict, and that the output shows no whole card number (the simulated cards' PANs are
printed only as first 6 / last 4, if at all).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import tempfile
from io import StringIO
from pathlib import Path

import pytest

from misbridge.app import demo
from misbridge.app.demo_list import DEMO_SCENARIOS
from misbridge.app.simulated import bench_workdir
from misbridge.errors import ConfigError
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


def test_an_unknown_card_is_refused_up_front_with_the_valid_names() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "misbridge", "demo", "--card", "nosuch"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    [refusal] = [line for line in completed.stderr.splitlines() if "nosuch" in line]
    assert "--card" in refusal
    for name in CARDS:
        assert f"'{name}'" in refusal, name
    assert "simulators.log" not in completed.stderr  # no simulator was started, so no log to point to


def test_a_demo_that_fails_keeps_the_log_its_error_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the demo makes its directory
    # run_demo takes any name (the command line refuses it first): the pad simulator refuses it and exits.
    with pytest.raises(ConfigError, match="did not start") as failed:
        asyncio.run(demo.run_demo(StringIO(), card="nosuch"))
    named = re.search(r"see (\S+)$", failed.value.message)
    assert named is not None, failed.value.message
    log = Path(named.group(1))
    assert log.is_file(), f"the error names {log}, which the demo deleted"
    assert "nosuch" in log.read_text(encoding="utf-8")  # the simulator's own complaint is in it


def test_a_bench_directory_is_removed_after_a_good_run_and_kept_after_a_bad_one() -> None:
    with bench_workdir("misbridge-test-") as good:
        (good.path / "simulators.log").write_text("ok\n", encoding="utf-8")
    assert not good.path.exists()
    with bench_workdir("misbridge-test-") as flagged:
        flagged.keep = True
    with pytest.raises(RuntimeError), bench_workdir("misbridge-test-") as raised:
        raise RuntimeError("the simulators did not start")
    try:
        assert flagged.path.is_dir()
        assert raised.path.is_dir()
    finally:
        for kept in (flagged.path, raised.path):
            kept.rmdir()
