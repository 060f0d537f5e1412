"""TransactionMachine: every (state, event) pair, restore, reachability and the derived tables."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from misbridge.core.machine import (
    EVENTS,
    FINAL_STATES,
    MONEY_AT_RISK_STATES,
    PRE_SUBMIT_STATES,
    TRANSITIONS,
    MachineModel,
    TransactionMachine,
    TxnState,
    next_state,
)
from misbridge.errors import InvalidTransition
from misbridge.journal.schema import FINAL_STATES as JOURNAL_FINAL_STATES

S = TxnState

# The specification, written out independently of the class: a change to the machine must
# change this table too.
EXPECTED_TRANSITIONS = {
    (S.RECEIVED, "start_card", S.READING_CARD),
    (S.READING_CARD, "card_read", S.READING_PIN),
    (S.READING_PIN, "pin_entered", S.SUBMITTING),
    (S.RECEIVED, "abort", S.ABORTED),
    (S.READING_CARD, "abort", S.ABORTED),
    (S.READING_PIN, "abort", S.ABORTED),
    (S.SUBMITTING, "approve", S.APPROVED),
    (S.SUBMITTING, "decline", S.DECLINED),
    (S.SUBMITTING, "not_sent", S.ABORTED),
    (S.SUBMITTING, "outcome_unknown", S.UNKNOWN),
    (S.UNKNOWN, "inquire", S.INQUIRING),
    (S.INQUIRING, "inquiry_approved", S.APPROVED),
    (S.INQUIRING, "inquiry_declined", S.DECLINED),
    (S.INQUIRING, "inquiry_unknown", S.UNKNOWN),
    (S.INQUIRING, "void_unclaimed", S.VOIDING),
    (S.UNKNOWN, "give_up", S.VOIDING),
    (S.VOIDING, "voided", S.VOIDED),
    (S.VOIDING, "escalate", S.NEEDS_MANUAL),
    (S.NEEDS_MANUAL, "resolve_voided", S.VOIDED),
    (S.NEEDS_MANUAL, "resolve_approved", S.APPROVED),
}

LEGAL = {(source, event): target for source, event, target in TRANSITIONS}
ALL_PAIRS = list(itertools.product(list(TxnState), sorted(EVENTS)))
# Names that are attributes of the machine or the model, or states, but not events.
BOGUS_EVENTS = ["", "nope", "send", "fire", "model", "state", "restore", "__class__", "received", "ABORT"]


def test_declared_transitions_match_the_specification() -> None:
    assert set(TRANSITIONS) == EXPECTED_TRANSITIONS
    assert len(TRANSITIONS) == len(EXPECTED_TRANSITIONS)  # no duplicates


def test_states_ids_values_and_enum_agree() -> None:
    ids = {state.id for state in TransactionMachine.states}
    values = {state.value for state in TransactionMachine.states}
    assert ids == values == {member.value for member in TxnState}


def test_state_sets_partition_all_states() -> None:
    assert {S.APPROVED, S.DECLINED, S.ABORTED, S.VOIDED} == FINAL_STATES
    assert {S.RECEIVED, S.READING_CARD, S.READING_PIN} == PRE_SUBMIT_STATES
    assert {S.SUBMITTING, S.UNKNOWN, S.INQUIRING, S.VOIDING, S.NEEDS_MANUAL} == MONEY_AT_RISK_STATES
    assert set(TxnState) == FINAL_STATES | PRE_SUBMIT_STATES | MONEY_AT_RISK_STATES
    assert len(FINAL_STATES) + len(PRE_SUBMIT_STATES) + len(MONEY_AT_RISK_STATES) == len(TxnState)


def test_journal_trigger_uses_the_machine_final_states() -> None:
    assert set(JOURNAL_FINAL_STATES) == {state.value for state in FINAL_STATES}


def test_new_machine_starts_received() -> None:
    machine = TransactionMachine()
    assert machine.state is S.RECEIVED
    assert machine.model == MachineModel(state="received")


@pytest.mark.parametrize(("state", "event"), ALL_PAIRS, ids=[f"{s}-{e}" for s, e in ALL_PAIRS])
def test_every_state_event_pair(state: TxnState, event: str) -> None:
    machine = TransactionMachine.restore(state)
    target = LEGAL.get((state, event))
    if target is None:
        with pytest.raises(InvalidTransition, match=f"{event!r}.*{state.value!r}"):
            machine.fire(event)
        assert machine.state is state
        assert machine.model.state == state.value
    else:
        assert machine.fire(event) is target
        assert machine.model.state == target.value


@pytest.mark.parametrize("state", list(TxnState))
@pytest.mark.parametrize("event", BOGUS_EVENTS)
def test_unknown_events_raise(state: TxnState, event: str) -> None:
    machine = TransactionMachine.restore(state)
    with pytest.raises(InvalidTransition, match="unknown event"):
        machine.fire(event)
    assert machine.state is state


@pytest.mark.parametrize("final", sorted(FINAL_STATES))
def test_final_states_accept_nothing(final: TxnState) -> None:
    assert not [event for (source, event) in LEGAL if source is final]
    machine = TransactionMachine.restore(final)
    for event in sorted(EVENTS):
        with pytest.raises(InvalidTransition):
            machine.fire(event)
    assert machine.state is final


def test_machine_that_reached_a_final_state_accepts_nothing() -> None:
    machine = TransactionMachine()
    machine.fire("abort")
    for event in sorted(EVENTS):
        with pytest.raises(InvalidTransition):
            machine.fire(event)
    assert machine.model.state == "aborted"


@pytest.mark.parametrize("state", list(TxnState))
def test_restore_keeps_the_state(state: TxnState) -> None:
    model = MachineModel(state=state.value)
    machine = TransactionMachine(model=model)
    assert machine.state is state
    assert model.state == state.value
    assert TransactionMachine.restore(state.value).state is state


class _Recording(TransactionMachine):
    def __init__(self, model: MachineModel | None = None) -> None:
        self.entered: list[str] = []
        super().__init__(model=model)

    def on_enter_state(self, target: object) -> None:
        self.entered.append(str(getattr(target, "id", target)))


@pytest.mark.parametrize("state", [s for s in TxnState if s is not S.RECEIVED])
def test_restore_runs_no_entry_actions(state: TxnState) -> None:
    machine = _Recording(MachineModel(state=state.value))
    assert machine.entered == []
    fresh = _Recording()
    assert fresh.entered == ["received"]  # the listener works: a new machine does enter


@pytest.mark.parametrize("bad", ["", "RECEIVED", "settled"])
def test_restore_rejects_unknown_states(bad: str) -> None:
    with pytest.raises(InvalidTransition, match="not a transaction state"):
        TransactionMachine.restore(bad)


def _reachable(start: TxnState) -> set[TxnState]:
    seen = {start}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for source, _event, target in TRANSITIONS:
            if source is current and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


@pytest.mark.parametrize("state", sorted(set(TxnState) - FINAL_STATES))
def test_a_final_state_is_reachable_from_every_non_final_state(state: TxnState) -> None:
    assert _reachable(state) & FINAL_STATES


def test_every_state_is_reachable_from_received() -> None:
    assert _reachable(S.RECEIVED) == set(TxnState)


@pytest.mark.parametrize(
    ("events", "final"),
    [
        (["start_card", "card_read", "pin_entered", "approve"], S.APPROVED),
        (["start_card", "card_read", "pin_entered", "not_sent"], S.ABORTED),
        (
            [
                "start_card",
                "card_read",
                "pin_entered",
                "outcome_unknown",
                "inquire",
                "inquiry_unknown",
                "inquire",
                "inquiry_declined",
            ],
            S.DECLINED,
        ),
        (
            [
                "start_card",
                "card_read",
                "pin_entered",
                "outcome_unknown",
                "inquire",
                "void_unclaimed",
                "escalate",
                "resolve_approved",
            ],
            S.APPROVED,
        ),
        (["start_card", "card_read", "pin_entered", "outcome_unknown", "give_up", "voided"], S.VOIDED),
    ],
)
def test_whole_paths(events: list[str], final: TxnState) -> None:
    model = MachineModel()
    machine = TransactionMachine(model=model)
    for event in events:
        machine.fire(event)
    assert machine.state is final
    assert model.state == final.value


def test_fire_passes_keyword_arguments_and_returns_the_enum() -> None:
    machine = TransactionMachine()
    result = machine.fire("start_card", reason="test")
    assert isinstance(result, TxnState)
    assert result is S.READING_CARD


@pytest.mark.parametrize("reserved", ["delay", "send_id", "internal"])
def test_fire_cannot_be_delayed_or_queued(reserved: str) -> None:
    machine = TransactionMachine()
    with pytest.raises(TypeError):
        machine.fire("start_card", **{reserved: 1})
    assert machine.state is S.RECEIVED


def _fired(state: str, event: str) -> TxnState | str:
    try:
        return TransactionMachine.restore(state).fire(event)
    except InvalidTransition as err:
        return f"raises: {err}"


def _looked_up(state: str, event: str) -> TxnState | str:
    try:
        return next_state(state, event)
    except InvalidTransition as err:
        return f"raises: {err}"


@pytest.mark.parametrize("state", [*TxnState, "settled", ""])
def test_next_state_answers_exactly_as_the_machine(state: str) -> None:
    for event in [*sorted(EVENTS), *BOGUS_EVENTS]:
        assert _looked_up(state, event) == _fired(state, event), (state, event)
