"""The test keys of docs/device-protocol.md §11 the kit loads, as ciphertexts and check values.

The kit holds no clear key and does no cryptography (misbridge has no TDES code, R15): it knows a
key only as it goes over the line, wrapped under the key above it, with its KCV. These are the
§11 vectors, so a pad holding the test transport key (``3131…31``) and the test master key
(``CA5D…E9``) unwraps them; ``simulators/crypto.py`` holds the clear keys and a test checks that
these values come from them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

_HEX_DIGITS = "0123456789ABCDEF"


@dataclass(frozen=True)
class KnownKey:
    """A test key as the kit sends it: its ciphertext under the key above it, and its KCV (§11)."""

    name: str
    enc_hex: str = field(repr=False)
    kcv: str


def wrong_kcv(kcv: str) -> str:
    """``kcv`` with its last hex digit changed: a KCV no pad may accept for that key."""
    return kcv[:-1] + _HEX_DIGITS[(_HEX_DIGITS.index(kcv[-1]) + 1) % len(_HEX_DIGITS)]


#: §11's LOAD_WORKING_KEY worked example: ENC_WORKING_KEY under the test master key, its KCV, a wrong KCV.
VECTOR_ENC_KEY = "6701EAD6A9AD51E51AA406E2C27FCFA9"
VECTOR_KCV = "8D0A74"
VECTOR_WRONG_KCV = wrong_kcv(VECTOR_KCV)  # 8D0A75, as §11 says

#: Working keys wrapped under the test master key (§11), by KCV: what the kit can load into a slot.
VECTOR_WORKING_KEY = KnownKey("the §11 working-key vector", VECTOR_ENC_KEY, VECTOR_KCV)
TEST_WORKING_KEY = KnownKey("the test working key", "AA3A8E0552E755BDA9D6A7B8B6367174", "08D7B4")
WORKING_KEYS = {key.kcv: key for key in (VECTOR_WORKING_KEY, TEST_WORKING_KEY)}

#: Master keys wrapped under the test transport key (§11), by KCV: what the kit can load as master key.
TEST_MASTER_KEY = KnownKey("the test master key", "29DAC727E0480209665C1B5236922FD8", "43C6CC")
VECTOR_MASTER_KEY = KnownKey("the §11 master-key vector", "E51D9047310F731798CF74AF483931B3", "712C8C")
MASTER_KEYS = {key.kcv: key for key in (TEST_MASTER_KEY, VECTOR_MASTER_KEY)}
