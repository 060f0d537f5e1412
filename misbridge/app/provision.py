"""``misbridge pad provision``: load the store's master key into a PIN pad, then sign in and load today's key.

Run at install, or when a pad is replaced, with the misbridge service stopped (it owns the pad's
port). The rootKey comes from the ``ebuy-root-key`` systemd credential or ``keys.root_key_file``
(docs/operations.md, "Keys"). Every step is checked by the KCV the pad reports; what is printed is
the pad's identity and check values, never a key.

With several POS lanes (``[[lanes]]``) it provisions one lane's pad (``--lane``, default the
default lane): that lane's ``device_url`` and ``key_index``, DownloadKey and the sign-in under
that lane's deviceNo and shopNo, the sign-in journaled as the lane's (its ``key_calls`` row
carries the lane, so the daemon's key keeper of that lane finds it at start). With one lane it is
``[device]`` and ``[identity]``, as ever.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from loguru import logger

from misbridge.app.daemon import load_signing_key
from misbridge.app.journal_file import open_journal
from misbridge.backend.client import BackendClient
from misbridge.backend.keys import KeyExchange
from misbridge.config.secrets import load_root_key, use_installed_credentials
from misbridge.config.settings import Settings
from misbridge.core.keys import KeyKeeper
from misbridge.device import ensure_port_free
from misbridge.device.base import PadInfo, create_driver
from misbridge.errors import ConfigError, MisbridgeError, PadInUse

#: How long provisioning waits for the pad's link.
PAD_WAIT_S = 10.0


async def provision_pad(
    settings: Settings, out: TextIO, *, lane: str | None = None, pad_wait_s: float = PAD_WAIT_S
) -> int:
    """Provision the pad of ``lane`` (default: the default lane); 0 done, 1 failed (the reason printed to ``out``).

    Raises:
        ConfigError: no such lane, no rootKey, or no signing key while signing is on (the command exits 2).
    """
    try:
        chosen = settings.lane_named(lane)
    except ValueError as unknown:
        raise ConfigError(str(unknown)) from unknown
    several = len(settings.lane_list()) > 1
    if several:
        print(f"lane {chosen.name} (deviceNo {chosen.identity.device_no}, pad {chosen.device.url})", file=out)
    settings = settings.for_lane(chosen)  # the lane's pad and identity; everything else as configured
    use_installed_credentials()  # sudo misbridge pad provision: the files the unit loads
    root_key = load_root_key(settings.keys.root_key_credential, settings.keys.root_key_file)
    if root_key is None:
        raise ConfigError(
            f"no rootKey: install it as the systemd credential {settings.keys.root_key_credential!r} "
            "or set keys.root_key_file (docs/operations.md, 'Keys')"
        )
    signing_key = load_signing_key(settings)  # the sign-in is signed like any request
    try:
        await ensure_port_free(settings.device.url, baudrate=settings.device.baudrate)
    except PadInUse as busy:
        # Said at once: the driver would only retry the locked port until the wait below ran out.
        print(f"misbridge: {busy.message}", file=out)
        return 1
    Path(settings.journal.path).parent.mkdir(parents=True, exist_ok=True)
    pad = create_driver(settings.device)
    async with await open_journal(settings.journal) as whole:
        # With several lanes the daemon's keeper reads its own lane's sign-ins: journal this one as the lane's.
        journal = whole.for_lane(chosen.name, default=chosen.default) if several else whole
        backend = BackendClient(settings.backend, settings.identity, signing_key)
        await pad.start()
        try:
            if not await pad.wait_connected(pad_wait_s):
                print(
                    f"misbridge: no PIN pad answered at {settings.device.url} within {pad_wait_s:.0f} s "
                    "(is the misbridge service still running? stop it first: systemctl stop misbridge)",
                    file=out,
                )
                return 1
            keeper = KeyKeeper(settings, journal, pad, KeyExchange(backend, settings.keys, root_key), backend)
            return await _provision(keeper, pad.info, settings.device.key_index, out)
        finally:
            await pad.stop()
            await backend.aclose()


async def _provision(keeper: KeyKeeper, before: PadInfo | None, slot: int, out: TextIO) -> int:
    if before is not None:
        print(f"PIN pad {before.model} {before.firmware} (serial {before.serial_no})", file=out)
        print(f"  master key before: KCV {before.master_key_kcv or '(none)'}", file=out)
    try:
        info = await keeper.provision()
    except MisbridgeError as err:
        logger.error("provisioning failed: {}", err.message)
        print(f"misbridge: provisioning failed: {err.message}", file=out)
        return 1
    status = keeper.status
    print(f"  master key loaded: KCV {info.master_key_kcv} (the backend's)", file=out)
    print(f"  signed in; working key loaded into slot {slot}: KCV {info.working_key_kcv}", file=out)
    signed = "" if status.signed_in_at is None else f" (signed in at {status.signed_in_at:%H:%M:%S})"
    print(f"provisioned: the pad is ready for card sales{signed}", file=out)
    return 0
