"""Scripted customers: which card they present, which PIN they type, what they do wrong."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from simulators.cards import CARDS, DEFAULT_CARD, TestCard

#: The longest a scripted customer may hesitate before presenting the card.
MAX_HESITATE_S = 600.0


class Action(StrEnum):
    """What the customer does at the pad."""

    PAY = "pay"  # presents the card, types the PIN
    CANCEL_CARD = "cancel-card"  # presses Cancel instead of presenting a card (RESULT 01)
    CANCEL_PIN = "cancel-pin"  # presents the card, presses Cancel at the PIN prompt (RESULT 01)
    NO_CARD = "no-card"  # walks away at the card prompt (RESULT 02 after the timeout)
    NO_PIN = "no-pin"  # presents the card, never types the PIN (RESULT 02)
    CARD_ERROR = "card-error"  # a card the reader cannot read (RESULT 03)
    REMOVE_CARD = "remove-card"  # pulls the card out at the PIN prompt (RESULT 04)


@dataclass(frozen=True)
class Customer:
    """One customer at the pad.

    Args:
        card: a name from :data:`simulators.cards.CARDS`.
        pin: the PIN typed; None types the card's correct PIN.
        action: one of :class:`Action` (its string value is accepted).
        hesitate_s: extra seconds this customer takes before presenting the card (holds the pad
            busy for a known time, e.g. to test that a second sale is refused meanwhile).

    Raises:
        ValueError: unknown card or action, a PIN that is not 4..12 digits, or a negative or
            over-long hesitation.
    """

    card: str = DEFAULT_CARD
    pin: str | None = None
    action: str = Action.PAY
    hesitate_s: float = 0.0

    def __post_init__(self) -> None:
        if self.card not in CARDS:
            raise ValueError(f"unknown card {self.card!r} (known: {', '.join(CARDS)})")
        if self.action not in {a.value for a in Action}:
            raise ValueError(f"unknown action {self.action!r} (known: {', '.join(a.value for a in Action)})")
        if self.pin is not None and not (self.pin.isdigit() and 4 <= len(self.pin) <= 12):
            raise ValueError("a PIN is 4 to 12 digits")
        if not 0.0 <= self.hesitate_s <= MAX_HESITATE_S:
            raise ValueError(f"hesitate_s must be between 0 and {MAX_HESITATE_S:g} seconds")
        object.__setattr__(self, "action", Action(self.action))

    @property
    def test_card(self) -> TestCard:
        """The card this customer presents."""
        return CARDS[self.card]

    @property
    def typed_pin(self) -> str:
        """The PIN this customer types."""
        return self.pin if self.pin is not None else self.test_card.pin
