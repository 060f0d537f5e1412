"""Card numbers (PANs): the Luhn check and the only masked form misbridge ever shows.

PCI DSS 3.4.1: a displayed PAN shows at most the first 6 and the last 4 digits.

The definitions live in :mod:`misbridge.ebuy.carddata` (the e-Buy layer and the journal may
not import this module); this is their name for the rest of misbridge, the log scrubber
above all. A card number is a Luhn-valid run of 13-19 digits, contiguous or in groups joined
by single spaces or dashes (``4111 1111 1111 1111``), that is not a ``yyyyMMddHHmmss`` date.
"""

from __future__ import annotations

from misbridge.ebuy.carddata import CARD_DATA_FIELDS, luhn_valid, mask_card_numbers, mask_pan, may_hold_card_number

__all__ = ["CARD_DATA_FIELDS", "luhn_valid", "mask_card_numbers", "mask_pan", "may_hold_card_number"]
