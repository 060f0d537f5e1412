"""systemd/misbridge-reconcile.service and .timer: verified offline by systemd, scored, and linted.

The same gates as test_unit_file.py for misbridge.service: ``systemd-analyze verify`` prints
nothing (on copies whose ExecStart points at a stub, since verify needs the binary to exist),
and ``systemd-analyze security`` scores the service <= 2.0 (a timer has no sandbox to score).
"""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest

from misbridge.config import secrets
from misbridge.config.settings import ReconcileSettings
from tests.system.test_unit_file import MAX_EXPOSURE
from tests.system.tools import REPO, UNIT, Setting, parse_unit, run, tool, values

SERVICE = REPO / "systemd" / "misbridge-reconcile.service"
TIMER = REPO / "systemd" / "misbridge-reconcile.timer"
EXEC_START = "/usr/bin/misbridge reconcile --since last --config /etc/misbridge/misbridge.toml"
#: misbridge reconcile's exit status for "the run completed and found mismatches".
EXIT_MISMATCHED = 3


@pytest.fixture(scope="module")
def service() -> list[Setting]:
    return parse_unit(SERVICE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def timer() -> list[Setting]:
    return parse_unit(TIMER.read_text(encoding="utf-8"))


def _verifiable_copies(directory: Path, *, service_extra: str = "", timer_extra: str = "") -> list[Path]:
    """Both units side by side (the timer's Unit= must resolve), ExecStart pointing at a stub."""
    stub = directory / "misbridge"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = SERVICE.read_text(encoding="utf-8")
    assert f"\nExecStart={EXEC_START}\n" in text
    text = text.replace("\nExecStart=/usr/bin/misbridge ", f"\nExecStart={stub} ", 1)
    text = text.replace("\n[Service]\n", f"\n[Service]\n{service_extra}", 1)
    service = directory / SERVICE.name
    service.write_text(text, encoding="utf-8")
    timer = directory / TIMER.name
    timer.write_text(TIMER.read_text(encoding="utf-8").replace("\n[Timer]\n", f"\n[Timer]\n{timer_extra}", 1))
    return [service, timer]


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", package="systemd")
    result = run([analyze, "verify", *map(str, _verifiable_copies(tmp_path))])
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


@pytest.mark.parametrize(
    ("service_extra", "timer_extra", "typo"),
    [("ExecStrat=/bin/true\n", "", "ExecStrat"), ("", "OnCalender=daily\n", "OnCalender")],
)
def test_the_verify_gate_sees_a_typo_in_either_unit(
    tmp_path: Path, service_extra: str, timer_extra: str, typo: str
) -> None:
    analyze = tool("systemd-analyze", package="systemd")
    copies = _verifiable_copies(tmp_path, service_extra=service_extra, timer_extra=timer_extra)
    result = run([analyze, "verify", *map(str, copies)])
    assert typo in result.stdout + result.stderr


def test_security_exposure_is_at_most_2() -> None:
    analyze = tool("systemd-analyze", package="systemd")
    result = run([analyze, "security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}", str(SERVICE)])
    output = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for misbridge-reconcile\.service: (\d+\.\d+)", output)
    assert found, output[-2000:]
    assert float(found.group(1)) <= MAX_EXPOSURE, output
    assert result.returncode == 0, output[-2000:]


def test_a_oneshot_of_misbridge_reconcile_as_the_misbridge_user(service: list[Setting]) -> None:
    main = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert values(service, "Type") == ["oneshot"]
    assert values(service, "ExecStart") == [EXEC_START]
    for key in ("User", "Group", "StateDirectory", "ConfigurationDirectory", "UMask"):
        # The daemon must read the reports/latest.json this writes: same user, same directory.
        assert values(service, key) == values(main, key), key
    assert values(service, "Restart") in ([], ["no"]), "a re-run makes new backend calls: a person decides"


def test_mismatches_are_a_completed_run_not_a_unit_failure(service: list[Setting]) -> None:
    assert values(service, "SuccessExitStatus") == [str(EXIT_MISMATCHED)]


def test_only_the_signing_key_is_loaded(service: list[Setting]) -> None:
    assert values(service, "LoadCredential") == [
        f"{secrets.SIGNING_KEY_CREDENTIAL}:/etc/misbridge/credentials/{secrets.SIGNING_KEY_CREDENTIAL}"
    ]
    assert values(service, "Environment") == values(service, "EnvironmentFile") == []
    assert values(service, "SetCredential") == []


def test_locked_down_at_least_like_the_daemon(service: list[Setting]) -> None:
    main = parse_unit(UNIT.read_text(encoding="utf-8"))
    for key in (
        "NoNewPrivileges", "CapabilityBoundingSet", "AmbientCapabilities", "ProtectSystem", "ProtectHome",
        "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups", "RestrictNamespaces",
        "MemoryDenyWriteExecute", "SystemCallFilter", "SystemCallArchitectures", "IPAddressDeny", "IPAddressAllow",
        "DevicePolicy", "LimitCORE",
    ):  # fmt: skip
        assert values(service, key) == values(main, key), key
    assert values(service, "DeviceAllow") == []
    assert values(service, "SocketBindDeny") == ["any"]
    assert values(service, "SocketBindAllow") == []


def test_the_timer_runs_daily_after_the_default_cut_off_and_catches_up(timer: list[Setting]) -> None:
    assert values(timer, "Persistent", section="Timer") == ["true"]
    assert values(timer, "Unit", section="Timer") == [SERVICE.name]
    assert values(timer, "WantedBy", section="Install") == ["timers.target"]
    (delay,) = values(timer, "RandomizedDelaySec", section="Timer")
    assert delay not in ("0", "")
    (calendar,) = values(timer, "OnCalendar", section="Timer")
    analyze = tool("systemd-analyze", package="systemd")
    result = run([analyze, "calendar", "--iterations=2", calendar])
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", result.stdout)
    first, second = (datetime.fromisoformat(when) for when in found[:2])
    assert (second - first).days == 1, "once a day"
    assert first.time() > ReconcileSettings().cut_off_time(), "after the business day has ended"
