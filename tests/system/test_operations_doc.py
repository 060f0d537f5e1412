"""docs/operations.md stays true to the unit, the credentials and the return codes."""

from __future__ import annotations

import re

from misbridge.config import secrets
from misbridge.errors import ReturnCode
from tests.system.tools import REPO, UNIT, parse_unit, values

DOC = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")


def test_every_return_code_named_exists() -> None:
    named = set(re.findall(r"\bMB\d\d\b", DOC))
    assert named
    assert named <= {code.code for code in ReturnCode}


def test_the_credentials_table_matches_the_unit() -> None:
    for name in secrets.UNIT_CREDENTIALS:
        assert f"| `{name}` | `/etc/misbridge/credentials/{name}` |" in DOC


def test_the_unit_timers_quoted_are_the_units() -> None:
    unit = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert f"WatchdogSec={values(unit, 'WatchdogSec')[0]}" in DOC
    assert f"TimeoutStartSec={values(unit, 'TimeoutStartSec')[0]}" in DOC
    for port in values(unit, "SocketBindAllow"):
        assert port.removeprefix("tcp:") in DOC


def test_the_end_of_day_timer_quoted_is_the_timer() -> None:
    timer = parse_unit((REPO / "systemd" / "misbridge-reconcile.timer").read_text(encoding="utf-8"))
    service = parse_unit((REPO / "systemd" / "misbridge-reconcile.service").read_text(encoding="utf-8"))
    for key in ("OnCalendar", "RandomizedDelaySec", "Persistent"):
        assert f"{key}={values(timer, key, section='Timer')[0]}" in DOC, key
    assert f"SuccessExitStatus={values(service, 'SuccessExitStatus')[0]}" in DOC
    assert "misbridge_reconcile_mismatches" in DOC
    assert "alert=RECONCILE_MISMATCH" in DOC
