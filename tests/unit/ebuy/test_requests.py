"""POS request validation: every bad input gets its own code and names the field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.ebuy.requests import (
    MAX_QUANTITY,
    REQUEST_MODELS,
    CardRedemptionRequest,
    amount_minor_units,
    complete_book_head,
    parse_request,
)
from misbridge.errors import RequestError, ReturnCode


def _with(**changes: Any) -> dict[str, Any]:
    body = card_redemption_request()
    body.update(changes)
    return body


def _without(name: str) -> dict[str, Any]:
    body = card_redemption_request()
    del body[name]
    return body


def test_book_example_is_valid() -> None:
    parsed = parse_request("cardRedemption", card_redemption_request())
    assert isinstance(parsed, CardRedemptionRequest)
    assert parsed.totalAmount == Decimal("40.8")
    assert parsed.memberDetail is not None
    assert parsed.memberDetail.balance == Decimal("1000.00")


def test_extra_fields_are_allowed() -> None:
    parse_request("cardRedemption", _with(futureField={"x": 1}))


GOODS = card_redemption_request()["goodsDetail"][0]

BAD_INPUTS: list[tuple[str, dict[str, Any], ReturnCode, str]] = [
    ("cardRedemption", _without("totalAmount"), ReturnCode.MISSING_FIELD, "totalAmount"),
    ("cardRedemption", _without("traceNo"), ReturnCode.MISSING_FIELD, "traceNo"),
    ("cardRedemption", _without("goodsDetail"), ReturnCode.MISSING_FIELD, "goodsDetail"),
    ("cardRedemption", _with(totalAmount="40.8"), ReturnCode.BAD_AMOUNT, "totalAmount"),
    ("cardRedemption", _with(totalAmount=Decimal("-1")), ReturnCode.BAD_AMOUNT, "totalAmount"),
    ("cardRedemption", _with(totalAmount=True), ReturnCode.BAD_AMOUNT, "totalAmount"),
    ("cardRedemption", _with(totalAmount=Decimal("40.805")), ReturnCode.BAD_AMOUNT, "totalAmount"),
    ("cardRedemption", _with(totalAmount=Decimal("1e12")), ReturnCode.BAD_AMOUNT, "totalAmount"),
    ("cardRedemption", _with(undiscountAmount=None), ReturnCode.BAD_AMOUNT, "undiscountAmount"),
    ("cardRedemption", _with(undiscountAmount=Decimal("50")), ReturnCode.UNDISCOUNT_OVER_TOTAL, "undiscountAmount"),
    ("cardRedemption", _with(goodsDetail=[]), ReturnCode.EMPTY_GOODS, "goodsDetail"),
    ("cardRedemption", _with(goodsDetail="P00001"), ReturnCode.BAD_FIELD, "goodsDetail"),
    ("cardRedemption", _with(goodsDetail=[{**GOODS, "price": "8"}]), ReturnCode.BAD_AMOUNT, "goodsDetail[0].price"),
    ("cardRedemption", _with(goodsDetail=[{**GOODS, "quantity": 0}]), ReturnCode.BAD_FIELD, "goodsDetail[0].quantity"),
    ("cardRedemption", _with(goodsDetail=[{k: v for k, v in GOODS.items() if k != "goodsId"}]),
     ReturnCode.MISSING_FIELD, "goodsDetail[0].goodsId"),
    ("cardRedemption", _with(traceNo=""), ReturnCode.BAD_TRACE_NO, "traceNo"),
    ("cardRedemption", _with(traceNo="x" * 41), ReturnCode.BAD_TRACE_NO, "traceNo"),
    ("cardRedemption", _with(traceNo="a b"), ReturnCode.BAD_TRACE_NO, "traceNo"),
    ("cardRedemption", _with(traceNo=123), ReturnCode.BAD_FIELD, "traceNo"),
    ("cardRedemption", _with(memberDetail="M1"), ReturnCode.BAD_FIELD, "memberDetail"),
    ("cardRedemption", _with(cardInfo={"cardNo": "x"}), ReturnCode.CARD_DATA_REFUSED, "cardInfo"),
    ("cardRedemption", _with(password="123456"), ReturnCode.CARD_DATA_REFUSED, "password"),
    ("cardPayment", card_redemption_request(), ReturnCode.MISSING_FIELD, "acquirer"),
    ("inquiry", {"traceNo": "T2"}, ReturnCode.MISSING_FIELD, "originalTraceNo"),
    ("voidCardSale", {"traceNo": "T3"}, ReturnCode.MISSING_FIELD, "originalTraceNo"),
    ("payNow", card_redemption_request(), ReturnCode.UNKNOWN_ACTION, "action"),
]  # fmt: skip


@pytest.mark.parametrize(("action", "body", "code", "field"), BAD_INPUTS)
def test_bad_input_is_refused_with_its_code_and_field(
    action: str, body: dict[str, Any], code: ReturnCode, field: str
) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request(action, body)
    assert caught.value.return_code is code, caught.value
    assert caught.value.field == field
    assert field.split("[")[0].split(".")[-1] in str(caught.value) or field == "action"


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2))
def test_any_two_decimal_amount_survives_json_and_converts_exactly(amount: Decimal) -> None:
    body = _with(totalAmount=amount, undiscountAmount=Decimal(0))
    again = jsonio.loads(jsonio.dumps(body))
    parsed = parse_request("cardRedemption", again)
    assert isinstance(parsed, CardRedemptionRequest)
    assert parsed.totalAmount == amount
    assert amount_minor_units(parsed.totalAmount) == int(amount * 100)


# --- values that must never reach the customer (issue 10, item 8) ------------------------------


@pytest.mark.parametrize("total", ["0", "-0", "0.00", "-0.00", "0e5"])
def test_a_total_of_zero_is_refused_before_any_prompt(total: str) -> None:
    body = jsonio.loads(jsonio.dumps(_with(undiscountAmount=0, totalAmount="@")).replace('"@"', total))
    with pytest.raises(RequestError) as caught:
        parse_request("cardRedemption", body)
    assert (caught.value.return_code, caught.value.field) == (ReturnCode.BAD_AMOUNT, "totalAmount")
    assert "totalAmount" in str(caught.value)
    assert "must be greater than 0" in str(caught.value)


def test_zero_undiscount_amount_and_a_free_goods_line_pass() -> None:
    body = _with(undiscountAmount=Decimal("-0.00"))  # a zero, whatever its sign
    body["goodsDetail"].append({**GOODS, "goodsId": "GIFT1", "price": 0, "quantity": 1})
    parse_request("cardRedemption", body)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (_with(goodsDetail=[{**GOODS, "quantity": MAX_QUANTITY + 1}]), "goodsDetail[0].quantity"),
        (_with(goodsDetail=[{**GOODS, "quantity": int("9" * 40)}]), "goodsDetail[0].quantity"),
        (_with(goodsDetail=[{**GOODS, "goodsName": "牙" * 257}]), "goodsDetail[0].goodsName"),
        (_with(goodsDetail=[{**GOODS, "goodsId": "P" * 257}]), "goodsDetail[0].goodsId"),
        (_with(memberDetail={"memberName": "T" * 257}), "memberDetail.memberName"),
        (_with(memberDetail={"pointBalance": 10**15}), "memberDetail.pointBalance"),
    ],
)
def test_unbounded_values_are_refused(body: dict[str, Any], field: str) -> None:
    with pytest.raises(RequestError) as caught:
        parse_request("cardRedemption", body)
    assert (caught.value.return_code, caught.value.field) == (ReturnCode.BAD_FIELD, field)
    assert len(str(caught.value)) < 200


def test_the_largest_accepted_values_pass() -> None:
    body = _with(goodsDetail=[{**GOODS, "quantity": MAX_QUANTITY, "goodsName": "牙" * 256}],
                 memberDetail={"pointBalance": 10**15 - 1})  # fmt: skip
    parse_request("cardRedemption", body)


# --- action names (issue 10, item 3) ------------------------------------------------------------


@pytest.mark.parametrize("quantity", ["2.0", "2.00", "2E+0"])
def test_an_integral_quantity_written_with_a_fraction_is_that_integer(quantity: str) -> None:
    # JSON Schema (hence the OpenAPI document) counts 2.0 as an integer; the door must agree.
    body = jsonio.loads(jsonio.dumps(_with(goodsDetail=[{**GOODS, "quantity": Decimal(quantity)}])))
    assert parse_request("cardRedemption", body).goodsDetail[0].quantity == 2  # type: ignore[attr-defined]


@pytest.mark.parametrize("quantity", [Decimal("2.5"), "2", True])
def test_a_quantity_that_is_not_a_whole_number_is_refused(quantity: Any) -> None:
    with pytest.raises(RequestError) as refused:
        parse_request("cardRedemption", _with(goodsDetail=[{**GOODS, "quantity": quantity}]))
    assert (refused.value.return_code, refused.value.field) == (ReturnCode.BAD_FIELD, "goodsDetail[0].quantity")


def _action_refusal(action: str) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_request(action, card_redemption_request())
    return caught.value


def test_a_30000_character_action_is_not_echoed_whole() -> None:
    refusal = _action_refusal("x" * 30_000)
    assert refusal.return_code is ReturnCode.UNKNOWN_ACTION
    assert refusal.field == "action"
    assert len(str(refusal)) < 400  # the quote is bounded; the list of actions carried out grows
    assert "30000 characters" in str(refusal)


def test_control_characters_in_an_action_are_escaped() -> None:
    refusal = _action_refusal("pay\r\nX-Injected: 1\x1b[2J\x00")
    assert refusal.return_code is ReturnCode.UNKNOWN_ACTION
    assert not any(char in str(refusal) for char in "\r\n\x1b\x00")
    assert "\\r\\n" in str(refusal)


@pytest.mark.parametrize("action", ["pay 4111 1111 1111 1111", "4111-1111-1111-1111", "x4111111111111111"])
def test_a_card_number_in_an_action_is_refused_and_never_repeated(action: str) -> None:
    refusal = _action_refusal(action)
    assert (refusal.return_code, refusal.field) == (ReturnCode.CARD_DATA_REFUSED, "action")
    assert "1111" not in str(refusal)


def test_the_schema_says_a_total_is_above_zero() -> None:
    schema = CardRedemptionRequest.model_json_schema()
    assert schema["properties"]["totalAmount"]["exclusiveMinimum"] == 0
    assert schema["properties"]["undiscountAmount"]["minimum"] == 0


_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**40), max_value=10**40),
    st.decimals(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.sampled_from(["4111 1111 1111 1111", "6901234567892", "20260501123000", "T1", "-0.00"]),
)  # fmt: skip
_KEYS = st.one_of(st.text(max_size=10), st.sampled_from(["traceNo", "goodsDetail", "goodsId", "PIN", "price", "x"]))
_JSON_VALUES = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_KEYS, inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from([*REQUEST_MODELS, "qrcodeSale", "x" * 100, "\x00"]), st.dictionaries(_KEYS, _JSON_VALUES))
def test_any_body_is_a_model_or_a_request_error(action: str, body: dict[str, Any]) -> None:
    refusal: RequestError | None = None
    try:
        parse_request(action, body)
    except RequestError as err:
        refusal = err
    if refusal is not None:
        assert refusal.return_code.code.startswith("MB")
        assert len(str(refusal)) < 1_000


def test_complete_book_head_fills_only_what_the_backend_left_out() -> None:
    barred = {"traceNo": "Q1", "returnCode": "25", "returnDesc": "not found; traceNo barred"}
    completed = complete_book_head(barred, "Q1")
    assert completed["orderNo"] == ""
    assert completed["paidAmount"] == 0
    assert len(completed["transDate"]) == 14
    assert completed["transDate"].isdigit()
    assert {k: completed[k] for k in barred} == barred
    approved = {"traceNo": "T1", "orderNo": "O9", "transDate": "20260101000000", "returnCode": "00",
                "returnDesc": "SUCCESS", "paidAmount": Decimal("40.8")}  # fmt: skip
    assert complete_book_head(approved, "T1") == approved
    assert "paidAmount" not in complete_book_head({"returnCode": "00"}, "T2")  # only the backend knows it
    assert complete_book_head({"returnCode": "00"}, "T2")["traceNo"] == "T2"


def test_a_filled_in_trans_date_comes_from_the_record_so_replays_agree() -> None:
    stored_at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    barred = {"traceNo": "Q1", "returnCode": "25", "returnDesc": "not found"}
    first, again = (complete_book_head(barred, "Q1", at=stored_at) for _ in range(2))
    assert first == again
    assert first["transDate"] == stored_at.astimezone().strftime("%Y%m%d%H%M%S")
    assert complete_book_head({"traceNo": None, "returnCode": "00"}, "T3")["traceNo"] is None  # as sent
