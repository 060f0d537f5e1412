"""Helpers of the system tests: locating the real tools, parsing unit files."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "misbridge.service"
RULES = REPO / "udev" / "99-misbridge-pinpad.rules"

#: `make lint-system` sets this: there a missing tool is a failure, not a skip.
REQUIRE_TOOLS = os.environ.get("MISBRIDGE_REQUIRE_SYSTEM_TOOLS") == "1"


def unavailable(reason: str) -> None:
    """Skip the test (fail it under `make lint-system`) because a tool is missing."""
    if REQUIRE_TOOLS:
        pytest.fail(f"{reason} (MISBRIDGE_REQUIRE_SYSTEM_TOOLS=1)")
    pytest.skip(reason)


def tool(name: str, *, package: str, env_var: str | None = None) -> str:
    """Absolute path of ``name`` (``$env_var`` first), or skip with the package to install."""
    path = (os.environ.get(env_var) if env_var else None) or shutil.which(name)
    if not path:
        unavailable(f"{name} is not installed (apt-get install {package}, or run `make lint-system`)")
        raise AssertionError("unreachable")
    return path


def run(argv: list[str], *, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a tool with a fixed argv; stdout and stderr captured together as text."""
    # Fixed argv built by the tests themselves: nothing untrusted reaches the command line.
    return subprocess.run(  # noqa: S603
        argv, capture_output=True, text=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
    )


@dataclass(frozen=True)
class Setting:
    """One ``Key=value`` assignment of a unit file."""

    section: str
    key: str
    value: str
    line: int


def parse_unit(text: str) -> list[Setting]:
    """The assignments of a systemd unit file, in order (comments dropped, continuations joined)."""
    settings: list[Setting] = []
    section = ""
    pending = ""
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not pending and (not line or line[0] in "#;"):
            continue
        if line.startswith("[") and line.endswith("]") and not pending:
            section = line[1:-1]
            continue
        if not pending:
            start = number
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        key, sep, value = line.partition("=")
        assert sep, f"line {start}: not a Key=value assignment: {line!r}"
        settings.append(Setting(section, key.strip(), value.strip(), start))
    return settings


def values(settings: list[Setting], key: str, section: str = "Service") -> list[str]:
    """Every value assigned to ``key`` in ``section``, in order."""
    return [s.value for s in settings if s.key == key and s.section == section]
