"""What the conformance kit knows of keys: the §11 test keys it loads, and how it reads the pad's KCVs.

The kit holds no clear key (misbridge has no TDES code), so its ciphertexts and KCVs are all it
knows; a typo in one would make a conformant pad fail a key check. The clear master and transport
keys are the simulators'; the clear working keys are §11's vectors, which no simulator holds. A
pad whose DEVICE_INFO_REPLY breaks the KCV tags' form is played on an in-memory line, since the
simulator (whose messages validate themselves) cannot send one.
"""

from __future__ import annotations

import asyncio

import pytest

from misbridge.link import MessageType, Tag, encode_ack, encode_frame, encode_tlvs
from misbridge.tools.conformance.base import Failed
from misbridge.tools.conformance.key_checks import PadKeys, pad_keys
from misbridge.tools.conformance.line import RawHost
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
from misbridge.transport.memory import MemoryTransport, memory_pipe
from simulators.crypto import TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX, key_check_value, unwrap_key

#: The clear keys of docs/device-protocol.md §11 the simulators do not hold under these names.
VECTOR_MASTER_KEY_HEX = "1CF88AB5D64F314F9EF237FBD99E29CD"
VECTOR_WORKING_KEY_HEX = "807A23AD32B36D457AE91FDF927570EA"
#: The kit's second working key (§11: the key-management guide's 0123…3210, KCV 08D7B4).
KIT_WORKING_KEY_HEX = "0123456789ABCDEFFEDCBA9876543210"


@pytest.mark.parametrize(
    ("key", "clear_hex", "parent_hex"),
    [
        (TEST_MASTER_KEY, TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX),
        (VECTOR_MASTER_KEY, VECTOR_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX),
        (TEST_WORKING_KEY, KIT_WORKING_KEY_HEX, TEST_MASTER_KEY_HEX),
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


def _device_info_reply(request_id: int, master_kcv: bytes, working_kcv: bytes | None) -> bytes:
    tlvs = [
        (Tag.REQUEST_ID, str(request_id).encode()),
        (Tag.MODEL, b"KIT-TEST"),
        (Tag.FIRMWARE, b"1"),
        (Tag.SERIAL_NO, b"K1"),
        (Tag.PROTOCOL_VERSION, b"1"),
        (Tag.MASTER_KEY_KCV, master_kcv),
    ]
    if working_kcv is not None:
        tlvs.append((Tag.WORKING_KEY_KCV, working_kcv))
    return bytes([MessageType.DEVICE_INFO_REPLY]) + encode_tlvs(tlvs)


async def _pad_answering(end: MemoryTransport, payload: bytes) -> None:
    """A pad that acknowledges the host's first frame (SEQ 1) and answers it with ``payload``."""
    await end.read()
    end.write(encode_ack(1) + encode_frame(b"\x01" + payload))


async def _read_kcvs(payload: bytes) -> PadKeys:
    host_end, pad_end = memory_pipe("kit")
    pad = asyncio.create_task(_pad_answering(pad_end, payload))
    host = RawHost(host_end)
    try:
        return await pad_keys(host, 5)
    finally:
        await host.aclose()
        await pad


async def test_kcvs_of_six_hex_or_empty_are_read_as_the_pad_sent_them() -> None:
    assert await _read_kcvs(_device_info_reply(5, b"43C6CC", None)) == PadKeys("43C6CC", "")
    # A tag of LENGTH 0 is an empty slot, as an absent one is.
    assert await _read_kcvs(_device_info_reply(5, b"", b"08D7B4")) == PadKeys("", "08D7B4")


@pytest.mark.parametrize(("value", "rule"), [(b"43C6C", "whole bytes"), (b"43c6cc", "uppercase hex")])
async def test_a_kcv_tag_of_another_form_fails_naming_the_tag_and_the_rule(value: bytes, rule: str) -> None:
    with pytest.raises(Failed) as failed:
        await _read_kcvs(_device_info_reply(5, value, b"08D7B4"))
    assert "6 hex or absent" in failed.value.expected
    assert "MASTER_KEY_KCV" in failed.value.got
    assert rule in failed.value.got
