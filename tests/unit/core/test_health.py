"""The ``/health`` view built by core/health.py from the pad, the service's own state and the journal."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import misbridge
from misbridge.app.reconcile import write_latest
from misbridge.config.settings import JournalSettings, Settings
from misbridge.core.latest_reconcile import LatestReconcile, latest_path
from misbridge.core.reversals import ReversalQueue
from misbridge.core.service import TransactionService
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal
from tests.seeding import seed_transaction
from tests.unit.core.conftest import FAST_RESOLUTION
from tests.unit.core.fakes import ScriptedBackend, ScriptedPad

DEVICE = {
    "connected": True,
    "model": "FAKE",
    "firmware": "0.1",
    "serialNo": "F001",
    "master_key_kcv": None,
    "working_key_kcv": None,
}


async def test_ready_once_recovered_with_every_field_in_order(
    settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> None:
    service = TransactionService(settings, journal, pad, backend)
    ready, detail = await service.health()
    assert (ready, detail["status"], detail["recovering"]) == (False, "not ready", True)
    await service.recover()
    ready, detail = await service.health()
    assert ready
    assert list(detail.items()) == [
        ("status", "ready"),
        ("version", misbridge.__version__),
        ("reasons", []),
        ("accepting", True),
        ("recovering", False),
        ("pad", DEVICE),
        ("inFlight", 0),
        ("reversals", {"pending": 0, "needsManual": 0}),
        ("alerts", []),
    ]


async def test_not_ready_without_the_pad_or_when_shutting_down(service: TransactionService, pad: ScriptedPad) -> None:
    pad.is_connected = False
    ready, detail = await service.health()
    gone = dict.fromkeys(DEVICE, None) | {"connected": False}
    assert (ready, detail["pad"], detail["reasons"]) == (False, gone, ["the PIN pad is not connected"])
    pad.is_connected = True
    service.stop_accepting()
    ready, detail = await service.health()
    assert (ready, detail["accepting"]) == (False, False)


async def test_reversals_are_counted_and_needs_manual_is_an_alert_without_a_trace_no(
    service: TransactionService, journal: Journal, reversals: ReversalQueue, backend: ScriptedBackend
) -> None:
    for trace_no in ("HEALTH00001", "HEALTH00002"):
        record = TransactionRecord.new(trace_no, "cardRedemption", "unknown", {"traceNo": trace_no})
        await seed_transaction(journal, record)
        await reversals.enqueue_void(trace_no, "unknown", "give_up", "test")
    await journal.escalate_reversal("HEALTH00001", detail="test")
    ready, detail = await service.health()
    assert ready
    assert detail["reversals"] == {"pending": 1, "needsManual": 1}
    assert detail["alerts"] == ["1 reversal(s) need manual resolution"]
    assert "HEALTH0000" not in str(detail)


async def test_end_of_day_mismatches_are_an_alert_and_never_make_it_not_ready(
    tmp_path: Path, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend
) -> None:
    settings = Settings(resolution=FAST_RESOLUTION, journal=JournalSettings(path=tmp_path / "journal.db"))
    service = TransactionService(settings, journal, pad, backend)
    await service.recover()
    ready, detail = await service.health()
    assert ready
    assert "reconcile" not in detail, "no run yet: nothing to show"
    report = tmp_path / "reports" / "2026-05-01" / "reconcile-20260502T043500000000Z.json"
    run = LatestReconcile(date(2026, 5, 1), datetime(2026, 5, 2, 4, 35, tzinfo=UTC), 810, 2, report)
    write_latest(latest_path(settings.journal.path), run)
    ready, detail = await service.health()
    assert (ready, detail["status"], detail["reasons"]) == (True, "ready", [])
    assert detail["reconcile"] == {"date": "2026-05-01", "mismatches": 2, "report": str(report)}
    assert detail["alerts"] == [f"2 end-of-day mismatch(es) for 2026-05-01: see {report}"]
    write_latest(latest_path(settings.journal.path), replace(run, matched=812, mismatches=0))
    ready, detail = await service.health()
    assert (ready, detail["alerts"], detail["reconcile"]["mismatches"]) == (True, [], 0)
