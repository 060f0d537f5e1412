"""Fixtures for the journal tests: a real journal file under tmp_path."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from misbridge.journal import Journal


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "journal.db"


@pytest.fixture
async def journal(db_path: Path) -> AsyncIterator[Journal]:
    opened = await Journal.open(db_path)
    try:
        yield opened
    finally:
        await opened.close()
