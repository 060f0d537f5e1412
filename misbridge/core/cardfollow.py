"""What the pad shows for a card transaction, and the same-card rule of ``voidCardSale`` and ``refundCardSale``.

A card void or refund "firstly invoke[s] MIS-POS for Card swape and password input" (book §10.5,
§10.7): the customer confirms it with card and PIN like a sale, and the pad says what is
confirmed (:class:`PadScreen`): void or refund, the original's traceNo, and the amount (a void:
the original's ``totalAmount`` as the journal holds it, 0 when the journal does not hold the
original; a refund: ``refundAmount``).

The same card: misbridge never sees a clear PAN. It has the original's masked PAN (first 6 and
last 4 digits, as the journal keeps it) and the pad's encrypted PAN of the card read now. A card
whose masked PAN differs from the original's is another card: the void or refund ends MB39
before the PIN is asked for and nothing is sent. The same masked PAN is not proof (other cards
share first 6 and last 4): the exact comparison is the backend's, which decrypts the PAN
(answering ``57`` for another card). ``cardType`` is how the card was read (stripe, IC, NFC,
book §8.5), not which card, so a sale paid by chip may be voided by swipe: it is not compared.
Nothing is stored that would let a clear PAN be recovered: only the masked PAN the sale's own
``card_read`` step journals, the encrypted fields going to the backend alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Final, Protocol

from misbridge.core.followups import CARD_FOLLOW_UPS
from misbridge.device.base import CardRead, TransKind
from misbridge.ebuy.requests import amount_minor_units
from misbridge.errors import MisbridgeError, ReturnCode

__all__ = ["CARD_FOLLOW_UPS", "PadScreen", "check_same_card", "follow_up_screen"]

_KINDS: Final = {"voidCardSale": TransKind.VOID, "refundCardSale": TransKind.REFUND}
_WORDS: Final = {TransKind.VOID: "Void", TransKind.REFUND: "Refund"}


class Original(Protocol):
    """What the screen reads of the original sale in the journal (a ``TransactionRecord`` fits)."""

    @property
    def request(self) -> dict[str, Any]: ...

    @property
    def masked_pan(self) -> str | None: ...


@dataclass(frozen=True)
class PadScreen:
    """What the pad shows while it reads the card and the PIN, and the card the original was paid with.

    Attributes:
        kind: sale, void or refund (the pad's TRANS_TYPE).
        amount_minor: the amount shown, in fen (0: not known).
        prompt: the words, for a pad that shows no TRANS_TYPE.
        reference: the original's traceNo (empty for a sale).
        original_pan: the original's masked PAN, or None when there is nothing to compare with.
    """

    kind: TransKind
    amount_minor: int
    prompt: str
    reference: str = ""
    original_pan: str | None = None

    @classmethod
    def sale(cls, total: Decimal) -> PadScreen:
        """A sale of ``total``."""
        return cls(TransKind.SALE, amount_minor_units(total), f"Amount {total}")


def follow_up_screen(action: str, body: Mapping[str, Any], original: Original | None) -> PadScreen:
    """The screen of a card void or refund (``action``) of ``original`` (None: not in the journal)."""
    kind = _KINDS[action]
    if kind is TransKind.REFUND:
        amount: Decimal | None = _amount(body["refundAmount"])
    else:
        amount = None if original is None else _amount(original.request["totalAmount"])
    prompt = _WORDS[kind] if amount is None else f"{_WORDS[kind]} {amount}"
    return PadScreen(
        kind=kind,
        amount_minor=0 if amount is None else amount_minor_units(amount),
        prompt=prompt,
        reference=str(body["originalTraceNo"]),
        original_pan=None if original is None else original.masked_pan,
    )


def check_same_card(screen: PadScreen, card: CardRead) -> None:
    """Refuse a card whose masked PAN is not the original's (MB39); nothing to compare: the backend decides.

    Raises:
        MisbridgeError: MB39; the customer is not asked for the PIN and nothing is sent.
    """
    if screen.original_pan is None or card.masked_pan == screen.original_pan:
        return
    raise MisbridgeError(
        f"{ReturnCode.CARD_NOT_ORIGINAL.meaning}: card {card.masked_pan}, {screen.reference} was paid with "
        f"{screen.original_pan}",
        return_code=ReturnCode.CARD_NOT_ORIGINAL,
    )


def _amount(value: object) -> Decimal:
    """An amount as the journal or the request holds it (a JSON number), exactly."""
    return Decimal(str(value))
