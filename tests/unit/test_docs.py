"""docs/ must stay true to the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from misbridge import __version__
from misbridge.config.settings import ApiSettings
from misbridge.errors import ReturnCode
from misbridge.host.crashpoints import POINTS
from misbridge.journal.schema import SCHEMA_VERSION

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("code", list(ReturnCode), ids=lambda c: c.code)
def test_every_return_code_is_documented_with_its_status_and_meaning(code: ReturnCode) -> None:
    text = (DOCS / "return-codes.md").read_text(encoding="utf-8")
    row = re.search(rf"^\| `{code.code}` \| (\d+) \| ([^|]+) \|", text, re.MULTILINE)
    assert row, f"{code.code} missing from docs/return-codes.md"
    assert int(row.group(1)) == code.http_status
    assert row.group(2).strip() == code.meaning


def test_no_undocumented_code_in_the_table() -> None:
    text = (DOCS / "return-codes.md").read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `(MB\d\d)` \|", text, re.MULTILINE))
    assert documented == {code.code for code in ReturnCode}


def test_every_crash_point_is_in_the_reliability_tables_in_order() -> None:
    text = (DOCS / "reliability.md").read_text(encoding="utf-8")
    listed = re.findall(r"^\| (\d+) \| `([^`]+)` \|", text, re.MULTILINE)
    assert [point for _, point in listed] == list(POINTS)
    assert [int(number) for number, _ in listed] == list(range(1, len(POINTS) + 1))


def test_the_readme_says_how_to_change_the_ports() -> None:
    """README's "Ports" paragraph: the settings, their defaults, and every port the unit lets misbridge bind."""
    readme = (DOCS.parent / "README.md").read_text(encoding="utf-8")
    paragraph = re.search(r"^\*\*Ports\.\*\* (.*?)\n\n", readme, re.MULTILINE | re.DOTALL)
    assert paragraph, "README.md has no **Ports.** paragraph"
    text = " ".join(paragraph.group(1).split())
    api = ApiSettings()
    assert f"`api.socket_port` ({api.socket_port})" in text
    assert f"`api.http_port` ({api.http_port})" in text
    assert "`socket_port` in its `[[lanes]]` entry" in text
    unit = (DOCS.parent / "systemd" / "misbridge.service").read_text(encoding="utf-8")
    allowed = re.findall(r"^SocketBindAllow=(\S+)$", unit, re.MULTILINE)
    assert allowed
    for port in allowed:
        assert f"`{port}`" in text or f"`SocketBindAllow={port}`" in text, f"the unit allows {port}"
    assert "drop-in" in text


def test_the_changelog_has_an_entry_for_this_version() -> None:
    changelog = (DOCS / "changelog.md").read_text(encoding="utf-8")
    entry = changelog.split(f"\n## {__version__}", 1)
    assert len(entry) == 2, f"docs/changelog.md has no '## {__version__}' entry"
    # Each release says which journal schema it writes (rollback needs to know).
    assert f"Journal schema {SCHEMA_VERSION}" in entry[1].split("\n## ", 1)[0]
