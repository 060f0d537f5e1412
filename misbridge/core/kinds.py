"""The kinds' machines as data: :data:`TABLES` and :func:`next_state`, read from :mod:`misbridge.core.machine`.

Every state and transition is declared in :mod:`misbridge.core.machine` (rule 1 there); this
module only derives the tables from those classes, so they cannot drift from them, and answers
``next_state(kind, state, event)`` for the journal.  :func:`next_state` answers from the tables:
building a machine costs about 0.6 ms of CPU (the library registers every callback per
instance), paid at every step of a sale, while the table answers in microseconds.  It is exact
because no transition has a guard; import fails if one is ever added (see :func:`_assert_unguarded`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple

from misbridge.core.machine import MACHINES, KindMachine, TransactionKind, TxnState
from misbridge.errors import InvalidTransition

__all__ = [
    "JOURNALED_FINAL_STATES",
    "JOURNALED_STATES",
    "MONEY_AT_RISK_STATES",
    "PRE_SUBMIT_STATES",
    "TABLES",
    "KindTable",
    "TransitionSpec",
    "next_state",
]


class TransitionSpec(NamedTuple):
    """One declared transition: ``source --event--> target``."""

    source: TxnState
    event: str
    target: TxnState


@dataclass(frozen=True)
class KindTable:
    """One kind's machine as data: read from its class, so it cannot drift from it."""

    initial: TxnState
    transitions: tuple[TransitionSpec, ...]
    states: frozenset[TxnState]
    final_states: frozenset[TxnState]
    events: frozenset[str]

    @classmethod
    def of(cls, machine: type[KindMachine]) -> KindTable:
        """The table of ``machine``'s class, in declaration order."""
        transitions = tuple(
            TransitionSpec(TxnState(transition.source.value), str(event), TxnState(transition.target.value))
            for state in machine.states
            for transition in state.transitions
            for event in transition.events
        )
        return cls(
            initial=TxnState(machine.initial_state.value),
            transitions=transitions,
            states=frozenset(TxnState(state.value) for state in machine.states),
            final_states=frozenset(TxnState(state.value) for state in machine.states if state.final),
            events=frozenset(spec.event for spec in transitions),
        )


TABLES: Final[dict[TransactionKind, KindTable]] = {kind: KindTable.of(machine) for kind, machine in MACHINES.items()}
"""Every kind's states, events and ``(source, event, target)`` transitions."""

#: The kinds whose transactions the ``transactions`` table holds (queries and uploads have tables of their own).
_JOURNALED_KINDS: Final = (TransactionKind.SALE, TransactionKind.VOID, TransactionKind.REFUND)

JOURNALED_FINAL_STATES: Final[frozenset[TxnState]] = frozenset().union(
    *(TABLES[kind].final_states for kind in _JOURNALED_KINDS)
)
"""Final states of the kinds the ``transactions`` table holds: its trigger refuses leaving them."""

JOURNALED_STATES: Final[tuple[TxnState, ...]] = tuple(
    state for state in TxnState if any(state in TABLES[kind].states for kind in _JOURNALED_KINDS)
)
"""Every state a row of the ``transactions`` table can be in, in declaration order (``misbridge journal --state``)."""

_MOVES: Final[dict[tuple[TransactionKind, str, str], TxnState]] = {
    (kind, spec.source.value, spec.event): spec.target for kind, table in TABLES.items() for spec in table.transitions
}


def _assert_unguarded() -> None:
    # The table in next_state() ignores guards; a guarded transition would make it wrong, so
    # adding one must also change next_state() (e.g. back to restore(state).fire(event)).
    for machine in MACHINES.values():
        for state in machine.states:
            for transition in state.transitions:
                if list(transition.cond) or list(transition.validators):
                    raise TypeError(f"{machine.__name__}: {state.id} -> {transition.target.id} has a guard")


_assert_unguarded()


def next_state(kind: TransactionKind, state: str, event: str) -> TxnState:
    """The state ``event`` moves a ``kind`` transaction in ``state`` to; the same answer (and
    the same errors) as ``MACHINES[kind].restore(state).fire(event)``, without building one.

    Raises:
        InvalidTransition: ``state`` is not a state of the kind, ``event`` is not one of its
            events, or ``state`` does not accept ``event`` (final states accept nothing).
    """
    table = TABLES[kind]
    state = str(state)  # a TxnState reads as its journal value in the messages
    if state not in table.states:
        raise InvalidTransition(f"{state!r} is not a state of a {MACHINES[kind].__name__}")
    if event not in table.events:
        raise InvalidTransition(f"unknown event {event!r} (state {state!r})")
    target = _MOVES.get((kind, state, event))
    if target is None:
        raise InvalidTransition(f"event {event!r} is not allowed in state {state!r}")
    return target


PRE_SUBMIT_STATES: Final[frozenset[TxnState]] = frozenset(
    {TxnState.RECEIVED, TxnState.READING_CARD, TxnState.READING_PIN, TxnState.READING_CODE, TxnState.CHOOSING}
)
"""Nothing that moves money has been sent to the backend yet (``choosing``: a first round that
offered options, which moves nothing): aborting moves no money."""

MONEY_AT_RISK_STATES: Final[frozenset[TxnState]] = frozenset(
    {TxnState.SUBMITTING, TxnState.UNKNOWN, TxnState.INQUIRING, TxnState.VOIDING, TxnState.NEEDS_MANUAL}
)
"""The backend may hold money for this transaction: recovery must finish these."""
