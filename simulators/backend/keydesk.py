"""The backend simulator's HSM: the store's rootKey, mwTmk, per-day working keys (docs/backend.md).

* ``DownloadKey`` (signed with the rootKey, see :mod:`simulators.backend.processor`) answers
  ``mwTmk`` TDES-ECB-encrypted under the rootKey, and its KCV.
* ``signIn`` answers today's ``pinKey`` for the terminal (the envelope's deviceNo)
  TDES-ECB-encrypted under ``mwTmk``, and its KCV, and records the day the terminal signed in.
  A working key is derived from the seed, the deviceNo and the date (:func:`simulators.crypto.day_key`,
  which a test may compute too); it is valid on the day of the sign-in and ``valid_days - 1`` days after.
* Card requests are decrypted with the terminal's current working key: PAN, then the PIN block
  checked against the card's PIN. A key that is not the one issued (the pad loaded another, or
  none) gives ``55`` incorrect PIN, as in the field; a terminal that never signed in, or whose
  sign-in is too old, gives ``A0`` sign in again. There is no key a terminal may use without
  signing in: a test that builds card data itself signs in first (``tests/keys.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from simulators.backend.codes import Declined, SimCode
from simulators.crypto import TEST_KEY_SEED, TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX, day_key, key_check_value, wrap_key

#: How the KCVs are sent: 4 bytes, as UnionPay's field 62 (misbridge keeps the first 3 for the pad).
KCV_BYTES = 4


@dataclass
class KeyDesk:
    """Keys per terminal. ``signed_in`` maps a deviceNo to the day of its last sign-in (in memory only)."""

    root_key: bytes = bytes.fromhex(TEST_ROOT_KEY_HEX)
    master_key: bytes = bytes.fromhex(TEST_MASTER_KEY_HEX)
    seed: bytes = TEST_KEY_SEED
    valid_days: int = 2
    signed_in: dict[str, date] = field(default_factory=dict)

    @property
    def root_key_hex(self) -> str:
        """The rootKey as the signing key of DownloadKey: its 32 uppercase hex characters."""
        return self.root_key.hex().upper()

    def download(self) -> dict[str, str]:
        """The DownloadKey answer's key fields: mwTmk under the rootKey, its KCV."""
        return {
            "mwTmk": wrap_key(self.master_key, self.root_key),
            "mwTmkKcv": key_check_value(self.master_key, KCV_BYTES),
        }

    def sign_in(self, device_no: str, today: date) -> dict[str, str]:
        """The sign-in answer's key fields: today's pinKey under mwTmk, its KCV, the key's date."""
        key = day_key(self.seed, device_no, today)
        self.signed_in[device_no] = today
        return {
            "pinKey": wrap_key(key, self.master_key),
            "pinKeyKcv": key_check_value(key, KCV_BYTES),
            "keyDate": today.strftime("%Y%m%d"),
        }

    def working_key(self, device_no: str, today: date) -> bytes:
        """The key ``device_no``'s pad should have encrypted card data and PIN with today.

        Raises:
            Declined: "A0" ``device_no`` never signed in, or its last sign-in is older than ``valid_days``.
        """
        day = self.signed_in.get(device_no)
        if day is None:
            raise Declined(SimCode.KEY_EXPIRED, "not signed in: sign in again")
        if (today - day).days >= self.valid_days:
            raise Declined(SimCode.KEY_EXPIRED, f"working key of {day:%Y%m%d} expired: sign in again")
        return day_key(self.seed, device_no, day)
