"""``misbridge journal list|show|export|key-calls|purge|resolve``: read-only, masked, safe while the daemon writes."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from misbridge.app.cli import main
from misbridge.ebuy import jsonio
from misbridge.errors import JournalError
from misbridge.journal.lanes import LaneFilter
from misbridge.journal.records import TransactionRecord, iso_utc
from misbridge.journal.schema import (
    immediate_transaction,
    schema_v1,
    schema_v2,
    schema_v3,
    schema_v4,
    schema_v5,
    schema_v6,
    schema_v7,
)
from misbridge.journal.store import Journal
from misbridge.telemetry.logs import configure_logging
from misbridge.tools import journal as journaltool
from tests.security.journals import NOW, OLD, RECENT, ROWS, Clock, build_journal, request
from tests.seeding import seed_transaction

REPO_ROOT = Path(__file__).resolve().parents[2]
CANARY_PAN = "6225620000018888"
ENC_HEX = "9F8E7D6C5B4A39281706F5E4D3C2B1A0"


@pytest.fixture
async def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    await build_journal(path)
    return path


@pytest.fixture(autouse=True)
def _no_site_config(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("MISBRIDGE_CONFIG", raising=False)
    monkeypatch.setattr("misbridge.app.cli.DEFAULT_CONFIG_PATH", Path("/nonexistent/misbridge.toml"))
    yield
    configure_logging("WARNING")


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_list_is_newest_first_and_filters(journal_path: Path) -> None:
    rows = journaltool.list_transactions(journal_path, limit=None)
    assert {r.trace_no for r in rows} == set(ROWS)
    assert rows[0].created_at >= rows[-1].created_at
    assert [r.trace_no for r in journaltool.list_transactions(journal_path, limit=2)] == ["NEW-VOIDED", "NEW-APPROVED"]
    assert {r.trace_no for r in journaltool.list_transactions(journal_path, state="approved")} == {
        "OLD-APPROVED",
        "NEW-APPROVED",
    }
    assert {r.trace_no for r in journaltool.list_transactions(journal_path, state="open")} == {
        "OLD-NEEDS-MANUAL",
        "OLD-VOIDING",
        "OLD-SUBMITTING",
        "OLD-INQUIRING",
    }
    assert len(journaltool.list_transactions(journal_path, state="final")) == 6
    since = journaltool.list_transactions(journal_path, since=RECENT - timedelta(hours=1))
    assert {r.trace_no for r in since} == {"NEW-APPROVED", "NEW-VOIDED"}
    approved = next(r for r in rows if r.trace_no == "OLD-APPROVED")
    assert (approved.masked_pan, approved.total_amount, approved.paid_amount, approved.order_no) == (
        "622562******8888",
        "40.8",
        "40.8",
        "260601000001",
    )


def test_show_has_the_trail_calls_and_reversal(journal_path: Path) -> None:
    view = journaltool.show(journal_path, "OLD-NEEDS-MANUAL")
    assert view is not None
    assert view["state"] == "needs_manual"
    assert [t["event"] for t in view["transitions"]] == [
        "intent",
        "start_card",
        "card_read",
        "pin_entered",
        "outcome_unknown",
        "give_up",
        "escalate",
    ]
    assert [(c["kind"], c["state"]) for c in view["backendCalls"]] == [("inquiry", "unknown"), ("void", "unknown")]
    assert view["reversal"]["state"] == "needs_manual"
    assert view["request"]["goodsDetail"][0]["goodsName"] == "牙膏"
    # The traceNo of a call misbridge sent finds its original.
    call_no = view["backendCalls"][1]["traceNo"]
    assert journaltool.show(journal_path, call_no)["traceNo"] == "OLD-NEEDS-MANUAL"  # type: ignore[index]
    assert journaltool.show(journal_path, "NOPE") is None


@pytest.mark.parametrize("fmt", ["csv", "json"])
def test_export_is_oldest_first_with_every_column(journal_path: Path, fmt: str) -> None:
    out = io.StringIO()
    assert journaltool.export(journal_path, out, fmt=fmt) == len(ROWS)
    rows = list(csv.DictReader(io.StringIO(out.getvalue()))) if fmt == "csv" else json.loads(out.getvalue())
    assert list(rows[0]) == list(journaltool.EXPORT_COLUMNS)
    assert rows[0]["traceNo"].startswith("OLD-")
    assert rows[-1]["traceNo"].startswith("NEW-")
    with pytest.raises(ValueError, match="format"):
        journaltool.export(journal_path, out, fmt="xml")


async def test_output_is_masked_even_if_card_data_were_stored(tmp_path: Path) -> None:
    """Second line of defence: the journal never holds card data, but if a row did, no tool prints it."""
    path = tmp_path / "journal.db"
    body = {**request("LEAK"), "cardInfo": {"cardNo": ENC_HEX, "password": "1A2B3C4D5E6F7081"},
            "memo": f"card {CANARY_PAN}", "track2": f"{CANARY_PAN}=28121018888000"}  # fmt: skip
    async with await Journal.open(path) as journal:
        await journal.record_intent(TransactionRecord.new("LEAK", "cardRedemption", "received", body))
        await journal.record_transition("LEAK", "received", "abort", masked_pan=CANARY_PAN,
                                        detail=f"pan {CANARY_PAN}")  # fmt: skip
    out = io.StringIO()
    journaltool.export(path, out, fmt="json")
    journaltool.export(path, out, fmt="csv")
    out.write(jsonio.dumps(journaltool.show(path, "LEAK")))
    out.write(journaltool.format_table(journaltool.list_transactions(path)))
    text = out.getvalue()
    for secret in (CANARY_PAN, ENC_HEX, "1A2B3C4D5E6F7081", "28121018888000"):
        assert secret not in text
    assert "622562******8888" in text


async def test_reading_never_writes_and_works_while_the_daemon_writes(journal_path: Path) -> None:
    before = _digest(journal_path)
    journaltool.list_transactions(journal_path)
    journaltool.show(journal_path, "OLD-VOIDED")
    journaltool.export(journal_path, io.StringIO(), fmt="csv")
    assert _digest(journal_path) == before
    assert sorted(p.name for p in journal_path.parent.iterdir()) == ["journal.db"], "no -wal/-shm left behind"
    async with await Journal.open(journal_path) as journal:  # the daemon, running
        await journal.record_intent(TransactionRecord.new("LIVE", "cardRedemption", "received", request("LIVE")))
        rows = journaltool.list_transactions(journal_path, limit=1)  # sees the WAL, takes no write lock
        assert rows[0].trace_no == "LIVE"
        await journal.record_transition("LIVE", "received", "abort")
        assert journaltool.show(journal_path, "LIVE")["state"] == "aborted"  # type: ignore[index]
    assert len(journaltool.list_transactions(journal_path, limit=None)) == len(ROWS) + 1


def test_read_only_connection_refuses_writes(journal_path: Path) -> None:
    conn = journaltool.open_readonly(journal_path)
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("DELETE FROM transactions")
    finally:
        conn.close()


def test_missing_or_foreign_files_are_journal_errors(tmp_path: Path) -> None:
    with pytest.raises(JournalError, match="does not exist"):
        journaltool.open_readonly(tmp_path / "nope.db")
    other = tmp_path / "other.db"
    other.write_text("not sqlite", encoding="utf-8")
    with pytest.raises(JournalError, match="cannot read"):
        journaltool.open_readonly(other)


@pytest.mark.parametrize(
    ("text", "delta"), [("7d", timedelta(days=7)), ("12h", timedelta(hours=12)), ("30m", timedelta(minutes=30))]
)
def test_parse_since_relative(text: str, delta: timedelta) -> None:
    assert journaltool.parse_since(text, now=NOW) == NOW - delta


def test_parse_since_absolute() -> None:
    assert journaltool.parse_since("2026-01-31T10:00+00:00").isoformat() == "2026-01-31T10:00:00+00:00"
    assert journaltool.parse_since("2026-01-31").tzinfo is not None  # naive -> local time
    with pytest.raises(ValueError, match="--since"):
        journaltool.parse_since("last tuesday")


# --- the command line ------------------------------------------------------------------------


def test_cli_list_show_export(journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "--journal", str(journal_path), "list", "--state", "open", "--limit", "2"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["traceNo", "createdAt", "action", "state", "returnCode", "maskedPan", "totalAmount"]
    assert len(table) == 3
    assert main(["journal", "--journal", str(journal_path), "show", "OLD-VOIDED"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["reversal"]["state"] == "done"
    assert main(["journal", "--journal", str(journal_path), "show", "NOPE"]) == 1
    assert "no transaction" in capsys.readouterr().err
    target = tmp_path / "out.csv"
    assert main(["journal", "--journal", str(journal_path), "export", "--format", "csv", "--since",
                 iso_utc(OLD - timedelta(days=1)), "--output", str(target)]) == 0  # fmt: skip
    assert len(target.read_text(encoding="utf-8").splitlines()) == len(ROWS) + 1
    assert main(["journal", "--journal", str(journal_path), "export", "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == len(ROWS)


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["journal", "--journal", str(tmp_path / "nope.db"), "list"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["journal", "--journal", str(tmp_path / "nope.db"), "list", "--since", "soon"]) == 2
    assert main(["journal", "--journal", str(tmp_path / "nope.db"), "purge"]) == 1
    assert main(["journal", "--journal", str(tmp_path / "nope.db"), "purge", "--older-than-days", "0"]) == 2


def test_cli_purge_uses_the_retention_setting(
    journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The rows were written at fixed dates in 2026 (tests/security/journals.py): every final row is
    # older than 1 day today, and none is older than 3650 days.
    config = tmp_path / "misbridge.toml"
    config.write_text("[journal]\nretention_days = 3650\n", encoding="utf-8")
    assert main(["journal", "--config", str(config), "--journal", str(journal_path), "purge", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("0 final transaction(s)")
    assert main(["journal", "--journal", str(journal_path), "purge", "--older-than-days", "1", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("6 final transaction(s)")
    assert len(journaltool.list_transactions(journal_path, limit=None)) == len(ROWS)  # dry run: nothing deleted
    assert main(["journal", "--journal", str(journal_path), "purge", "--older-than-days", "1"]) == 0
    assert capsys.readouterr().out.startswith("6 final transaction(s)")
    assert {r.trace_no for r in journaltool.list_transactions(journal_path, limit=None)} == {
        "OLD-NEEDS-MANUAL",
        "OLD-VOIDING",
        "OLD-SUBMITTING",
        "OLD-INQUIRING",
    }


def test_cli_resolve_closes_a_needs_manual_sale_while_the_journal_is_open(
    journal_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["journal", "--journal", str(journal_path), "resolve"]
    assert main([*base, "OLD-NEEDS-MANUAL", "--as", "voided", "--note", ""]) == 1
    assert "note" in capsys.readouterr().err
    assert main([*base, "NOPE", "--as", "voided", "--note", "x"]) == 1
    assert "no transaction 'NOPE'" in capsys.readouterr().err
    assert main([*base, "OLD-APPROVED", "--as", "voided", "--note", "x"]) == 1
    assert "is 'approved', not 'needs_manual'" in capsys.readouterr().err
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "MISBRIDGE_CONFIG": ""}  # fmt: skip
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "misbridge", *base, "OLD-NEEDS-MANUAL", "--as", "voided", "--note", "e-Buy ticket 4711"],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "OLD-NEEDS-MANUAL: needs_manual -> voided (resolve_voided); its reversal is closed (done);"
        " note: e-Buy ticket 4711"
    )
    view = journaltool.show(journal_path, "OLD-NEEDS-MANUAL")
    assert view is not None
    assert (view["state"], view["reversal"]["state"]) == ("voided", "done")
    assert view["transitions"][-1] | {"at": ""} == {
        "from": "needs_manual", "to": "voided", "event": "resolve_voided", "at": "", "detail": "e-Buy ticket 4711"
    }  # fmt: skip
    assert main([*base, "OLD-NEEDS-MANUAL", "--as", "voided", "--note", "again"]) == 1
    assert "is 'voided', not 'needs_manual'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "OLD-NEEDS-MANUAL", "--as", "voided"])  # --note is required


# --- key-calls: misbridge's own calls (key downloads, sign-ins, end of day) -------------------

KCV = "1F2E3D"


async def _key_calls_journal(path: Path) -> dict[str, str]:
    """A journal with a call of every kind and every result, a day apart from OLD on; name -> traceNo."""
    clock = Clock(OLD)
    made: dict[str, str] = {}
    async with await Journal.open(path, clock=clock) as journal:
        made["download"] = await journal.allocate_key_call("downloadKey")
        await journal.record_key_call_result(made["download"], "answered", "00")
        clock.now += timedelta(days=1)
        made["sign-in"] = await journal.allocate_key_call("signIn")
        await journal.record_key_call_result(made["sign-in"], "answered", "00", key_kcv=KCV)
        clock.now += timedelta(days=1)
        made["refused sign-in"] = await journal.allocate_key_call("signIn")
        await journal.record_key_call_result(made["refused sign-in"], "answered", "96")
        clock.now = RECENT
        made["upload"] = await journal.allocate_key_call("batchUpload")
        await journal.record_key_call_result(made["upload"], "unknown", None)
        clock.now += timedelta(minutes=1)
        made["summary"] = await journal.allocate_key_call("summary")  # no result: may have been sent
    return made


def _key_calls(path: Path, *args: str) -> list[str]:
    return ["journal", "--journal", str(path), "key-calls", *args]


async def test_key_calls_lists_every_kind_and_result_newest_first(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    made = await _key_calls_journal(path)
    calls = journaltool.list_key_calls(path)
    newest_first = ("summary", "upload", "refused sign-in", "sign-in", "download")
    assert [c.trace_no for c in calls] == [made[name] for name in newest_first]
    rows = {name: journaltool.key_call_row(call) for name, call in zip(newest_first, calls, strict=True)}
    assert [(r["kind"], r["result"], r["returnCode"], r["keyKcv"]) for r in rows.values()] == [
        ("summary", None, None, None),
        ("batchUpload", "unknown", None, None),
        ("signIn", "answered", "96", None),
        ("signIn", "answered", "00", KCV),
        ("downloadKey", "answered", "00", None),
    ]
    assert rows["upload"]["allocatedUTC"] == RECENT.strftime("%Y-%m-%dT%H:%M:%SZ")
    local = datetime.fromisoformat(rows["upload"]["allocatedLocal"] or "")
    assert local == RECENT
    assert local.utcoffset() == RECENT.astimezone().utcoffset()  # this machine's zone
    assert rows["summary"]["resultAtUTC"] is None
    assert rows["upload"]["resultAtUTC"] is not None
    table = journaltool.format_key_calls(calls).splitlines()
    assert table[0].split() == ["traceNo", "kind", "allocatedLocal", "allocatedUTC", "result", "returnCode", "keyKcv"]
    assert table[1].split()[:2] == [made["summary"], "summary"]
    assert journaltool.NO_RESULT_YET in table[1]
    assert table[2].split()[-3:] == ["unknown", "-", "-"]
    assert table[4].split()[-3:] == ["answered", "00", KCV]
    assert [c.trace_no for c in journaltool.list_key_calls(path, kind="signIn", limit=1)] == [made["refused sign-in"]]


async def test_cli_key_calls_filters_by_kind_and_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.db"
    made = await _key_calls_journal(path)
    assert main(_key_calls(path, "--kind", "sign-in")) == 0  # the journal's signIn, as a person may type it
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [made["refused sign-in"], made["sign-in"]]
    assert main(_key_calls(path, "--since", (RECENT - timedelta(days=1)).date().isoformat())) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]] == [made["summary"], made["upload"]]
    assert main(_key_calls(path, "--kind", "batchUpload", "--since", "2000-01-01", "--limit", "5")) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:]] == [made["upload"]]


async def test_cli_key_calls_json_parses_with_exactly_the_documented_fields(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    made = await _key_calls_journal(path)
    assert main(_key_calls(path, "--json", "--limit", "2")) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [list(row) for row in rows] == [list(journaltool.KEY_CALL_COLUMNS)] * 2
    assert [(r["traceNo"], r["result"], r["returnCode"]) for r in rows] == [
        (made["summary"], None, None),
        (made["upload"], "unknown", None),
    ]
    assert main(_key_calls(path, "--json", "--kind", "signIn", "--limit", "1")) == 0
    [sign_in] = json.loads(capsys.readouterr().out)
    assert (sign_in["traceNo"], sign_in["keyKcv"]) == (made["refused sign-in"], None)


async def test_cli_key_calls_says_so_when_there_are_none(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "journal.db"
    await build_journal(path)  # transactions and their calls, but no key call
    assert main(_key_calls(path)) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"no calls in {path} (")
    assert out.count("\n") == 1
    assert main(_key_calls(path, "--kind", "summary", "--since", "2026-05-01")) == 0
    assert capsys.readouterr().out.startswith("no calls of kind summary since 2026-05-01 00:00")
    assert main(_key_calls(path, "--json")) == 0
    assert json.loads(capsys.readouterr().out) == []


@pytest.mark.parametrize(
    ("args", "option"),
    [(["--kind", "inquiry"], "--kind"), (["--limit", "0"], "--limit"), (["--limit", "many"], "--limit")],
)
def test_cli_key_calls_bad_arguments_name_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], option: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(_key_calls(tmp_path / "journal.db", *args))
    assert exited.value.code == 2
    assert f"argument {option}: '{args[1]}' is not" in capsys.readouterr().err


def test_cli_key_calls_bad_since_names_the_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_key_calls(tmp_path / "journal.db", "--since", "2026-13-45")) == 2
    assert capsys.readouterr().err.startswith("misbridge: --since '2026-13-45':")
    assert main(_key_calls(tmp_path / "journal.db")) == 1
    assert "does not exist" in capsys.readouterr().err


async def test_key_calls_reads_only_and_shows_no_column_it_does_not_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "journal.db"
    made = await _key_calls_journal(path)
    # A column added to the table later (here holding a canary) must not reach the output unnoticed.
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        # (as a default: the table's trigger refuses to change a row that has its result)
        conn.execute(f"ALTER TABLE key_calls ADD COLUMN wrapped_key TEXT DEFAULT '{ENC_HEX}'")
        assert conn.execute("SELECT COUNT(*) FROM key_calls WHERE wrapped_key = ?", (ENC_HEX,)).fetchone() == (5,)
    before = _digest(path)
    assert main(_key_calls(path)) == 0
    assert main(_key_calls(path, "--json")) == 0
    out = capsys.readouterr().out
    assert ENC_HEX not in out
    assert "wrapped" not in out
    assert made["sign-in"] in out
    assert _digest(path) == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["journal.db"], "no -wal/-shm left behind"
    async with await Journal.open(path) as journal:  # the daemon, running: a sign-in in flight
        live = await journal.allocate_key_call("signIn")
        [newest] = journaltool.list_key_calls(path, limit=1)  # sees the WAL, takes no write lock
        assert (newest.trace_no, newest.state) == (live, "sent")
        await journal.record_key_call_result(live, "answered", "00", key_kcv=KCV)
        assert journaltool.list_key_calls(path, limit=1)[0].key_kcv == KCV


# --- lanes (schema v8) -----------------------------------------------------------------------

LANE2 = "lane2"


async def _lane2_rows(path: Path) -> str:
    """Add an approved sale and a sign-in of the lane ``lane2`` to the journal at ``path``; the sign-in's traceNo."""
    async with await Journal.open(path, clock=Clock(RECENT)) as journal:
        lane2 = journal.for_lane(LANE2, default=False)
        record = TransactionRecord.new("LANE2-APPROVED", "cardRedemption", "approved", request("LANE2-APPROVED"),
                                       now=RECENT + timedelta(minutes=5))  # fmt: skip
        await seed_transaction(lane2, record)
        return await lane2.allocate_key_call("signIn")


async def test_lane_filters_list_export_show_and_key_calls(journal_path: Path) -> None:
    sign_in = await _lane2_rows(journal_path)

    named = journaltool.list_transactions(journal_path, lane=LaneFilter.named(LANE2))
    assert [(r.trace_no, r.lane) for r in named] == [("LANE2-APPROVED", LANE2)]
    default = journaltool.list_transactions(journal_path, lane=LaneFilter.default(), limit=None)
    assert {r.trace_no for r in default} == set(ROWS)
    assert {r.lane for r in default} == {""}
    assert len(journaltool.list_transactions(journal_path, limit=None)) == len(ROWS) + 1
    assert journaltool.list_transactions(journal_path, lane=LaneFilter.named("elsewhere")) == []
    approved = journaltool.list_transactions(journal_path, state="approved", lane=LaneFilter.named(LANE2))
    assert [r.trace_no for r in approved] == ["LANE2-APPROVED"]

    out = io.StringIO()
    assert journaltool.export(journal_path, out, fmt="csv") == len(ROWS) + 1
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert list(rows[0])[-1] == "lane"
    assert {(row["traceNo"], row["lane"]) for row in rows if row["lane"]} == {("LANE2-APPROVED", LANE2)}
    out = io.StringIO()
    assert journaltool.export(journal_path, out, fmt="json", lane=LaneFilter.named(LANE2)) == 1
    assert [row["lane"] for row in json.loads(out.getvalue())] == [LANE2]

    shown = journaltool.show(journal_path, "LANE2-APPROVED")
    assert shown is not None
    assert shown["lane"] == LANE2
    assert journaltool.show(journal_path, "OLD-APPROVED")["lane"] == ""  # type: ignore[index]
    assert [c.trace_no for c in journaltool.list_key_calls(journal_path, lane=LaneFilter.named(LANE2))] == [sign_in]
    assert journaltool.list_key_calls(journal_path, lane=LaneFilter.default()) == []


async def test_cli_list_export_key_calls_by_lane(
    journal_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sign_in = await _lane2_rows(journal_path)
    base = ["journal", "--journal", str(journal_path)]
    assert main([*base, "list", "--lane", LANE2]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[-1] == "lane"
    assert [line.split()[0] for line in table[1:]] == ["LANE2-APPROVED"]
    assert table[1].split()[-1] == LANE2
    assert main([*base, "list", "--lane", "default", "--limit", "3"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "lane" not in table[0].split(), "the default lane's table is the table of before lanes"
    assert len(table) == 4
    assert main([*base, "list", "--limit", "1"]) == 0  # every lane: the newest is lane2's, so the column shows
    table = capsys.readouterr().out.splitlines()
    assert (table[0].split()[-1], table[1].split()[-1]) == ("lane", LANE2)
    assert main([*base, "list", "--limit", "2"]) == 0
    assert capsys.readouterr().out.splitlines()[2].split()[-1] == "default"
    target = tmp_path / "lane2.csv"
    assert main([*base, "export", "--lane", LANE2, "--output", str(target)]) == 0
    assert [row["traceNo"] for row in csv.DictReader(target.open(encoding="utf-8"))] == ["LANE2-APPROVED"]
    assert main([*base, "key-calls", "--lane", LANE2]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[0] == sign_in
    assert main([*base, "key-calls", "--lane", "default"]) == 0
    assert "of lane default" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exited:
        main([*base, "list", "--lane", "no such lane"])
    assert exited.value.code == 2
    assert "argument --lane: lane name 'no such lane'" in capsys.readouterr().err


def test_lane_filters_read_a_file_from_before_lanes(tmp_path: Path) -> None:
    path = tmp_path / "v7.db"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        steps = (schema_v1, schema_v2, schema_v3, schema_v4, schema_v5, schema_v6, schema_v7)
        for version, step in enumerate(steps, start=1):
            with immediate_transaction(conn):
                for statement in step():
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version:d}")
        conn.execute(
            "INSERT INTO transactions (trace_no, action, state, request_json, request_hash, created_at, updated_at)"
            " VALUES ('OLD', 'cardRedemption', 'approved', '{}', 'h', ?, ?)",
            (iso_utc(OLD), iso_utc(OLD)),
        )
        conn.execute(
            "INSERT INTO key_calls (trace_no, kind, state, created_at, updated_at)"
            " VALUES ('K', 'signIn', 'sent', ?, ?)",
            (iso_utc(OLD), iso_utc(OLD)),
        )
    finally:
        conn.close()
    # The tools read a file as they find it: before version 8 every row is the default lane's.
    assert [r.lane for r in journaltool.list_transactions(path, lane=LaneFilter.default())] == [""]
    assert journaltool.list_transactions(path, lane=LaneFilter.named(LANE2)) == []
    assert journaltool.show(path, "OLD")["lane"] == ""  # type: ignore[index]
    assert [c.lane for c in journaltool.list_key_calls(path, lane=LaneFilter.default())] == [None]
    assert journaltool.list_key_calls(path, lane=LaneFilter.named(LANE2)) == []
