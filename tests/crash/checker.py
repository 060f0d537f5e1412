"""The Jepsen-style checker: after a run, compare the journal, the backend's ledger and what the POS heard.

Inputs are plain data (the harness reads the journal read-only with :func:`read_journal` and the
ledger over HTTP), so the rules are unit-tested without any process. For the run's traceNo:

* **stuck**: the journal row is missing or not in a final state (``needs_manual`` included), or
  its reversal is still ``pending`` / ``needs_manual``;
* **lost**: the journal and the ledger disagree about the money: approved in the journal but not
  applied at the backend, or applied at the backend but not approved in the journal;
* **doubled**: the sale reached the backend more than once, or a traceNo misbridge originated
  (inquiry, void) was submitted more than once, or more than one void was applied, or the
  transaction's money moved more than once (an options sale's second round, a POS void's resends);
* for a POS **void or refund** (:func:`check_original`): its original stays approved in the
  journal; a void is approved exactly when the original's ledger entry is ``voided`` (by it or one
  of its resends); a refund is approved exactly when the original's ``refundedAmount`` is its
  amount (0 otherwise);
* **answer**: the POS was told something the journal contradicts: the repeated request does
  not get the stored response, the stored returnCode does not match the state ("00" exactly
  when approved), or a first answer said "00" for a transaction that did not end approved, or
  an outcome other than "00" for one that did (answers in :data:`NOT_AN_OUTCOME` excepted);
* **integrity**: ``PRAGMA integrity_check`` is not ``ok``;
* **key** (:func:`check_keys`): the backend declined a card request of the run ``55``: its card
  data and PIN block were not under the working key the backend issued for the day (the harness's
  customers always type the card's right PIN, so a 55 means a half-loaded or stale key was used);
  or a key run's sale, the only thing in its way a crash, did not end approved;
* **pos_lane** (:func:`check_pos_lane`): the journal row is not in the POS lane its request was
  sent on (``lane`` NULL for the default lane, the lane's name for any other), so that lane's
  recovery and reversal worker would not see it (tests/crash/pos_lanes.py).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from misbridge.ebuy import jsonio

FINAL_STATES = frozenset({"approved", "declined", "aborted", "voided"})
APPROVED_CODE = "00"
#: What an approved POS void may have been answered: ``22`` "already voided" when the reversal
#: queue's resend found its first attempt had gone through (docs/reliability.md, voidQrcodeSale).
VOID_APPROVED_CODES = (APPROVED_CODE, "22")
#: Answers that say nothing about the outcome ("busy", "resolving", "shutting down", "recovering:
#: retry shortly", and MB36 "a POS void still unknown, being sent again until confirmed"): a POS
#: that got one asks again, so it is no contradiction whatever the end.
NOT_AN_OUTCOME = frozenset({"MB25", "MB31", "MB36", "MB91", "MB92"})
#: What the backend simulator answers card data or a PIN block under another key than the working key
#: it issued the terminal for the day (simulators/backend/context.py), as a real HSM's PIN check fails.
WRONG_KEY_CODE = "55"
#: The columns of a verdict, in the table's order.
COLUMNS = ("lost", "doubled", "stuck", "answer", "integrity", "key", "pos_lane")


@dataclass(frozen=True)
class JournalView:
    """What the journal holds about one traceNo (None fields: no such row)."""

    state: str | None
    response: dict[str, Any] | None
    return_code: str | None
    reversal_state: str | None
    #: (traceNo, kind) of every request misbridge originated for it (inquiries, voids).
    calls: tuple[tuple[str, str], ...]
    transitions: tuple[str, ...]
    integrity: str
    #: The row's POS lane (journal schema v8): None for the default lane (and when there is no row).
    lane: str | None = None

    @property
    def settled(self) -> bool:
        """Final, with no reversal left to send."""
        return self.state in FINAL_STATES and self.reversal_state in (None, "done")


@dataclass(frozen=True)
class LedgerEntry:
    """The backend simulator's record of one traceNo (``GET /_sim/ledger/{traceNo}``; 404 = never seen)."""

    submissions: int = 0
    state: str = "unseen"
    applied: bool = False
    voided_by: str | None = None
    refunded_amount: Decimal = Decimal(0)
    #: What the backend answered it (None: never decided).
    return_code: str | None = None

    @classmethod
    def from_json(cls, record: Mapping[str, Any] | None) -> LedgerEntry:
        """The entry for a ledger record, or the empty entry for None (404)."""
        if record is None:
            return cls()
        voided_by = record.get("voidedBy")
        refunded = Decimal(str(record.get("refundedAmount") or 0))
        code = record.get("returnCode")
        return cls(
            int(record.get("submissions", 0)),
            str(record.get("state", "")),
            bool(record.get("applied")),
            str(voided_by) if voided_by else None,
            refunded,
            str(code) if code else None,
        )


@dataclass
class Verdict:
    """The violations of one run, by column."""

    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    pos_lane: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No violation at all."""
        return not any(getattr(self, name) for name in COLUMNS)

    def messages(self) -> list[str]:
        """Every violation as ``column: text``."""
        return [f"{name}: {text}" for name in COLUMNS for text in getattr(self, name)]


def check_run(
    journal: JournalView,
    sale: LedgerEntry,
    calls: Mapping[str, LedgerEntry],
    *,
    repeated_answer: Mapping[str, Any] | None,
    first_answer: Mapping[str, Any] | None,
    moves_by: tuple[str, ...] = ("option",),
    approved_codes: tuple[str, ...] = (APPROVED_CODE,),
) -> Verdict:
    """Apply the rules of the module docstring to one run.

    Args:
        journal: the journal's view of the run's traceNo, read after the clean daemon stopped.
        sale: the ledger entry of the run's traceNo.
        calls: ledger entries of the traceNos misbridge originated for it, by traceNo.
        repeated_answer: the body the clean daemon answered to the repeated POS request.
        first_answer: the body the crashing daemon answered, if it answered before dying.
        moves_by: kinds of originated calls whose application is the transaction's own money moving:
            an options sale's second round (``option``); for a POS void, its resends (``void``);
            none for a refund (never sent twice).
        approved_codes: the returnCodes of an approval (:data:`VOID_APPROVED_CODES` for a POS void).
    """
    verdict = Verdict()
    state = journal.state
    if state is None:
        verdict.stuck.append("no journal row after the repeated request")
    elif state not in FINAL_STATES:
        verdict.stuck.append(f"journal state {state}")
    if journal.reversal_state not in (None, "done"):
        verdict.stuck.append(f"reversal {journal.reversal_state}")
    movers = [sale, *(calls.get(no, LedgerEntry()) for no, kind in journal.calls if kind in moves_by)]
    _check_money(verdict, state, movers)
    _check_doubles(verdict, movers, journal, calls)
    _check_answers(verdict, journal, repeated_answer, first_answer, approved_codes)
    if journal.integrity != "ok":
        verdict.integrity.append(journal.integrity)
    return verdict


def _check_money(verdict: Verdict, state: str | None, movers: list[LedgerEntry]) -> None:
    applied = any(entry.applied for entry in movers)
    shown = ", ".join(entry.state for entry in movers)
    if applied and state != "approved":
        verdict.lost.append(f"backend applied it (ledger {shown}) but the journal says {state}")
    if state == "approved" and not applied:
        verdict.lost.append(f"journal approved but the backend did not apply it (ledger {shown})")


def _check_doubles(
    verdict: Verdict, movers: list[LedgerEntry], journal: JournalView, calls: Mapping[str, LedgerEntry]
) -> None:
    sale = movers[0]
    if len([entry for entry in movers if entry.applied]) > 1:
        verdict.doubled.append(f"applied {len([e for e in movers if e.applied])} times (itself or its resends)")
    if sale.submissions > 1:
        verdict.doubled.append(f"sale submitted {sale.submissions} times")
    for trace_no, kind in journal.calls:
        entry = calls.get(trace_no, LedgerEntry())
        if entry.submissions > 1:
            verdict.doubled.append(f"{kind} {trace_no} submitted {entry.submissions} times")
    applied_voids = [no for no, kind in journal.calls if kind == "void" and calls.get(no, LedgerEntry()).applied]
    if len(applied_voids) > 1:
        verdict.doubled.append(f"{len(applied_voids)} voids applied: {', '.join(applied_voids)}")
    allocated = {no for no, _ in journal.calls}
    for entry in movers:
        if entry.voided_by is not None and entry.voided_by not in allocated:
            verdict.doubled.append(f"sale voided by {entry.voided_by}, a traceNo the journal never allocated")


def check_keys(verdict: Verdict, sales: Mapping[str, LedgerEntry], *, state: str | None, approves: bool) -> None:
    """No card request under a key the backend did not issue; a key run's sale approved.

    Args:
        verdict: where violations go.
        sales: the ledger entries of the run's card requests (its sale, void or refund, and the
            original of a follow-up), by traceNo.
        state: the journal state of the run's traceNo.
        approves: a key run: no fault was scripted, so after the restart the pad must hold
            today's key (provisioned first, when it was another store's) and the sale be approved.
    """
    for trace_no, entry in sales.items():
        if entry.return_code == WRONG_KEY_CODE:
            verdict.key.append(f"the backend declined {trace_no} {WRONG_KEY_CODE}: not under the key it issued today")
    if approves and state != "approved":
        verdict.key.append(f"the sale ended {state}, not approved: the restart left the pad without today's key")


def check_pos_lane(verdict: Verdict, journal: JournalView, expected: str | None) -> None:
    """The run's row is in the POS lane its request was sent on (``expected``: None for the default lane).

    Each lane's recovery, reversal worker and inquiry loop find work through the journal's lane
    view (``Journal.for_lane``): a row written with another lane's name would be finished by the
    wrong lane, or by none. No row at all is stuck's to report, not this rule's.
    """
    if journal.state is not None and journal.lane != expected:
        verdict.pos_lane.append(f"journal row in POS lane {_lane_label(journal.lane)}, sent on {_lane_label(expected)}")


def _lane_label(lane: str | None) -> str:
    return "default (NULL)" if lane is None else repr(lane)


def check_original(
    verdict: Verdict,
    follow_up: JournalView,
    original: JournalView,
    entry: LedgerEntry,
    *,
    kind: str,
    refund_amount: Decimal | None,
    voiders: frozenset[str],
) -> None:
    """A POS void or refund against its original: applied at most once, as the journal says.

    Args:
        verdict: where violations go.
        follow_up: the journal's view of the void or refund.
        original: the journal's view of the sale it undoes (approved: the POS was told so).
        entry: the original's ledger entry as the backend knows it (an options sale's second round).
        kind: ``void`` or ``refund``.
        refund_amount: what the refund gives back.
        voiders: the void's traceNo and those of its resends.
    """
    done = follow_up.state == "approved"
    if original.state != "approved":
        verdict.lost.append(f"the original, answered 00, ended {original.state}")
    if kind == "void":
        if done != (entry.state == "voided"):
            verdict.lost.append(f"void {follow_up.state} but the original's ledger is {entry.state}")
        if entry.voided_by is not None and entry.voided_by not in voiders:
            verdict.doubled.append(f"original voided by {entry.voided_by}, not by this void or its resends")
        return
    refunded = entry.refunded_amount
    expected = refund_amount if done and refund_amount is not None else Decimal(0)
    if refunded != expected:
        verdict.lost.append(f"refund {follow_up.state}: the original's ledger has {refunded} refunded, not {expected}")


def _check_answers(
    verdict: Verdict,
    journal: JournalView,
    repeated: Mapping[str, Any] | None,
    first: Mapping[str, Any] | None,
    approved_codes: tuple[str, ...] = (APPROVED_CODE,),
) -> None:
    state = journal.state
    if state not in FINAL_STATES:
        return  # already stuck; what it was told cannot be judged against a non-final state
    stored = journal.response
    if stored is None:
        verdict.answer.append(f"final state {state} without a stored response")
        return
    stored_code = str(stored.get("returnCode", ""))
    if stored_code != (journal.return_code or stored_code):
        verdict.answer.append(f"return_code column {journal.return_code} != response returnCode {stored_code}")
    if (stored_code in approved_codes) != (state == "approved"):
        verdict.answer.append(f"stored returnCode {stored_code!r} in state {state}")
    if repeated is None:
        verdict.answer.append("no answer to the repeated request")
    elif dict(repeated) != stored:
        verdict.answer.append(f"repeated request answered {_brief(repeated)}, journal holds {_brief(stored)}")
    if first is None:
        return
    first_code = str(first.get("returnCode", ""))
    if first_code not in NOT_AN_OUTCOME and (first_code in approved_codes) != (state == "approved"):
        verdict.answer.append(f"the POS was first told {_brief(first)} but the transaction ended {state}")


def _brief(body: Mapping[str, Any]) -> str:
    return f"{body.get('returnCode')!r} ({body.get('returnDesc', '')})"


@contextlib.contextmanager
def _read_only(path: Path) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, isolation_level=None)
    try:
        conn.row_factory = sqlite3.Row
        yield conn
    finally:
        conn.close()


def read_state(path: Path, trace_no: str) -> tuple[str | None, str | None]:
    """(transaction state, reversal state) of ``trace_no``; (None, None) before the journal exists."""
    if not path.exists():
        return None, None
    with _read_only(path) as conn:
        row = conn.execute("SELECT state FROM transactions WHERE trace_no = ?", (trace_no,)).fetchone()
        rev = conn.execute("SELECT state FROM reversals WHERE original_trace_no = ?", (trace_no,)).fetchone()
    return (row["state"] if row else None), (rev["state"] if rev else None)


def read_journal(path: Path, trace_no: str) -> JournalView:
    """Everything the checker needs about ``trace_no``, from a read-only connection.

    Raises:
        sqlite3.Error: the journal cannot be read.
    """
    if not path.exists():
        return JournalView(None, None, None, None, (), (), "journal file missing")
    with _read_only(path) as conn:
        row = conn.execute(
            "SELECT state, response_json, return_code, lane FROM transactions WHERE trace_no = ?", (trace_no,)
        ).fetchone()
        rev = conn.execute("SELECT state FROM reversals WHERE original_trace_no = ?", (trace_no,)).fetchone()
        calls = conn.execute(
            "SELECT trace_no, kind FROM backend_calls WHERE original_trace_no = ? ORDER BY created_at, trace_no",
            (trace_no,),
        ).fetchall()
        steps = conn.execute(
            "SELECT from_state, event, to_state FROM transitions WHERE trace_no = ? ORDER BY id", (trace_no,)
        ).fetchall()
        integrity = "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())
    response = jsonio.loads(row["response_json"]) if row and row["response_json"] else None
    return JournalView(
        state=row["state"] if row else None,
        response=response if isinstance(response, dict) else None,
        return_code=row["return_code"] if row else None,
        reversal_state=rev["state"] if rev else None,
        calls=tuple((str(c["trace_no"]), str(c["kind"])) for c in calls),
        transitions=tuple(f"{s['from_state']} -{s['event']}-> {s['to_state']}" for s in steps),
        integrity=integrity,
        lane=row["lane"] if row else None,
    )


def sweep(path: Path, pos_lanes: Collection[str | None] | None = None) -> list[str]:
    """Whole-journal check at the end of a lane: every transaction final, no reversal left, integrity ok.

    Each run checks its own traceNo; this catches a run that disturbed an earlier one. With
    ``pos_lanes`` (the journal lanes of the daemons' POS lanes, None for the default one) every
    transaction must also be in one of them.
    """
    if not path.exists():
        return []
    with _read_only(path) as conn:
        open_rows = conn.execute(
            "SELECT trace_no, state FROM transactions WHERE state NOT IN ('approved', 'declined', 'aborted', 'voided')"
        ).fetchall()
        reversals = conn.execute("SELECT original_trace_no, state FROM reversals WHERE state <> 'done'").fetchall()
        integrity = "\n".join(str(r[0]) for r in conn.execute("PRAGMA integrity_check").fetchall())
        lanes = conn.execute("SELECT lane, count(*) AS n FROM transactions GROUP BY lane").fetchall()
    problems = [f"transaction {row['trace_no']} left {row['state']}" for row in open_rows]
    if pos_lanes is not None:
        problems += [
            f"{row['n']} transaction(s) in POS lane {_lane_label(row['lane'])}, no lane of the daemons"
            for row in lanes
            if row["lane"] not in pos_lanes
        ]
    problems += [f"reversal of {row['original_trace_no']} left {row['state']}" for row in reversals]
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    return problems
