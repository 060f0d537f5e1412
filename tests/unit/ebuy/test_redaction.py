"""redaction.masked: what the journal's views and tools show of a stored value."""

from __future__ import annotations

from misbridge.ebuy.carddata import gtin_valid
from misbridge.ebuy.pan import luhn_valid
from misbridge.ebuy.redaction import REDACTED, masked

CARD = "4111111111111111"
BARCODE = "6900000000021"  # a valid EAN-13 that also passes the Luhn check


def test_the_barcode_is_both_a_gtin_and_luhn_valid() -> None:
    assert gtin_valid(BARCODE)
    assert luhn_valid(BARCODE)


def test_identifiers_and_barcodes_are_shown_as_stored_while_text_is_masked() -> None:
    value = {
        "traceNo": CARD,
        "orderNo": CARD,
        "memo": f"paid with {CARD}",
        "goodsDetail": [{"goodsId": BARCODE, "goodsName": BARCODE}],
        "track2": "anything",
    }
    shown = masked(value)
    assert shown["traceNo"] == CARD
    assert shown["orderNo"] == CARD
    assert CARD not in shown["memo"]
    assert shown["goodsDetail"][0]["goodsId"] == BARCODE
    assert shown["goodsDetail"][0]["goodsName"] != BARCODE  # a barcode only under goodsId
    assert shown["track2"] == REDACTED


def test_a_goods_id_that_is_not_a_gtin_is_masked() -> None:
    shown = masked({"goodsId": CARD})
    assert shown["goodsId"] != CARD
