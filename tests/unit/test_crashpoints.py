"""The crash hook kills only when the test flag is set, and only at the named pass."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from misbridge.host.crashpoints import EXIT_CODE, POINTS

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
