"""The kinds' machines: every (state, event) pair of every kind, restore, reachability, the tables."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from misbridge.core.kinds import JOURNALED_FINAL_STATES, MONEY_AT_RISK_STATES, PRE_SUBMIT_STATES, TABLES, next_state
from misbridge.core.machine import (
    KIND_OF_ACTION,
    MACHINES,
    KindMachine,
    MachineModel,
    SaleMachine,
    TransactionKind,
    TxnState,
    kind_of,
)
from misbridge.errors import InvalidTransition
from misbridge.journal.schema import FINAL_STATES as JOURNAL_FINAL_STATES

S = TxnState
K = TransactionKind

_CARD_STEPS = {
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
}
_UNDONE_BY_A_PERSON = {
    (S.RECEIVED, "submit", S.SUBMITTING),
    (S.UNKNOWN, "escalate", S.NEEDS_MANUAL),
    (S.NEEDS_MANUAL, "resolve_approved", S.APPROVED),
    (S.NEEDS_MANUAL, "resolve_declined", S.DECLINED),
}

# The specification, written out independently of the classes: a change to a machine must
# change this table too.
EXPECTED_TRANSITIONS: dict[TransactionKind, set[tuple[TxnState, str, TxnState]]] = {
    K.SALE: _CARD_STEPS
    | _UNDONE_BY_A_PERSON
    | {
        (S.RECEIVED, "start_code", S.READING_CODE),
        (S.READING_CODE, "code_read", S.SUBMITTING),
        (S.READING_CODE, "abort", S.ABORTED),
        (S.SUBMITTING, "offer_options", S.CHOOSING),
        (S.CHOOSING, "option_chosen", S.SUBMITTING),
        (S.CHOOSING, "abort", S.ABORTED),
        (S.INQUIRING, "void_unclaimed", S.VOIDING),
        (S.UNKNOWN, "give_up", S.VOIDING),
        (S.VOIDING, "voided", S.VOIDED),
        (S.VOIDING, "escalate", S.NEEDS_MANUAL),
        (S.NEEDS_MANUAL, "resolve_voided", S.VOIDED),
    },
    K.VOID: _CARD_STEPS
    | _UNDONE_BY_A_PERSON
    | {
        (S.UNKNOWN, "give_up", S.VOIDING),
        (S.VOIDING, "void_confirmed", S.APPROVED),
        (S.VOIDING, "escalate", S.NEEDS_MANUAL),
    },
    K.REFUND: _CARD_STEPS | _UNDONE_BY_A_PERSON,
    K.QUERY: {(S.SENT, "answer", S.ANSWERED), (S.SENT, "no_answer", S.UNKNOWN)},
    K.UPLOAD: {(S.SENT, "answer", S.ANSWERED), (S.SENT, "no_answer", S.UNKNOWN)},
}

ALL_EVENTS = sorted(set().union(*(table.events for table in TABLES.values())))
# Names that are attributes of the machine or the model, or states, but not events.
BOGUS_EVENTS = ["", "nope", "send", "fire", "model", "state", "restore", "__class__", "received", "ABORT"]
CASES = [
    (kind, state, event)
    for kind, table in TABLES.items()
    for state, event in itertools.product(sorted(table.states), ALL_EVENTS)
]


def _legal(kind: TransactionKind) -> dict[tuple[TxnState, str], TxnState]:
    return {(spec.source, spec.event): spec.target for spec in TABLES[kind].transitions}


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_declared_transitions_match_the_specification(kind: TransactionKind) -> None:
    transitions = TABLES[kind].transitions
    assert set(transitions) == EXPECTED_TRANSITIONS[kind]
    assert len(transitions) == len(EXPECTED_TRANSITIONS[kind])  # no duplicates


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_states_ids_and_values_agree(kind: TransactionKind) -> None:
    machine = MACHINES[kind]
    assert {state.id for state in machine.states} == {state.value for state in machine.states}
    assert {state.value for state in machine.states} <= {member.value for member in TxnState}


def test_every_state_belongs_to_some_kind() -> None:
    assert set().union(*(table.states for table in TABLES.values())) == set(TxnState)


def test_every_book_action_has_a_kind() -> None:
    book = {
        "cardRedemption",
        "cardPayment",
        "qrcodeSale",
        "inquiry",
        "voidCardSale",
        "voidQrcodeSale",
        "refundCardSale",
        "refundQrcodeSale",
        "ecouponInquiry",
        "accumulating",
        "summary",
        "batchUpload",
    }
    assert set(KIND_OF_ACTION) == book
    assert kind_of("voidCardSale") is K.VOID
    with pytest.raises(InvalidTransition, match="'DownloadKey' is not an action"):
        kind_of("DownloadKey")


def test_sale_state_sets_partition_its_states() -> None:
    sale = TABLES[K.SALE]
    assert {S.APPROVED, S.DECLINED, S.ABORTED, S.VOIDED} == sale.final_states
    assert {S.RECEIVED, S.READING_CARD, S.READING_PIN, S.READING_CODE, S.CHOOSING} == PRE_SUBMIT_STATES
    assert {S.SUBMITTING, S.UNKNOWN, S.INQUIRING, S.VOIDING, S.NEEDS_MANUAL} == MONEY_AT_RISK_STATES
    assert sale.states == sale.final_states | PRE_SUBMIT_STATES | MONEY_AT_RISK_STATES


def test_journal_trigger_uses_the_machines_final_states() -> None:
    assert set(JOURNAL_FINAL_STATES) == {state.value for state in JOURNALED_FINAL_STATES}


@pytest.mark.parametrize("kind", [K.SALE, K.VOID, K.REFUND])
def test_no_final_state_of_one_journaled_kind_is_live_in_another(kind: TransactionKind) -> None:
    # The transactions table's trigger refuses leaving any of JOURNALED_FINAL_STATES, whatever
    # the kind: so none of them may be a state another journaled kind leaves.
    assert not (JOURNALED_FINAL_STATES & (TABLES[kind].states - TABLES[kind].final_states))


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_new_machine_starts_in_the_initial_state(kind: TransactionKind) -> None:
    machine = MACHINES[kind]()
    assert machine.state is TABLES[kind].initial
    assert machine.model == MachineModel(state=TABLES[kind].initial.value)


@pytest.mark.parametrize(("kind", "state", "event"), CASES, ids=[f"{k}-{s}-{e}" for k, s, e in CASES])
def test_every_state_event_pair(kind: TransactionKind, state: TxnState, event: str) -> None:
    machine = MACHINES[kind].restore(state)
    target = _legal(kind).get((state, event))
    if event not in TABLES[kind].events:
        with pytest.raises(InvalidTransition, match="unknown event"):
            machine.fire(event)
    elif target is None:
        with pytest.raises(InvalidTransition, match=f"{event!r}.*{state.value!r}"):
            machine.fire(event)
    else:
        assert machine.fire(event) is target
        assert machine.model.state == target.value
        return
    assert machine.state is state
    assert machine.model.state == state.value


@pytest.mark.parametrize("event", BOGUS_EVENTS)
def test_bogus_events_raise(event: str) -> None:
    for kind, table in TABLES.items():
        for state in table.states:
            with pytest.raises(InvalidTransition, match="unknown event"):
                MACHINES[kind].restore(state).fire(event)


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_final_states_accept_nothing(kind: TransactionKind) -> None:
    for final in TABLES[kind].final_states:
        assert not [event for (source, event) in _legal(kind) if source is final]


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_restore_keeps_the_state_and_rejects_foreign_ones(kind: TransactionKind) -> None:
    for state in TABLES[kind].states:
        model = MachineModel(state=state.value)
        assert MACHINES[kind](model=model).state is state
        assert MACHINES[kind].restore(state.value).state is state
    for foreign in set(TxnState) - TABLES[kind].states:
        with pytest.raises(InvalidTransition, match="is not a state of"):
            MACHINES[kind].restore(foreign)


class _Recording(SaleMachine):
    def __init__(self, model: MachineModel | None = None) -> None:
        self.entered: list[str] = []
        super().__init__(model=model)

    def on_enter_state(self, target: object) -> None:
        self.entered.append(str(getattr(target, "id", target)))


@pytest.mark.parametrize("state", sorted(TABLES[K.SALE].states - {S.RECEIVED}))
def test_restore_runs_no_entry_actions(state: TxnState) -> None:
    machine = _Recording(MachineModel(state=state.value))
    assert machine.entered == []
    fresh = _Recording()
    assert fresh.entered == ["received"]  # the listener works: a new machine does enter


@pytest.mark.parametrize("bad", ["", "RECEIVED", "settled"])
def test_restore_rejects_unknown_states(bad: str) -> None:
    with pytest.raises(InvalidTransition, match="is not a state of"):
        SaleMachine.restore(bad)


def _reachable(kind: TransactionKind, start: TxnState) -> set[TxnState]:
    seen = {start}
    queue = deque([start])
    while queue:
        current = queue.popleft()
        for source, _event, target in TABLES[kind].transitions:
            if source is current and target not in seen:
                seen.add(target)
                queue.append(target)
    return seen


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_every_state_is_reachable_and_every_live_state_can_end(kind: TransactionKind) -> None:
    table = TABLES[kind]
    assert _reachable(kind, table.initial) == table.states
    for state in table.states - table.final_states:
        assert _reachable(kind, state) & table.final_states, state


@pytest.mark.parametrize(
    ("kind", "events", "final"),
    [
        (K.SALE, ["start_card", "card_read", "pin_entered", "approve"], S.APPROVED),
        (K.SALE, ["start_card", "card_read", "pin_entered", "not_sent"], S.ABORTED),
        (
            K.SALE,
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
            K.SALE,
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
        (K.SALE, ["start_card", "card_read", "pin_entered", "outcome_unknown", "give_up", "voided"], S.VOIDED),
        (
            K.VOID,
            ["submit", "outcome_unknown", "inquire", "inquiry_unknown", "escalate", "resolve_declined"],
            S.DECLINED,
        ),
        (K.REFUND, ["start_card", "card_read", "pin_entered", "approve"], S.APPROVED),
        (K.QUERY, ["no_answer"], S.UNKNOWN),
        (
            K.SALE,
            ["submit", "outcome_unknown", "inquire", "inquiry_unknown", "escalate", "resolve_declined"],
            S.DECLINED,
        ),
        (K.UPLOAD, ["answer"], S.ANSWERED),
    ],
)
def test_whole_paths(kind: TransactionKind, events: list[str], final: TxnState) -> None:
    model = MachineModel()
    machine: KindMachine = MACHINES[kind](model=model)
    for event in events:
        machine.fire(event)
    assert machine.state is final
    assert model.state == final.value


def test_fire_passes_keyword_arguments_and_returns_the_enum() -> None:
    result = SaleMachine().fire("start_card", reason="test")
    assert isinstance(result, TxnState)
    assert result is S.READING_CARD


@pytest.mark.parametrize("reserved", ["delay", "send_id", "internal"])
def test_fire_cannot_be_delayed_or_queued(reserved: str) -> None:
    machine = SaleMachine()
    with pytest.raises(TypeError):
        machine.fire("start_card", **{reserved: 1})
    assert machine.state is S.RECEIVED


def _fired(kind: TransactionKind, state: str, event: str) -> TxnState | str:
    try:
        return MACHINES[kind].restore(state).fire(event)
    except InvalidTransition as err:
        return f"raises: {err}"


def _looked_up(kind: TransactionKind, state: str, event: str) -> TxnState | str:
    try:
        return next_state(kind, state, event)
    except InvalidTransition as err:
        return f"raises: {err}"


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_next_state_answers_exactly_as_the_machine(kind: TransactionKind) -> None:
    for state in [*TxnState, "settled", ""]:
        for event in [*ALL_EVENTS, *BOGUS_EVENTS]:
            assert _looked_up(kind, state, event) == _fired(kind, state, event), (kind, state, event)
