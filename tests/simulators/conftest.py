"""The service wired to the backend simulator in one process, for the whole-book simulator tests.

``sim`` is the backend simulator on a localhost socket, ``pad`` the scripted pad, and ``service``
a TransactionService with the real BackendClient and a real journal in ``tmp_path``, recovered
and ready. A test module sets its inquiry and reversal timers by overriding ``resolution``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient
from misbridge.config.settings import BackendSettings, IdentitySettings, ResolutionSettings, Settings, SigningSettings
from misbridge.core.service import TransactionService
from misbridge.journal.store import Journal
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator
from tests.unit.core.fakes import ScriptedPad

_serial = itertools.count(1)


def book_trace_no() -> str:
    """A new traceNo of the book's suggested form: ``yyyyMMddHHmmss`` and a 10-digit serial."""
    return datetime.now().strftime("%Y%m%d%H%M%S") + f"{next(_serial):010d}"


@pytest.fixture
def resolution() -> ResolutionSettings:
    """Short inquiry timers; a module overrides this fixture for its own."""
    return ResolutionSettings(inquiry_interval_s=0.01, inquiry_bound_s=0.5, drain_before_sale_s=1.0)


@pytest.fixture
async def sim() -> AsyncIterator[BackendSimulator]:
    simulator = BackendSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
def pad() -> ScriptedPad:
    return ScriptedPad()


@pytest.fixture
async def service(
    sim: BackendSimulator, pad: ScriptedPad, resolution: ResolutionSettings, tmp_path: Path
) -> AsyncIterator[TransactionService]:
    backend_settings = BackendSettings(
        url=sim.url, connect_timeout_s=0.5, read_timeout_s=0.5, request_deadline_s=3.0, signing=SigningSettings()
    )
    client = BackendClient(backend_settings, IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    journal = await Journal.open(tmp_path / "journal.db")
    started = TransactionService(Settings(resolution=resolution), journal, pad, client)
    await started.recover()
    yield started
    await journal.close()
    await client.aclose()
