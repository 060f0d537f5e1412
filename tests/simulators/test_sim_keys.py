"""The simulators' key functions against the test vectors of the key-management guide (§9)."""

from __future__ import annotations

import contextlib

import pytest

from simulators.crypto import (
    TEST_MASTER_KEY_HEX,
    TEST_ROOT_KEY_HEX,
    clear_pin_block,
    decrypt_block,
    decrypt_pin,
    decrypt_text,
    derive_key,
    encrypt_block,
    encrypt_pin_block,
    encrypt_text,
    key_check_value,
    unwrap_key,
    with_odd_parity,
    wrap_key,
)

#: A double-length key of the key-management guide, also the conformance kit's test working key
#: (docs/device-protocol.md §11, KCV 08D7B4): a vector here, no key either simulator holds.
VECTOR_KEY_HEX = "0123456789ABCDEFFEDCBA9876543210"


@pytest.mark.parametrize(
    ("key", "kcv"),
    [
        (VECTOR_KEY_HEX, "08D7B4"),  # the kit's test working key
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
    key = bytes.fromhex(VECTOR_KEY_HEX)
    assert wrap_key(key, key) == "1A4D672DCA6CB3351FD1B02B237AF9AE"  # the guide's "K under itself"
    master = bytes.fromhex(TEST_MASTER_KEY_HEX)
    assert wrap_key(key, master) == "AA3A8E0552E755BDA9D6A7B8B6367174"  # docs/device-protocol.md §11
    assert unwrap_key(wrap_key(key, master), master) == key
    with pytest.raises(ValueError, match="16 bytes"):
        unwrap_key("1A4D672DCA6CB335", master)


def test_card_text_is_padded_with_ascii_f_only_up_to_a_multiple_of_8() -> None:
    key = bytes.fromhex(VECTOR_KEY_HEX)
    assert len(encrypt_text("6225888812345678", key)) == 32  # 16 digits: no padding block
    assert encrypt_text("622588881234567", key)[16:] == encrypt_block(b"1234567F", key).hex().upper()
    assert decrypt_text(encrypt_text("6225888812345678=2912101", key), key) == "6225888812345678=2912101"


def test_iso_9564_format_0_vector_of_the_book() -> None:
    # e-Buy book §7.4: PIN 123456, PAN 123456789012345678 -> clear block 061253DFFEDCBA98.
    key = bytes.fromhex(VECTOR_KEY_HEX)
    clear = bytes.fromhex("061253DFFEDCBA98")
    assert encrypt_pin_block("123456", "123456789012345678", key) == encrypt_block(clear, key).hex().upper()


# -- published vectors (key-management guide §9) ---------------------------------------------


@pytest.mark.parametrize(
    ("key", "plain", "cipher"),
    [
        # NIST SP 800-20 Table A.1 (single DES: K1 = K2 = K3).
        ("0101010101010101" * 3, "8000000000000000", "95F8A5E5DD31D900"),
        ("0101010101010101" * 3, "4000000000000000", "DD7F121CA5015619"),
        # FIPS 81 ECB example, "Now is the time for all ".
        ("0123456789ABCDEF" * 3, b"Now is the time for all ".hex(), "3FA40E8A984D48156A271787AB8883F9893D51EC4B563B53"),
        # NIST SP 800-67 three-key TDEA example (the typo "qufck" is the standard's).
        (
            "0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123",
            b"The qufck brown fox jump".hex(),
            "A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900",
        ),
    ],
)
def test_tdes_ecb_matches_the_published_vectors(key: str, plain: str, cipher: str) -> None:
    assert encrypt_block(bytes.fromhex(plain), bytes.fromhex(key)).hex().upper() == cipher
    assert decrypt_block(bytes.fromhex(cipher), bytes.fromhex(key)).hex().upper() == plain.upper()


def test_the_transport_key_vector_unwraps_a_master_key_with_its_kcv() -> None:
    # Guide §9 "Transport": KTK 3131…31 (the simulators' rootKey) wraps a TMK.
    tmk = unwrap_key("E51D9047310F731798CF74AF483931B3", bytes.fromhex(TEST_ROOT_KEY_HEX))
    assert tmk.hex().upper() == "1CF88AB5D64F314F9EF237FBD99E29CD"
    assert key_check_value(tmk, 8) == "712C8C734B2E669E"


def test_kcv_lengths_and_the_unionpay_mac_key_check() -> None:
    key = bytes.fromhex(VECTOR_KEY_HEX)
    assert key_check_value(key, 4) == "08D7B4FB"
    assert key_check_value(key, 8) == "08D7B4FB629D0885"
    # UnionPay mode 003: the single-length MAK's check value is single DES.
    assert key_check_value(bytes.fromhex("5BB5C72CD00B7338" * 3), 4) == "AB7153CA"


@pytest.mark.parametrize(
    ("pin", "pan", "clear"),
    [
        ("123456", "123456789012345678", "061253DFFEDCBA98"),  # e-Buy book §7.4
        ("1234", "43219876543210987", "0412AC89ABCDEF67"),  # eftlab / ID TECH
        ("92389", "4000001234562", "0592789FFFEDCBA9"),  # payShield manual
        ("1234", "5555555551234567", "041261AAAAEDCBA9"),  # psec tests
    ],
)
def test_iso_9564_format_0_vectors_and_their_decryption(pin: str, pan: str, clear: str) -> None:
    assert clear_pin_block(pin, pan).hex().upper() == clear
    key = bytes.fromhex(VECTOR_KEY_HEX)
    assert decrypt_pin(encrypt_pin_block(pin, pan, key), pan, key) == pin


def test_a_pin_block_under_another_key_does_not_decode_as_the_pin() -> None:
    right, wrong = bytes.fromhex(VECTOR_KEY_HEX), bytes.fromhex(TEST_MASTER_KEY_HEX)
    block = encrypt_pin_block("123456", "6225620000018888", right)
    with contextlib.suppress(ValueError):  # the usual outcome: not a format-0 block at all
        assert decrypt_pin(block, "6225620000018888", wrong) != "123456"


def test_derived_keys_are_deterministic_double_length_with_odd_parity() -> None:
    key = derive_key(b"seed", "pinKey", "POS01", "20240102")
    assert len(key) == 16
    assert key == derive_key(b"seed", "pinKey", "POS01", "20240102")
    assert key != derive_key(b"seed", "pinKey", "POS01", "20240103")
    assert all(bin(b).count("1") % 2 == 1 for b in key)
    assert with_odd_parity(bytes.fromhex("0000FEFF")) == bytes.fromhex("0101FEFE")
