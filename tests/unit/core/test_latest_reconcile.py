"""``reports/latest.json``: written atomically by ``misbridge reconcile``, read cheaply by the daemon."""

from __future__ import annotations

import json
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from loguru import logger

from misbridge.app.reconcile import write_latest
from misbridge.core.latest_reconcile import (
    NOT_A_RECORD,
    LaneReconcile,
    LatestReconcile,
    LatestReconcileReader,
    latest_path,
    read_latest,
    with_lane,
)

RUN = LatestReconcile(
    business_date=date(2026, 5, 1),
    run_at=datetime(2026, 5, 2, 4, 35, tzinfo=UTC),
    matched=810,
    mismatches=2,
    report=Path("/var/lib/misbridge/reports/2026-05-01/reconcile-20260502T043500000000Z.json"),
)


def test_it_lives_next_to_the_reports_of_the_journal() -> None:
    assert latest_path(Path("/var/lib/misbridge/journal.db")) == Path("/var/lib/misbridge/reports/latest.json")


def test_written_then_read_back_whole(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "latest.json"
    assert read_latest(path) is None
    write_latest(path, RUN)
    assert read_latest(path) == RUN
    matched = LatestReconcile(RUN.business_date, RUN.run_at, 812, 0, RUN.report)
    write_latest(path, matched)  # replaced, unlike a run's report files
    assert read_latest(path) == matched
    assert [p.name for p in path.parent.iterdir()] == ["latest.json"], "no temporary file is left"


def test_the_alert_names_count_date_and_report_only_when_mismatched() -> None:
    assert RUN.alert() == f"2 end-of-day mismatch(es) for 2026-05-01: see {RUN.report}"
    assert LatestReconcile(RUN.business_date, RUN.run_at, 812, 0, RUN.report).alert() is None


def test_with_lanes_each_lanes_latest_is_kept_and_added_up(tmp_path: Path) -> None:
    """A lane's run replaces its entry only; a one-lane file is the default lane's; a removed lane is dropped."""
    order = ["lane1", "lane2"]
    lane2 = LatestReconcile(RUN.business_date, RUN.run_at + timedelta(minutes=5), 7, 0, Path("/r/lane2.json"))
    both = with_lane(RUN, LaneReconcile("lane2", lane2), order)
    assert [lane.lane for lane in both.lanes] == order
    assert (both.matched, both.mismatches, both.report, both.run_at) == (817, 2, RUN.report, lane2.run_at)
    assert both.alert() == f"lane lane1: 2 end-of-day mismatch(es) for 2026-05-01: see {RUN.report}"
    path = tmp_path / "latest.json"
    write_latest(path, both)
    assert read_latest(path) == both
    assert json.loads(path.read_text())["lanes"][1] == {"lane": "lane2", **lane2.to_json()}

    lane1 = LatestReconcile(date(2026, 5, 2), RUN.run_at + timedelta(days=1), 800, 0, Path("/r/lane1.json"))
    later = with_lane(both, LaneReconcile("lane1", lane1), order)
    assert (later.business_date, later.matched, later.mismatches, later.alert()) == (date(2026, 5, 2), 807, 0, None)
    assert later.report == lane1.report, "no mismatches: the newest run's report"
    assert [lane.lane for lane in with_lane(later, LaneReconcile("lane1", lane1), ["lane1"]).lanes] == ["lane1"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "{",
        "[]",
        '{"businessDate": "2026-05-01"}',
        json.dumps(RUN.to_json() | {"mismatches": "2"}),
        json.dumps(RUN.to_json() | {"mismatches": -1}),
        json.dumps(RUN.to_json() | {"businessDate": "May 1st"}),
    ],
)
def test_a_damaged_file_is_refused(tmp_path: Path, text: str) -> None:
    path = tmp_path / "latest.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=NOT_A_RECORD):
        read_latest(path)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    path.write_bytes(b"\xff\xfe{}")
    with pytest.raises(ValueError, match=NOT_A_RECORD):
        read_latest(path)


def test_the_reader_parses_again_only_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "latest.json"
    reader = LatestReconcileReader(path)
    assert reader.get() is None
    write_latest(path, RUN)
    first = reader.get()
    assert first == RUN
    assert reader.get() is first, "an unchanged file is not parsed again"
    write_latest(path, LatestReconcile(RUN.business_date, RUN.run_at, 812, 0, RUN.report))
    latest = reader.get()
    assert latest is not None
    assert latest.mismatches == 0
    path.unlink()
    assert reader.get() is None


def test_a_damaged_file_reads_as_none_with_one_warning(tmp_path: Path) -> None:
    path = tmp_path / "latest.json"
    path.write_text("not json", encoding="utf-8")
    warnings: list[str] = []
    sink = logger.add(lambda message: warnings.append(str(message)), level="WARNING")
    try:
        reader = LatestReconcileReader(path)
        assert [reader.get(), reader.get()] == [None, None]
    finally:
        logger.remove(sink)
    assert len(warnings) == 1, warnings
    write_latest(path, RUN)
    os.utime(path, ns=(1, 1))  # even with an old mtime, the new inode is a change
    assert reader.get() == RUN
