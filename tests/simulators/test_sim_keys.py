"""The simulators' key functions against the test vectors of the key-management guide (§9)."""

from __future__ import annotations

import pytest

from simulators.crypto import (
    TEST_MASTER_KEY_HEX,
    TEST_WORKING_KEY_HEX,
    decrypt_text,
    encrypt_block,
    encrypt_pin_block,
    encrypt_text,
    key_check_value,
    unwrap_key,
    wrap_key,
)


@pytest.mark.parametrize(
    ("key", "kcv"),
    [
        ("0123456789ABCDEFFEDCBA9876543210", "08D7B4"),  # the project's test key
        ("11111111111111111111111111111111", "82E136"),
        ("807A23AD32B36D457AE91FDF927570EA", "8D0A74"),  # UnionPay PIK
        ("1CF88AB5D64F314F9EF237FBD99E29CD", "712C8C"),
        ("C7D50808A7DFFE62B9943B45A4C77FC7", "AE103A"),
    ],
)
def test_kcv_is_the_first_3_bytes_of_zeros_encrypted(key: str, kcv: str) -> None:
    assert key_check_value(bytes.fromhex(key)) == kcv


def test_the_unionpay_sign_in_vector_unwraps_under_the_simulators_master_key() -> None:
    pik = unwrap_key("6701EAD6A9AD51E51AA406E2C27FCFA9", bytes.fromhex(TEST_MASTER_KEY_HEX))
    assert pik.hex().upper() == "807A23AD32B36D457AE91FDF927570EA"
    assert encrypt_block(bytes(8), pik).hex().upper() == "8D0A74B8C5EF66C6"


def test_wrap_is_ecb_block_by_block_and_unwrap_reverses_it() -> None:
    key = bytes.fromhex(TEST_WORKING_KEY_HEX)
    assert wrap_key(key, key) == "1A4D672DCA6CB3351FD1B02B237AF9AE"  # the guide's "K under itself"
    master = bytes.fromhex(TEST_MASTER_KEY_HEX)
    assert wrap_key(key, master) == "AA3A8E0552E755BDA9D6A7B8B6367174"  # docs/device-protocol.md §11
    assert unwrap_key(wrap_key(key, master), master) == key
    with pytest.raises(ValueError, match="16 bytes"):
        unwrap_key("1A4D672DCA6CB335", master)


def test_card_text_is_padded_with_ascii_f_only_up_to_a_multiple_of_8() -> None:
    key = bytes.fromhex(TEST_WORKING_KEY_HEX)
    assert len(encrypt_text("6225888812345678", key)) == 32  # 16 digits: no padding block
    assert encrypt_text("622588881234567", key)[16:] == encrypt_block(b"1234567F", key).hex().upper()
    assert decrypt_text(encrypt_text("6225888812345678=2912101", key), key) == "6225888812345678=2912101"


def test_iso_9564_format_0_vector_of_the_book() -> None:
    # e-Buy book §7.4: PIN 123456, PAN 123456789012345678 -> clear block 061253DFFEDCBA98.
    key = bytes.fromhex(TEST_WORKING_KEY_HEX)
    clear = bytes.fromhex("061253DFFEDCBA98")
    assert encrypt_pin_block("123456", "123456789012345678", key) == encrypt_block(clear, key).hex().upper()
