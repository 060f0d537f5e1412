"""docs/operations.md stays true to the unit, the credentials and the return codes."""

from __future__ import annotations

import re
import shlex

from misbridge.app.cli import _parser
from misbridge.config import secrets
from misbridge.errors import ReturnCode
from misbridge.journal.schema import KEY_CALL_KINDS
from misbridge.tools.journal import KEY_CALL_COLUMNS, NO_RESULT_YET
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


def _journal_commands() -> list[list[str]]:
    """Every ``misbridge journal ...`` line of the doc's ``sh`` blocks, as argv after ``misbridge``."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", DOC, re.DOTALL):
        for line in block.splitlines():
            _, found, rest = line.partition("misbridge journal ")
            if found:
                commands.append(["journal", *shlex.split(rest, comments=True)])
    return commands


def test_every_journal_command_shown_parses() -> None:
    commands = _journal_commands()
    assert any(argv[1] == "key-calls" for argv in commands)
    parser = _parser()
    for argv in commands:
        parser.parse_args(argv)  # exits (SystemExit) on an option the command does not have


def test_the_key_calls_sample_has_the_commands_columns() -> None:
    sample = re.search(r"```\n(traceNo +kind .*?)```", DOC, re.DOTALL)
    assert sample, "the key-calls sample table is missing"
    header, *rows = sample.group(1).splitlines()
    assert header.split() == list(KEY_CALL_COLUMNS[:-1])
    assert {row.split()[1] for row in rows} <= set(KEY_CALL_KINDS)
    for result in ("answered", "unknown", NO_RESULT_YET):  # the doc explains each
        assert any(f"  {result}  " in row for row in rows), result
