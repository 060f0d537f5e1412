"""The transaction state machine: every state and every transition of a payment lives here.

Rules (after h11's ``_state.py``):

1. **Everything that affects transaction states lives in this file.**  The states are
   :class:`TxnState` (whose values are exactly what the journal stores) and the transitions
   are the events declared on :class:`TransactionMachine`.  No other module invents a state
   or moves a transaction between states except by sending one of these events.
2. **No I/O.**  The machine is synchronous and side-effect free: it has no callbacks that
   talk to the PIN pad, the backend or the journal.  The service calls :meth:`fire`, then
   does the I/O itself and records the transition in the journal.  Guards, if any are
   added, must not have side effects.
3. **Illegal events raise.**  An event the current state does not accept, an unknown event
   name, or any event in a final state raises :class:`~misbridge.errors.InvalidTransition`;
   nothing is silently ignored (``allow_event_without_transition = False``) and errors in
   callbacks propagate (``catch_errors_as_events = False``).
4. **Restoring does not replay.**  A machine built from a journal row
   (:meth:`TransactionMachine.restore`) starts in that state without running entry
   actions; crash recovery is explicit code in the service, not replayed side effects.
5. **The diagram is generated.**  :func:`mermaid_diagram` renders the class with the
   library's Mermaid formatter; ``docs/state-machine.md`` embeds it and a unit test fails
   when it is stale.  Regenerate with ``python -m misbridge.core.machine --write-docs``.

The derived tables :data:`TRANSITIONS`, :data:`EVENTS` and :data:`FINAL_STATES` are read
from the class, so they cannot drift from it.  :func:`next_state` answers "where does this
event take this state" from that table: building a :class:`TransactionMachine` costs about
0.6 ms of CPU (the library registers every callback per instance), paid six times per sale,
while the table answers in microseconds.  It is exact because no transition has a guard;
import fails if one is ever added (see :func:`_assert_unguarded`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Final, NamedTuple

from statemachine import Event, State, StateChart
from statemachine.exceptions import TransitionNotAllowed
from statemachine.transition_list import TransitionList

from misbridge.errors import InvalidTransition

__all__ = [
    "EVENTS",
    "FINAL_STATES",
    "MONEY_AT_RISK_STATES",
    "PRE_SUBMIT_STATES",
    "TRANSITIONS",
    "MachineModel",
    "TransactionMachine",
    "TransitionSpec",
    "TxnState",
    "mermaid_diagram",
    "next_state",
    "replace_generated_block",
]


class TxnState(StrEnum):
    """Every state a transaction can be in; the value is the text stored in the journal."""

    RECEIVED = "received"
    READING_CARD = "reading_card"
    READING_PIN = "reading_pin"
    SUBMITTING = "submitting"
    APPROVED = "approved"
    DECLINED = "declined"
    ABORTED = "aborted"
    UNKNOWN = "unknown"
    INQUIRING = "inquiring"
    VOIDING = "voiding"
    VOIDED = "voided"
    NEEDS_MANUAL = "needs_manual"


@dataclass
class MachineModel:
    """The object the machine writes its state value to (``state`` is the journal value).

    ``state=None`` means "new transaction": the machine enters its initial state.
    """

    state: str | None = None


_STATE_VALUES: Final = frozenset(member.value for member in TxnState)


def _event(transitions: TransitionList, name: str) -> Event:
    # Naming the event explicitly keeps its id (not a humanised "Start card") in the diagram.
    return Event(transitions, name=name)


class TransactionMachine(StateChart[MachineModel]):
    """One payment transaction, from the POS request to a final state.

    Build a new one with ``TransactionMachine()`` (starts in ``received``) or restore one
    from the journal with :meth:`restore`.  Move it only with :meth:`fire`.

    Args:
        model: receives the state value on every transition; a fresh
            :class:`MachineModel` when omitted.  A model whose ``state`` is set restores
            that state without running entry actions.

    Raises:
        InvalidTransition: ``model.state`` is not a :class:`TxnState` value.
    """

    allow_event_without_transition = False
    catch_errors_as_events = False

    # States: the id, the value and TxnState must agree (a unit test checks it).
    received = State(initial=True, value=TxnState.RECEIVED.value)
    reading_card = State(value=TxnState.READING_CARD.value)
    reading_pin = State(value=TxnState.READING_PIN.value)
    submitting = State(value=TxnState.SUBMITTING.value)
    unknown = State(value=TxnState.UNKNOWN.value)
    inquiring = State(value=TxnState.INQUIRING.value)
    voiding = State(value=TxnState.VOIDING.value)
    needs_manual = State(value=TxnState.NEEDS_MANUAL.value)
    approved = State(final=True, value=TxnState.APPROVED.value)
    declined = State(final=True, value=TxnState.DECLINED.value)
    aborted = State(final=True, value=TxnState.ABORTED.value)
    voided = State(final=True, value=TxnState.VOIDED.value)

    # Happy path up to the backend call.
    start_card = _event(received.to(reading_card), "start_card")
    card_read = _event(reading_card.to(reading_pin), "card_read")
    pin_entered = _event(reading_pin.to(submitting), "pin_entered")
    # Invalid request, device error, cancel, timeout, card/PIN failure: nothing was sent.
    abort = _event(received.to(aborted) | reading_card.to(aborted) | reading_pin.to(aborted), "abort")

    # The backend call.
    approve = _event(submitting.to(approved), "approve")
    decline = _event(submitting.to(declined), "decline")
    not_sent = _event(submitting.to(aborted), "not_sent")  # provably never reached the backend
    outcome_unknown = _event(submitting.to(unknown), "outcome_unknown")

    # Resolving an unknown outcome: inquire, never re-submit.
    inquire = _event(unknown.to(inquiring), "inquire")
    inquiry_approved = _event(inquiring.to(approved), "inquiry_approved")
    inquiry_declined = _event(inquiring.to(declined), "inquiry_declined")  # failed or not found
    inquiry_unknown = _event(inquiring.to(unknown), "inquiry_unknown")
    void_unclaimed = _event(inquiring.to(voiding), "void_unclaimed")  # approved, POS told it failed
    give_up = _event(unknown.to(voiding), "give_up")  # still unknown at the inquiry bound

    # The durable void, and the operator's last word.  ``voided`` (void acked, or the original
    # "not found"/"already voided") shares its name with its target state, which a class
    # attribute cannot, so that event is declared on the transition itself.
    voiding.to(voided, event=Event(id="voided", name="voided"))
    escalate = _event(voiding.to(needs_manual), "escalate")  # 24 h without success
    resolve_voided = _event(needs_manual.to(voided), "resolve_voided")
    resolve_approved = _event(needs_manual.to(approved), "resolve_approved")

    def __init__(self, model: MachineModel | None = None) -> None:
        if model is not None and model.state is not None and model.state not in _STATE_VALUES:
            raise InvalidTransition(f"{model.state!r} is not a transaction state")
        super().__init__(model=MachineModel() if model is None else model)

    @classmethod
    def restore(cls, state: str) -> TransactionMachine:
        """Rebuild a machine in ``state`` (a journal value) without running entry actions.

        Raises:
            InvalidTransition: ``state`` is not a state of this machine.
        """
        return cls(model=MachineModel(state=state))

    @property
    def state(self) -> TxnState:
        """The current state."""
        return TxnState(self.current_state_value)

    def fire(self, event: str, **kwargs: Any) -> TxnState:
        """Send ``event`` and return the new state.

        Keyword arguments are passed to the event (for guards, should any be added).

        Raises:
            InvalidTransition: ``event`` is not an event of this machine, or the current
                state does not accept it (final states accept nothing).
        """
        source = self.state
        if event not in EVENTS:
            raise InvalidTransition(f"unknown event {event!r} (state {source.value!r})")
        try:
            # Explicit delay/send_id/internal: the event runs now, on the caller's stack, and
            # passing one of those names in kwargs is a TypeError instead of a silent delay.
            self.send(event, delay=0, send_id=None, internal=False, **kwargs)
        except TransitionNotAllowed as err:
            raise InvalidTransition(f"event {event!r} is not allowed in state {source.value!r}") from err
        return self.state


class TransitionSpec(NamedTuple):
    """One declared transition: ``source --event--> target``."""

    source: TxnState
    event: str
    target: TxnState


def _declared_transitions() -> list[TransitionSpec]:
    return [
        TransitionSpec(TxnState(transition.source.value), str(event), TxnState(transition.target.value))
        for state in TransactionMachine.states
        for transition in state.transitions
        for event in transition.events
    ]


TRANSITIONS: Final[list[TransitionSpec]] = _declared_transitions()
"""Every ``(source, event, target)`` declared on :class:`TransactionMachine`, in declaration order."""

EVENTS: Final[frozenset[str]] = frozenset(spec.event for spec in TRANSITIONS)
"""Every event name :meth:`TransactionMachine.fire` accepts in some state."""

FINAL_STATES: Final[frozenset[TxnState]] = frozenset(
    TxnState(state.value) for state in TransactionMachine.states if state.final
)
"""States nothing leaves: approved, declined, aborted, voided (the journal's trigger enforces it)."""

_MOVES: Final[dict[tuple[str, str], TxnState]] = {(spec.source.value, spec.event): spec.target for spec in TRANSITIONS}


def _assert_unguarded() -> None:
    # The table in next_state() ignores guards; a guarded transition would make it wrong, so
    # adding one must also change next_state() (e.g. back to restore(state).fire(event)).
    for state in TransactionMachine.states:
        for transition in state.transitions:
            if list(transition.cond) or list(transition.validators):
                raise TypeError(f"transition {state.id} -> {transition.target.id} has a guard; next_state() cannot")


_assert_unguarded()


def next_state(state: str, event: str) -> TxnState:
    """The state ``event`` moves a transaction in ``state`` to; the same answer (and the same
    errors) as ``TransactionMachine.restore(state).fire(event)``, without building a machine.

    Raises:
        InvalidTransition: ``state`` is not a transaction state, ``event`` is not an event,
            or ``state`` does not accept ``event`` (final states accept nothing).
    """
    state = str(state)  # a TxnState reads as its journal value in the messages
    if state not in _STATE_VALUES:
        raise InvalidTransition(f"{state!r} is not a transaction state")
    if event not in EVENTS:
        raise InvalidTransition(f"unknown event {event!r} (state {state!r})")
    target = _MOVES.get((state, event))
    if target is None:
        raise InvalidTransition(f"event {event!r} is not allowed in state {state!r}")
    return target


PRE_SUBMIT_STATES: Final[frozenset[TxnState]] = frozenset(
    {TxnState.RECEIVED, TxnState.READING_CARD, TxnState.READING_PIN}
)
"""Nothing has been sent to the backend yet: aborting moves no money."""

MONEY_AT_RISK_STATES: Final[frozenset[TxnState]] = frozenset(
    {TxnState.SUBMITTING, TxnState.UNKNOWN, TxnState.INQUIRING, TxnState.VOIDING, TxnState.NEEDS_MANUAL}
)
"""The backend may hold money for this transaction: recovery must finish these."""


# --- Generated documentation --------------------------------------------------------------

BEGIN_MARKER: Final = "<!-- BEGIN GENERATED: python -m misbridge.core.machine --write-docs -->"
END_MARKER: Final = "<!-- END GENERATED -->"
DOCS_PATH: Final = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"


def mermaid_diagram() -> str:
    """Mermaid ``stateDiagram-v2`` source for :class:`TransactionMachine`, generated from the class."""
    # Imported here: only the docs generator and its test need it, and it adds tens of
    # milliseconds to the daemon's start-up.
    from statemachine.contrib.diagram import formatter

    return formatter.render(TransactionMachine, "mermaid").strip() + "\n"


def generated_block() -> str:
    """The Markdown block (markers and fenced Mermaid) that ``docs/state-machine.md`` embeds."""
    return f"{BEGIN_MARKER}\n```mermaid\n{mermaid_diagram()}```\n{END_MARKER}"


def replace_generated_block(document: str) -> str:
    """Return ``document`` with the text between the markers (inclusive) replaced by :func:`generated_block`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start = document.find(BEGIN_MARKER)
    end = document.find(END_MARKER)
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN_MARKER!r} ... {END_MARKER!r} not found")
    return document[:start] + generated_block() + document[end + len(END_MARKER) :]


def _main(argv: list[str]) -> int:
    # Developer command; the only I/O in this module, never run on import.
    if argv == ["--write-docs"]:
        DOCS_PATH.write_text(replace_generated_block(DOCS_PATH.read_text(encoding="utf-8")), encoding="utf-8")
        sys.stdout.write(f"updated {DOCS_PATH}\n")
        return 0
    if not argv:
        sys.stdout.write(mermaid_diagram())
        return 0
    sys.stderr.write("usage: python -m misbridge.core.machine [--write-docs]\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))  # pragma: no cover
