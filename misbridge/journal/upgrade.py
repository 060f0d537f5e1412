"""Schema upgrades that cannot break a till: a backup before migrating, a check after (issue 17).

When :meth:`~misbridge.journal.store.Journal.open` finds a journal at a schema version older than
:data:`~misbridge.journal.schema.SCHEMA_VERSION` (and not a brand-new file), :func:`upgrade_schema`

1. checks that the journal's folder has room for twice the database (the copy, and the
   migration's own growth: rebuilt tables, the WAL), and refuses with a :class:`JournalError`
   naming the folder and the bytes needed if not;
2. takes an SQLite online copy (``sqlite3.Connection.backup``) to
   ``<journal dir>/backups/journal-v<found>-<UTC time>.sqlite``: written under a hidden
   ``.partial`` name created mode 0600, switched to a one-file rollback journal, fsynced,
   renamed, and the folder fsynced, so a crash never leaves a half copy under a backup's name;
3. deletes all but the newest :attr:`BackupPolicy.keep` backups (only files named like one);
4. tells :attr:`BackupPolicy.announce` the backup's path (the app layer logs it), and only then
5. migrates, one transaction per step, running ``PRAGMA integrity_check`` and
   ``PRAGMA foreign_key_check`` inside the last step's transaction: a failure rolls that step
   back and raises :class:`JournalError`, so the daemon does not start, now or at the next try.

The backup is a page copy of the journal, so it holds what the journal holds and nothing more
(the journal stores no card data but the masked PAN). Restoring it loses every transaction
journaled since the upgrade, which is why it is a person's decision (docs/operations.md,
"Journal schema upgrades"), never an automatic one.

:func:`~misbridge.journal.schema.read_compat` tells a file's schema version and the oldest code
allowed to open it, without migrating or writing anything (``misbridge journal schema``, for the
package scripts).
"""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from misbridge.errors import JournalError
from misbridge.journal.schema import SCHEMA_VERSION, migrate, read_compat

__all__ = [
    "BACKUP_DIR",
    "DEFAULT_BACKUPS_KEPT",
    "BackupPolicy",
    "backup_journal",
    "backups",
    "disk_free_bytes",
    "prune_backups",
    "upgrade_schema",
    "verify_schema",
]

BACKUP_DIR: Final = "backups"
"""The folder, next to the journal, that holds the copies taken before a schema upgrade."""

DEFAULT_BACKUPS_KEPT: Final = 5
"""How many backups are kept by default (``journal.backups_kept``)."""

_BACKUP_NAME: Final = re.compile(r"journal-v(?P<version>\d+)-(?P<at>\d{8}T\d{6}\.\d{6}Z)\.sqlite")
_STAMP: Final = "%Y%m%dT%H%M%S.%fZ"  # UTC to the microsecond: sorts as text, never repeats in practice
_BACKUP_MODE: Final = 0o600
_FOLDER_MODE: Final = 0o700


def disk_free_bytes(folder: Path) -> int:
    """Bytes an unprivileged process may still write in ``folder``'s file system (``statvfs`` ``f_bavail``)."""
    return shutil.disk_usage(folder).free


def _announce_nothing(backup: Path) -> None:
    del backup


@dataclass(frozen=True)
class BackupPolicy:
    """How a backup before a schema upgrade is taken.

    Args:
        keep: the newest backups kept (at least 1: the one just taken); older ones are deleted.
        free_bytes: the free space of a folder, in bytes; a parameter so the refusal can be
            tested without filling a disk.
        announce: called with the backup's path once it is safely on disk, before migrating
            (the app layer logs it: the journal layer does not log).
    """

    keep: int = DEFAULT_BACKUPS_KEPT
    free_bytes: Callable[[Path], int] = disk_free_bytes
    announce: Callable[[Path], None] = _announce_nothing

    def __post_init__(self) -> None:
        if self.keep < 1:
            raise ValueError(f"keep must be at least 1 (the backup just taken), got {self.keep}")


def upgrade_schema(conn: sqlite3.Connection, path: Path, policy: BackupPolicy, now: datetime) -> int:
    """Bring the journal on ``conn`` (the file ``path``) to the current schema, safely; return the version found.

    A journal older than :data:`SCHEMA_VERSION` (and > 0) is backed up first
    (:func:`backup_journal`); a newer one is opened as it is when its ``min_reader`` allows this
    code, and refused otherwise; every migration ends with :func:`verify_schema`. Runs on the
    journal thread; ``conn`` must have ``isolation_level=None``.

    Raises:
        JournalError: not enough room for the backup, a newer schema this code may not read,
            or the migrated database failed its checks (nothing of the last step is kept).
        sqlite3.Error: the caller translates it.
        OSError: the backup could not be written (the caller translates it).
    """
    compat = read_compat(conn)
    if not compat.readable_by(SCHEMA_VERSION):
        raise compat.refusal(f"journal {path}")
    if 0 < compat.version < SCHEMA_VERSION:
        backup = backup_journal(conn, path, compat.version, policy, now)
        policy.announce(backup)

    def verify(checked: sqlite3.Connection) -> None:
        verify_schema(checked, path)

    return migrate(conn, verify=verify)


def verify_schema(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA integrity_check`` and ``PRAGMA foreign_key_check`` on ``conn``; raise if either finds a problem.

    Raises:
        JournalError: the problems found (at most 10 of each), naming ``path``.
        sqlite3.Error: the caller translates it.
    """
    integrity = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(10)").fetchall()]
    orphans = [f"{row[0]} row {row[1]} -> {row[2]}" for row in conn.execute("PRAGMA foreign_key_check").fetchmany(10)]
    problems = ([] if integrity == ["ok"] else [f"integrity_check: {'; '.join(integrity)}"]) + (
        [f"foreign_key_check: {'; '.join(orphans)}"] if orphans else []
    )
    if problems:
        raise JournalError(
            f"journal {path}: the schema upgrade to version {SCHEMA_VERSION} was rolled back, the database "
            f"fails its checks ({' / '.join(problems)}); misbridge does not start on it: the backups/ folder "
            "next to it holds the journal as it was before the upgrade"
        )


def backup_journal(conn: sqlite3.Connection, path: Path, version: int, policy: BackupPolicy, now: datetime) -> Path:
    """Copy the journal on ``conn`` into ``<path's folder>/backups/``, durably; prune; return the copy's path.

    ``version`` is the schema version being backed up (it names the file), ``now`` the time
    (UTC in the name). The copy is ``sqlite3.Connection.backup`` (consistent while another
    connection writes), created mode 0600 under a hidden name, in a self-contained rollback
    journal mode, fsynced, renamed, and the folder fsynced. A new ``backups/`` folder is made
    mode 0700 and, when made by root, given to the owner of the journal's folder, so the
    service user can still write and prune it after a root ``misbridge journal purge``.

    Raises:
        JournalError: the folder has less than twice the database's size free, or a backup of
            that name exists.
        sqlite3.Error, OSError: the caller translates them; the partial copy is removed.
    """
    folder = _backup_folder(path)
    size = int(conn.execute("PRAGMA page_count").fetchone()[0]) * int(conn.execute("PRAGMA page_size").fetchone()[0])
    needed, free = 2 * size, policy.free_bytes(folder)
    if free < needed:
        raise JournalError(
            f"journal {path}: not enough free space in {folder} for the backup before the schema upgrade: "
            f"{needed} bytes needed (twice the {size}-byte database), {free} free; free some space and start again"
        )
    target = folder / f"journal-v{version:d}-{now.astimezone(UTC).strftime(_STAMP)}.sqlite"
    if target.exists():
        raise JournalError(f"journal {path}: the backup {target} exists already")
    partial = folder / f".{target.name}.partial"
    _create_private(partial, owner_of=path)
    try:
        _copy(conn, partial)
        _fsync(partial)
        partial.rename(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    _fsync_folder(folder)
    prune_backups(folder, policy.keep)
    return target


def backups(folder: Path) -> list[Path]:
    """The backups in ``folder``, newest first (by the UTC time in their names); other files are not listed."""
    found = [(match["at"], int(match["version"]), entry) for entry in folder.iterdir()
             if (match := _BACKUP_NAME.fullmatch(entry.name)) and entry.is_file()]  # fmt: skip
    return [entry for _, _, entry in sorted(found, reverse=True)]


def prune_backups(folder: Path, keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` backups in ``folder``; return the deleted ones.

    Only files named like a backup are touched, so a copy a person made there under another name stays.
    """
    old = backups(folder)[keep:]
    for entry in old:
        entry.unlink(missing_ok=True)
    if old:
        _fsync_folder(folder)
    return old


def _backup_folder(path: Path) -> Path:
    folder = path.parent / BACKUP_DIR
    try:
        folder.mkdir(mode=_FOLDER_MODE)
    except FileExistsError:
        return folder
    if os.geteuid() == 0:
        owner = path.parent.stat()
        os.chown(folder, owner.st_uid, owner.st_gid)
    _fsync_folder(path.parent)  # the new folder's own entry
    return folder


def _create_private(partial: Path, *, owner_of: Path) -> None:
    # O_EXCL|O_NOFOLLOW: never write through a link someone put there; fchmod: exactly 0600 whatever the umask.
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, _BACKUP_MODE)
    try:
        os.fchmod(fd, _BACKUP_MODE)
        if os.geteuid() == 0:
            owner = owner_of.stat()
            os.fchown(fd, owner.st_uid, owner.st_gid)
    finally:
        os.close(fd)


def _copy(conn: sqlite3.Connection, target: Path) -> None:
    copy = sqlite3.connect(target, isolation_level=None)
    try:
        conn.backup(copy)
        # The copy arrives in WAL mode like its source; one self-contained file is what a person
        # restores or opens with the sqlite3 shell.
        copy.execute("PRAGMA journal_mode = DELETE")
    finally:
        copy.close()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

