"""misbridge.ebuy.signing: the known-answer vector, the string layout, tamper detection."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misbridge.ebuy import signing

# WeChat Pay v2 vector (reliability-requirements §6), the same scheme family as e-Buy.
WECHAT_FIELDS = {
    "appid": "wxd930ea5d5a258f4f",
    "mch_id": "10000100",
    "device_info": "1000",
    "body": "test",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"
WECHAT_STRING = (
    "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100"
    "&nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
)
WECHAT_SIGN = "9A0A8659F005D6984697E2CA0A9CF3B7"

ENVELOPE = {"action": "inquiry", "deviceNo": "POS01", "shopNo": "CN123456", "brand": "663", "body": "eyJ9"}
KEY = "k"


def test_known_answer_string() -> None:
    assert signing.signing_string(WECHAT_FIELDS, WECHAT_KEY, include_body=True) == WECHAT_STRING


def test_known_answer_sign() -> None:
    assert signing.sign(WECHAT_FIELDS, WECHAT_KEY) == WECHAT_SIGN


def test_known_answer_verifies() -> None:
    assert signing.verify({**WECHAT_FIELDS, "sign": WECHAT_SIGN}, WECHAT_KEY)


def test_sign_and_empty_values_are_excluded() -> None:
    fields = {"b": "2", "a": "1", "sign": "XYZ", "empty": "", "number": 5}
    assert signing.signing_string(fields, "K", include_body=True) == "a=1&b=2&key=K"


def test_body_excluded_only_on_request() -> None:
    assert signing.signing_string(ENVELOPE, KEY, include_body=False) == (
        "action=inquiry&brand=663&deviceNo=POS01&shopNo=CN123456&key=k"
    )
    assert "body=eyJ9" in signing.signing_string(ENVELOPE, KEY, include_body=True)


def test_no_fields_is_just_the_key() -> None:
    assert signing.signing_string({}, "K", include_body=True) == "key=K"


def test_ascii_order_puts_upper_case_first() -> None:
    assert signing.signing_string({"b": "1", "B": "2", "a": "3"}, "K", include_body=True) == "B=2&a=3&b=1&key=K"


def test_truncate_keeps_a_prefix() -> None:
    full = signing.sign(ENVELOPE, KEY)
    assert len(full) == 32
    assert full == full.upper()
    assert signing.sign(ENVELOPE, KEY, truncate=16) == full[:16]


@pytest.mark.parametrize("truncate", [-1, 33])
def test_truncate_out_of_range(truncate: int) -> None:
    with pytest.raises(ValueError, match="truncate"):
        signing.sign(ENVELOPE, KEY, truncate=truncate)


def test_truncated_signature_verifies_with_the_same_setting_only() -> None:
    signed = {**ENVELOPE, "sign": signing.sign(ENVELOPE, KEY, truncate=16)}
    assert signing.verify(signed, KEY, truncate=16)
    assert not signing.verify(signed, KEY)


def test_missing_or_non_string_sign_fails() -> None:
    assert not signing.verify(ENVELOPE, KEY)
    assert not signing.verify({**ENVELOPE, "sign": 12345}, KEY)


def test_lower_case_signature_is_not_accepted() -> None:
    assert not signing.verify({**ENVELOPE, "sign": signing.sign(ENVELOPE, KEY).lower()}, KEY)


def test_wrong_key_fails() -> None:
    assert not signing.verify({**ENVELOPE, "sign": signing.sign(ENVELOPE, KEY)}, "other")


def test_extra_fields_signed_by_the_peer_verify() -> None:
    extended = {**ENVELOPE, "timestamp": "1483372334", "zzNew": "x"}
    assert signing.verify({**extended, "sign": signing.sign(extended, KEY)}, KEY)


def test_extra_field_added_after_signing_fails() -> None:
    signed = {**ENVELOPE, "sign": signing.sign(ENVELOPE, KEY)}
    assert not signing.verify({**signed, "injected": "1"}, KEY)


def test_non_ascii_values_are_hashed_as_utf8() -> None:
    fields = {"name": "牙膏"}
    assert signing.verify({**fields, "sign": signing.sign(fields, KEY)}, KEY)


_values = st.text(min_size=1, max_size=40)
_envelopes = st.fixed_dictionaries(
    {"action": _values, "deviceNo": _values, "shopNo": _values, "brand": _values, "body": _values},
    optional={"timestamp": _values, "extra": _values},
)


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[dict[str, str], dict[str, str], int]:
    envelope = draw(_envelopes)
    truncate = draw(st.sampled_from([0, 16]))
    signed = {**envelope, "sign": signing.sign(envelope, KEY, truncate=truncate)}
    name = draw(st.sampled_from(sorted(signed)))
    value = signed[name]
    position = draw(st.integers(0, len(value) - 1))
    replacement = draw(st.characters().filter(lambda char: char != value[position]))
    mutated = {**signed, name: value[:position] + replacement + value[position + 1 :]}
    return signed, mutated, truncate


@given(_mutations())
def test_any_single_character_mutation_fails(case: tuple[dict[str, str], dict[str, str], int]) -> None:
    signed, mutated, truncate = case
    assert signing.verify(signed, KEY, truncate=truncate)
    assert not signing.verify(mutated, KEY, truncate=truncate)


@given(_envelopes, st.text(min_size=1, max_size=40))
def test_without_body_signing_the_body_is_unprotected(envelope: dict[str, str], other_body: str) -> None:
    # Why include_body defaults to True: with it off, any body passes.
    signed = {**envelope, "sign": signing.sign(envelope, KEY, include_body=False)}
    assert signing.verify({**signed, "body": other_body}, KEY, include_body=False)


def test_a_lone_surrogate_fails_verification_instead_of_raising() -> None:
    # Found by the mutation property above: "\ud800" has no UTF-8 form, and encoding it raised.
    signed = {"action": "inquiry", "body": "e30=", "sign": signing.sign({"action": "inquiry", "body": "e30="}, KEY)}
    assert not signing.verify({**signed, "body": "e30\ud800"}, KEY)
    assert not signing.verify({**signed, "sign": signed["sign"][:-1] + "\ud800"}, KEY)
