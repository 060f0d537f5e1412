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
        if self.pin is not None:
            check_pin(self.pin)
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


def check_pin(pin: str) -> None:
    """Refuse what no pad keypad would send as a PIN: ISO 9564 format 0 holds 4 to 12 digits.

    Raises:
        ValueError: ``pin`` is not 4 to 12 decimal digits.
    """
    if not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError("a PIN is 4 to 12 digits")


#: The code a scripted customer shows when none is given: the book's qrcodeSale example.
DEFAULT_CODE = "280123121234567890"


class CodeAction(StrEnum):
    """What the customer does at a READ_CODE prompt."""

    GIVE = "give"  # shows the code to the scanner (or keys it in)
    CANCEL = "cancel"  # presses Cancel (RESULT 01)
    NONE = "none"  # walks away (RESULT 02 after the timeout)


class CodeSourceName(StrEnum):
    """How the scripted customer gives the code; the pad keys it in when it cannot scan."""

    QR = "qr"
    BARCODE = "barcode"
    KEYPAD = "keypad"


class ChoiceAction(StrEnum):
    """What the customer does at a CHOOSE prompt."""

    CHOOSE = "choose"  # presses the key of ``option``
    CANCEL = "cancel"  # presses Cancel (RESULT 01)
    NONE = "none"  # walks away (RESULT 02 after the timeout)


@dataclass(frozen=True)
class ScriptedCode:
    """One customer at a READ_CODE prompt.

    Raises:
        ValueError: unknown action or source, a code that is not 1..512 printable ASCII
            characters, or a bad hesitation.
    """

    code: str = DEFAULT_CODE
    source: str = CodeSourceName.QR
    action: str = CodeAction.GIVE
    hesitate_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _member(CodeAction, self.action, "action"))
        object.__setattr__(self, "source", _member(CodeSourceName, self.source, "source"))
        if not (1 <= len(self.code) <= 512 and all(" " <= c <= "~" for c in self.code)):
            raise ValueError("a code is 1 to 512 printable ASCII characters")
        _check_hesitation(self.hesitate_s)


@dataclass(frozen=True)
class ScriptedChoice:
    """One customer at a CHOOSE prompt: presses the key of ``option`` (1..9).

    A key beyond the options shown is ignored by the pad, as on a real keypad: the customer
    then times out.

    Raises:
        ValueError: unknown action, an option outside 1..9, or a bad hesitation.
    """

    option: int = 1
    action: str = ChoiceAction.CHOOSE
    hesitate_s: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "action", _member(ChoiceAction, self.action, "action"))
        if isinstance(self.option, bool) or not isinstance(self.option, int) or not 1 <= self.option <= 9:
            raise ValueError("option is the key pressed, 1 to 9")
        _check_hesitation(self.hesitate_s)


def _member(kind: type[StrEnum], value: str, name: str) -> StrEnum:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"unknown {name} {value!r} (known: {', '.join(m.value for m in kind)})") from None


def _check_hesitation(hesitate_s: float) -> None:
    if not 0.0 <= hesitate_s <= MAX_HESITATE_S:
        raise ValueError(f"hesitate_s must be between 0 and {MAX_HESITATE_S:g} seconds")
