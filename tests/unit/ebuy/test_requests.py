"""POS request validation: every bad input gets its own code and names the field."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.ebuy.requests import (
    CardRedemptionRequest,
    amount_minor_units,
    validate_request,
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
    parsed = validate_request("cardRedemption", card_redemption_request())
    assert isinstance(parsed, CardRedemptionRequest)
    assert parsed.totalAmount == Decimal("40.8")
    assert parsed.memberDetail is not None
    assert parsed.memberDetail.balance == Decimal("1000.00")


def test_extra_fields_are_allowed() -> None:
    validate_request("cardRedemption", _with(futureField={"x": 1}))


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
    ("cardRedemption", _with(cardInfo={"cardNo": "x"}), ReturnCode.BAD_FIELD, "cardInfo"),
    ("cardRedemption", _with(password="123456"), ReturnCode.BAD_FIELD, "password"),
    ("cardPayment", card_redemption_request(), ReturnCode.MISSING_FIELD, "acquirer"),
    ("inquiry", {"traceNo": "T2"}, ReturnCode.MISSING_FIELD, "originalTraceNo"),
    ("qrcodeSale", card_redemption_request(), ReturnCode.UNSUPPORTED_ACTION, "action"),
    ("payNow", card_redemption_request(), ReturnCode.UNKNOWN_ACTION, "action"),
]  # fmt: skip


@pytest.mark.parametrize(("action", "body", "code", "field"), BAD_INPUTS)
def test_bad_input_is_refused_with_its_code_and_field(
    action: str, body: dict[str, Any], code: ReturnCode, field: str
) -> None:
    with pytest.raises(RequestError) as caught:
        validate_request(action, body)
    assert caught.value.return_code is code, caught.value
    assert caught.value.field == field
    assert field.split("[")[0].split(".")[-1] in str(caught.value) or field == "action"


@given(st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2))
def test_any_two_decimal_amount_survives_json_and_converts_exactly(amount: Decimal) -> None:
    body = _with(totalAmount=amount, undiscountAmount=Decimal(0))
    again = jsonio.loads(jsonio.dumps(body))
    parsed = validate_request("cardRedemption", again)
    assert isinstance(parsed, CardRedemptionRequest)
    assert parsed.totalAmount == amount
    assert amount_minor_units(parsed.totalAmount) == int(amount * 100)
