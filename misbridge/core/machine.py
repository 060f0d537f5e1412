"""The transaction state machines: every state and every transition of every kind lives here.

Rules (after h11's ``_state.py``):

1. **Everything that affects transaction states lives in this file.**  The states are
   :class:`TxnState` (whose values are exactly what the journal stores); each
   :class:`TransactionKind` has its own machine class declaring which of them it uses and the
   events that move between them.  No other module invents a state.  The journal moves a row
   only to ``next_state(kind, state, event)`` and refuses any event the kind's table does not
   allow, so the table is the one author of state changes; the service and the resolver choose
   the *event*, never the target.
2. **No I/O.**  The machines are synchronous and side-effect free: no callbacks talk to the
   PIN pad, the backend or the journal.  Guards, if any are added, must not have side effects.
3. **Illegal events raise.**  An event the current state does not accept, an unknown event
   name, or any event in a final state raises :class:`~misbridge.errors.InvalidTransition`;
   nothing is silently ignored (``allow_event_without_transition = False``) and errors in
   callbacks propagate (``catch_errors_as_events = False``).
4. **Restoring does not replay.**  A machine built from a journal row (``restore``) starts in
   that state without running entry actions; crash recovery is explicit code in
   :mod:`misbridge.core.recovery`, not replayed side effects.
5. **The diagrams are generated** from these classes by :mod:`misbridge.core.diagrams`
   (``python -m misbridge.core.diagrams --write-docs``); a unit test fails when one is stale.

The derived tables (``TABLES``) and ``next_state`` live in :mod:`misbridge.core.kinds`: they
are read from these classes, so they cannot drift from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from statemachine import Event, State, StateChart
from statemachine.exceptions import TransitionNotAllowed
from statemachine.transition_list import TransitionList

from misbridge.errors import InvalidTransition

__all__ = [
    "KIND_OF_ACTION",
    "MACHINES",
    "KindMachine",
    "MachineModel",
    "QueryMachine",
    "RefundMachine",
    "SaleMachine",
    "TransactionKind",
    "TxnState",
    "UploadMachine",
    "VoidMachine",
    "kind_of",
]


class TxnState(StrEnum):
    """Every state of every kind; the value is the text stored in the journal."""

    RECEIVED = "received"
    READING_CARD = "reading_card"
    READING_CODE = "reading_code"
    CHOOSING = "choosing"
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
    SENT = "sent"
    ANSWERED = "answered"


class TransactionKind(StrEnum):
    """What a transaction does to money; each kind has its own machine below."""

    SALE = "sale"  # moves value to the store: voided by misbridge when its outcome stays unknown
    VOID = "void"  # cancels a sale: never itself reversed; an unknown outcome goes to a person
    REFUND = "refund"  # gives (part of) a sale back: like a void, never reversed automatically
    QUERY = "query"  # moves nothing: an answer or none
    UPLOAD = "upload"  # the day's records for reconciliation: moves nothing, an answer or none


#: The book's actions (ebuy-protocol-reference.md §10-§11) and their kinds.  ``accumulating``
#: (points) posts value like a sale, so it is one.
KIND_OF_ACTION: Final[dict[str, TransactionKind]] = {
    "cardRedemption": TransactionKind.SALE,
    "cardPayment": TransactionKind.SALE,
    "qrcodeSale": TransactionKind.SALE,
    "accumulating": TransactionKind.SALE,
    "voidCardSale": TransactionKind.VOID,
    "voidQrcodeSale": TransactionKind.VOID,
    "refundCardSale": TransactionKind.REFUND,
    "refundQrcodeSale": TransactionKind.REFUND,
    "inquiry": TransactionKind.QUERY,
    "ecouponInquiry": TransactionKind.QUERY,
    "summary": TransactionKind.QUERY,
    "batchUpload": TransactionKind.UPLOAD,
}


def kind_of(action: str) -> TransactionKind:
    """The kind of the book's ``action``.

    Raises:
        InvalidTransition: ``action`` is not an action of the book.
    """
    try:
        return KIND_OF_ACTION[action]
    except KeyError:
        raise InvalidTransition(f"{action!r} is not an action with a state machine") from None


@dataclass
class MachineModel:
    """The object a machine writes its state value to (``state`` is the journal value).

    ``state=None`` means "new transaction": the machine enters its initial state.
    """

    state: str | None = None


def _event(transitions: TransitionList, name: str) -> Event:
    # Naming the event explicitly keeps its id (not a humanised "Start card") in the diagram.
    return Event(transitions, name=name)


def _state(state: TxnState, *, initial: bool = False, final: bool = False) -> State:
    return State(initial=initial, final=final, value=state.value)


class KindMachine(StateChart[MachineModel]):
    """The behaviour every kind's machine shares; the subclasses declare states and events.

    Build one with ``SaleMachine()`` or :meth:`restore` it from the journal; move it with :meth:`fire`.

    Args:
        model: receives the state value on every transition; a fresh :class:`MachineModel`
            when omitted.  A model whose ``state`` is set restores that state without running
            entry actions.

    Raises:
        InvalidTransition: ``model.state`` is not a state of this machine.
    """

    allow_event_without_transition = False
    catch_errors_as_events = False

    def __init__(self, model: MachineModel | None = None) -> None:
        values = {state.value for state in type(self).states}
        if model is not None and model.state is not None and model.state not in values:
            raise InvalidTransition(f"{str(model.state)!r} is not a state of a {type(self).__name__}")
        super().__init__(model=MachineModel() if model is None else model)

    @classmethod
    def restore(cls, state: str) -> KindMachine:
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
        if event not in {str(e) for e in self.events}:
            raise InvalidTransition(f"unknown event {event!r} (state {source.value!r})")
        try:
            # Explicit delay/send_id/internal: the event runs now, on the caller's stack, and
            # passing one of those names in kwargs is a TypeError instead of a silent delay.
            self.send(event, delay=0, send_id=None, internal=False, **kwargs)
        except TransitionNotAllowed as err:
            raise InvalidTransition(f"event {event!r} is not allowed in state {source.value!r}") from err
        return self.state


class SaleMachine(KindMachine):
    """A sale (cardRedemption, cardPayment, qrcodeSale, accumulating): card, PIN, submit, resolve.

    A ``qrcodeSale`` reads its code on the pad (``start_code``, ``code_read``) or has it in the
    POS body (``submit``); a first round answered with options (which moved nothing) waits for a
    choice (``offer_options``), then the second round goes out (``option_chosen``).
    ``accumulating`` has no pad step (``submit``) and no void in the book: still unknown at the
    inquiry bound it goes to a person (``escalate`` from ``unknown``), who resolves it approved
    or declined.
    """

    received = _state(TxnState.RECEIVED, initial=True)
    reading_card = _state(TxnState.READING_CARD)
    reading_code = _state(TxnState.READING_CODE)
    choosing = _state(TxnState.CHOOSING)
    reading_pin = _state(TxnState.READING_PIN)
    submitting = _state(TxnState.SUBMITTING)
    unknown = _state(TxnState.UNKNOWN)
    inquiring = _state(TxnState.INQUIRING)
    voiding = _state(TxnState.VOIDING)
    needs_manual = _state(TxnState.NEEDS_MANUAL)
    approved = _state(TxnState.APPROVED, final=True)
    declined = _state(TxnState.DECLINED, final=True)
    aborted = _state(TxnState.ABORTED, final=True)
    voided = _state(TxnState.VOIDED, final=True)

    # Happy path up to the backend call.
    start_card = _event(received.to(reading_card), "start_card")
    card_read = _event(reading_card.to(reading_pin), "card_read")
    pin_entered = _event(reading_pin.to(submitting), "pin_entered")
    start_code = _event(received.to(reading_code), "start_code")  # qrcodeSale without a qrcode in the body
    code_read = _event(reading_code.to(submitting), "code_read")
    submit = _event(received.to(submitting), "submit")  # nothing to read on the pad (a code in the body, points)
    # Invalid request, device error, cancel, timeout, card/PIN/code failure: nothing was sent.
    abort = _event(
        received.to(aborted) | reading_card.to(aborted) | reading_pin.to(aborted) | reading_code.to(aborted)
        | choosing.to(aborted),
        "abort",
    )  # fmt: skip

    # The backend call.
    approve = _event(submitting.to(approved), "approve")
    decline = _event(submitting.to(declined), "decline")
    not_sent = _event(submitting.to(aborted), "not_sent")  # provably never reached the backend
    outcome_unknown = _event(submitting.to(unknown), "outcome_unknown")
    # qrcodeSale options: the first round answered a choose code; the second round leaves.
    offer_options = _event(submitting.to(choosing), "offer_options")
    option_chosen = _event(choosing.to(submitting), "option_chosen")

    # Resolving an unknown outcome: inquire, never re-submit.
    inquire = _event(unknown.to(inquiring), "inquire")
    inquiry_approved = _event(inquiring.to(approved), "inquiry_approved")
    inquiry_declined = _event(inquiring.to(declined), "inquiry_declined")  # failed or not found
    inquiry_unknown = _event(inquiring.to(unknown), "inquiry_unknown")
    void_unclaimed = _event(inquiring.to(voiding), "void_unclaimed")  # approved, POS told it failed
    give_up = _event(unknown.to(voiding), "give_up")  # still unknown at the inquiry bound

    # The durable void, and the operator's last word (``misbridge journal resolve``).
    # ``voided`` (void acked, or the original "not found"/"already voided") shares its name
    # with its target state, which a class attribute cannot, so it is declared on the transition.
    voiding.to(voided, event=Event(id="voided", name="voided"))
    # 24 h without a void; or an action the book cannot void still unknown at the inquiry bound.
    escalate = _event(voiding.to(needs_manual) | unknown.to(needs_manual), "escalate")
    resolve_voided = _event(needs_manual.to(voided), "resolve_voided")
    resolve_approved = _event(needs_manual.to(approved), "resolve_approved")
    resolve_declined = _event(needs_manual.to(declined), "resolve_declined")  # it never moved anything


class VoidMachine(KindMachine):
    """A void of a sale (voidCardSale, voidQrcodeSale): a card void prompts on the pad, a QR void
    is submitted at once.  Never itself reversed: an outcome still unknown at the inquiry bound is
    sent again by the durable reversal queue (``give_up`` to ``voiding``) until the backend
    confirms it (``void_confirmed``), or goes to a person (``escalate``)."""

    received = _state(TxnState.RECEIVED, initial=True)
    reading_card = _state(TxnState.READING_CARD)
    reading_pin = _state(TxnState.READING_PIN)
    submitting = _state(TxnState.SUBMITTING)
    unknown = _state(TxnState.UNKNOWN)
    inquiring = _state(TxnState.INQUIRING)
    voiding = _state(TxnState.VOIDING)
    needs_manual = _state(TxnState.NEEDS_MANUAL)
    approved = _state(TxnState.APPROVED, final=True)
    declined = _state(TxnState.DECLINED, final=True)
    aborted = _state(TxnState.ABORTED, final=True)

    start_card = _event(received.to(reading_card), "start_card")
    card_read = _event(reading_card.to(reading_pin), "card_read")
    pin_entered = _event(reading_pin.to(submitting), "pin_entered")
    submit = _event(received.to(submitting), "submit")  # nothing to read on the pad
    abort = _event(received.to(aborted) | reading_card.to(aborted) | reading_pin.to(aborted), "abort")
    approve = _event(submitting.to(approved), "approve")
    decline = _event(submitting.to(declined), "decline")
    not_sent = _event(submitting.to(aborted), "not_sent")
    outcome_unknown = _event(submitting.to(unknown), "outcome_unknown")
    inquire = _event(unknown.to(inquiring), "inquire")
    inquiry_approved = _event(inquiring.to(approved), "inquiry_approved")
    inquiry_declined = _event(inquiring.to(declined), "inquiry_declined")
    inquiry_unknown = _event(inquiring.to(unknown), "inquiry_unknown")
    give_up = _event(unknown.to(voiding), "give_up")  # still unknown at the bound: sent again, queued
    void_confirmed = _event(voiding.to(approved), "void_confirmed")  # a resend answered done
    escalate = _event(voiding.to(needs_manual) | unknown.to(needs_manual), "escalate")  # refused, or expired
    resolve_approved = _event(needs_manual.to(approved), "resolve_approved")
    resolve_declined = _event(needs_manual.to(declined), "resolve_declined")


class RefundMachine(KindMachine):
    """A refund of (part of) a sale (refundCardSale, refundQrcodeSale); resolved like a void."""

    received = _state(TxnState.RECEIVED, initial=True)
    reading_card = _state(TxnState.READING_CARD)
    reading_pin = _state(TxnState.READING_PIN)
    submitting = _state(TxnState.SUBMITTING)
    unknown = _state(TxnState.UNKNOWN)
    inquiring = _state(TxnState.INQUIRING)
    needs_manual = _state(TxnState.NEEDS_MANUAL)
    approved = _state(TxnState.APPROVED, final=True)
    declined = _state(TxnState.DECLINED, final=True)
    aborted = _state(TxnState.ABORTED, final=True)

    start_card = _event(received.to(reading_card), "start_card")
    card_read = _event(reading_card.to(reading_pin), "card_read")
    pin_entered = _event(reading_pin.to(submitting), "pin_entered")
    submit = _event(received.to(submitting), "submit")
    abort = _event(received.to(aborted) | reading_card.to(aborted) | reading_pin.to(aborted), "abort")
    approve = _event(submitting.to(approved), "approve")
    decline = _event(submitting.to(declined), "decline")
    not_sent = _event(submitting.to(aborted), "not_sent")
    outcome_unknown = _event(submitting.to(unknown), "outcome_unknown")
    inquire = _event(unknown.to(inquiring), "inquire")
    inquiry_approved = _event(inquiring.to(approved), "inquiry_approved")
    inquiry_declined = _event(inquiring.to(declined), "inquiry_declined")
    inquiry_unknown = _event(inquiring.to(unknown), "inquiry_unknown")
    escalate = _event(unknown.to(needs_manual), "escalate")
    resolve_approved = _event(needs_manual.to(approved), "resolve_approved")
    resolve_declined = _event(needs_manual.to(declined), "resolve_declined")


class QueryMachine(KindMachine):
    """A question to the backend that moves nothing (inquiry, ecouponInquiry, summary).

    Committed as ``sent`` before it leaves; it ends answered, or unknown when no reply came
    (the POS may ask again under a new traceNo).  The journal's ``pos_inquiries`` (inquiry) and
    ``pos_queries`` (ecouponInquiry, summary) rows follow it.
    """

    sent = _state(TxnState.SENT, initial=True)
    answered = _state(TxnState.ANSWERED, final=True)
    unknown = _state(TxnState.UNKNOWN, final=True)

    answer = _event(sent.to(answered), "answer")
    no_answer = _event(sent.to(unknown), "no_answer")


class UploadMachine(KindMachine):
    """The day's records for reconciliation (batchUpload), journaled in ``pos_queries`` like a query:
    never resent under its traceNo (the backend refuses a repeat), the POS uploads again anew."""

    sent = _state(TxnState.SENT, initial=True)
    answered = _state(TxnState.ANSWERED, final=True)
    unknown = _state(TxnState.UNKNOWN, final=True)

    answer = _event(sent.to(answered), "answer")
    no_answer = _event(sent.to(unknown), "no_answer")


MACHINES: Final[dict[TransactionKind, type[KindMachine]]] = {
    TransactionKind.SALE: SaleMachine,
    TransactionKind.VOID: VoidMachine,
    TransactionKind.REFUND: RefundMachine,
    TransactionKind.QUERY: QueryMachine,
    TransactionKind.UPLOAD: UploadMachine,
}
