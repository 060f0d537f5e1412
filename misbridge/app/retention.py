"""Journal retention (R16), as the daemon and ``misbridge journal purge`` run it.

The purge itself is the journal's (:meth:`misbridge.journal.store.Journal.purge`: final
transactions only, in batches, journaled in ``purges``); this module turns
``journal.retention_days`` into a cutoff, logs each purge, and runs it on a timer in the
daemon (:func:`run_retention`, spawned by :mod:`misbridge.app.daemon`).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from loguru import logger

from misbridge.errors import JournalError
from misbridge.journal.records import iso_utc, utc_now
from misbridge.journal.store import Journal

__all__ = ["purge", "retention_cutoff", "run_retention"]

#: How often the daemon purges (it also purges at start-up).
RETENTION_INTERVAL_S = 86400.0


def retention_cutoff(retention_days: int, *, now: datetime | None = None) -> datetime:
    """The moment before which final transactions are purged."""
    return (utc_now() if now is None else now) - timedelta(days=retention_days)


async def purge(journal: Journal, retention_days: int, *, now: datetime | None = None) -> int:
    """Purge final transactions older than ``retention_days``; log and return how many.

    Raises:
        JournalError: the purge failed (nothing of the failed batch is deleted).
    """
    cutoff = retention_cutoff(retention_days, now=now)
    deleted = await journal.purge(cutoff)
    logger.bind(retention_days=retention_days, cutoff=iso_utc(cutoff), purged=deleted).info(
        "journal retention: purged {} final transaction(s) last changed before {}", deleted, cutoff.date()
    )
    return deleted


async def run_retention(journal: Journal, retention_days: int, *, interval_s: float = RETENTION_INTERVAL_S) -> None:
    """Purge at once, then every ``interval_s`` seconds, until cancelled (the daemon spawns this).

    A failed purge is logged and tried again at the next interval; it never stops the daemon.
    """
    while True:
        try:
            await purge(journal, retention_days, now=datetime.now(UTC))
        except JournalError as err:
            logger.error("journal retention: purge failed, will try again: {}", err)
        await asyncio.sleep(interval_s)
