"""``resume_garbage_collection``: the collector ``python -m misbridge`` paused comes back on, frozen."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.system.tools import REPO

_REPORT = (
    "import gc\n{setup}\nfrom misbridge.app.cli import resume_garbage_collection\n"
    "resumed = resume_garbage_collection()\nprint(resumed, gc.isenabled(), gc.get_freeze_count() > 0)"
)


def _after_resume(setup: str) -> str:
    """``'<resumed> <enabled> <something frozen>'`` in a fresh interpreter after ``setup``, then the resume."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    # Fixed argv of the running interpreter: nothing untrusted reaches the command line.
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", _REPORT.format(setup=setup)], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=60, check=True,
    )  # fmt: skip
    return result.stdout.strip()


def test_a_paused_collector_is_turned_on_with_the_start_up_frozen() -> None:
    assert _after_resume("gc.disable()") == "True True True"


def test_a_running_collector_is_left_alone_and_nothing_frozen() -> None:
    assert _after_resume("") == "False True False"
