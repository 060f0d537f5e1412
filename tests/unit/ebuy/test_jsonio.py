"""JSON limits: every hostile document is a JSONDecodeError, never a crash (issue 10, items 3 and 8)."""

from __future__ import annotations

import contextlib
import pickle
import time
from decimal import Decimal
from typing import Any

import pytest
import simplejson
from hypothesis import given, settings
from hypothesis import strategies as st

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import CARD_REDEMPTION_REQUEST_TEXT

PAN = "4111111111111111"


def _refused(text: str | bytes) -> jsonio.JSONLimitError:
    with pytest.raises(jsonio.JSONLimitError) as caught:
        jsonio.loads(text)
    assert isinstance(caught.value, jsonio.JSONDecodeError)  # every "not JSON" handler catches it
    return caught.value


def test_book_example_still_parses_with_exact_amounts() -> None:
    body = jsonio.loads(CARD_REDEMPTION_REQUEST_TEXT)
    assert body["totalAmount"] == Decimal("40.8")
    assert body["memberDetail"]["balance"] == Decimal("1000.00")
    assert jsonio.dumps(body["memberDetail"]["balance"]) == "1000.00"


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('{"traceNo":"T1","traceNo":"T2"}', "traceNo"),
        ('{"goodsDetail":[{"price":8,"quantity":2,"price":0}]}', "price"),
        ('{"a":{"b":{"c":1,"c":1}}}', "c"),
    ],
)
def test_duplicate_keys_are_refused_naming_the_key(text: str, key: str) -> None:
    assert f"duplicate key '{key}'" in str(_refused(text))


def test_a_hostile_duplicate_key_is_shown_short_and_masked() -> None:
    long_key = "k" * 30_000
    message = str(_refused(f'{{"{long_key}":1,"{long_key}":2}}'))
    assert len(message) < 200
    assert "30000 characters" in message
    message = str(_refused(f'{{"pay {PAN}":1,"pay {PAN}":2}}'))
    assert PAN not in message
    assert "411111******1111" in message


@pytest.mark.parametrize("opening", ["[", '{"a":', '[{"a":'])
def test_nesting_10000_deep_is_refused_before_the_scanner_recurses(opening: str) -> None:
    closing = {"[": "]", '{"a":': "}", '[{"a":': "}]"}[opening]
    text = opening * 10_000 + "1" + closing * 10_000
    assert "at most 32" in str(_refused(text))
    assert "at most 32" in str(_refused(text.encode("utf-8")))


def test_nesting_limit_is_exactly_32_levels() -> None:
    assert jsonio.loads("[" * 32 + "]" * 32) is not None
    _refused("[" * 33 + "]" * 33)
    assert jsonio.nesting_depth('{"a":[{"b":[]}]}') == 4


def test_brackets_inside_strings_do_not_count() -> None:
    text = '{"memo":"' + "[{" * 5_000 + '\\"[[[", "x":["]]]"]}'
    assert jsonio.loads(text)["x"] == ["]]]"]


def test_unterminated_strings_are_scanned_in_linear_time() -> None:
    started = time.perf_counter()
    for text in ('"' + '\\"' * 40_000, '["' + "\\" * 80_001, "[" * 40 + '"' * 60_000):
        with pytest.raises(jsonio.JSONDecodeError):
            jsonio.loads(text)
    assert time.perf_counter() - started < 2.0  # quadratic would take minutes


def test_numbers_beyond_40_digits_are_refused_not_a_value_error() -> None:
    assert "5000 digits" in str(_refused("1" * 5_000))  # Python's own limit raised ValueError here
    assert "41 digits" in str(_refused('{"quantity":' + "9" * 41 + "}"))
    assert "41 digits" in str(_refused("-0." + "1" * 40))
    assert jsonio.loads("9" * 40) == int("9" * 40)
    assert jsonio.loads("1." + "0" * 39) == Decimal("1." + "0" * 39)


def test_exponents_beyond_999_are_refused() -> None:
    assert jsonio.loads("1e999") == Decimal("1e999")
    assert jsonio.loads("2.5E-999") == Decimal("2.5E-999")
    for text in ("1e1000", "1E-1000", "1e99999999999999999999", "1e" + "0" * 30 + "5"):
        if text.endswith("05"):
            assert jsonio.loads(text) == Decimal("1e5")  # leading zeros of an exponent are no size
        else:
            assert "exponent" in str(_refused(text))


@pytest.mark.parametrize("text", ['"\\udfff"', '{"a":"x\\ud800"}', '{"\\udc00":1}', '["ok","\\udbff"]'])
def test_lone_surrogate_escapes_are_refused(text: str) -> None:
    assert "surrogate" in str(_refused(text))


def test_a_surrogate_pair_is_a_character() -> None:
    assert jsonio.loads('{"goodsName":"\\ud83d\\ude00"}') == {"goodsName": "\U0001f600"}


def test_limit_errors_survive_pickling_and_carry_no_document() -> None:
    error = _refused('{"a":1,"a":2}')
    again = pickle.loads(pickle.dumps(error))  # noqa: S301 - our own object
    assert str(again) == str(error)
    assert isinstance(again, jsonio.JSONLimitError)
    assert error.doc == ""


def test_not_json_and_not_utf8_keep_their_errors() -> None:
    with pytest.raises(jsonio.JSONDecodeError):
        jsonio.loads("{")
    with pytest.raises(jsonio.JSONDecodeError):
        jsonio.loads("NaN")
    with pytest.raises(UnicodeDecodeError):
        jsonio.loads(b"\xff{}")


# --- within the limits, jsonio reads exactly what simplejson reads ----------------------------

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**39), max_value=10**39),
    st.decimals(allow_nan=False, allow_infinity=False, places=4, min_value=-(10**20), max_value=10**20),
    st.text(max_size=20),
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@settings(max_examples=300)
@given(_DOCUMENTS)
def test_documents_within_the_limits_parse_as_before(value: Any) -> None:
    text = jsonio.dumps(value)
    assert jsonio.loads(text) == simplejson.loads(text, use_decimal=True)


@settings(max_examples=500)
@given(st.text(alphabet='[]{}":,\\0123456789.eE-+ ntrufalsx', max_size=200))
def test_any_text_gives_a_value_or_a_json_error(text: str) -> None:
    with contextlib.suppress(jsonio.JSONDecodeError):
        jsonio.loads(text)
