"""What the conformance kit knows of keys: the §11 test keys it loads.

The kit holds no clear key (misbridge has no TDES code), so its ciphertexts and KCVs are all it
knows; a typo in one would make a conformant pad fail a key check. The clear keys are the
simulators'.
"""

from __future__ import annotations

import pytest

from misbridge.tools.conformance.vectors import (
    MASTER_KEYS,
    TEST_MASTER_KEY,
    TEST_WORKING_KEY,
    VECTOR_KCV,
    VECTOR_MASTER_KEY,
    VECTOR_WORKING_KEY,
    VECTOR_WRONG_KCV,
    WORKING_KEYS,
    KnownKey,
    wrong_kcv,
)
from simulators.crypto import TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX, TEST_WORKING_KEY_HEX, key_check_value, unwrap_key

#: The clear keys of docs/device-protocol.md §11 the simulators do not hold under these names.
VECTOR_MASTER_KEY_HEX = "1CF88AB5D64F314F9EF237FBD99E29CD"
VECTOR_WORKING_KEY_HEX = "807A23AD32B36D457AE91FDF927570EA"


@pytest.mark.parametrize(
    ("key", "clear_hex", "parent_hex"),
    [
        (TEST_MASTER_KEY, TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX),
        (VECTOR_MASTER_KEY, VECTOR_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX),
        (TEST_WORKING_KEY, TEST_WORKING_KEY_HEX, TEST_MASTER_KEY_HEX),
        (VECTOR_WORKING_KEY, VECTOR_WORKING_KEY_HEX, TEST_MASTER_KEY_HEX),
    ],
    ids=["test master key", "master-key vector", "test working key", "working-key vector"],
)
def test_each_known_key_unwraps_under_its_parent_to_its_kcv(key: KnownKey, clear_hex: str, parent_hex: str) -> None:
    clear = unwrap_key(key.enc_hex, bytes.fromhex(parent_hex))
    assert clear.hex().upper() == clear_hex
    assert key_check_value(clear) == key.kcv


def test_the_tables_hold_two_keys_each_by_kcv() -> None:
    assert {TEST_MASTER_KEY.kcv: TEST_MASTER_KEY, VECTOR_MASTER_KEY.kcv: VECTOR_MASTER_KEY} == MASTER_KEYS
    assert {TEST_WORKING_KEY.kcv: TEST_WORKING_KEY, VECTOR_WORKING_KEY.kcv: VECTOR_WORKING_KEY} == WORKING_KEYS


def test_a_wrong_kcv_differs_in_its_last_digit_only() -> None:
    assert (VECTOR_KCV, VECTOR_WRONG_KCV) == ("8D0A74", "8D0A75")  # §11's pair
    assert wrong_kcv("43C6CF") == "43C6C0"
    assert all(wrong_kcv(k)[:-1] == k[:-1] and wrong_kcv(k) != k for k in [*MASTER_KEYS, *WORKING_KEYS])


def test_no_ciphertext_in_a_repr() -> None:
    assert TEST_MASTER_KEY.enc_hex not in repr(TEST_MASTER_KEY)
