"""The scripted test cards behave like real ones: Luhn-valid PANs, masks of first 6 / last 4."""

from __future__ import annotations

import pytest

from misbridge.ebuy.pan import luhn_valid, mask_card_numbers
from simulators.cards import CARDS, DEFAULT_CARD, Usage


@pytest.mark.parametrize("name", sorted(CARDS))
def test_card_is_luhn_valid_and_masks_to_first6_last4(name: str) -> None:
    card = CARDS[name]
    assert luhn_valid(card.pan)
    assert card.masked_pan == card.pan[:6] + "*" * (len(card.pan) - 10) + card.pan[-4:]
    assert mask_card_numbers(f"track {card.track2}") != f"track {card.track2}"


def test_every_usage_of_the_book_has_a_card() -> None:
    assert {card.usage for card in CARDS.values()} - {None} == set(Usage)
    assert DEFAULT_CARD in CARDS
