"""Core under test: a real journal on ``tmp_path``, a scripted pad and backend, short resolution timers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from misbridge.config.settings import ResolutionSettings, Settings
from misbridge.core.inquiry import InquiryLoop
from misbridge.core.recovery import Recovery
from misbridge.core.reversals import ReversalQueue
from misbridge.core.service import TransactionService
from misbridge.journal.store import Journal
from tests.unit.core.fakes import ScriptedBackend, ScriptedPad

#: Inquiries every 10 ms, given up after 50 ms; voids retried after 10-20 ms, expired after 1 s.
FAST_RESOLUTION = ResolutionSettings(
    inquiry_interval_s=0.01,
    inquiry_bound_s=0.05,
    reversal_backoff_initial_s=0.01,
    reversal_backoff_max_s=0.02,
    reversal_expire_s=1.0,
    drain_before_sale_s=5.0,
)


@pytest.fixture
def settings() -> Settings:
    """Production settings but for the resolution timers."""
    return Settings(resolution=FAST_RESOLUTION)


@pytest_asyncio.fixture
async def journal(tmp_path: Path) -> AsyncIterator[Journal]:
    """A real SQLite journal, fresh for each test."""
    opened = await Journal.open(tmp_path / "journal.db")
    async with opened:
        yield opened


@pytest.fixture
def pad() -> ScriptedPad:
    """A connected pad with a customer ready."""
    return ScriptedPad()


@pytest.fixture
def backend() -> ScriptedBackend:
    """A backend that answers only what the test scripts."""
    return ScriptedBackend()


@pytest_asyncio.fixture
async def service(
    settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> TransactionService:
    """A service past its (empty) start-up recovery, ready for card requests."""
    started = TransactionService(settings, journal, pad, backend)
    await started.recover()
    return started


@pytest.fixture
def reversals(settings: Settings, journal: Journal, backend: ScriptedBackend) -> ReversalQueue:
    """The reversal queue on its own."""
    return ReversalQueue(settings.resolution, journal, backend)


@pytest.fixture
def inquiries(settings: Settings, journal: Journal, backend: ScriptedBackend, reversals: ReversalQueue) -> InquiryLoop:
    """The inquiry loop, queueing its voids on :func:`reversals`."""
    return InquiryLoop(settings.resolution, journal, backend, reversals)


@pytest.fixture
def recovery(journal: Journal, inquiries: InquiryLoop, reversals: ReversalQueue) -> Recovery:
    """Start-up recovery over the same journal, inquiry loop and queue."""
    return Recovery(journal, inquiries, reversals, drain_budget_s=5.0)
