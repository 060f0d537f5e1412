"""Opening the journal read-write from the app layer: the configured backups, and the log line of one.

Every command that writes the journal (``serve``, ``journal purge``, ``journal resolve``,
``reconcile``, ``pad provision``) opens it with :func:`open_journal`, so a schema upgrade takes
its backup the same way whichever of them meets the older file first, keeps
``journal.backups_kept`` of them and logs where the copy is.
"""

from __future__ import annotations

from pathlib import Path

from loguru import logger

from misbridge.config.settings import JournalSettings as JournalConfig
from misbridge.journal import SCHEMA_VERSION
from misbridge.journal.store import Journal
from misbridge.journal.upgrade import BackupPolicy

__all__ = ["backup_policy", "open_journal"]


def _log_backup(backup: Path) -> None:
    logger.info("journal schema upgrade to version {}: backup taken first, {}", SCHEMA_VERSION, backup)


def backup_policy(config: JournalConfig) -> BackupPolicy:
    """The backups ``config`` asks for, announced as one INFO log line each."""
    return BackupPolicy(keep=config.backups_kept, announce=_log_backup)


async def open_journal(config: JournalConfig, path: Path | None = None) -> Journal:
    """Open the journal at ``path`` (default ``config.path``) read-write, upgrading its schema safely.

    Raises:
        JournalError: as :meth:`misbridge.journal.store.Journal.open`.
    """
    return await Journal.open(Path(config.path) if path is None else path, backups=backup_policy(config))
