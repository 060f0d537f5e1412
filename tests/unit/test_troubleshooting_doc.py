"""docs/operations.md's Troubleshooting has a row for every return code the code defines, with a command.

The codes come from ``misbridge.errors.ReturnCode``, never from a doc: a code added to the code
without its row here fails.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from misbridge.app.cli import _parser
from misbridge.errors import ReturnCode

DOC = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text(encoding="utf-8")
#: A row of the return-code table: code, what is seen, likely cause, what to do.
ROW = re.compile(r"^\| `(MB\d\d)` \|(.*)\|$", re.MULTILINE)
#: The programs a "what to do" cell may give a technician to run.
COMMANDS = ("misbridge ", "sudo ", "curl ", "journalctl ", "systemctl ", "runuser ", "ss ", "id ", "ls ")
#: Placeholders of the rows' commands, and a value of their form.
PLACEHOLDERS = {"<traceNo>": "T0001", "<originalTraceNo>": "T0001"}


def troubleshooting() -> str:
    """The "Troubleshooting" section of docs/operations.md, up to the next top-level section."""
    section = re.search(r"^## Troubleshooting\n(.*?)(?=^## |\Z)", DOC, re.MULTILINE | re.DOTALL)
    assert section, "docs/operations.md has no '## Troubleshooting' section"
    return section.group(1)


def rows() -> dict[str, list[str]]:
    """The return-code rows of the section, by code, as their cells after the code."""
    found: dict[str, list[str]] = {}
    for code, cells in ROW.findall(troubleshooting()):
        assert code not in found, f"{code} has two rows in Troubleshooting"
        found[code] = [cell.strip() for cell in re.split(r"(?<!\\)\|", cells)]
    return found


def test_every_code_of_the_code_has_a_row_and_no_other() -> None:
    defined = {code.code for code in ReturnCode}
    documented = set(rows())
    assert not defined - documented, f"no Troubleshooting row in docs/operations.md for {sorted(defined - documented)}"
    assert not documented - defined, f"Troubleshooting rows for codes the code does not have: {documented - defined}"


@pytest.mark.parametrize("code", [code.code for code in ReturnCode])
def test_each_row_says_what_is_seen_why_and_what_to_run(code: str) -> None:
    cells = rows().get(code)
    if cells is None:
        pytest.fail(f"no Troubleshooting row for {code}")
    assert len(cells) == 3, f"{code}: a row is | code | what is seen | likely cause | what to do |, not {cells}"
    assert all(cells), f"{code}: an empty cell"
    spans = re.findall(r"`([^`]+)`", cells[2])
    assert any(span.startswith(COMMANDS) for span in spans), f"{code}: 'what to do' gives no command to run"


def _misbridge_commands() -> list[list[str]]:
    """Every ``misbridge ...`` command of the return-code rows, as argv after ``misbridge``."""
    argvs = []
    for cells in rows().values():
        for span in re.findall(r"`([^`]+)`", cells[2]):
            command = span.replace("\\|", "|").split(" | ")[0]
            for placeholder, value in PLACEHOLDERS.items():
                command = command.replace(placeholder, value)
            words = shlex.split(command)
            if words[:1] == ["sudo"]:
                words = words[1:]
            if words[:4] == ["runuser", "-u", "misbridge", "--"]:
                words = words[4:]
            if words[:1] == ["misbridge"]:
                argvs.append(words[1:])
    return argvs


def test_every_misbridge_command_in_the_rows_parses() -> None:
    argvs = _misbridge_commands()
    assert any(argv[:2] == ["journal", "show"] for argv in argvs)
    parser = _parser()
    for argv in argvs:
        if argv == ["--version"]:
            continue  # argparse prints and exits 0 for it
        parser.parse_args(argv)  # exits (SystemExit 2) on a command or option misbridge does not have


def test_a_missing_row_is_found() -> None:
    """The reader of the rows must notice a code without a row (the test above can fail)."""
    without = ROW.sub(lambda row: "" if row.group(1) == "MB77" else row.group(0), troubleshooting())
    assert "MB77" in {code for code, _ in ROW.findall(troubleshooting())}
    assert "MB77" not in {code for code, _ in ROW.findall(without)}
