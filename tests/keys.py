"""Working keys in tests: sign in to the backend simulator as the terminal, as misbridge does.

The backend simulator accepts card data only under the working key it issued the terminal at
its last ``signIn`` (there is no fixed test key): a card request from a terminal that never
signed in answers ``A0``. So a test that builds card data or PIN blocks itself, instead of
getting them from a pad that misbridge signed in, signs in first with :func:`sign_in` (a
misbridge ``BackendClient``) or :func:`issued_key_of` (on the answer of a raw ``signIn``), and
encrypts with the key it gets back: the same key the pad would have unwrapped.

A test that drives the pad simulator without misbridge gives it :func:`signed_in_pad_key`, what
``misbridge-sim pinpad --keys signed-in`` holds, or loads a key over the line with
:func:`load_working_key`, as misbridge does after its sign-in. A test that needs the key a running
daemon signed in for finds it by the KCV the daemon reports: :func:`issued_day_key`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any, Protocol

from misbridge.backend.keys import KeySubmitter
from misbridge.backend.keys import sign_in as sign_in_call
from misbridge.config.settings import KeySettings
from simulators.crypto import TEST_KEY_SEED, TEST_MASTER_KEY_HEX, day_key, key_check_value, unwrap_key, wrap_key
from simulators.pinpad.cli import signed_in_key_hex

#: mwTmk of the simulated store: the pad unwraps the pinKey of a signIn answer with it.
MASTER_KEY = bytes.fromhex(TEST_MASTER_KEY_HEX)
#: The default ``[keys]`` names: ``signIn``, ``pinKey``, ``pinKeyKcv``.
KEY_SETTINGS = KeySettings()
_SERIAL = itertools.count(1)


class KeyLoader(Protocol):
    """The one driver call :func:`load_working_key` needs (``MisPosV1Driver`` fits)."""

    async def load_working_key(self, key_index: int, enc_key_hex: str, kcv_hex: str) -> None: ...


def sign_in_trace_no() -> str:
    """A traceNo for a test's signIn, never used before in this run.

    ``20250102`` + a 16-digit sequence: beside ``tests.simulators.booksim.fresh_trace_no``
    (``20250101``...), so the two never collide in one simulator's ledger.
    """
    return f"20250102{next(_SERIAL):016d}"


def issued_key(pin_key_hex: str, kcv_hex: str) -> bytes:
    """The clear working key of a signIn answer: ``pinKey`` unwrapped under mwTmk, as the pad does it.

    Raises:
        AssertionError: the key's KCV is not the answer's (the pad would refuse the load with 11).
    """
    key = unwrap_key(pin_key_hex, MASTER_KEY)
    assert key_check_value(key, len(kcv_hex) // 2) == kcv_hex.upper(), "pinKey does not match its KCV"
    return key


def issued_key_of(answer: Mapping[str, Any]) -> bytes:
    """:func:`issued_key` of a raw signIn answer body (``pinKey``, ``pinKeyKcv``), checked to be approved."""
    assert answer["returnCode"] == "00", answer
    return issued_key(answer[KEY_SETTINGS.pin_key_field], answer[KEY_SETTINGS.pin_key_kcv_field])


async def sign_in(client: KeySubmitter) -> bytes:
    """Sign in to the backend as ``client``'s terminal (its deviceNo) and return today's working key.

    Through misbridge's own ``sign_in`` call, so the answer passes the checks the daemon makes.
    """
    wrapped = await sign_in_call(client, KEY_SETTINGS, sign_in_trace_no())
    return issued_key(wrapped.enc_key_hex, wrapped.kcv_hex)


def signed_in_pad_key() -> bytes:
    """The working key in slot 1 of a pad simulator started ``--keys signed-in`` (today's key of POS01).

    Read it once per test and give the same value to the pad (``working_key_hex=key.hex()``)
    and to the decryption, so that a test running over midnight still agrees with itself.
    """
    return bytes.fromhex(signed_in_key_hex())


async def load_working_key(driver: KeyLoader, key: bytes, key_index: int = 1) -> None:
    """LOAD_WORKING_KEY of ``key`` under the test master key, with its KCV: what misbridge sends after a sign-in."""
    await driver.load_working_key(key_index, wrap_key(key, MASTER_KEY), key_check_value(key))


def issued_day_key(kcv_hex: str, device_no: str = "POS01", *, today: date | None = None) -> bytes:
    """The working key the backend simulator issued ``device_no`` today or yesterday whose KCV is ``kcv_hex``.

    misbridge holds no clear key and reports only KCVs (``/health``): a test that needs the key a
    daemon signed in for and loaded finds it by the pad's WORKING_KEY_KCV. Yesterday too, for a
    sign-in just before midnight.

    Raises:
        AssertionError: neither day's key has that KCV (the pad holds a key the simulator did not issue).
    """
    today = today or date.today()
    for day in (today, today - timedelta(days=1)):
        key = day_key(TEST_KEY_SEED, device_no, day)
        if key_check_value(key) == kcv_hex.upper():
            return key
    raise AssertionError(f"no working key of {device_no} from {today - timedelta(days=1)} or {today} has KCV {kcv_hex}")
