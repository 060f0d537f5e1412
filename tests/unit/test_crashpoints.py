"""The crash hook kills only when the test flag is set, and only at the named pass."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from misbridge.host.crashpoints import DAEMON_POINTS, EXIT_CODE, POINTS, RECONCILE_POINTS

PACKAGE = Path(__file__).resolve().parents[2] / "misbridge"
#: A point's name as the code writes it: ``crash_point("x.y")``, ``_crash_if(flag, "x.y")``, or
#: either of a conditional inside ``crash_point(...)``.
NAMED = re.compile(r'"([a-z]+(?:\.[A-Za-z_]+)+)"')
#: The backend client's generic point, named by the action it posts.
BACKEND_WRITE = re.compile(r"backend\.[A-Za-z]+\.after_write")

SCRIPT = (
    "from misbridge.host.crashpoints import crash_point\n"
    "for _ in range(3):\n    crash_point('submit.after_commit')\n"
    "print('alive')"
)


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # Fixed argv of the running interpreter: nothing untrusted reaches the command line.
    return subprocess.run(  # noqa: S603
        [sys.executable, "-c", SCRIPT], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )


def test_inert_without_the_test_flag() -> None:
    result = _run({"MISBRIDGE_CRASH_AT": "submit.after_commit", "MISBRIDGE_TEST_HOOKS": ""})
    assert (result.returncode, result.stdout.strip()) == (0, "alive")


@pytest.mark.parametrize(
    ("target", "code"),
    [
        ("submit.after_commit", EXIT_CODE),
        ("submit.after_commit:3", EXIT_CODE),
        ("submit.after_commit:4", 0),
        ("pin.before_commit", 0),
    ],
)
def test_kills_at_the_nth_pass_of_the_named_point(target: str, code: int) -> None:
    result = _run({"MISBRIDGE_CRASH_AT": target, "MISBRIDGE_TEST_HOOKS": "1"})
    assert result.returncode == code


def test_enough_distinct_points() -> None:
    assert len(set(POINTS)) == len(POINTS) >= 18


def test_the_daemon_and_the_end_of_day_share_out_every_point_once() -> None:
    assert set(DAEMON_POINTS).isdisjoint(RECONCILE_POINTS)
    assert (*DAEMON_POINTS, *RECONCILE_POINTS) == POINTS
    assert all(point.startswith(("reconcile.", "backend.")) for point in RECONCILE_POINTS)


def _named_in_the_code() -> set[str]:
    names: set[str] = set()
    for source in PACKAGE.rglob("*.py"):
        for line in source.read_text(encoding="utf-8").splitlines():
            if ("crash_point(" in line or "_crash_if(" in line) and "def " not in line:
                names |= set(NAMED.findall(line))
    return names


def test_every_point_the_code_names_is_listed_and_every_listed_one_is_in_the_code() -> None:
    named = _named_in_the_code()
    assert named <= set(POINTS), f"crash_point names missing from POINTS: {sorted(named - set(POINTS))}"
    unnamed = {point for point in POINTS if point not in named and not BACKEND_WRITE.fullmatch(point)}
    assert not unnamed, f"POINTS no code passes: {sorted(unnamed)}"
    assert {"reconcile.after_alloc", "reconcile.after_reply", "reconcile.file.before_name"} <= named
