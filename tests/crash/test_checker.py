"""The crash checker's rules and scenarios, without any process: a checker that never fails proves nothing."""

from __future__ import annotations

import random
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from misbridge.core.machine import TxnState
from misbridge.host.crashpoints import DAEMON_POINTS
from misbridge.journal.records import TransactionRecord
from misbridge.journal.store import Journal
from tests.crash import flows, scenarios
from tests.crash.checker import (
    JournalView,
    LedgerEntry,
    Verdict,
    check_keys,
    check_original,
    check_pos_lane,
    check_run,
    read_journal,
    read_state,
    sweep,
)
from tests.crash.pos_lanes import POS_LANES_POINTS, pos_lane_sales

APPROVED = {"traceNo": "T1", "returnCode": "00", "returnDesc": "SUCCESS"}
VOIDED = {"traceNo": "T1", "returnCode": "MB32", "returnDesc": "voided"}


def view(
    state: str | None = "approved",
    response: dict[str, Any] | None = None,
    *,
    reversal: str | None = None,
    calls: tuple[tuple[str, str], ...] = (),
    integrity: str = "ok",
) -> JournalView:
    stored = response if response is not None else (APPROVED if state == "approved" else VOIDED)
    code = str(stored["returnCode"]) if state is not None else None
    return JournalView(state, stored if state is not None else None, code, reversal, calls, (), integrity)


def check(
    journal: JournalView,
    sale: LedgerEntry,
    calls: dict[str, LedgerEntry] | None = None,
    *,
    repeated: dict[str, Any] | None = None,
    first: dict[str, Any] | None = None,
) -> Verdict:
    answer = repeated if repeated is not None else journal.response
    return check_run(journal, sale, calls or {}, repeated_answer=answer, first_answer=first)


APPLIED = LedgerEntry(1, "approved", applied=True)


def test_an_approved_and_applied_sale_passes() -> None:
    assert check(view(), APPLIED).ok


def test_a_voided_sale_passes_with_its_one_void() -> None:
    calls = {"V1": LedgerEntry(1, "approved", applied=True), "I1": LedgerEntry(1, "approved")}
    verdict = check(
        view("voided", reversal="done", calls=(("I1", "inquiry"), ("V1", "void"))),
        LedgerEntry(1, "voided", voided_by="V1"),
        calls,
    )
    assert verdict.ok, verdict.messages()


@pytest.mark.parametrize(
    ("state", "sale"),
    [
        ("approved", LedgerEntry(1, "voided")),  # the merchant believes in money it does not have
        ("approved", LedgerEntry()),
        ("voided", APPLIED),  # the customer paid, the journal says voided
        ("declined", APPLIED),
        ("aborted", APPLIED),
    ],
)
def test_journal_and_ledger_disagreeing_is_lost(state: str, sale: LedgerEntry) -> None:
    verdict = check(view(state), sale)
    assert verdict.lost
    assert not verdict.doubled


def test_two_submissions_of_the_sale_are_doubled() -> None:
    assert check(view(), LedgerEntry(2, "approved", applied=True)).doubled


def test_a_reused_originated_trace_no_is_doubled() -> None:
    calls = {"I1": LedgerEntry(2, "approved")}
    assert check(view(calls=(("I1", "inquiry"),)), APPLIED, calls).doubled


def test_two_applied_voids_are_doubled() -> None:
    calls = {"V1": LedgerEntry(1, "approved", applied=True), "V2": LedgerEntry(1, "approved", applied=True)}
    verdict = check(
        view("voided", calls=(("V1", "void"), ("V2", "void"))), LedgerEntry(1, "voided", voided_by="V1"), calls
    )
    assert verdict.doubled


def test_a_void_the_journal_never_allocated_is_doubled() -> None:
    assert check(view("voided"), LedgerEntry(1, "voided", voided_by="ELSEWHERE")).doubled


@pytest.mark.parametrize(
    "journal",
    [
        view(None),
        view("unknown"),
        view("voiding"),
        view("needs_manual"),
        view("voided", reversal="pending"),
        view("voided", reversal="needs_manual"),
    ],
)
def test_not_settled_is_stuck(journal: JournalView) -> None:
    assert check(journal, LedgerEntry()).stuck


def test_a_repeated_answer_other_than_the_stored_one_is_an_answer_violation() -> None:
    assert check(view(), APPLIED, repeated={**APPROVED, "orderNo": "other"}).answer


def test_no_answer_to_the_repeat_is_an_answer_violation() -> None:
    assert check_run(view(), APPLIED, {}, repeated_answer=None, first_answer=None).answer


def test_a_stored_00_in_a_state_other_than_approved_is_an_answer_violation() -> None:
    assert check(view("declined", APPROVED), LedgerEntry(1, "declined")).answer


@pytest.mark.parametrize(
    ("state", "first", "bad"),
    [
        ("voided", APPROVED, True),  # told approved, not charged
        ("approved", VOIDED, True),  # told voided, charged
        ("approved", {"returnCode": "MB92"}, False),  # "recovering, retry": the retry was approved
        ("voided", {"returnCode": "MB31"}, False),  # "resolving": says nothing yet
        ("approved", APPROVED, False),
    ],
)
def test_the_first_answer_must_not_contradict_the_end(state: str, first: dict[str, Any], bad: bool) -> None:
    sale = APPLIED if state == "approved" else LedgerEntry(1, "voided")
    assert bool(check(view(state), sale, first=first).answer) is bad


def test_integrity_problems_are_reported() -> None:
    assert check(view(integrity="*** in database main ***"), APPLIED).integrity


async def test_read_journal_sees_state_response_and_integrity(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    assert read_state(path, "T1") == (None, None)
    journal = await Journal.open(path)
    try:
        await journal.record_intent(TransactionRecord.new("T1", "cardRedemption", TxnState.RECEIVED, {"traceNo": "T1"}))
        await journal.record_transition("T1", "received", "abort", response=VOIDED, return_code="MB32")
        assert read_state(path, "T1") == ("aborted", None)  # readable while the daemon holds it open
    finally:
        await journal.close()
    assert sweep(path) == []
    journal = await Journal.open(path)
    try:
        await journal.record_intent(TransactionRecord.new("T2", "cardRedemption", TxnState.RECEIVED, {"traceNo": "T2"}))
    finally:
        await journal.close()
    assert sweep(path) == ["transaction T2 left received"]
    seen = read_journal(path, "T1")
    assert (seen.state, seen.response, seen.return_code, seen.integrity) == ("aborted", VOIDED, "MB32", "ok")
    assert seen.transitions == (" -intent-> received", "received -abort-> aborted")
    assert seen.settled
    assert read_journal(path, "T3").state is None


def test_every_crash_point_has_a_scenario() -> None:
    assert len(DAEMON_POINTS) >= 18
    assert scenarios.uncovered_points() == []
    for point in DAEMON_POINTS:
        for index in range(20):
            plan = scenarios.plan_for(point, random.Random(index))
            assert plan.stages[-1].crash_at.split(":")[0] == point
            assert all(stage.crash_at.split(":")[0] in DAEMON_POINTS for stage in plan.stages)


def test_a_seed_reproduces_the_scenario() -> None:
    first = [scenarios.plan_for(p, random.Random(f"s:{p}")) for p in DAEMON_POINTS]
    again = [scenarios.plan_for(p, random.Random(f"s:{p}")) for p in DAEMON_POINTS]
    assert first == again


def test_an_unknown_point_has_no_scenario() -> None:
    with pytest.raises(ValueError, match="no crash scenario"):
        scenarios.plan_for("nowhere", random.Random(0))


# -- options sales and the POS's voids and refunds (tests/crash/flows.py) ------------------------------


def test_an_options_sale_is_applied_by_its_second_round() -> None:
    calls = {"R2": APPLIED}
    journal = view(calls=(("R2", "option"),))
    assert check(journal, LedgerEntry(1, "declined"), calls).ok
    lost = check(
        view("declined", APPROVED | {"returnCode": "09"}, calls=(("R2", "option"),)), LedgerEntry(1, "declined"), calls
    )
    assert lost.lost


def test_a_pos_void_applied_by_the_void_and_a_resend_is_doubled() -> None:
    calls = {"V2": APPLIED}
    verdict = check_run(
        view(calls=(("V2", "void"),)), APPLIED, calls, repeated_answer=APPROVED, first_answer=None, moves_by=("void",)
    )
    assert verdict.doubled
    once = check_run(
        view(calls=(("V2", "void"),)),
        LedgerEntry(1, "not_applied"),
        calls,
        repeated_answer=APPROVED,
        first_answer=None,
        moves_by=("void",),
    )
    assert once.ok, once.messages()


@pytest.mark.parametrize(
    ("kind", "state", "original", "refund", "column"),
    [
        ("void", "approved", LedgerEntry(1, "voided", voided_by="V1"), None, None),
        ("void", "declined", LedgerEntry(1, "approved", applied=True), None, None),
        ("void", "approved", LedgerEntry(1, "approved", applied=True), None, "lost"),
        ("void", "declined", LedgerEntry(1, "voided", voided_by="V1"), None, "lost"),
        ("void", "approved", LedgerEntry(1, "voided", voided_by="X9"), None, "doubled"),
        ("refund", "approved", LedgerEntry(1, "approved", True, refunded_amount=Decimal("1.5")), Decimal("1.5"), None),
        ("refund", "declined", LedgerEntry(1, "approved", True), Decimal("1.5"), None),
        (
            "refund",
            "declined",
            LedgerEntry(1, "approved", True, refunded_amount=Decimal("1.5")),
            Decimal("1.5"),
            "lost",
        ),
        ("refund", "approved", LedgerEntry(1, "approved", True, refunded_amount=Decimal("3")), Decimal("1.5"), "lost"),
    ],
)
def test_a_follow_up_agrees_with_its_original_in_the_ledger(
    kind: str, state: str, original: LedgerEntry, refund: Decimal | None, column: str | None
) -> None:
    verdict = Verdict()
    check_original(verdict, view(state), view(), original, kind=kind, refund_amount=refund, voiders=frozenset({"V1"}))
    bad = {name for name in ("lost", "doubled") if getattr(verdict, name)}
    assert bad == ({column} if column else set()), verdict.messages()


def test_an_original_answered_00_must_stay_approved() -> None:
    verdict = Verdict()
    check_original(
        verdict, view("declined"), view("voided"), APPLIED, kind="void", refund_amount=None, voiders=frozenset()
    )
    assert verdict.lost


def test_flow_runs_make_their_original_and_name_it() -> None:
    for point in flows.POINTS:
        plan = scenarios.plan_for(point, random.Random(point), "C0123")
        assert plan.flow is not None
        if point in flows.QR_POINTS:
            assert plan.flow.original is None
            assert plan.flow.request.action == "qrcodeSale"
        else:
            assert plan.flow.original is not None
            assert plan.flow.request.body["originalTraceNo"] == plan.flow.original.body["traceNo"] == "O0123"


# -- card voids and refunds, a code read on the pad, the POS choosing options --------------------------


def _plans(point: str, runs: int = 60) -> list[scenarios.Plan]:
    return [scenarios.plan_for(point, random.Random(f"{point}:{index}"), "C0123") for index in range(runs)]


@pytest.mark.parametrize("point", [*flows.CARD_SALE_POINTS, *flows.CARD_WRITES.values(), *flows.RESEND_POINTS])
def test_card_voids_and_refunds_reach_the_card_points(point: str) -> None:
    card = [plan for plan in _plans(point) if plan.flow and plan.flow.request.action.endswith("CardSale")]
    assert card, f"no card void or refund crashes at {point}"
    for plan in card:
        assert plan.flow is not None
        assert plan.flow.original is not None
        assert plan.flow.original.action == "cardRedemption"
        assert plan.flow.request.body["originalTraceNo"] == plan.flow.original.body["traceNo"] == "O0123"
        assert plan.flow.kind == ("void" if plan.flow.request.action == "voidCardSale" else "refund")
        assert (plan.flow.refund_amount is not None) == (plan.flow.kind == "refund")
        # The original passes the card sale's points once: the void or refund crashes at the second pass.
        nth = 2 if point in flows.CARD_SALE_POINTS else 1
        assert plan.stages[-1].crash_at == (f"{point}:2" if nth == 2 else point)
    if point == "backend.refundCardSale.after_write":
        assert all(plan.flow and plan.flow.kind == "refund" for plan in _plans(point))
    if point == "backend.voidCardSale.after_write":
        assert all(plan.flow.kind == "void" for plan in card if plan.flow)


def test_some_qr_sales_read_the_code_on_the_pad_and_some_options_sales_let_the_pos_choose() -> None:
    plans = [plan for point in flows.QR_POINTS for plan in _plans(point, 30)]
    on_pad = [plan.flow for plan in plans if plan.flow is not None and plan.flow.pad_code is not None]
    assert on_pad
    assert len(on_pad) < len(plans)
    for flow in on_pad:
        assert "qrcode" not in flow.request.body
        assert flow.pad_code in (flows.PAY_CODE, flows.DECLINED_CODE, flows.OPTIONS_CODE)
    pos = [plan.flow for plan in plans if plan.flow and plan.flow.options_on == "pos"]
    assert pos
    assert {flow.pad_code or flow.request.body["qrcode"] for flow in pos} == {flows.OPTIONS_CODE}
    follow_ups = [plan.flow for point in flows.FOLLOW_UP_POINTS for plan in _plans(point, 10) if plan.flow]
    assert {follow_up.options_on for follow_up in follow_ups} == {"pad"}


# -- the keys: no card request under a key the backend did not issue ------------------------------------


def test_the_ledger_entry_keeps_the_backends_answer() -> None:
    record = {"submissions": 1, "state": "declined", "applied": False, "returnCode": "55"}
    assert LedgerEntry.from_json(record).return_code == "55"
    assert LedgerEntry.from_json(None).return_code is None


@pytest.mark.parametrize(
    ("sales", "state", "approves", "bad"),
    [
        ({"C1": LedgerEntry(1, "approved", applied=True, return_code="00")}, "approved", True, 0),
        ({"C1": LedgerEntry(1, "declined", return_code="51")}, "declined", False, 0),  # a scripted decline
        ({"C1": LedgerEntry(1, "declined", return_code="55")}, "declined", False, 1),  # a half-loaded key
        # a card void under a stale key, its original approved
        ({"C1": LedgerEntry(1, "declined", return_code="55"), "O1": APPLIED}, "declined", False, 1),
        ({"C1": LedgerEntry()}, "aborted", True, 1),  # a key run refused MB50 after the restart
        ({"C1": LedgerEntry(1, "declined", return_code="55")}, "declined", True, 2),
    ],
)
def test_a_sale_declined_55_or_a_key_run_not_approved_is_a_key_violation(
    sales: dict[str, LedgerEntry], state: str, approves: bool, bad: int
) -> None:
    verdict = Verdict()
    check_keys(verdict, sales, state=state, approves=approves)
    assert len(verdict.key) == bad, verdict.key
    assert verdict.ok == (bad == 0)
    assert all(message.startswith("key: ") for message in verdict.messages())


@pytest.mark.parametrize("point", scenarios.KEY_POINTS)
def test_key_runs_start_from_a_pad_that_makes_the_daemon_sign_in_or_provision(point: str) -> None:
    plans = _plans(point, 40)
    for plan in plans:
        (stage,) = plan.stages
        assert (stage.crash_at, stage.sends_request, plan.approves, plan.flow) == (point, False, True, None)
        # A pad of another store (or none) is provisioned: the daemons then hold the rootKey.
        assert plan.provision == (stage.pad_keys in scenarios.PROVISION_PADS)
    pads = {plan.stages[0].pad_keys for plan in plans}
    if point == "keys.after_master_load":
        assert pads == set(scenarios.PROVISION_PADS)
    else:
        assert pads == set(scenarios.SIGN_IN_PADS)


# -- several POS lanes in one daemon: each row in the lane its request was sent on (tests/crash/pos_lanes.py)


@pytest.mark.parametrize(
    ("row_lane", "expected", "bad"),
    [
        (None, None, False),  # the default lane writes NULL, as a one-lane journal does
        ("lane2", "lane2", False),
        ("lane2", None, True),  # the default lane's sale written as lane2's: lane2's recovery would finish it
        (None, "lane2", True),  # lane2's sale in the default lane: lane2's reversal worker never sees it
        ("lane3", "lane2", True),
    ],
)
def test_a_row_outside_the_pos_lane_it_was_sent_on_is_a_pos_lane_violation(
    row_lane: str | None, expected: str | None, bad: bool
) -> None:
    verdict = Verdict()
    check_pos_lane(verdict, replace(view("approved"), lane=row_lane), expected)
    assert bool(verdict.pos_lane) is bad, verdict.pos_lane
    assert verdict.ok is not bad
    assert all(message.startswith("pos_lane: ") for message in verdict.messages())


def test_no_row_at_all_is_stuck_not_a_pos_lane_violation() -> None:
    verdict = check(view(None), LedgerEntry())
    check_pos_lane(verdict, view(None), "lane2")
    assert verdict.stuck
    assert not verdict.pos_lane


async def test_read_journal_and_the_sweep_see_each_rows_pos_lane(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    journal = await Journal.open(path)
    try:
        views = {"T1": journal.for_lane("lane1", default=True), "T2": journal.for_lane("lane2", default=False)}
        views["T3"] = journal.for_lane("lane3", default=False)
        for trace_no, lane in views.items():
            await lane.record_intent(
                TransactionRecord.new(trace_no, "cardRedemption", TxnState.RECEIVED, {"traceNo": trace_no})
            )
            await lane.record_transition(trace_no, "received", "abort", response=VOIDED, return_code="MB32")
    finally:
        await journal.close()
    assert [read_journal(path, no).lane for no in ("T1", "T2", "T3", "T4")] == [None, "lane2", "lane3", None]
    assert sweep(path) == []
    assert sweep(path, pos_lanes={None, "lane2", "lane3"}) == []
    assert sweep(path, pos_lanes={None, "lane2"}) == ["1 transaction(s) in POS lane 'lane3', no lane of the daemons"]


def test_the_pos_lanes_mode_runs_every_plain_card_sale_point_and_only_those() -> None:
    expected = [p for p in DAEMON_POINTS if p not in {*flows.POINTS, *scenarios.KEY_POINTS}]
    assert list(POS_LANES_POINTS) == expected
    assert {"intake.before_intent", "pos.after_reply", "recovery.start", "shutdown.drain"} <= set(expected)
    for point in POS_LANES_POINTS:
        for index in range(20):
            plan = scenarios.card_sale_plan(point, random.Random(index))
            assert plan.stages[-1].crash_at.split(":")[0] == point
            assert (plan.flow, plan.provision, plan.approves) == (None, False, False)
    for point in (*flows.POINTS, *scenarios.KEY_POINTS):
        with pytest.raises(ValueError, match="no crash scenario"):
            scenarios.card_sale_plan(point, random.Random(0))


def test_each_pos_lane_sells_under_its_own_trace_no_and_device_no() -> None:
    sales = pos_lane_sales(2, 7, random.Random("s"))
    assert [(s.name, s.device_no, s.journal_lane) for s in sales] == [
        ("lane1", "POS01", None),
        ("lane2", "POS02", "lane2"),
    ]
    assert len({s.trace_no for s in sales}) == 2
    assert all(s.body["traceNo"] == s.trace_no and s.trace_no.endswith("0007") for s in sales)
    assert pos_lane_sales(2, 7, random.Random("s")) == sales  # a seed reproduces them
