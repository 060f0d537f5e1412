"""misbridge.telemetry.metrics and GET /metrics: private registries, lane labels, link events, scrape-time gauges."""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from misbridge.api.http_app import create_app
from misbridge.api.security import ApiSecurity
from misbridge.config.settings import ApiSettings
from misbridge.errors import JournalError
from misbridge.journal.records import ReversalState, TransactionRecord
from misbridge.journal.store import Journal
from misbridge.link.events import (
    DuplicateSuppressed,
    FrameRejected,
    GarbageDiscarded,
    PayloadAcked,
    Retransmitted,
)
from misbridge.telemetry.metrics import STAGES, LaneWatch, Metrics, journal_size
from tests.seeding import seed_transaction
from tests.unit.api.test_security import FakeService

DEFAULT = {"lane": "default"}


def samples_of(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and sorted labels."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_two_daemons_in_one_process_do_not_collide() -> None:
    first, second = Metrics(), Metrics()
    first.for_lane("default").transaction_finished("cardRedemption", "approved")
    labels = {**DEFAULT, "action": "cardRedemption", "outcome": "approved"}
    assert first.value("misbridge_transactions_total", labels) == 1
    assert second.value("misbridge_transactions_total", labels) == 0


def test_label_values_are_clamped_to_known_sets() -> None:
    metrics = Metrics()
    lane = metrics.for_lane("default")
    lane.transaction_finished("teleport", "vanished")
    lane.transaction_finished("cardPayment", "declined")
    lane.inquiry_sent("whatever")
    metrics.api_refused(999_999)
    assert metrics.value("misbridge_transactions_total", {**DEFAULT, "action": "other", "outcome": "other"}) == 1
    assert (
        metrics.value("misbridge_transactions_total", {**DEFAULT, "action": "cardPayment", "outcome": "declined"}) == 1
    )
    assert metrics.value("misbridge_inquiries_total", {**DEFAULT, "verdict": "other"}) == 1
    assert metrics.value("misbridge_api_refusals_total", {"status": "other"}) == 1


def test_stage_histograms() -> None:
    metrics = Metrics()
    lane = metrics.for_lane("default")
    for stage in STAGES:
        lane.observe_stage(stage, 1.5)
    with lane.time_stage("backend"):
        pass
    assert metrics.value("misbridge_stage_duration_seconds_count", {**DEFAULT, "stage": "backend"}) == 2
    assert metrics.value("misbridge_stage_duration_seconds_bucket", {**DEFAULT, "stage": "card", "le": "2.5"}) == 1
    assert metrics.value("misbridge_stage_duration_seconds_bucket", {**DEFAULT, "stage": "card", "le": "1.0"}) == 0
    with pytest.raises(ValueError, match="unknown stage"):
        lane.observe_stage("coffee", 1.0)


def test_each_lane_records_under_its_own_label() -> None:
    metrics = Metrics()
    lane1, lane2 = metrics.for_lane("lane1"), metrics.for_lane("lane2")
    assert metrics.for_lane("lane2") is lane2
    lane2.transaction_finished("cardRedemption", "approved")
    lane2.transaction_finished("cardRedemption", "approved")
    lane1.transaction_finished("cardRedemption", "declined")
    lane2.observe_stage("total", 3.0)
    lane2.inquiry_sent("approved")
    lane1.backend_attempt("cardRedemption", 2)
    lane2.record_link_event(GarbageDiscarded(4))
    sale = {"action": "cardRedemption"}
    assert metrics.value("misbridge_transactions_total", {"lane": "lane2", **sale, "outcome": "approved"}) == 2
    assert metrics.value("misbridge_transactions_total", {"lane": "lane1", **sale, "outcome": "approved"}) == 0
    assert metrics.value("misbridge_transactions_total", {"lane": "lane1", **sale, "outcome": "declined"}) == 1
    assert metrics.value("misbridge_stage_duration_seconds_count", {"lane": "lane2", "stage": "total"}) == 1
    assert metrics.value("misbridge_stage_duration_seconds_count", {"lane": "lane1", "stage": "total"}) == 0
    assert metrics.value("misbridge_inquiries_total", {"lane": "lane2", "verdict": "approved"}) == 1
    assert metrics.value("misbridge_backend_retries_total", {"lane": "lane1", **sale}) == 1
    assert metrics.value("misbridge_backend_retries_total", {"lane": "lane2", **sale}) == 0
    assert metrics.value("misbridge_link_resyncs_total", {"lane": "lane2"}) == 1
    assert metrics.value("misbridge_link_resyncs_total", {"lane": "lane1"}) == 0


async def test_the_scrape_names_each_lane_and_the_journal_wide_metrics_none() -> None:
    metrics = Metrics()
    metrics.for_lane("lane2").transaction_finished("cardRedemption", "approved")
    metrics.api_refused(401)
    metrics.watch(
        journal=FakeJournal({"pending": 9}, 1),
        lanes=[
            LaneWatch("lane1", journal=FakeJournal({"pending": 1}, 0), device_connected=lambda: True),
            LaneWatch("lane2", journal=FakeJournal({"needs_manual": 2}, 0), device_connected=lambda: False),
        ],
    )
    body, _ = await metrics.render()
    text = body.decode()
    assert 'misbridge_transactions_total{action="cardRedemption",lane="lane2",outcome="approved"} 1.0' in text
    samples = samples_of(body)
    assert samples[("misbridge_device_connected", (("lane", "lane1"),))] == 1
    assert samples[("misbridge_device_connected", (("lane", "lane2"),))] == 0
    # Each lane's reversal queue is its own view's count, not the whole journal's.
    assert samples[("misbridge_reversal_queue", (("lane", "lane1"), ("state", "pending")))] == 1
    assert samples[("misbridge_reversal_queue", (("lane", "lane2"), ("state", "pending")))] == 0
    assert samples[("misbridge_reversal_queue", (("lane", "lane2"), ("state", "needs_manual")))] == 2
    # What is the whole daemon's has no lane.
    assert samples[("misbridge_transactions_unresolved", ())] == 1
    assert samples[("misbridge_api_refusals_total", (("status", "401"),))] == 1
    journal_wide = {name for name, labels in samples if "lane" not in dict(labels)}
    assert journal_wide >= {"misbridge_journal_bytes", "misbridge_reconcile_mismatches", "misbridge_build_info"}
    assert not journal_wide & {"misbridge_transactions_total", "misbridge_device_connected", "misbridge_signed_in"}
    # A lane with no source yet has never heard from the backend: NaN, not "just now".
    assert math.isnan(samples[("misbridge_backend_last_ok_seconds", (("lane", "lane1"),))])


def test_link_events_are_counted() -> None:
    metrics = Metrics()
    lane = metrics.for_lane("default")
    for event in (
        FrameRejected("bad LRC"),
        FrameRejected("bad LRC", nak_sent=False),
        Retransmitted(1, 1, "nak"),
        Retransmitted(1, 2, "timeout"),
        GarbageDiscarded(3),
        DuplicateSuppressed(2),
        PayloadAcked(1),
    ):
        lane.record_link_event(event)
    assert metrics.value("misbridge_link_naks_total", {**DEFAULT, "direction": "sent"}) == 1
    assert metrics.value("misbridge_link_naks_total", {**DEFAULT, "direction": "received"}) == 1
    assert metrics.value("misbridge_link_retransmits_total", {**DEFAULT, "cause": "nak"}) == 1
    assert metrics.value("misbridge_link_retransmits_total", {**DEFAULT, "cause": "timeout"}) == 1
    assert metrics.value("misbridge_link_resyncs_total", DEFAULT) == 3
    assert metrics.value("misbridge_link_duplicates_total", DEFAULT) == 1


def test_backend_retries_count_attempts_after_the_first() -> None:
    metrics = Metrics()
    for attempt in (1, 2, 3):
        metrics.for_lane("default").backend_attempt("cardRedemption", attempt)
    assert metrics.value("misbridge_backend_retries_total", {**DEFAULT, "action": "cardRedemption"}) == 2


class FakeJournal:
    def __init__(self, counts: dict[str, int], unresolved: int, *, fail: bool = False) -> None:
        self.counts = counts
        self.unresolved = unresolved
        self.fail = fail

    async def count_reversals(self, state: ReversalState) -> int:
        if self.fail:
            raise JournalError("journal count_reversals failed: disk I/O error")
        return self.counts.get(state, 0)

    async def list_by_states(self, states: Iterable[str]) -> list[Any]:
        assert set(states) == {"unknown", "inquiring", "voiding"}
        return [object()] * self.unresolved


async def test_scrape_time_gauges(tmp_path: Path) -> None:
    db = tmp_path / "journal.db"
    db.write_bytes(b"x" * 100)
    (tmp_path / "journal.db-wal").write_bytes(b"y" * 23)
    connected = [True]
    metrics = Metrics()
    journal = FakeJournal({"pending": 2, "needs_manual": 1}, 4)
    metrics.watch(journal=journal, journal_path=db,
                  lanes=[LaneWatch("default", journal=journal, device_connected=lambda: connected[0])])  # fmt: skip
    body, content_type = await metrics.render()
    assert content_type.startswith("text/plain; version=")
    samples = samples_of(body)
    assert samples[("misbridge_reversal_queue", (("lane", "default"), ("state", "pending")))] == 2
    assert samples[("misbridge_reversal_queue", (("lane", "default"), ("state", "needs_manual")))] == 1
    assert samples[("misbridge_transactions_unresolved", ())] == 4
    assert samples[("misbridge_device_connected", (("lane", "default"),))] == 1
    assert samples[("misbridge_journal_bytes", ())] == 123
    connected[0] = False
    await metrics.refresh()
    assert metrics.value("misbridge_device_connected", DEFAULT) == 0


async def test_keys_and_backend_gauges_are_read_at_scrape() -> None:
    state: dict[str, Any] = {"signed_in": False, "key_ok": False, "reachable": False, "age": None}
    metrics = Metrics()
    metrics.watch(lanes=[LaneWatch(
        "default", signed_in=lambda: state["signed_in"], pad_key_ok=lambda: state["key_ok"],
        backend_reachable=lambda: state["reachable"], backend_last_ok_s=lambda: state["age"],
    )])  # fmt: skip
    body, _ = await metrics.render()
    samples = {s.name: s.value for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples["misbridge_signed_in"] == 0
    assert samples["misbridge_pad_working_key_ok"] == 0
    assert samples["misbridge_backend_reachable"] == 0
    assert math.isnan(samples["misbridge_backend_last_ok_seconds"])  # never answered, not "just now"
    state.update(signed_in=True, key_ok=True, reachable=True, age=12.5)
    await metrics.refresh()
    assert metrics.value("misbridge_signed_in", DEFAULT) == 1
    assert metrics.value("misbridge_pad_working_key_ok", DEFAULT) == 1
    assert metrics.value("misbridge_backend_reachable", DEFAULT) == 1
    assert metrics.value("misbridge_backend_last_ok_seconds", DEFAULT) == 12.5
    state.update(key_ok=False, age=None)
    await metrics.refresh()
    assert metrics.value("misbridge_pad_working_key_ok", DEFAULT) == 0
    assert metrics.value("misbridge_signed_in", DEFAULT) == 1
    assert math.isnan(metrics.value("misbridge_backend_last_ok_seconds", DEFAULT))


async def test_the_latest_reconcile_mismatches_are_read_at_scrape() -> None:
    open_mismatches = {"count": 0}
    metrics = Metrics()
    metrics.watch(reconcile_mismatches=lambda: open_mismatches["count"])
    body, _ = await metrics.render()
    samples = {s.name: s.value for family in text_string_to_metric_families(body.decode()) for s in family.samples}
    assert samples["misbridge_reconcile_mismatches"] == 0
    open_mismatches["count"] = 3
    await metrics.refresh()
    assert metrics.value("misbridge_reconcile_mismatches") == 3


async def test_an_unwatched_backend_never_reads_as_just_answered() -> None:
    metrics = Metrics()
    metrics.watch(lanes=[LaneWatch("default", signed_in=lambda: True)])
    # A later watch() keeps the earlier sources, of the lane and journal-wide alike.
    metrics.watch(lanes=[LaneWatch("default", device_connected=lambda: True)])
    await metrics.refresh()
    assert metrics.value("misbridge_device_connected", DEFAULT) == 1
    assert metrics.value("misbridge_signed_in", DEFAULT) == 1
    assert metrics.value("misbridge_backend_reachable", DEFAULT) == 0
    assert math.isnan(metrics.value("misbridge_backend_last_ok_seconds", DEFAULT))


async def test_a_journal_error_at_scrape_keeps_the_last_values() -> None:
    metrics = Metrics()
    journal = FakeJournal({"pending": 5}, 3)
    metrics.watch(journal=journal, lanes=[LaneWatch("default", journal=journal)])
    await metrics.refresh()
    journal.fail = True
    await metrics.refresh()
    assert metrics.value("misbridge_reversal_queue", {**DEFAULT, "state": "pending"}) == 5
    assert metrics.value("misbridge_transactions_unresolved") == 3


def test_journal_size_of_missing_files_is_zero(tmp_path: Path) -> None:
    assert journal_size(tmp_path / "nothing.db") == 0


async def test_gauges_from_a_real_journal(tmp_path: Path) -> None:
    async with await Journal.open(tmp_path / "journal.db") as journal:
        now = datetime.now(UTC)
        for trace_no, state in (("A", "unknown"), ("B", "approved"), ("C", "inquiring")):
            record = TransactionRecord.new(trace_no, "cardRedemption", state, {"traceNo": trace_no}, now=now)
            await seed_transaction(journal, record)
        await journal.enqueue_reversal("A", from_state="unknown", event="give_up")
        metrics = Metrics()
        metrics.watch(
            journal=journal, journal_path=tmp_path / "journal.db", lanes=[LaneWatch("default", journal=journal)]
        )
        await metrics.refresh()
    assert metrics.value("misbridge_reversal_queue", {**DEFAULT, "state": "pending"}) == 1
    assert metrics.value("misbridge_transactions_unresolved") == 2  # voiding + inquiring
    assert metrics.value("misbridge_journal_bytes") > 0


async def test_metrics_endpoint_counts_refusals_and_needs_no_token() -> None:
    metrics = Metrics()
    security = ApiSecurity.from_settings(ApiSettings(), SecretStr("tok"))
    app = create_app(FakeService(), security, metrics=metrics)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:9101") as client:
        assert (await client.get("/health", headers={"host": "evil.example"})).status_code == 421
        assert (await client.post("/v1/cardRedemption", content=b"{}", headers={"origin": "null"})).status_code == 403
        assert (await client.get("/v1/transactions/X")).status_code == 401
        response = await client.get("/metrics")
    assert response.status_code == 200
    assert 'misbridge_api_refusals_total{status="421"} 1.0' in response.text
    assert 'misbridge_api_refusals_total{status="403"} 1.0' in response.text
    assert 'misbridge_api_refusals_total{status="401"} 1.0' in response.text
    assert 'misbridge_build_info{version="' in response.text
