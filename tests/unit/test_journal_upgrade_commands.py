"""The commands around a journal schema upgrade: ``journal schema`` reads, the writers back up and log, serve refuses.

Real journal files built with the migrations of each version (tests/unit/journal), the real
``misbridge`` entry point, and ``serve`` as a real subprocess for its exit status.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from misbridge.app.cli import main
from misbridge.journal import Journal
from misbridge.journal.upgrade import BACKUP_DIR, backups
from misbridge.telemetry.logs import configure_logging
from tests.unit.journal.test_journal_migration import version
from tests.unit.journal.test_journal_upgrade import REFUSAL, make_newer, write_v8_file

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _no_site_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MISBRIDGE_CONFIG", raising=False)
    monkeypatch.setattr("misbridge.app.cli.DEFAULT_CONFIG_PATH", Path("/nonexistent/misbridge.toml"))
    yield
    configure_logging("WARNING")


async def create_current(path: Path) -> None:
    """A journal file at this code's schema version."""
    async with await Journal.open(path):
        pass


def schema_of(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    status = main(["journal", "--journal", str(path), "schema", *extra])
    return status, capsys.readouterr().out.strip()


async def test_journal_schema_tells_without_migrating(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.db"
    write_v8_file(path)
    assert schema_of(path, capsys) == (0, "schema 8, readable by code >= 8, this misbridge knows 9")
    assert version(path) == 8, "read, not migrated"
    assert not (tmp_path / BACKUP_DIR).exists()

    async with await Journal.open(path):
        pass
    assert schema_of(path, capsys) == (0, "schema 9, readable by code >= 9, this misbridge knows 9")

    make_newer(path, min_reader=9)
    assert schema_of(path, capsys) == (0, "schema 10, readable by code >= 9, this misbridge knows 9")


async def test_journal_schema_exits_1_on_a_journal_this_code_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    async with await Journal.open(path):
        pass
    make_newer(path, min_reader=10)
    assert schema_of(path, capsys) == (1, "schema 10, readable by code >= 10, this misbridge knows 9")
    status, out = schema_of(path, capsys, "--json")
    assert (status, json.loads(out)) == (1, {"schema": 10, "minReader": 10, "knows": 9, "opens": False})
    assert main(["journal", "--journal", str(tmp_path / "none.db"), "schema"]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_a_writing_command_backs_up_keeps_the_configured_number_and_logs_the_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    config = tmp_path / "misbridge.toml"
    config.write_text(f'[journal]\npath = "{path}"\nbackups_kept = 1\n', encoding="utf-8")
    folder = tmp_path / BACKUP_DIR
    folder.mkdir()
    (folder / "journal-v8-20200101T000000.000000Z.sqlite").write_bytes(b"")  # an older backup
    write_v8_file(path)

    assert main(["journal", "--config", str(config), "purge"]) == 0
    [backup] = backups(folder)
    assert backup.name != "journal-v8-20200101T000000.000000Z.sqlite", "keeps 1: the new one"
    log = [line for line in capsys.readouterr().err.splitlines() if "backup taken first" in line]
    assert len(log) == 1
    assert "INFO" in log[0]
    assert str(backup) in log[0]
    assert version(path) == 9


def test_a_writing_command_on_a_refused_journal_exits_1_with_the_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    asyncio.run(create_current(path))
    make_newer(path, min_reader=10)
    assert main(["journal", "--journal", str(path), "purge"]) == 1
    assert REFUSAL in capsys.readouterr().err


def test_serve_exits_non_zero_and_does_not_start_on_a_refused_journal(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    asyncio.run(create_current(path))
    make_newer(path, min_reader=10)
    config = tmp_path / "misbridge.toml"
    config.write_text(
        f'[journal]\npath = "{path}"\n[backend.signing]\nenabled = false\n[api]\nsocket_port = 0\nhttp_port = 0\n',
        encoding="utf-8",
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "MISBRIDGE_CONFIG": ""}  # fmt: skip
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "misbridge", "serve", "--config", str(config)],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 1, done.stderr
    assert f"misbridge: journal {path}: this misbridge {REFUSAL}" in done.stderr
    assert "Traceback" not in done.stderr, "one sentence, not a crash"
    assert "misbridge serving" not in done.stdout
    assert version(path) == 10
