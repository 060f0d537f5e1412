"""Every action of the book: its example validates, and each rule is refused with its code and field.

The examples are the book's request body examples (§10.1-§10.10, §11.1, §11.2), restated in
:func:`misbridge.ebuy.examples.book_request`; the qrcodeSale one is §10.1's with ``qrcode`` in
place of ``acquirer``, as the book says.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import book_request
from misbridge.ebuy.requests import (
    BOOK_ACTIONS,
    MAX_BATCH_RECORDS,
    MAX_QRCODE_LEN,
    REQUEST_MODELS,
    BatchUploadRequest,
    QrcodeSaleRequest,
    RefundCardSaleRequest,
    parse_request,
)
from misbridge.errors import RequestError, ReturnCode

TRACE = "99000009100010101732123"


def example(action: str, **changes: Any) -> dict[str, Any]:
    """A fresh copy of ``action``'s book example with ``changes`` (a value of ``...`` removes the key)."""
    body = book_request(action)
    for key, value in changes.items():
        if value is ...:
            body.pop(key)
        else:
            body[key] = value
    return body


def _records(count: int, status: int | None = None) -> list[dict[str, Any]]:
    return [{"traceNo": f"T{n}", "paidAmount": n, "status": n % 10 if status is None else status} for n in range(count)]


def _refusal(action: str, body: dict[str, Any]) -> RequestError:
    with pytest.raises(RequestError) as caught:
        parse_request(action, body)
    return caught.value


def test_there_is_a_model_and_an_example_for_every_action_of_the_book() -> None:
    assert set(REQUEST_MODELS) == set(BOOK_ACTIONS)
    for action in BOOK_ACTIONS:
        assert book_request(action)["traceNo"] == TRACE
    assert len(BOOK_ACTIONS) == 12


@pytest.mark.parametrize("action", BOOK_ACTIONS)
def test_the_book_example_validates(action: str) -> None:
    body = example(action)
    parsed = parse_request(action, body)
    assert isinstance(parsed, REQUEST_MODELS[action])
    assert parsed.traceNo == TRACE
    # Through JSON text and back, as a door reads it: the same model.
    assert parse_request(action, jsonio.loads(jsonio.dumps(body))) == parsed


@pytest.mark.parametrize("action", BOOK_ACTIONS)
@pytest.mark.parametrize(("name", "value"), [("cardInfo", {"track2": "x"}), ("PIN", ""), ("memo", "4111111111111111")])
def test_card_data_is_refused_in_every_action(action: str, name: str, value: Any) -> None:
    refusal = _refusal(action, example(action, **{name: value}))
    assert (refusal.return_code, refusal.field) == (ReturnCode.CARD_DATA_REFUSED, name)
    assert "4111111111111111" not in str(refusal)


@pytest.mark.parametrize("action", BOOK_ACTIONS)
def test_extra_fields_are_accepted_and_kept(action: str) -> None:
    parsed = parse_request(action, example(action, futureField={"x": 1}))
    assert parsed.model_extra == {"futureField": {"x": 1}}


_D = Decimal
#: (action, body, code, field): one row per rule of the book's field tables.
BAD_INPUTS: list[tuple[str, dict[str, Any], ReturnCode, str]] = [
    # missing mandatory fields
    *[(action, example(action, traceNo=...), ReturnCode.MISSING_FIELD, "traceNo") for action in BOOK_ACTIONS],
    *[(action, example(action, originalTraceNo=...), ReturnCode.MISSING_FIELD, "originalTraceNo")
      for action in ("inquiry", "voidCardSale", "voidQrcodeSale", "refundCardSale", "refundQrcodeSale")],
    ("refundCardSale", example("refundCardSale", refundAmount=...), ReturnCode.MISSING_FIELD, "refundAmount"),
    ("refundQrcodeSale", example("refundQrcodeSale", refundAmount=...), ReturnCode.MISSING_FIELD, "refundAmount"),
    ("qrcodeSale", example("qrcodeSale", totalAmount=...), ReturnCode.MISSING_FIELD, "totalAmount"),
    ("qrcodeSale", example("qrcodeSale", undiscountAmount=...), ReturnCode.MISSING_FIELD, "undiscountAmount"),
    ("qrcodeSale", example("qrcodeSale", goodsDetail=...), ReturnCode.MISSING_FIELD, "goodsDetail"),
    ("accumulating", example("accumulating", totalAmount=...), ReturnCode.MISSING_FIELD, "totalAmount"),
    *[("batchUpload", example("batchUpload", **{name: ...}), ReturnCode.MISSING_FIELD, name)
      for name in ("transCount", "beginTime", "endTime", "transRecord")],
    *[("batchUpload", example("batchUpload", transRecord=[{k: v for k, v in record.items() if k != name}]),
       ReturnCode.MISSING_FIELD, f"transRecord[0].{name}")
      for record in [{"traceNo": "T1", "paidAmount": 1, "status": 0}] for name in ("traceNo", "paidAmount", "status")],
    # traceNos
    *[(action, example(action, originalTraceNo="a b"), ReturnCode.BAD_TRACE_NO, "originalTraceNo")
      for action in ("voidCardSale", "voidQrcodeSale", "refundCardSale", "refundQrcodeSale")],
    ("summary", example("summary", traceNo="x" * 41), ReturnCode.BAD_TRACE_NO, "traceNo"),
    ("voidCardSale", example("voidCardSale", originalTraceNo=123), ReturnCode.BAD_FIELD, "originalTraceNo"),
    ("batchUpload", example("batchUpload", transCount=1, transRecord=[{"traceNo": "", "paidAmount": 1, "status": 0}]),
     ReturnCode.BAD_TRACE_NO, "transRecord[0].traceNo"),
    # amounts: JSON numbers, not negative, at most 2 decimals; a refund or a total above 0
    *[(action, example(action, refundAmount=value), ReturnCode.BAD_AMOUNT, "refundAmount")
      for action in ("refundCardSale", "refundQrcodeSale")
      for value in ("40.8", _D("-1"), _D("40.805"), 0, _D("0.00"), True, None, _D("1e12"))],
    *[("qrcodeSale", example("qrcodeSale", totalAmount=value), ReturnCode.BAD_AMOUNT, "totalAmount")
      for value in ("40.8", _D("-40.8"), _D("40.801"), 0)],
    ("qrcodeSale", example("qrcodeSale", undiscountAmount=_D("0.001")), ReturnCode.BAD_AMOUNT, "undiscountAmount"),
    ("qrcodeSale", example("qrcodeSale", undiscountAmount=50), ReturnCode.UNDISCOUNT_OVER_TOTAL, "undiscountAmount"),
    ("accumulating", example("accumulating", totalAmount=_D("-1")), ReturnCode.BAD_AMOUNT, "totalAmount"),
    ("accumulating", example("accumulating", undiscountAmount="0"), ReturnCode.BAD_AMOUNT, "undiscountAmount"),
    ("accumulating", example("accumulating", undiscountAmount=41), ReturnCode.UNDISCOUNT_OVER_TOTAL,
     "undiscountAmount"),
    ("batchUpload", example("batchUpload", transCount=1, transRecord=[{"traceNo": "T1", "paidAmount": "100.00",
                                                                       "status": 0}]),
     ReturnCode.BAD_AMOUNT, "transRecord[0].paidAmount"),
    ("batchUpload", example("batchUpload", transCount=1, transRecord=[{"traceNo": "T1", "paidAmount": _D("1.005"),
                                                                       "status": 0}]),
     ReturnCode.BAD_AMOUNT, "transRecord[0].paidAmount"),
    # goods and members, as for the card sales
    ("qrcodeSale", example("qrcodeSale", goodsDetail=[]), ReturnCode.EMPTY_GOODS, "goodsDetail"),
    ("accumulating", example("accumulating", goodsDetail=[]), ReturnCode.EMPTY_GOODS, "goodsDetail"),
    ("accumulating", example("accumulating", goodsDetail=[{"goodsId": "P1"}]), ReturnCode.MISSING_FIELD,
     "goodsDetail[0].goodsCategory"),
    ("accumulating", example("accumulating", memberDetail={"pointBalance": 10**15}), ReturnCode.BAD_FIELD,
     "memberDetail.pointBalance"),
    # text and numbers of the wrong type or size
    ("cardPayment", example("cardPayment", acquirer=1), ReturnCode.BAD_FIELD, "acquirer"),
    ("voidCardSale", example("voidCardSale", acquirer="c" * 257), ReturnCode.BAD_FIELD, "acquirer"),
    ("refundCardSale", example("refundCardSale", acquirer=["citicCashpay"]), ReturnCode.BAD_FIELD, "acquirer"),
    ("accumulating", example("accumulating", points=_D("1.5")), ReturnCode.BAD_FIELD, "points"),
    ("accumulating", example("accumulating", points="100"), ReturnCode.BAD_FIELD, "points"),
    ("accumulating", example("accumulating", points=-1), ReturnCode.BAD_FIELD, "points"),
    ("accumulating", example("accumulating", activityNo=2016121901), ReturnCode.BAD_FIELD, "activityNo"),
    # qrcode: optional, but bounded and printable when present
    *[(action, example(action, qrcode=value), ReturnCode.BAD_FIELD, "qrcode")
      for action in ("qrcodeSale", "ecouponInquiry")
      for value in ("", "q" * (MAX_QRCODE_LEN + 1), "2801\n2312", "code\x00", "code\x7f", "code\x85",
                    280123121234567890)],
    # the Chinese page's fields: bounded strings, extendData an object
    *[("qrcodeSale", example("qrcodeSale", **{name: "x" * 257}), ReturnCode.BAD_FIELD, name)
      for name in ("verifyType", "scene", "activityProductNo", "orderSubject", "orderDescription")],
    ("qrcodeSale", example("qrcodeSale", scene=1), ReturnCode.BAD_FIELD, "scene"),
    ("qrcodeSale", example("qrcodeSale", extendData="x"), ReturnCode.BAD_FIELD, "extendData"),
    # batchUpload: the count, the window, the records
    ("batchUpload", example("batchUpload", transCount=2), ReturnCode.BATCH_COUNT_MISMATCH, "transCount"),
    ("batchUpload", example("batchUpload", transCount=4), ReturnCode.BATCH_COUNT_MISMATCH, "transCount"),
    ("batchUpload", example("batchUpload", transCount="3"), ReturnCode.BAD_FIELD, "transCount"),
    ("batchUpload", example("batchUpload", transCount=0, transRecord=[]), ReturnCode.BAD_FIELD, "transCount"),
    ("batchUpload", example("batchUpload", transCount=1, transRecord=[]), ReturnCode.BAD_FIELD, "transRecord"),
    ("batchUpload", example("batchUpload", transRecord={"traceNo": "T1"}), ReturnCode.BAD_FIELD, "transRecord"),
    ("batchUpload", example("batchUpload", beginTime="20161231102231"), ReturnCode.BATCH_WINDOW, "beginTime"),
    ("batchUpload", example("batchUpload", beginTime="20161224102229"), ReturnCode.BATCH_WINDOW, "endTime"),
    *[("batchUpload", example("batchUpload", beginTime=value), ReturnCode.BAD_FIELD, "beginTime")
      for value in ("2016123110220", "201612311022011", "20161331102201", "20160230102201", "20161231246000",
                    "2016-12-31 10:22", 20161231102201, "２０１６１２３１１０２２０１", "19891231235959",
                    "21000101000000")],
    ("batchUpload", example("batchUpload", endTime=None), ReturnCode.BAD_FIELD, "endTime"),
    *[("batchUpload", example("batchUpload", transCount=1, transRecord=[{"traceNo": "T1", "paidAmount": 1,
                                                                         "status": status}]),
       ReturnCode.BAD_FIELD, "transRecord[0].status")
      for status in (-1, 10, "0", _D("0.5"), None)],
]  # fmt: skip


@pytest.mark.parametrize(("action", "body", "code", "field"), BAD_INPUTS)
def test_bad_input_is_refused_with_its_code_and_field(
    action: str, body: dict[str, Any], code: ReturnCode, field: str
) -> None:
    refusal = _refusal(action, body)
    assert (refusal.return_code, refusal.field) == (code, field), refusal
    assert field.split("[")[0].split(".")[-1] in str(refusal)
    assert len(str(refusal)) < 200


@pytest.mark.parametrize("action", ["qrcodeSale", "ecouponInquiry"])
def test_qrcode_is_optional_and_may_be_as_long_as_the_limit(action: str) -> None:
    parse_request(action, example(action, qrcode=...))
    parse_request(action, example(action, qrcode="https://qr.example/" + "a" * (MAX_QRCODE_LEN - 19)))
    parse_request(action, example(action, qrcode="二维码内容 with spaces"))


def test_the_chinese_page_fields_are_accepted_and_kept_unchanged() -> None:
    fields = {"verifyType": "wechatApp", "scene": "qr_code", "activityProductNo": "HDCP00000000001234",
              "orderSubject": "订" * 256, "orderDescription": "", "extendData": {"k": [1, {"v": "w"}]}}  # fmt: skip
    parsed = parse_request("qrcodeSale", example("qrcodeSale", **fields))
    assert isinstance(parsed, QrcodeSaleRequest)
    assert {name: getattr(parsed, name) for name in fields} == fields


def test_void_card_sale_takes_acquirer_but_does_not_require_it() -> None:
    # Mandatory only when the original was a cardPayment: the service knows that, not the body.
    parse_request("voidCardSale", example("voidCardSale", acquirer=...))
    parse_request("refundCardSale", example("refundCardSale", acquirer=...))


def test_accumulating_needs_only_trace_no_and_total() -> None:
    parse_request("accumulating", {"traceNo": TRACE, "totalAmount": Decimal("40.8")})


@given(st.decimals(min_value=Decimal("0.01"), max_value=Decimal("9999999999.99"), places=2))
def test_any_positive_two_decimal_refund_passes_exactly(amount: Decimal) -> None:
    body = jsonio.loads(jsonio.dumps(example("refundCardSale", refundAmount=amount)))
    parsed = parse_request("refundCardSale", body)
    assert isinstance(parsed, RefundCardSaleRequest)
    assert parsed.refundAmount == amount


@given(st.decimals(min_value=Decimal("0.001"), max_value=Decimal("99999"), places=3).filter(lambda d: d % 1 * 100 % 1))
def test_a_refund_with_a_third_decimal_is_refused(amount: Decimal) -> None:
    refusal = _refusal("refundQrcodeSale", example("refundQrcodeSale", refundAmount=amount))
    assert (refusal.return_code, refusal.field) == (ReturnCode.BAD_AMOUNT, "refundAmount")


_BEGIN = datetime(2016, 12, 31, 10, 22, 1)


@settings(max_examples=60)
@given(st.timedeltas(min_value=timedelta(days=-2), max_value=timedelta(days=9)), st.integers(1, 40))
def test_the_upload_window_is_ordered_and_at_most_seven_days(span: timedelta, records: int) -> None:
    span = timedelta(seconds=int(span.total_seconds()))
    body = example("batchUpload", transCount=records, beginTime=_BEGIN.strftime("%Y%m%d%H%M%S"),
                   endTime=(_BEGIN + span).strftime("%Y%m%d%H%M%S"),
                   transRecord=_records(records))  # fmt: skip
    if timedelta(0) <= span <= timedelta(days=7):
        assert isinstance(parse_request("batchUpload", body), BatchUploadRequest)
    else:
        assert _refusal("batchUpload", body).return_code is ReturnCode.BATCH_WINDOW


@settings(max_examples=30)
@given(st.integers(1, 60), st.integers(1, 60))
def test_trans_count_must_be_the_number_of_records(count: int, records: int) -> None:
    body = example("batchUpload", transCount=count, transRecord=_records(records, status=0))
    if count == records:
        parse_request("batchUpload", body)
    else:
        refusal = _refusal("batchUpload", body)
        assert (refusal.return_code, refusal.field) == (ReturnCode.BATCH_COUNT_MISMATCH, "transCount")


def test_an_upload_of_at_most_5000_records_passes_and_more_is_refused() -> None:
    records = [{"traceNo": f"T{n}", "paidAmount": 1, "status": 0} for n in range(MAX_BATCH_RECORDS + 1)]
    parse_request("batchUpload", example("batchUpload", transCount=MAX_BATCH_RECORDS,
                                         transRecord=records[:MAX_BATCH_RECORDS]))  # fmt: skip
    refusal = _refusal("batchUpload", example("batchUpload", transCount=MAX_BATCH_RECORDS + 1, transRecord=records))
    assert refusal.return_code is ReturnCode.BAD_FIELD
    assert refusal.field in ("transCount", "transRecord")


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(BOOK_ACTIONS), st.data())
def test_dropping_any_one_field_of_an_example_is_a_model_or_a_named_refusal(action: str, data: st.DataObject) -> None:
    body = example(action)
    name = data.draw(st.sampled_from(sorted(body)))
    del body[name]
    if name in REQUEST_MODELS[action].model_json_schema().get("required", []):
        refusal = _refusal(action, body)
        assert (refusal.return_code, refusal.field) == (ReturnCode.MISSING_FIELD, name)
    else:
        parse_request(action, body)
