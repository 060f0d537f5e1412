"""Card data refused at any depth and in any case; card numbers found in any text (issue 10, item 4)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misbridge.ebuy import carddata, jsonio
from misbridge.ebuy.examples import book_request, card_redemption_request
from misbridge.ebuy.pan import mask_card_numbers, may_hold_card_number
from misbridge.ebuy.requests import parse_request
from misbridge.errors import RequestError, ReturnCode

PAN = "4111111111111111"
SPACED_PAN = "4111 1111 1111 1111"
DASHED_PAN = "4111-1111-1111-1111"
AMEX_PAN = "3782 822463 10005"
EAN13_ALSO_LUHN = "6901234567892"  # a valid EAN-13 whose digits happen to pass Luhn too
LUHN_TRACE_NO = "2026050100000000"  # 16 digits, Luhn-valid: a traceNo a POS could really send
SECRET = "SECRET-VALUE-31337"

#: Every card-data field name of docs/pos-api.md, as a careless POS may spell it.
FIELD_SPELLINGS = [
    "cardNo", "CARDNO", "card_no", "card-no", "cardNumber", "pan", "PAN", "Pan", "cvv", "CVV2", "cvc", "cvn",
    "password", "Password", "PASSWORD", "pin", "PIN", "pinBlock", "pin_block", "PINBLOCK",
    "track1", "track2", "TRACK2", "track_2", "track3", "trackData", "icData", "IC_DATA", "cardInfo", "CardInfo",
    "cardSn", "expiry", "expiryDate", "validDate",
]  # fmt: skip


def _refusal(body: dict[str, Any], action: str = "cardRedemption") -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_request(action, body)
    return caught.value


def _places(name: str, value: Any) -> dict[str, dict[str, Any]]:
    """The same field at the top, in memberDetail, in the 2nd goods line and deeper in an extra."""
    places = {}
    body = card_redemption_request()
    body[name] = value
    places[name] = body
    body = card_redemption_request()
    body["memberDetail"][name] = value
    places[f"memberDetail.{name}"] = body
    body = card_redemption_request()
    body["goodsDetail"][1][name] = value
    places[f"goodsDetail[1].{name}"] = body
    body = card_redemption_request()
    body["extension"] = {"payment": [{"x": 1}, {name: value}]}
    places[f"extension.payment[1].{name}"] = body
    return places


@pytest.mark.parametrize("name", FIELD_SPELLINGS)
def test_card_data_fields_are_refused_at_any_depth_and_in_any_case(name: str) -> None:
    for path, body in _places(name, SECRET).items():
        refusal = _refusal(body)
        assert refusal.return_code is ReturnCode.CARD_DATA_REFUSED, (path, refusal)
        assert refusal.field == path
        assert f"'{path}'" in str(refusal)
        assert SECRET not in str(refusal)


@pytest.mark.parametrize("value", [None, "", {}, [], 0])
def test_a_card_data_field_is_refused_whatever_its_value(value: Any) -> None:
    assert _refusal(_places("cardInfo", value)["goodsDetail[1].cardInfo"]).field == "goodsDetail[1].cardInfo"


def test_words_that_only_contain_a_card_field_name_pass() -> None:
    body = card_redemption_request()
    body.update(company="ACME", pinyin="yagao", spanish=True, valid=True, cardType="00", cardNo64="622562****8888")
    parse_request("cardRedemption", body)


@pytest.mark.parametrize("pan", [PAN, SPACED_PAN, DASHED_PAN, AMEX_PAN, f"qty 2 {SPACED_PAN}", f"ref{PAN}X"])
def test_a_card_number_in_free_text_is_refused_naming_the_path_not_the_value(pan: str) -> None:
    body = card_redemption_request()
    body["goodsDetail"][0]["goodsName"] = f"牙膏 {pan}"
    refusal = _refusal(body)
    assert refusal.return_code is ReturnCode.CARD_DATA_REFUSED
    assert refusal.field == "goodsDetail[0].goodsName"
    assert "1111" not in str(refusal)
    assert "10005" not in str(refusal)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        (lambda b: b["memberDetail"].update(memberId=PAN), "memberDetail.memberId"),
        (lambda b: b.update(memo=int(PAN)), "memo"),
        (lambda b: b.update(memo=Decimal(PAN + ".00")), "memo"),
        (lambda b: b.update(notes=["ok", f"card {SPACED_PAN}"]), "notes[1]"),
        (lambda b: b["goodsDetail"][0].update(goodsId="4111111111111103"), "goodsDetail[0].goodsId"),
        (lambda b: b["goodsDetail"][0].update(goodsName=EAN13_ALSO_LUHN), "goodsDetail[0].goodsName"),
        (lambda b: b.update({f"x{PAN}": 1}), "body"),
        (lambda b: b["memberDetail"].update({SPACED_PAN: 1}), "memberDetail"),
    ],
)
def test_card_numbers_are_found_in_every_value_and_key(change: Any, path: str) -> None:
    body = card_redemption_request()
    change(body)
    refusal = _refusal(body)
    assert (refusal.return_code, refusal.field) == (ReturnCode.CARD_DATA_REFUSED, path)
    assert "1111 1111" not in str(refusal)
    assert PAN not in str(refusal)


@pytest.mark.parametrize(
    "change",
    [
        lambda b: b.update(traceNo=LUHN_TRACE_NO),  # an identifier, never read as a card number
        lambda b: b.update(traceNo="202605011230000000000001"),  # the book's 24-digit form
        lambda b: b["goodsDetail"][0].update(goodsId=EAN13_ALSO_LUHN),  # a barcode with a valid check digit
        lambda b: b["goodsDetail"][0].update(goodsId="96385074"),  # EAN-8
        lambda b: b["goodsDetail"][0].update(goodsName="Cola 330ml x 24 4000000000000000"),  # not Luhn-valid
        lambda b: b.update(memo="sold 20260501123000 at till 3"),  # a yyyyMMddHHmmss date-time
        lambda b: b.update(memo="tel 0755-8888-6666, order 171698602301"),  # 11 and 12 digits
    ],
)
def test_identifiers_barcodes_and_ordinary_numbers_pass(change: Any) -> None:
    body = card_redemption_request()
    change(body)
    parse_request("cardRedemption", body)


def test_inquiry_with_a_luhn_valid_original_trace_no_passes() -> None:
    parse_request("inquiry", {"traceNo": "T2", "originalTraceNo": LUHN_TRACE_NO})


def test_a_traceno_is_an_identifier_only_at_the_top() -> None:
    body = card_redemption_request()
    body["memberDetail"]["traceNo"] = LUHN_TRACE_NO
    assert _refusal(body).field == "memberDetail.traceNo"


def test_a_hostile_parent_key_is_shown_short_and_printable() -> None:
    body = card_redemption_request()
    body["\x1b[2J" + "k" * 5000] = {"pin": "1234"}
    refusal = _refusal(body)
    assert refusal.return_code is ReturnCode.CARD_DATA_REFUSED
    assert "\x1b" not in str(refusal)
    assert len(str(refusal)) < 300
    assert "5004 characters" in str(refusal)


def test_a_body_nested_deeper_than_the_limit_is_refused_without_recursion() -> None:
    body = card_redemption_request()
    deep: dict[str, Any] = {}
    body["extension"] = deep
    for _ in range(10_000):
        deep["x"] = {}
        deep = deep["x"]
    refusal = _refusal(body)
    assert refusal.return_code is ReturnCode.BAD_FIELD
    assert "deeper than 32 levels" in str(refusal)


# --- card numbers in text: the shared finder the log scrubber uses too -------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (f"pan {PAN}.", "pan 411111******1111."),
        (f"pay {SPACED_PAN} now", "pay 4111 11** **** 1111 now"),
        (f"[{DASHED_PAN}]", "[4111-11**-****-1111]"),
        (AMEX_PAN, "3782 82**** *0005"),
        (f"qty 2 {SPACED_PAN}", "qty 2 4111 11** **** 1111"),
        ("trace 99000009100010101732123 at 20260501123000", "trace 99000009100010101732123 at 20260501123000"),
        ("2026-05-01 12:00:00.123 n=3 order 171698602301", "2026-05-01 12:00:00.123 n=3 order 171698602301"),
    ],
)  # fmt: skip
def test_mask_card_numbers_handles_spaces_and_dashes(text: str, masked: str) -> None:
    assert mask_card_numbers(text) == masked


def test_may_hold_card_number_is_a_superset_of_the_finder() -> None:
    assert may_hold_card_number(SPACED_PAN)
    assert may_hold_card_number(PAN)
    assert not may_hold_card_number("order 171698602301 at 2026-05-01 12:00")


@given(st.text(alphabet="0123456789 -x", max_size=80))
def test_masking_leaves_no_card_number_behind(text: str) -> None:
    masked = mask_card_numbers(text)
    assert len(masked) == len(text)
    assert carddata.card_number_spans(masked) == []
    assert not carddata.card_number_spans(text) or masked != text
    if may_hold_card_number(text) is False:
        assert carddata.card_number_spans(text) == []


def test_gtin_check_digits() -> None:
    assert carddata.gtin_valid("4006381333931")  # EAN-13
    assert carddata.gtin_valid("036000291452")  # UPC-A
    assert carddata.gtin_valid("96385074")  # EAN-8
    assert not carddata.gtin_valid("4006381333932")
    assert not carddata.gtin_valid("400638133393")  # 12 digits, wrong check digit
    assert not carddata.gtin_valid("P00001")


# --- the stored copy ----------------------------------------------------------------------------


def test_storable_drops_card_fields_and_masks_numbers_keeping_identifiers() -> None:
    body = card_redemption_request()
    body["traceNo"] = LUHN_TRACE_NO
    body["orderNo"] = "4111111111111103"
    body["Password"] = SECRET
    body["goodsDetail"][0].update(goodsId=EAN13_ALSO_LUHN, goodsName=f"牙膏 {SPACED_PAN}", cardInfo={"x": SECRET})
    body["memberDetail"]["memberId"] = int(PAN)
    body[f"note {PAN}"] = "x"
    stored = carddata.storable(body)
    text = jsonio.dumps(stored)
    assert SECRET not in text
    assert PAN not in text
    assert "1111 1111" not in text
    assert "Password" not in stored
    assert "cardInfo" not in stored["goodsDetail"][0]
    assert stored["goodsDetail"][0]["goodsName"] == "牙膏 4111 11** **** 1111"
    assert stored["memberDetail"]["memberId"] == "411111******1111"
    assert "note 411111******1111" in stored
    assert (stored["traceNo"], stored["orderNo"]) == (LUHN_TRACE_NO, "4111111111111103")
    assert stored["goodsDetail"][0]["goodsId"] == EAN13_ALSO_LUHN


def test_storable_returns_a_clean_body_unchanged_and_cuts_deep_subtrees() -> None:
    assert carddata.storable(card_redemption_request()) == card_redemption_request()
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    stored = carddata.storable({"traceNo": "T1", "deep": deep})
    text = jsonio.dumps(stored)
    assert carddata.REMOVED in text
    assert text.replace(carddata.REMOVED, "").count("[") == 31


def test_a_card_number_across_the_cut_of_a_shown_text_is_not_shown_in_clear() -> None:
    # Cut first, masked second, this showed 13 of the 16 digits (the cut run fails Luhn).
    text = "a" * 51 + "4111111111111111" + "zz"
    assert "4111111111111" not in carddata.shown(text, 64)
    with pytest.raises(jsonio.JSONDecodeError) as refused:
        jsonio.loads(f'{{"{text}":1,"{text}":2}}')
    assert "4111111111111" not in str(refused.value)


#: An 18-digit wallet payment code that passes the Luhn check (one in ten do).
LUHN_PAYMENT_CODE = "280123121234567893"


@pytest.mark.parametrize("action", ["qrcodeSale", "ecouponInquiry"])
def test_a_payment_code_that_passes_luhn_is_accepted_at_the_top_of_the_body(action: str) -> None:
    assert carddata.luhn_valid(LUHN_PAYMENT_CODE)
    body = {**book_request(action), "qrcode": LUHN_PAYMENT_CODE}
    assert parse_request(action, body).qrcode == LUHN_PAYMENT_CODE  # type: ignore[attr-defined]


def test_a_payment_code_is_text_anywhere_else_and_masked_in_the_journal_copy() -> None:
    body = {**book_request("qrcodeSale"), "qrcode": LUHN_PAYMENT_CODE, "memo": {"qrcode": LUHN_PAYMENT_CODE}}
    with pytest.raises(RequestError) as caught:
        parse_request("qrcodeSale", body)
    assert caught.value.field == "memo.qrcode"
    stored = carddata.storable({"qrcode": LUHN_PAYMENT_CODE})
    assert stored["qrcode"] != LUHN_PAYMENT_CODE
    assert stored["qrcode"].startswith(LUHN_PAYMENT_CODE[:6])


def test_a_batch_records_trace_no_is_an_identifier_but_not_elsewhere() -> None:
    body = book_request("batchUpload")
    body["transRecord"][0]["traceNo"] = LUHN_TRACE_NO
    assert parse_request("batchUpload", body).transRecord[0].traceNo == LUHN_TRACE_NO  # type: ignore[attr-defined]
    body["transRecord"][0]["memo"] = LUHN_TRACE_NO
    with pytest.raises(RequestError) as caught:
        parse_request("batchUpload", body)
    assert caught.value.field == "transRecord[0].memo"
