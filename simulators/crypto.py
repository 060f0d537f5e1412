"""Test-key cryptography shared by the PIN-pad and backend simulators.

This is what a real PIN pad does inside its secure hardware and what the e-Buy backend
does in its HSM: ISO 9564 format-0 PIN blocks (e-Buy book §7.4) and 3DES encryption of
PAN and tracks with the working key ("3DES Encryption with pinKey, result format is HEX",
§8.5). It lives in ``simulators`` on purpose: misbridge itself never builds or opens a
PIN block and never holds the working key (R15).
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import date

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

#: The simulated pad's master key, injected "at provisioning" (docs/device-protocol.md §11). It is
#: the TMK of the UnionPay sign-in test vector, so that vector loads as it is; never a production key.
TEST_MASTER_KEY_HEX = "CA5D92598DCA48CE8A4C76361A9269E9"
#: The e-Buy ``rootKey`` of the simulated store (docs/backend.md, "Keys and sign-in"): the backend
#: simulator signs DownloadKey with it and wraps ``mwTmk`` under it, the pad simulator holds it in
#: its transport-key slot. The transport key of the key-management guide's §9 vector (KTK 3131…31),
#: so that vector unwraps as it is; never a production key.
TEST_ROOT_KEY_HEX = "31" * 16
#: Seed of the backend simulator's per-day working keys (a test fixture, never a production secret).
TEST_KEY_SEED = b"misbridge-backend-simulator-key-seed"
#: Length of a key check value in KEY_CHECK_VALUE (§11): 3 bytes, 6 hex characters.
KCV_BYTES = 3
BLOCK = 8
_PAD = b"F"


def _triple_des(key: bytes) -> Cipher[modes.ECB]:
    # cryptography deprecates two-key 3DES; K1 K2 K1 is the same cipher written as three keys.
    full_key = key + key[:8] if len(key) == 16 else key
    # ECB: the PIN block is one 8-byte block, and the book encrypts card text block by block.
    return Cipher(TripleDES(full_key), modes.ECB())  # noqa: S305


def encrypt_block(data: bytes, key: bytes) -> bytes:
    """3DES-ECB encrypt data whose length is a multiple of 8."""
    encryptor = _triple_des(key).encryptor()
    return encryptor.update(data) + encryptor.finalize()


def decrypt_block(data: bytes, key: bytes) -> bytes:
    """3DES-ECB decrypt data whose length is a multiple of 8."""
    decryptor = _triple_des(key).decryptor()
    return decryptor.update(data) + decryptor.finalize()


def encrypt_text(text: str, key: bytes) -> str:
    """Encrypt ASCII text (PAN, track) the way the pad does: pad with 'F' to 8 bytes, 3DES-ECB, HEX."""
    raw = text.encode("ascii")
    raw += _PAD * (-len(raw) % BLOCK)
    return encrypt_block(raw, key).hex().upper()


def decrypt_text(hex_text: str, key: bytes) -> str:
    """Reverse :func:`encrypt_text`.

    Raises:
        ValueError: not hex, not a whole number of blocks, or not ASCII after decryption.
    """
    raw = bytes.fromhex(hex_text)
    if not raw or len(raw) % BLOCK:
        raise ValueError("encrypted text is not a whole number of 8-byte blocks")
    return decrypt_block(raw, key).rstrip(_PAD).decode("ascii")


def key_check_value(key: bytes, length: int = KCV_BYTES) -> str:
    """The KCV of a TDES key: the first ``length`` bytes of TDES-ECB(key, 8 zero bytes), uppercase hex.

    3 bytes (the default) is the X9.24 and mispos-v1 KCV; UnionPay's field 62 carries 4.
    """
    return encrypt_block(bytes(BLOCK), key)[:length].hex().upper()


def with_odd_parity(key: bytes) -> bytes:
    """``key`` with each byte's lowest bit set so that the byte has an odd number of 1 bits (DES parity)."""
    return bytes((b & 0xFE) | ((bin(b >> 1).count("1") + 1) % 2) for b in key)


def derive_key(seed: bytes, *parts: str) -> bytes:
    """A double-length TDES key with odd parity, derived from ``seed`` and ``parts`` (HMAC-SHA-256).

    Deterministic, so a test that knows the seed computes the simulator's keys itself (the
    per-day working keys of the backend simulator).
    """
    digest = hmac.new(seed, "|".join(parts).encode("utf-8"), hashlib.sha256).digest()
    return with_odd_parity(digest[: 2 * BLOCK])


def day_key(seed: bytes, device_no: str, day: date) -> bytes:
    """The working key (pinKey) the backend simulator issues to ``device_no`` signing in on ``day``.

    The pad simulator's ``--keys signed-in`` holds it too, so both agree without a shared fixed key.
    """
    return derive_key(seed, "pinKey", device_no, day.strftime("%Y%m%d"))


def wrap_key(key: bytes, master_key: bytes) -> str:
    """``key`` TDES-ECB-encrypted block by block under ``master_key``, as ENC_WORKING_KEY hex (§11)."""
    return encrypt_block(key, master_key).hex().upper()


def unwrap_key(enc_key_hex: str, master_key: bytes) -> bytes:
    """Reverse :func:`wrap_key`: what the pad's secure module does with ENC_WORKING_KEY.

    Raises:
        ValueError: not hex, or not a double-length (16-byte) key.
    """
    raw = bytes.fromhex(enc_key_hex)
    if len(raw) != 2 * BLOCK:
        raise ValueError("a working key is 16 bytes (double-length TDES)")
    return decrypt_block(raw, master_key)


def pan_field(pan: str) -> bytes:
    """The 8-byte PAN field of format 0: 0000 + the 12 digits left of the check digit."""
    digits = pan[:-1][-12:].rjust(12, "0")
    return bytes.fromhex("0000" + digits)


def pin_field(pin: str) -> bytes:
    """The 8-byte PIN field of format 0: 0, length, digits, F padding.

    Raises:
        ValueError: the PIN is not 4..12 digits.
    """
    if not (pin.isdigit() and 4 <= len(pin) <= 12):
        raise ValueError("a PIN is 4 to 12 digits")
    return bytes.fromhex(f"0{len(pin):X}{pin}".ljust(16, "F"))


def clear_pin_block(pin: str, pan: str) -> bytes:
    """ISO 9564 format 0 (ANSI X9.8): PIN field XOR PAN field."""
    return bytes(a ^ b for a, b in zip(pin_field(pin), pan_field(pan), strict=True))


def encrypt_pin_block(pin: str, pan: str, key: bytes) -> str:
    """The encrypted PIN block as 16 uppercase hex characters."""
    return encrypt_block(clear_pin_block(pin, pan), key).hex().upper()


def decrypt_pin(pin_block_hex: str, pan: str, key: bytes) -> str:
    """Recover the PIN from an encrypted format-0 block (what the backend's HSM does).

    Raises:
        ValueError: the block is malformed (wrong length, bad control nibble or padding).
    """
    block = decrypt_block(bytes.fromhex(pin_block_hex), key)
    if len(block) != BLOCK:
        raise ValueError("a PIN block is 8 bytes")
    field = bytes(a ^ b for a, b in zip(block, pan_field(pan), strict=True)).hex().upper()
    length = int(field[1], 16)
    if field[0] != "0" or not 4 <= length <= 12:
        raise ValueError("not a format-0 PIN block")
    pin, padding = field[2 : 2 + length], field[2 + length :]
    if not pin.isdigit() or set(padding) - {"F"}:
        raise ValueError("PIN block digits or padding are invalid")
    return pin
