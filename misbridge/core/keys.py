"""The key keeper: signs in, keeps the PIN pad's working key the backend's, and says when cards may be read.

The chain (docs/backend.md, "Keys and sign-in"): ``rootKey`` → DownloadKey → ``mwTmk`` in the
pad (provisioning, :meth:`KeyKeeper.provision`) → daily sign-in → ``pinKey`` loaded into the
pad with LOAD_WORKING_KEY. misbridge only ever holds ciphertexts and check values: the pad
unwraps each key with the one above it and compares the KCV, so **the pad's reported KCV
decides** whether a key is in place (a half-finished load leaves the old KCV, and misbridge
then loads again or refuses cards; it never guesses).

:class:`KeyKeeper` runs as one background task (:meth:`KeyKeeper.run`). It signs in at start,
at ``keys.sign_in_at`` each day, after a card answer whose returnCode means "key expired", and
loads the key again whenever the pad reports another working-key KCV (a reconnect, a swapped
pad). Card actions ask :meth:`KeyKeeper.check_ready` before the customer is prompted: not
signed in, a pad without the key, or a backend that is known to be down refuse at once
(MB50, MB51) instead of after the card and PIN. Pad work and key loads never overlap: both
hold :attr:`KeyKeeper.pad_lock`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Literal, Protocol

from loguru import logger

from misbridge.config.settings import Settings
from misbridge.device.base import PadInfo
from misbridge.errors import (
    BackendError,
    DeviceError,
    DeviceRejected,
    JournalError,
    KeyExchangeError,
    MisbridgeError,
    ReturnCode,
)
from misbridge.host.crashpoints import crash_point

#: The pad's result codes for a key it refused (docs/device-protocol.md §6, §11).
_KCV_MISMATCH, _NO_MASTER_KEY = "11", "06"
#: How often the keeper looks at the pad's reported KCVs (a reconnect re-reads DEVICE_INFO).
POLL_S = 1.0
#: First and longest pause between two failed sign-ins.
RETRY_INITIAL_S, RETRY_MAX_S = 5.0, 300.0
#: The probe's budget: "refused in under a second" (issue 14).
PROBE_TIMEOUT_S = 0.8


class WrappedKeyLike(Protocol):
    """A key as the backend issued it (``misbridge.backend.keys.WrappedKey`` fits)."""

    @property
    def enc_key_hex(self) -> str: ...

    @property
    def kcv_hex(self) -> str: ...


class KeyCenter(Protocol):
    """The backend's key actions (``misbridge.backend.keys.KeyExchange`` fits).

    Both raise ``BackendNotSent`` / ``BackendOutcomeUnknown`` as any call, ``KeyExchangeError``
    for a decline or a malformed key.
    """

    async def download_key(self, trace_no: str) -> WrappedKeyLike: ...

    async def sign_in(self, trace_no: str) -> WrappedKeyLike: ...

    @property
    def has_root_key(self) -> bool: ...


class Reachability(Protocol):
    """What the backend client knows of the backend's reachability (``BackendClient`` fits)."""

    @property
    def known_down(self) -> bool: ...

    def last_ok_age_s(self) -> float | None: ...

    async def probe(self, timeout_s: float = 1.0) -> bool: ...


class KeyPad(Protocol):
    """The PIN pad as the keeper uses it (``PinPadDriver`` fits)."""

    @property
    def connected(self) -> bool: ...

    @property
    def info(self) -> PadInfo | None: ...

    async def device_info(self) -> PadInfo: ...

    async def load_working_key(self, key_index: int, enc_key_hex: str, kcv_hex: str) -> None: ...

    async def load_master_key(self, enc_key_hex: str, kcv_hex: str) -> None: ...


class SignInRecord(Protocol):
    """An approved sign-in as the journal kept it (``KeyCallRecord`` fits)."""

    @property
    def key_kcv(self) -> str | None: ...

    @property
    def updated_at(self) -> datetime: ...


class KeyJournal(Protocol):
    """Where key requests get their traceNos (``Journal`` fits): never reused, crash or not."""

    async def allocate_key_call(self, kind: Literal["downloadKey", "signIn"]) -> str: ...

    async def record_key_call_result(
        self,
        trace_no: str,
        result: Literal["answered", "unknown"],
        return_code: str | None,
        *,
        key_kcv: str | None = None,
    ) -> None: ...

    async def last_sign_in(self) -> SignInRecord | None: ...


@dataclass(frozen=True)
class _KeyBeforeRestart:
    """The key of a sign-in before this run: its KCV only (no ciphertext to load it again)."""

    kcv_hex: str
    enc_key_hex: str = ""


@dataclass(frozen=True)
class KeyStatus:
    """What ``/health``, the metrics and ``misbridge status`` show of the keys (no key material).

    Attributes:
        signed_in: a sign-in of the current period succeeded and no card answer said the key expired.
        signed_in_at: when that sign-in was answered (local time), or None.
        working_key_kcv: the KCV of the key issued at that sign-in (6 hex), or None.
        pad_key_ok: the pad is connected and reports exactly that KCV in its working-key slot.
        problem: why cards are refused with MB50 now, in a technician's words, or None.
    """

    signed_in: bool
    signed_in_at: datetime | None
    working_key_kcv: str | None
    pad_key_ok: bool
    problem: str | None


def next_sign_in(after: datetime, at: str) -> datetime:
    """The first ``at`` (``HH:MM`` local) strictly after ``after`` (an aware local time)."""
    hour, minute = (int(part) for part in at.split(":"))
    candidate = datetime.combine(after.date(), time(hour, minute), tzinfo=after.tzinfo)
    return candidate if candidate > after else candidate + timedelta(days=1)


def _local_now() -> datetime:
    return datetime.now().astimezone()


class KeyKeeper:
    """Signs in, loads the working key into the pad, and gates card actions on both."""

    def __init__(
        self,
        settings: Settings,
        journal: KeyJournal,
        pad: KeyPad,
        center: KeyCenter,
        reach: Reachability,
        *,
        clock: Callable[[], datetime] = _local_now,
        poll_s: float = POLL_S,
        retry_initial_s: float = RETRY_INITIAL_S,
    ) -> None:
        self._settings = settings
        self._journal = journal
        self._pad = pad
        self._center = center
        self._reach = reach
        self._clock = clock
        self._poll_s = poll_s
        self._retry = (retry_initial_s, max(retry_initial_s, RETRY_MAX_S))
        self.pad_lock = asyncio.Lock()
        self._key: WrappedKeyLike | None = None
        self._signed_in_at: datetime | None = None
        self._due: datetime | None = None  # None: sign in as soon as possible
        self._problem: str | None = "not signed in yet"
        self._refused_pad: tuple[str, str] | None = None  # (serial, master KCV) that refused our key
        self._wake = asyncio.Event()
        # Half the freshness /health asks for, at most a minute: an idle backend is probed that often.
        self._probe_every_s = min(settings.backend.healthy_within_s / 2, 60.0)
        self._last_probe: float | None = None
        self._provisioning: set[asyncio.Task[None]] = set()

    # -- what others read ------------------------------------------------------------------

    @property
    def reach(self) -> Reachability:
        """The backend's reachability as the client records it (``/health`` reads it)."""
        return self._reach

    @property
    def status(self) -> KeyStatus:
        """The keys as they stand (cheap; read by /health and the metrics at every scrape)."""
        signed_in = self._key is not None and self._due is not None
        return KeyStatus(
            signed_in=signed_in,
            signed_in_at=self._signed_in_at,
            working_key_kcv=self._key.kcv_hex if self._key is not None else None,
            pad_key_ok=self._pad_holds_key(),
            problem=self._current_problem(),
        )

    async def check_ready(self, *, needs_keys: bool) -> None:
        """Refuse a pad action now, before anybody is prompted, if it could only fail later.

        Args:
            needs_keys: the action encrypts card data or a PIN (card actions); a QR sale does not.

        Raises:
            MisbridgeError: MB51 the backend is known to be down and a probe just failed;
                MB50 (``needs_keys``) not signed in, or the pad does not hold today's key.
                A pad that is not connected is left to the card step (MB20).
        """
        if not self._pad.connected:
            return  # the nearer fault first: the card step answers MB20 at once
        if self._reach.known_down and not await self._reach.probe(PROBE_TIMEOUT_S):
            raise MisbridgeError(
                "e-Buy backend unreachable (the last call could not connect, and neither could a probe just now)",
                return_code=ReturnCode.BACKEND_DOWN,
            )
        if not needs_keys:
            return
        problem = self._current_problem()
        if problem is not None:
            self._wake.set()  # a key that can be loaded is loaded now, not at the next poll
            raise MisbridgeError(problem, return_code=ReturnCode.KEYS_NOT_READY)

    def key_expired(self, return_code: str) -> None:
        """A card answer said the working key is out of date: sign in again (nothing is re-sent)."""
        logger.warning("backend answered {}: the working key expired; signing in again", return_code)
        self._due = None
        self._problem = f"the backend answered {return_code} (key expired); signing in again"
        self._wake.set()

    # -- the background task ---------------------------------------------------------------

    async def run(self) -> None:
        """Keep the keys current until cancelled: sign in when due, load when the pad differs."""
        delay = self._retry[0]
        while True:
            try:
                await self.maintain()
                delay = self._retry[0]
                wait = self._poll_s
            except (MisbridgeError, OSError) as err:
                self._problem = _problem_text(err)
                logger.warning("keys: {}; trying again in {:.0f} s", self._problem, delay)
                wait, delay = delay, min(delay * 2, self._retry[1])
            self._wake.clear()
            await self._pause(wait)

    async def _pause(self, wait_s: float) -> None:
        """Wait ``wait_s`` or until woken; while the backend is known down, probe it each poll and stop when it answers.

        So a backend that comes back is seen within a poll, not at the next idle probe (up to a
        minute, ``/health`` saying unreachable meanwhile), and a sign-in that failed for want of it
        is made at once, not after its back-off (up to five minutes). A probe is one HEAD.
        """
        loop = asyncio.get_running_loop()
        end = loop.time() + wait_s
        while (left := end - loop.time()) > 0:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, self._poll_s)):
                    await self._wake.wait()
                return
            if self._reach.known_down and await self._reach.probe(PROBE_TIMEOUT_S):
                return

    async def first_round(self, timeout_s: float) -> bool:
        """Run one :meth:`maintain` now, for at most ``timeout_s``; True if cards may be read after it.

        A failure is logged and left to :meth:`run`, which tries again with its back-off.
        """
        try:
            async with asyncio.timeout(timeout_s):
                await self._restore()
                await self.maintain()
        except (MisbridgeError, OSError) as err:
            self._problem = _problem_text(err)
            logger.warning("keys at start-up: {}; trying again in the background", self._problem)
        except TimeoutError:
            logger.warning("keys at start-up: no sign-in within {:.0f} s; trying again in the background", timeout_s)
        return self._current_problem() is None

    async def _restore(self) -> None:
        """Take over the sign-in of a run before a restart, while it is not due again.

        Only its KCV is known: if the pad still reports it, cards go on without asking the
        backend (which may be the very thing that is down); if not, :meth:`maintain` signs in.
        """
        if self._key is not None:
            return
        record = await self._journal.last_sign_in()
        if record is None or record.key_kcv is None:
            return
        now = self._clock()
        signed_at = record.updated_at.astimezone(now.tzinfo)
        due = next_sign_in(signed_at, self._settings.keys.sign_in_at)
        if now >= due:
            return
        self._key, self._signed_in_at, self._due = _KeyBeforeRestart(record.key_kcv), signed_at, due
        self._problem = None
        logger.info(
            "signed in at {:%Y-%m-%d %H:%M:%S} before this start: working key KCV {}", signed_at, record.key_kcv
        )

    async def maintain(self) -> None:
        """One round: sign in if due, then load the key into the pad if the pad reports another KCV.

        Raises:
            MisbridgeError: the sign-in or the load failed (the caller retries later).
        """
        await self._keep_backend_fresh()
        if self._sign_in_due():
            await self.sign_in()
        if self._key is not None and self._pad.connected and not self._pad_holds_key():
            if self._refused_pad is not None and self._refused_pad == _pad_identity(self._pad.info):
                return  # this pad refused the key already: a person must provision it (or it is swapped)
            if not self._key.enc_key_hex:  # a key from before the restart: only a sign-in brings it again
                await self.sign_in()
                return
            async with self.pad_lock:
                await self._load_working_key(self._key)

    async def sign_in(self) -> None:
        """Sign in now: the backend issues today's working key; the pad gets it if it is connected.

        Raises:
            BackendError: the backend was not reached or the outcome is unknown (a new sign-in,
                with a new traceNo, simply asks again: nothing at the backend is spoilt).
            KeyExchangeError: declined, or the reply carries no usable key.
        """
        trace_no = await self._journal.allocate_key_call("signIn")
        key = await self._key_call(trace_no, self._center.sign_in)
        crash_point("keys.after_sign_in")
        now = self._clock()
        self._key, self._signed_in_at = key, now
        self._due = next_sign_in(now, self._settings.keys.sign_in_at)
        self._refused_pad = None  # a new key: a pad that refused the old one may take this one
        logger.info("signed in (traceNo {}): working key KCV {}", trace_no, key.kcv_hex)
        if self._pad.connected:
            async with self.pad_lock:
                await self._load_working_key(key)

    async def provision(self) -> PadInfo:
        """Load the store's master key into the pad (DownloadKey under the rootKey), then sign in.

        Returns:
            The pad's identity after the load, its MASTER_KEY_KCV the backend's.

        Raises:
            KeyExchangeError: no rootKey, the pad's transport key is not the store's rootKey, or
                the pad reports another master-key KCV than the backend's.
            DeviceError, BackendError: the pad or the backend failed (nothing half-done is used).
        """
        if not self._center.has_root_key:
            raise KeyExchangeError(
                f"no rootKey: install it as the systemd credential {self._settings.keys.root_key_credential!r}"
            )
        trace_no = await self._journal.allocate_key_call("downloadKey")
        master = await self._key_call(trace_no, self._center.download_key)
        async with self.pad_lock:
            try:
                await self._pad.load_master_key(master.enc_key_hex, master.kcv_hex)
            except DeviceRejected as err:
                raise KeyExchangeError(_master_refusal(err)) from err
            crash_point("keys.after_master_load")
            info = await self._pad.device_info()
        if info.master_key_kcv != master.kcv_hex:
            raise KeyExchangeError(
                f"the pad reports master key KCV {info.master_key_kcv or '(none)'}, the backend's is {master.kcv_hex}"
            )
        logger.info("PIN pad {} provisioned: master key KCV {}", info.serial_no, info.master_key_kcv)
        self._refused_pad = None
        await self.sign_in()
        return await self._pad.device_info()

    # -- steps -----------------------------------------------------------------------------

    async def _key_call(self, trace_no: str, call: Callable[[str], Awaitable[WrappedKeyLike]]) -> WrappedKeyLike:
        """One key request under its journaled traceNo; its result journaled (no key material)."""
        try:
            key = await call(trace_no)
        except KeyExchangeError as err:
            await self._journal.record_key_call_result(trace_no, "answered", err.backend_code or None)
            raise
        except BackendError:
            await self._journal.record_key_call_result(trace_no, "unknown", None)
            raise
        await self._journal.record_key_call_result(trace_no, "answered", "00", key_kcv=key.kcv_hex)
        return key

    async def _load_working_key(self, key: WrappedKeyLike) -> None:
        """LOAD_WORKING_KEY into the configured slot, then DEVICE_INFO: the pad's KCV must be the key's.

        Raises:
            KeyExchangeError: the pad refused the key (its master key is not the store's, or it
                has none) or reports another KCV afterwards.
            DeviceError: the pad failed otherwise (the next round tries again).
        """
        slot = self._settings.device.key_index
        identity = _pad_identity(self._pad.info)
        try:
            await self._pad.load_working_key(slot, key.enc_key_hex, key.kcv_hex)
        except DeviceRejected as err:
            if err.device_code in (_KCV_MISMATCH, _NO_MASTER_KEY):
                self._refused_pad = identity
                self._replaced_pad_found(err)
            raise KeyExchangeError(_working_refusal(err)) from err
        crash_point("keys.after_working_load")
        info = await self._pad.device_info()
        if info.working_key_kcv != key.kcv_hex:
            raise KeyExchangeError(
                f"the pad reports working key KCV {info.working_key_kcv or '(none)'} after the load, "
                f"the backend's is {key.kcv_hex}"
            )
        self._problem = None
        logger.info("PIN pad {}: working key loaded into slot {} (KCV {})", info.serial_no, slot, key.kcv_hex)

    def _replaced_pad_found(self, err: DeviceRejected) -> None:
        if self._settings.keys.replaced_pad == "provision" and self._center.has_root_key:
            if not self._provisioning:  # one at a time; it waits for the pad lock the load holds
                task = asyncio.get_running_loop().create_task(self._provision_logged(), name="provision replaced pad")
                self._provisioning.add(task)
                task.add_done_callback(self._provisioning.discard)
            return
        logger.error("{}; run 'misbridge pad provision' (docs/operations.md, 'Keys')", _working_refusal(err))

    async def _provision_logged(self) -> None:
        try:
            await self.provision()
        except (MisbridgeError, OSError) as err:
            self._problem = _problem_text(err)
            logger.error("provisioning the replaced PIN pad failed: {}", self._problem)

    async def _keep_backend_fresh(self) -> None:
        """Probe an idle backend so ``/health`` knows it is still there (at most every ``_probe_every_s``)."""
        age = self._reach.last_ok_age_s()
        now = asyncio.get_running_loop().time()
        if age is not None and age < self._probe_every_s:
            return
        if self._last_probe is not None and now - self._last_probe < self._probe_every_s:
            return
        self._last_probe = now
        await self._reach.probe(PROBE_TIMEOUT_S)

    # -- state -----------------------------------------------------------------------------

    def _sign_in_due(self) -> bool:
        return self._due is None or self._clock() >= self._due

    def _pad_holds_key(self) -> bool:
        info = self._pad.info
        return (
            self._key is not None
            and self._pad.connected
            and info is not None
            and info.working_key_kcv == self._key.kcv_hex
        )

    def _current_problem(self) -> str | None:
        """Why a card action would be refused with MB50 now, or None."""
        if self._key is None or self._due is None:
            return self._problem or "not signed in yet"
        info = self._pad.info
        if not self._pad.connected or info is None:
            return "the PIN pad is not connected"
        if not info.master_key_kcv:
            return "the PIN pad holds no master key: run 'misbridge pad provision'"
        if self._refused_pad is not None and self._refused_pad == _pad_identity(info):
            return self._problem or "the PIN pad refused today's working key"
        if info.working_key_kcv != self._key.kcv_hex:
            return f"the PIN pad's working key (KCV {info.working_key_kcv or 'none'}) is not today's; loading it"
        return None


def _pad_identity(info: PadInfo | None) -> tuple[str, str] | None:
    return None if info is None else (info.serial_no, info.master_key_kcv)


def _working_refusal(err: DeviceRejected) -> str:
    if err.device_code == _KCV_MISMATCH:
        return "the PIN pad refused the working key (KCV mismatch): its master key is not this store's"
    if err.device_code == _NO_MASTER_KEY:
        return "the PIN pad has no master key: it is not provisioned"
    return f"the PIN pad refused the working key: {err.message}"


def _master_refusal(err: DeviceRejected) -> str:
    if err.device_code == _KCV_MISMATCH:
        return "the PIN pad refused the master key (KCV mismatch): its transport key is not this store's rootKey"
    if err.device_code == _NO_MASTER_KEY:
        return "the PIN pad has no transport key: inject the rootKey into it first (docs/operations.md)"
    return f"the PIN pad refused the master key: {err.message}"


def _problem_text(err: MisbridgeError | OSError) -> str:
    if isinstance(err, KeyExchangeError | DeviceError | JournalError):
        return err.message
    if isinstance(err, BackendError):
        return f"sign-in failed: {err.message}"
    if isinstance(err, MisbridgeError):
        return err.message
    return f"sign-in failed: {err}"
