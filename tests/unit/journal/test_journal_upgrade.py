"""Schema upgrades that cannot break a till (issue 17): a backup first, checks after, expand/contract.

Real SQLite files throughout: a version-8 file built with the v1..v8 migrations, a real tmpfs for
the free-space refusal (when this runs as root), a real subprocess killed with SIGKILL in the
middle of a migration.
"""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from misbridge.errors import JournalError
from misbridge.journal import SCHEMA_VERSION, Journal
from misbridge.journal.schema import immediate_transaction, schema_v8
from misbridge.journal.upgrade import BACKUP_DIR, BackupPolicy, backups, prune_backups
from tests.unit.journal.helpers import T0, FakeClock, add_transaction, raw
from tests.unit.journal.test_journal_migration import snapshot, version, write_v7_file

REPO_ROOT = Path(__file__).resolve().parents[3]
REFUSAL = "refuses to open a newer schema than it knows"


def write_v8_file(path: Path) -> None:
    """A version-8 journal as issue 16's misbridge left it: the v7 rows and a named lane's sale."""
    write_v7_file(path)
    at = "2026-04-30T10:00:08.000000+00:00"
    with raw(path) as conn:
        with immediate_transaction(conn):
            for statement in schema_v8():
                conn.execute(statement)
            conn.execute("PRAGMA user_version = 8")
        conn.execute(
            "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, masked_pan, created_at,"
            " updated_at, lane) VALUES ('LANE1', 'cardRedemption', 'approved', '{\"traceNo\":\"LANE1\"}', 'h',"
            " '622588******1234', ?, ?, 'lane2')",
            (at, at),
        )


def remove_journal(path: Path) -> None:
    for name in (path.name, path.name + "-wal", path.name + "-shm"):
        (path.parent / name).unlink(missing_ok=True)


def database_size(path: Path) -> int:
    with raw(path) as conn:
        return int(conn.execute("PRAGMA page_count").fetchone()[0]) * int(
            conn.execute("PRAGMA page_size").fetchone()[0]
        )


async def test_a_v8_file_gets_one_backup_with_its_rows_then_is_at_v9(db_path: Path) -> None:
    write_v8_file(db_path)
    before = snapshot(db_path, since=8)
    assert all(before[name] for name in ("transactions", "key_calls", "reversals"))
    announced: list[Path] = []

    async with await Journal.open(db_path, clock=FakeClock(), backups=BackupPolicy(announce=announced.append)):
        pass

    folder = db_path.parent / BACKUP_DIR
    [backup] = backups(folder)
    assert backup.name == "journal-v8-20260501T120000.000000Z.sqlite"  # the version found, the clock's UTC time
    assert announced == [backup]
    assert sorted(entry.name for entry in folder.iterdir()) == [backup.name], "no partial copy, no -wal/-journal"
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert version(backup) == 8
    assert snapshot(backup, since=8) == before, "the backup holds exactly the rows of before"
    with raw(backup) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # one self-contained file
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert version(db_path) == SCHEMA_VERSION == 9
    assert snapshot(db_path, since=8) == before
    with raw(db_path) as conn:
        assert conn.execute("SELECT min_reader FROM schema_compat").fetchall() == [(9,)]


async def test_no_backup_for_a_fresh_file_nor_an_up_to_date_one(db_path: Path) -> None:
    announced: list[Path] = []
    policy = BackupPolicy(announce=announced.append)
    for _ in range(2):  # fresh, then at the current version
        async with await Journal.open(db_path, backups=policy) as journal:
            await add_transaction(journal, f"T{uuid.uuid4().hex[:8]}", "received")
    assert announced == []
    assert not (db_path.parent / BACKUP_DIR).exists()
    assert version(db_path) == SCHEMA_VERSION


async def test_only_the_newest_backups_are_kept(db_path: Path) -> None:
    folder = db_path.parent / BACKUP_DIR
    folder.mkdir()
    (folder / "journal-before-the-move.sqlite").write_bytes(b"a copy a person made")  # not named like a backup
    clock = FakeClock()
    for _ in range(4):
        remove_journal(db_path)
        write_v8_file(db_path)
        clock.advance(3600)
        async with await Journal.open(db_path, clock=clock, backups=BackupPolicy(keep=2)):
            pass
    stamps = [entry.name for entry in backups(folder)]
    assert stamps == ["journal-v8-20260501T160000.000000Z.sqlite", "journal-v8-20260501T150000.000000Z.sqlite"]
    assert (folder / "journal-before-the-move.sqlite").read_bytes() == b"a copy a person made"


def test_pruning_goes_by_the_time_in_the_name_not_the_version(tmp_path: Path) -> None:
    names = [
        "journal-v7-20260101T000000.000000Z.sqlite",
        "journal-v8-20250101T000000.000000Z.sqlite",  # a higher version, but older
        "journal-v8-20260301T000000.000000Z.sqlite",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    assert [entry.name for entry in prune_backups(tmp_path, 2)] == [names[1]]
    assert [entry.name for entry in backups(tmp_path)] == [names[2], names[0]]


def test_keep_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        BackupPolicy(keep=0)


def make_newer(path: Path, *, min_reader: int) -> None:
    """Turn a current file into one of a later release: version 10, an added column, ``min_reader`` as given."""
    with raw(path) as conn, immediate_transaction(conn):
        conn.execute("ALTER TABLE transactions ADD COLUMN loyalty_tier TEXT")  # what an additive v10 might do
        if min_reader != 9:
            conn.execute("UPDATE schema_compat SET min_reader = ?", (min_reader,))
        conn.execute("PRAGMA user_version = 10")


async def test_a_newer_file_that_allows_this_code_opens_without_migrating(db_path: Path) -> None:
    async with await Journal.open(db_path) as journal:
        await add_transaction(journal, "OLD1", "approved")
    make_newer(db_path, min_reader=9)

    async with await Journal.open(db_path) as journal:  # a rollback to this release, after an additive v10
        assert (await journal.settings()).schema_version == 10
        await add_transaction(journal, "NEW1", "received")
        assert sorted(r.trace_no for r in await journal.list_by_states(["approved", "received"])) == ["NEW1", "OLD1"]
    assert version(db_path) == 10, "left as it is"
    assert not (db_path.parent / BACKUP_DIR).exists()
    with raw(db_path) as conn:
        assert conn.execute("SELECT loyalty_tier FROM transactions WHERE trace_no = 'NEW1'").fetchone() == (None,)


async def test_a_newer_file_that_needs_newer_code_is_refused_with_the_sentence(db_path: Path) -> None:
    async with await Journal.open(db_path):
        pass
    make_newer(db_path, min_reader=10)

    with pytest.raises(JournalError, match=REFUSAL) as refused:
        await Journal.open(db_path)
    message = str(refused.value)
    assert "schema version 10" in message
    assert "this misbridge knows 9" in message
    assert "upgrade misbridge, or roll back with the backup" in message
    assert str(db_path) in message
    assert version(db_path) == 10
    assert not (db_path.parent / BACKUP_DIR).exists()


async def test_not_enough_room_for_twice_the_database_is_refused_before_anything_is_written(db_path: Path) -> None:
    write_v8_file(db_path)
    size = database_size(db_path)
    folder = db_path.parent / BACKUP_DIR
    seen: list[Path] = []

    def free_bytes(where: Path) -> int:
        seen.append(where)
        return 2 * size - 1

    with pytest.raises(JournalError, match="not enough free space") as refused:
        await Journal.open(db_path, backups=BackupPolicy(free_bytes=free_bytes))
    assert seen == [folder]
    assert str(folder) in str(refused.value)
    assert f"{2 * size} bytes needed" in str(refused.value)
    assert backups(folder) == []
    assert version(db_path) == 8, "not migrated without its backup"

    async with await Journal.open(db_path, backups=BackupPolicy(free_bytes=lambda where: 2 * size)):
        pass  # exactly twice is enough
    assert len(backups(folder)) == 1
    assert version(db_path) == SCHEMA_VERSION


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs under ``tmp_path`` (root only), unmounted afterwards."""
    mount_point = tmp_path / "tmpfs"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = subprocess.run(  # noqa: S603 - fixed arguments
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)],  # noqa: S607
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode(errors='replace').strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)  # noqa: S603, S607 - fixed arguments


def grow(path: Path, rows: int) -> None:
    with raw(path) as conn, immediate_transaction(conn):
        for number in range(rows):
            conn.execute(
                "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at, updated_at)"
                " VALUES (?, 'cardRedemption', 'approved', ?, 'h', 't', 't')",
                (f"PAD{number:05d}", '{"remark":"' + "x" * 1000 + '"}'),
            )


async def test_a_real_small_file_system_refuses_the_upgrade(small_tmpfs: Path) -> None:
    path = small_tmpfs / "journal.db"
    write_v8_file(path)
    grow(path, 400)  # about 450 KiB: fits on the 1 MiB tmpfs once, not twice more
    size = database_size(path)
    assert os.statvfs(small_tmpfs).f_bavail * os.statvfs(small_tmpfs).f_frsize < 2 * size

    with pytest.raises(JournalError, match=f"not enough free space in {small_tmpfs / BACKUP_DIR}"):
        await Journal.open(path)
    assert version(path) == 8
    assert backups(small_tmpfs / BACKUP_DIR) == []


async def test_a_migration_that_fails_its_checks_is_rolled_back_and_refused_at_every_start(db_path: Path) -> None:
    write_v8_file(db_path)
    with raw(db_path) as conn:  # an orphan transition: foreign_key_check finds it
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute(
            "INSERT INTO transitions (trace_no, from_state, to_state, event, at) VALUES ('GHOST', '', 'a', 'e', 't')"
        )
    for attempt in range(2):
        with pytest.raises(JournalError, match=r"fails its checks.*foreign_key_check: transitions row"):
            await Journal.open(db_path, clock=FakeClock(T0 + timedelta(minutes=attempt)))
        assert version(db_path) == 8, "the last step was rolled back: the next start checks again"
    assert len(backups(db_path.parent / BACKUP_DIR)) == 2


# Opens the journal with the version-9 step held open (its statements run, not committed), says
# so through a file, then waits to be killed.
CHILD = """
import asyncio, sys, time
from pathlib import Path
from misbridge.journal import Journal, schema

real_apply = schema._apply

def held_apply(conn, version, statements, verify=None):
    if version != 9:
        return real_apply(conn, version, statements, verify)
    conn.execute("BEGIN IMMEDIATE")
    for statement in statements:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 9")
    Path(sys.argv[2]).write_text("in the middle")
    time.sleep(120)

schema._apply = held_apply
asyncio.run(Journal.open(Path(sys.argv[1])))
"""


async def test_sigkill_in_the_middle_of_a_migration_leaves_a_usable_journal_and_the_backup(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    write_v7_file(path)  # two steps to go: 8 commits, 9 is held open when the kill comes
    before = snapshot(path, since=7)
    marker = tmp_path / "marker"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", CHILD, str(path), str(marker), env=env)
    try:
        for _ in range(600):
            if marker.exists() or child.returncode is not None:
                break
            await asyncio.sleep(0.05)
        assert marker.exists(), "the child never reached the version-9 step"
    finally:
        child.send_signal(signal.SIGKILL)
        assert await asyncio.wait_for(child.wait(), timeout=30) == -signal.SIGKILL

    assert version(path) == 8, "version 8 committed, the half-done version 9 gone"
    with raw(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'schema_compat'").fetchone() is None
    folder = tmp_path / BACKUP_DIR
    [backup] = backups(folder)
    assert backup.name.startswith("journal-v7-")
    assert snapshot(backup, since=7) == before
    assert [entry.name for entry in folder.iterdir()] == [backup.name]

    async with await Journal.open(path) as journal:  # the next start finishes it
        assert (await journal.settings()).schema_version == SCHEMA_VERSION
        assert await journal.integrity_check() == "ok"
    assert snapshot(path, since=7) == before
    assert [entry.name[:11] for entry in backups(folder)] == ["journal-v8-", "journal-v7-"]


def test_the_sqlite_file_of_a_backup_is_private_even_with_a_loose_umask(db_path: Path) -> None:
    write_v8_file(db_path)
    old = os.umask(0o000)
    try:
        asyncio.run(_open_and_close(db_path))
    finally:
        os.umask(old)
    [backup] = backups(db_path.parent / BACKUP_DIR)
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    with raw(backup) as conn:
        assert conn.execute("SELECT COUNT(*) FROM transactions").fetchone()[0] == 3


async def _open_and_close(path: Path) -> None:
    async with await Journal.open(path):
        pass
