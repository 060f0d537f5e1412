"""frame_reply: every answer reaches the socket POS within the 2-byte length prefix (issue 10, item 1)."""

from __future__ import annotations

import base64
import json
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from misbridge.ebuy import jsonio
from misbridge.ebuy.envelope import MAX_MESSAGE_LEN, Envelope, encode_envelope, frame_message
from misbridge.ebuy.fitting import (
    DETAIL_FIELD,
    MANDATORY_FIELDS,
    MAX_LISTED_NAMES,
    MORE_NAMES,
    OMITTED_FIELD,
    TRUNCATED_FIELD,
    frame_reply,
)

#: The largest framed answer: the prefix and 65 535 bytes of JSON.
MAX_FRAME = 2 + MAX_MESSAGE_LEN


def book_answer(lines: int = 2, trace_no: str = "99000009100010101732123") -> dict[str, Any]:
    """The book's §10.2 response example, with ``lines`` goods lines echoed back."""
    line = {
        "goodsCategory": "001", "goodsId": "6901234567892", "goodsName": "牙膏 Toothpaste Fresh Mint 120 g",
        "price": Decimal("8.00"), "quantity": 2, "rebateCode": "000", "activityNo": "2016123101",
        "memo": "100123456789", "goodsSpec": "120g x 1 tube",
    }  # fmt: skip
    return {
        "traceNo": trace_no, "orderNo": "171698602301", "transDate": "20161231120533",
        "returnCode": "00", "returnDesc": "SUCCESS", "paidAmount": Decimal("40.8"),
        "receiptAmount": Decimal("40.8"), "invoiceAmount": Decimal("40.8"), "exchangeRate": Decimal("6.0939"),
        "currency": "CNY", "discountCode": "0001", "discountNum": 20, "tenderCode": "8001",
        "activityProductNo": "2016123101", "activityProductName": "中信365权益", "needSameCard": True,
        "goodsDetail": [{**line, "goodsId": f"69{i:011d}"} for i in range(lines)],
        "fundChannel": [
            {"channelNo": "001", "channelName": "用户实付现金", "channelAmount": "20.8"},
            {"channelNo": "002", "channelName": "用户积分支付", "channelAmount": "20"},
        ],
        "printDetail": {
            "cardNo64": "622562****8888", "bank": "中信银行", "paymentOrderNo": "201612315689412157458787",
            "pointSale": "20000", "qrCode1": "htt://www.xxx.com/url", "qrCode2": "", "qrCode3": "",
            "barCode1": "12345679", "barCode2": "", "barCode3": "",
        },
        "memberDetail": {
            "memberId": "M000001545", "memberName": "TONY", "grade": "1", "status": "1",
            "balance": Decimal("1000.00"), "pointBalance": 30000,
        },
    }  # fmt: skip


def reply(body: dict[str, Any], action: str = "cardRedemption", **extra: Any) -> Envelope:
    return Envelope(action, "POS01", "CN123456", "663", body, extra=extra)


def unframe(frame: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    """(envelope, body) of a framed answer, checked the way a POS written from the book reads it."""
    assert len(frame) <= MAX_FRAME, len(frame)
    (length,) = struct.unpack(">H", frame[:2])
    assert length == len(frame) - 2, "the prefix does not count the JSON bytes"
    envelope = jsonio.loads(frame[2:].decode("utf-8"))
    assert isinstance(envelope, dict)
    body = jsonio.loads(base64.b64decode(envelope["body"], validate=True).decode("utf-8"))
    assert isinstance(body, dict)
    return envelope, body


def whole_frame_len(envelope: Envelope) -> int:
    return 2 + len(encode_envelope(envelope))


# --- answers that fit are sent as they are ---------------------------------------------------


def test_an_answer_that_fits_is_framed_unchanged() -> None:
    envelope = reply(book_answer())
    assert frame_reply(envelope) == frame_message(encode_envelope(envelope))


def test_the_largest_answer_that_fits_is_unchanged_and_one_byte_more_is_fitted() -> None:
    """The budget counts the Base64 body (4 bytes per 3) and the envelope around it exactly."""
    answer = book_answer()
    answer["memo"] = ""
    low, high = 0, MAX_MESSAGE_LEN  # the longest memo whose whole envelope still fits
    while low < high:
        middle = (low + high + 1) // 2
        answer["memo"] = "m" * middle
        if whole_frame_len(reply(answer)) <= MAX_FRAME:
            low = middle
        else:
            high = middle - 1
    answer["memo"] = "m" * low
    fits = reply(answer)
    assert frame_reply(fits) == frame_message(encode_envelope(fits))

    answer["memo"] = "m" * (low + 3)  # one more Base64 quantum: 4 bytes over
    too_large = reply(answer)
    assert whole_frame_len(too_large) > MAX_FRAME
    _, body = unframe(frame_reply(too_large))
    assert body[OMITTED_FIELD] == ["memo"]
    assert body["goodsDetail"] == jsonio.loads(jsonio.dumps(answer["goodsDetail"]))


# --- answers that do not fit -----------------------------------------------------------------


def test_a_large_basket_keeps_the_mandatory_and_receipt_fields_and_names_what_was_left_out() -> None:
    answer = book_answer(lines=600)
    envelope = reply(answer)
    assert whole_frame_len(envelope) > 2 * MAX_FRAME  # the backend's echo of a big basket
    sent, body = unframe(frame_reply(envelope))

    echoed = (sent["action"], sent["deviceNo"], sent["shopNo"], sent["brand"])
    assert echoed == ("cardRedemption", "POS01", "CN123456", "663")
    assert body[OMITTED_FIELD] == ["goodsDetail"]
    assert body[DETAIL_FIELD] == "/v1/transactions/99000009100010101732123"
    assert TRUNCATED_FIELD not in body
    expected = {k: v for k, v in answer.items() if k != "goodsDetail"}
    assert {k: v for k, v in body.items() if k not in (OMITTED_FIELD, DETAIL_FIELD)} == expected
    assert list(body)[:6] == list(MANDATORY_FIELDS), "the book's field order is kept"


def test_an_inquiry_answer_points_at_the_original() -> None:
    answer = book_answer(lines=600, trace_no="INQ0001") | {"originalTraceNo": "SALE0001"}
    _, body = unframe(frame_reply(reply(answer, action="inquiry")))
    assert (body["traceNo"], body["originalTraceNo"], body["returnCode"]) == ("INQ0001", "SALE0001", "00")
    assert body[DETAIL_FIELD] == "/v1/transactions/SALE0001"


def test_fields_the_receipt_does_not_need_go_first_largest_first() -> None:
    answer = book_answer(lines=250)  # about 55 KB of goods lines
    answer["vendorTrace"] = "v" * 50_000  # unknown to the book: not a receipt field
    answer["smallUnknown"] = "kept"
    _, body = unframe(frame_reply(reply(answer)))
    assert body[OMITTED_FIELD] == ["goodsDetail", "vendorTrace"]
    assert body["smallUnknown"] == "kept"
    assert body["printDetail"] == answer["printDetail"]


def test_receipt_fields_are_left_out_only_when_nothing_else_is_left() -> None:
    answer = book_answer()
    answer["printDetail"] = {**answer["printDetail"], "printContent": "p" * 40_000}
    answer["memberDetail"] = {**answer["memberDetail"], "history": ["h" * 100] * 300}
    _, body = unframe(frame_reply(reply(answer)))
    assert body[OMITTED_FIELD] == ["goodsDetail", "printDetail"], "largest receipt field only"
    assert body["memberDetail"] == answer["memberDetail"]
    assert body["fundChannel"] == answer["fundChannel"]


def test_a_hostile_return_desc_is_cut_before_any_receipt_field_goes() -> None:
    answer = book_answer()
    answer["returnDesc"] = "发" * 60_000
    _, body = unframe(frame_reply(reply(answer)))
    assert body[TRUNCATED_FIELD] == ["returnDesc"]
    assert body["returnDesc"]
    assert answer["returnDesc"].startswith(body["returnDesc"])
    assert body["printDetail"] == answer["printDetail"]
    assert body["returnCode"] == "00"


def test_when_every_mandatory_field_is_huge_each_is_cut_and_all_still_present() -> None:
    answer = {name: "9" * 70_000 for name in MANDATORY_FIELDS}
    _, body = unframe(frame_reply(reply(answer)))
    assert body[TRUNCATED_FIELD] == list(MANDATORY_FIELDS)
    for name in MANDATORY_FIELDS:
        assert answer[name].startswith(body[name]), name


def test_a_non_text_mandatory_value_that_is_too_large_is_cut_as_its_json() -> None:
    answer = book_answer() | {"returnDesc": ["x" * 100] * 1000}
    _, body = unframe(frame_reply(reply(answer)))
    assert body[TRUNCATED_FIELD] == ["returnDesc"]
    assert json.dumps(answer["returnDesc"], separators=(",", ":")).startswith(body["returnDesc"])


def test_a_huge_echoed_action_is_cut_so_the_answer_still_fits() -> None:
    """A refused 30 000-character action is echoed back in the envelope (issue 10, item 3)."""
    answer = {"traceNo": "", "orderNo": "", "transDate": "20260101000000", "returnCode": "MB05",
              "returnDesc": "unknown action", "paidAmount": 0}  # fmt: skip
    sent, body = unframe(frame_reply(reply(answer, action="A" * 70_000)))
    assert sent["action"] == "A" * 256
    assert body == answer


def test_extra_envelope_keys_stay_when_there_is_room_and_go_when_there_is_not() -> None:
    answer = book_answer(lines=600)
    sent, _ = unframe(frame_reply(reply(answer, sign="ab12", timestamp="20260101")))
    assert (sent["sign"], sent["timestamp"]) == ("ab12", "20260101")
    sent, body = unframe(frame_reply(reply(answer, sign="s" * 70_000)))
    assert "sign" not in sent
    assert body["returnCode"] == "00"


def test_values_that_cannot_be_written_as_json_are_left_out_or_stood_in_for() -> None:
    answer = book_answer() | {
        "notANumber": float("nan"), "anObject": object(), "loneSurrogate": "\udfff", "returnDesc": "ok \udfff",
    }  # fmt: skip
    _, body = unframe(frame_reply(reply(answer)))
    assert body[OMITTED_FIELD] == ["notANumber", "anObject", "loneSurrogate"]
    assert body[TRUNCATED_FIELD] == ["returnDesc"]
    assert body["returnDesc"] == "ok \ufffd"
    assert body["goodsDetail"] == jsonio.loads(jsonio.dumps(answer["goodsDetail"]))


def test_the_omitted_list_is_capped() -> None:
    answer = book_answer() | {f"field{i:03d}": "f" * 600 for i in range(200)}
    _, body = unframe(frame_reply(reply(answer)))
    omitted = body[OMITTED_FIELD]
    assert len(omitted) == MAX_LISTED_NAMES
    assert omitted[-1] == MORE_NAMES


def test_the_backends_own_marker_fields_are_replaced_not_trusted() -> None:
    answer = book_answer(lines=600) | {OMITTED_FIELD: ["nothing"], DETAIL_FIELD: "/elsewhere"}
    _, body = unframe(frame_reply(reply(answer)))
    assert body[OMITTED_FIELD] == ["goodsDetail"]
    assert body[DETAIL_FIELD] == "/v1/transactions/99000009100010101732123"


def test_a_body_with_a_non_text_key_and_a_deep_value_still_gets_an_answer() -> None:
    deep: Any = "bottom"
    for _ in range(100_000):
        deep = [deep]
    answer: dict[Any, Any] = book_answer(lines=600) | {("tuple", "key"): 1, "deep": deep}
    _, body = unframe(frame_reply(reply(answer)))
    assert body["returnCode"] == "00"
    assert "deep" in body[OMITTED_FIELD]


# --- properties ----------------------------------------------------------------------------------

_TEXT = st.text(max_size=40)
_AMOUNT = st.decimals(min_value=0, max_value=Decimal("9999999999.99"), places=2)
_SCALAR = st.none() | st.booleans() | st.integers(-(10**15), 10**15) | _AMOUNT | st.text(max_size=30)
_VALUE = st.recursive(
    _SCALAR,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=25,
)
#: Bulk as real backends and hostile ones produce it: a long echoed list, a long string.
_LONG_LIST = st.builds(
    lambda item, n: [item] * n, st.dictionaries(st.text(max_size=12), _SCALAR, max_size=8), st.integers(0, 3000)
)
_LONG_TEXT = st.builds(lambda ch, n: ch * n, st.characters(), st.integers(0, 90_000))
_BULK = _LONG_LIST | _LONG_TEXT


@st.composite
def answers(draw: st.DrawFn) -> dict[str, Any]:
    """Any answer: the mandatory fields as backends send them, plus any other fields, some bulky."""
    answer: dict[str, Any] = {
        "traceNo": draw(_TEXT), "orderNo": draw(_TEXT), "transDate": draw(_TEXT),
        "returnCode": draw(_TEXT), "returnDesc": draw(st.text(max_size=200) | _LONG_TEXT),
        "paidAmount": draw(_AMOUNT | st.integers(0, 10**9)),
    }  # fmt: skip
    others = draw(st.dictionaries(st.text(max_size=20), _VALUE | _BULK, max_size=8))
    answer.update({k: v for k, v in others.items() if k not in answer})
    order = draw(st.permutations(list(answer)))
    return {key: answer[key] for key in order}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(answers(), st.sampled_from(["cardRedemption", "cardPayment", "inquiry"]))
def test_any_answer_is_framed_within_the_prefix_and_keeps_what_the_pos_must_know(
    answer: dict[str, Any], action: str
) -> None:
    _, body = unframe(frame_reply(reply(answer, action=action)))
    for name in ("returnCode", "traceNo", "orderNo", "transDate", "paidAmount"):
        assert body[name] == answer[name], name
    markers = {OMITTED_FIELD, TRUNCATED_FIELD, DETAIL_FIELD}
    left_out = set(body.get(OMITTED_FIELD, []))
    cut = set(body.get(TRUNCATED_FIELD, []))
    for name, value in answer.items():
        if name in body and name not in cut and name not in markers:
            assert body[name] == jsonio.loads(jsonio.dumps(value)), name
        elif name not in markers and len(left_out) < MAX_LISTED_NAMES:
            assert name in left_out or name in cut, f"{name} vanished without a mark"


_ANYTHING = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.decimals() | st.text() | st.binary(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    st.dictionaries(st.sampled_from([*MANDATORY_FIELDS, "goodsDetail"]) | st.text(), _ANYTHING | _BULK, max_size=10),
    st.text(max_size=300) | _LONG_TEXT,
)
def test_any_dict_at_all_gets_a_framed_answer_that_parses(answer: dict[str, Any], action: str) -> None:
    frame = frame_reply(reply(answer, action=action))
    assert len(frame) <= MAX_FRAME
    envelope = json.loads(frame[2:].decode("utf-8"))
    assert isinstance(json.loads(base64.b64decode(envelope["body"], validate=True)), dict)


@pytest.mark.parametrize("lines", [235, 1000, 5000])
def test_baskets_of_any_size_answer_00(lines: int) -> None:
    _, body = unframe(frame_reply(reply(book_answer(lines))))
    assert body["returnCode"] == "00"
    assert body[OMITTED_FIELD] == ["goodsDetail"]
