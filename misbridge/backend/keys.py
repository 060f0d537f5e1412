"""DownloadKey and the daily sign-in: the keys the PIN pad needs, as ciphertexts (docs/backend.md).

The book names ``DownloadKey`` (signed with ``rootKey``; its answer carries ``mwTmk`` TDES-
encrypted under ``rootKey``, §7.2) and lists a daily sign-in (§11.3); every other name is
misbridge's choice, configurable in ``[keys]``. Nothing here decrypts anything: misbridge
forwards each ciphertext to the pad, which unwraps it with the key it already holds and checks
the KCV (docs/device-protocol.md §11). What leaves this module is a :class:`WrappedKey`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from loguru import logger
from pydantic import SecretStr

from misbridge.backend.client import BackendReply
from misbridge.config.settings import KeySettings
from misbridge.errors import KeyExchangeError

#: A double-length TDES key as hex: 16 bytes, 32 characters (docs/device-protocol.md §11).
_KEY_HEX = re.compile(r"[0-9A-F]{32}")
#: A KCV from the backend: 3 to 8 bytes (X9.24 uses 3, UnionPay 4, some hosts 8).
_KCV_HEX = re.compile(r"(?:[0-9A-F]{2}){3,8}")
#: What the pad compares: the first 3 bytes (§11).
PAD_KCV_HEX_LEN = 6


@dataclass(frozen=True)
class WrappedKey:
    """A key as the backend issued it: encrypted under the key above it, with its check value.

    Attributes:
        name: which key (``mwTmk``, ``pinKey``), for messages.
        enc_key_hex: 32 uppercase hex characters, TDES-ECB under the parent key; never logged.
        kcv_hex: the first 3 bytes of its KCV, 6 uppercase hex characters (what the pad checks).
        reply: the whole reply body (other fields a backend adds, e.g. a key version).
    """

    name: str
    enc_key_hex: str = field(repr=False)
    kcv_hex: str
    reply: dict[str, Any] = field(repr=False, default_factory=dict)


class KeySubmitter(Protocol):
    """The one call this module needs (``BackendClient.submit`` fits)."""

    async def submit(
        self, action: str, body: Mapping[str, Any], *, signing_key: SecretStr | None = None
    ) -> BackendReply: ...


async def download_key(backend: KeySubmitter, settings: KeySettings, root_key: SecretStr, trace_no: str) -> WrappedKey:
    """DownloadKey, signed with ``root_key``: ``mwTmk`` under the rootKey, for LOAD_MASTER_KEY.

    Raises:
        BackendNotSent, BackendOutcomeUnknown: as for any call (nothing changes at the backend
            that a repeat would spoil: a new traceNo may simply ask again).
        KeyExchangeError: declined, or the reply's key or KCV is missing or malformed.
    """
    reply = await backend.submit(settings.download_key_action, {"traceNo": trace_no}, signing_key=root_key)
    return _wrapped(reply, "mwTmk", settings.mw_tmk_field, settings.mw_tmk_kcv_field)


async def sign_in(backend: KeySubmitter, settings: KeySettings, trace_no: str) -> WrappedKey:
    """The daily sign-in: today's ``pinKey`` under ``mwTmk``, for LOAD_WORKING_KEY.

    Signed like every other request (the shared signing key): misbridge holds no ``mwTmk`` to MAC with.

    Raises:
        BackendNotSent, BackendOutcomeUnknown, KeyExchangeError: as :func:`download_key`.
    """
    reply = await backend.submit(settings.sign_in_action, {"traceNo": trace_no})
    return _wrapped(reply, "pinKey", settings.pin_key_field, settings.pin_key_kcv_field)


class KeyExchange:
    """The key chain's backend calls for the service: DownloadKey and sign-in over one client.

    It fits core's ``KeyCenter`` protocol; core never sees the rootKey, only whether there is one.

    Args:
        client: the backend client (``BackendClient`` fits).
        settings: the ``[keys]`` action and field names.
        root_key: the rootKey DownloadKey is signed with (``config.secrets.load_root_key``), or None
            when this process does not hold it (the daemon's default: only provisioning needs it).
    """

    def __init__(self, client: KeySubmitter, settings: KeySettings, root_key: SecretStr | None) -> None:
        self._client = client
        self._settings = settings
        self._root_key = root_key

    @property
    def has_root_key(self) -> bool:
        """Whether :meth:`download_key` can be called (a rootKey was loaded)."""
        return self._root_key is not None

    async def download_key(self, trace_no: str) -> WrappedKey:
        """DownloadKey: ``mwTmk`` under the rootKey, as :func:`download_key`.

        Raises:
            KeyExchangeError: no rootKey was loaded (nothing is sent), or as :func:`download_key`.
            BackendNotSent, BackendOutcomeUnknown: as for any call.
        """
        if self._root_key is None:
            raise KeyExchangeError(
                f"{self._settings.download_key_action} needs the rootKey, and none is loaded "
                f"(credential {self._settings.root_key_credential!r} or keys.root_key_file)"
            )
        return await download_key(self._client, self._settings, self._root_key, trace_no)

    async def sign_in(self, trace_no: str) -> WrappedKey:
        """The daily sign-in: today's ``pinKey`` under ``mwTmk``, as :func:`sign_in`.

        Raises:
            BackendNotSent, BackendOutcomeUnknown, KeyExchangeError: as :func:`sign_in`.
        """
        return await sign_in(self._client, self._settings, trace_no)


def is_key_expired(return_code: str, settings: KeySettings) -> bool:
    """Whether a backend returnCode means: the working key is out of date, sign in again."""
    return return_code in settings.key_expired_codes


def _wrapped(reply: BackendReply, name: str, key_field: str, kcv_field: str) -> WrappedKey:
    if not reply.approved:
        raise KeyExchangeError(
            f"{reply.action} declined: {reply.return_code} {reply.body.get('returnDesc', '')}".rstrip(),
            backend_code=reply.return_code,
        )
    enc, kcv = reply.body.get(key_field), reply.body.get(kcv_field)
    # The ciphertext is never quoted: only its field name and what is wrong with it.
    if not isinstance(enc, str) or not _KEY_HEX.fullmatch(enc.upper()):
        raise KeyExchangeError(f"{reply.action} reply: {key_field} is not 32 hex characters")
    if not isinstance(kcv, str) or not _KCV_HEX.fullmatch(kcv.upper()):
        raise KeyExchangeError(f"{reply.action} reply: {kcv_field} is not a key check value (6 to 16 hex)")
    wrapped = WrappedKey(name, enc.upper(), kcv.upper()[:PAD_KCV_HEX_LEN], reply.body)
    logger.info("{}: {} received (KCV {})", reply.action, name, wrapped.kcv_hex)
    return wrapped
