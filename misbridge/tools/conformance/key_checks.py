"""Checks of the pad's keys on the raw line (docs/device-protocol.md §4, §5, §6, §11).

DEVICE_INFO_REPLY's MASTER_KEY_KCV and WORKING_KEY_KCV are read before and after every load, so a
check sees what the load did inside the pad: a refused load (RESULT 11 or 07) leaves both as they
were, a LOAD_WORKING_KEY into slot 1 shows the KCV sent, a LOAD_MASTER_KEY shows the new master
key's and empties slot 1. The first check (the tags' form) runs on any pad; the loads only with
``--test-keys`` (``Check.keys``), because the kit knows keys only as the §11 vectors
(:mod:`~misbridge.tools.conformance.vectors`). After a check that changed the keys the kit puts
back the ones it found (:func:`put_back`) when it knows them; otherwise it says, at the end of the
report, what the technician must do (:meth:`~misbridge.tools.conformance.base.Run.must_afterwards`).
It never replaces a master key that it could not put back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from misbridge.errors import MessageError, MisbridgeError
from misbridge.link import (
    DeviceInfo,
    DeviceInfoRequest,
    LoadMasterKey,
    LoadWorkingKey,
    MessageType,
    Result,
    ResultCode,
    decode_message,
)
from misbridge.link.constants import CARD_KEY_INDEX
from misbridge.tools.conformance.base import Check, Failed, Run, Skipped, check, expect
from misbridge.tools.conformance.command_checks import expect_code, result_of
from misbridge.tools.conformance.line import RawHost, Rx, describe
from misbridge.tools.conformance.link_checks import fresh
from misbridge.tools.conformance.vectors import (
    MASTER_KEYS,
    TEST_MASTER_KEY,
    TEST_WORKING_KEY,
    VECTOR_MASTER_KEY,
    VECTOR_WORKING_KEY,
    WORKING_KEYS,
    KnownKey,
    wrong_kcv,
)

KEY_CHECKS: list[Check] = []

#: What the technician does for a pad whose keys the kit could not put back.
REPROVISION = "run misbridge pad provision (the store's master key), then let misbridge sign in (its working key)"
#: Why a pad answers LOAD_MASTER_KEY with 07 although the key is well formed.
_OLDER_PAD = "a pad from before LOAD_MASTER_KEY answers 07 (§5.4): it cannot be provisioned over the line"
#: ``Run.notes`` key: the keys the pad held when the key checks began, what :func:`put_back` restores.
_FOUND = "keys_found"


@dataclass(frozen=True)
class PadKeys:
    """What DEVICE_INFO_REPLY says the pad holds: the master key's KCV and slot 1's, "" for none (§11)."""

    master: str
    working: str

    def __str__(self) -> str:
        return f"MASTER_KEY_KCV {_shown(self.master)}, WORKING_KEY_KCV {_shown(self.working)}"


def _shown(kcv: str) -> str:
    return kcv or "absent"


async def pad_keys(host: RawHost, request_id: int) -> PadKeys:
    """DEVICE_INFO's two KCVs, each 6 uppercase hex characters or absent (§4), else :class:`Failed`."""
    since = host.mark()
    reply = (await host.request(DeviceInfoRequest(request_id), request_id, bounded=True)).reply
    if isinstance(reply, DeviceInfo) and reply.request_id == request_id:
        return PadKeys(reply.master_key_kcv, reply.working_key_kcv)
    raise Failed(
        f"DEVICE_INFO_REPLY with REQUEST_ID {request_id}, MASTER_KEY_KCV and WORKING_KEY_KCV 6 hex or absent",
        _refusal(host.received[since:]) or describe(reply),
    )


def _refusal(items: list[Rx]) -> str:
    """Why a DEVICE_INFO_REPLY among ``items`` is unusable, in the codec's words (tag and rule), or ""."""
    for rx in items:
        frame = rx.frame
        if frame is None or frame.seq == 0 or frame.payload[:1] != bytes([MessageType.DEVICE_INFO_REPLY]):
            continue
        try:
            decode_message(frame.payload)
        except MessageError as err:
            return f"a DEVICE_INFO_REPLY that breaks §4: {err.message}"
    return ""


async def _found(run: Run, host: RawHost) -> PadKeys:
    """The keys the pad held when the key checks began (read now if no check has read them)."""
    found = run.notes.get(_FOUND)
    if not isinstance(found, PadKeys):
        found = run.notes[_FOUND] = await pad_keys(host, 400)
    return found


def _other(first: KnownKey, second: KnownKey, held: str) -> KnownKey:
    """``first``, or ``second`` when the pad holds ``first``: a load whose KCV shows in DEVICE_INFO."""
    return first if held != first.kcv else second


def _working_key_for(keys: PadKeys) -> KnownKey:
    """A working key under the test master key that slot 1 does not hold; skipped under another master key."""
    if keys.master and keys.master != TEST_MASTER_KEY.kcv:
        raise Skipped(
            f"the pad's master key is not the test master key of §11 (MASTER_KEY_KCV {keys.master},"
            f" the test key's {TEST_MASTER_KEY.kcv}): the kit's working keys would not unwrap"
        )
    return _other(VECTOR_WORKING_KEY, TEST_WORKING_KEY, keys.working)


def _master_key_for(keys: PadKeys) -> KnownKey:
    """A test master key the pad does not hold; skipped when the kit could not put the pad's back."""
    if keys.master and keys.master not in MASTER_KEYS:
        raise Skipped(
            f"the pad's master key (MASTER_KEY_KCV {keys.master}) is none of the §11 test keys: the kit could"
            " not put it back, so it sends no LOAD_MASTER_KEY; give the pad the test keys of §11 first"
        )
    # The test master key first: a pad that had none is left with the one the §11 working keys need.
    return _other(TEST_MASTER_KEY, VECTOR_MASTER_KEY, keys.master)


async def _load_working(host: RawHost, request_id: int, key: KnownKey, kcv: str) -> Result:
    result = await result_of(host, LoadWorkingKey(request_id, CARD_KEY_INDEX, key.enc_hex, kcv), request_id)
    if result.code == ResultCode.NO_KEY:
        raise Skipped("the pad holds no master key (RESULT 06): inject the test master key of §11")
    return result


async def _load_master(host: RawHost, request_id: int, enc_hex: str, kcv: str) -> Result:
    result = await result_of(host, LoadMasterKey(request_id, enc_hex, kcv), request_id)
    if result.code == ResultCode.NO_KEY:
        raise Skipped("the pad holds no transport key (RESULT 06): inject the test transport key of §11 (3131…31)")
    return result


async def put_back(run: Run, host: RawHost, found: PadKeys) -> str:
    """Load the keys the pad held when the key checks began, as far as the kit knows them.

    Returns what it did, "" when the keys were as found. What it cannot put back becomes a step
    for the technician at the end of the report. It raises nothing: it also runs after a check
    that failed, whose verdict must stand.
    """
    try:
        return await _put_back(run, host, found)
    except Failed as err:
        why = f"expected {err.expected}, got {err.got}"
    except MisbridgeError as err:
        why = err.message
    except (Skipped, OSError) as err:
        why = str(err)
    run.must_afterwards(f"the kit could not put back the pad's keys ({found}): {why}; {REPROVISION}")
    return "the keys were not put back (see the end of the report)"


async def _put_back(run: Run, host: RawHost, found: PadKeys) -> str:
    now = await pad_keys(host, 490)
    if now == found:
        return ""
    loaded: list[str] = []
    master = MASTER_KEYS.get(found.master)
    # LOAD_MASTER_KEY brings a master key back, and is also the one way to empty slot 1 again.
    reload_master = master is not None and (now.master != found.master or (now.working and not found.working))
    if master is not None and reload_master:
        expect_code(await _load_master(host, 491, master.enc_hex, master.kcv), "00", 491, f"{master.name} put back")
        now = await pad_keys(host, 492)
        loaded.append(f"LOAD_MASTER_KEY of {master.name}")
    working = WORKING_KEYS.get(found.working)
    if working is not None and now.working != found.working and now.master == TEST_MASTER_KEY.kcv:
        expect_code(await _load_working(host, 493, working, working.kcv), "00", 493, f"{working.name} put back")
        now = await pad_keys(host, 494)
        loaded.append(f"LOAD_WORKING_KEY of {working.name} into slot {CARD_KEY_INDEX}")
    if now != found:
        run.must_afterwards(f"the pad held {found} and now holds {now}, which the kit cannot undo: {REPROVISION}")
        return f"not put back: the pad now holds {now} (see the end of the report)"
    emptied = " (working-key slots 2 and up are left empty)" if reload_master else ""
    return f"put back with {' and '.join(loaded)}: {now}{emptied}"


def _then(back: str) -> str:
    return f"; {back}" if back else ""


@check(
    KEY_CHECKS,
    "key-kcvs",
    "DEVICE_INFO_REPLY: MASTER_KEY_KCV and WORKING_KEY_KCV each 6 hex, absent for an empty slot",
    "4; 5; 11",
)
async def key_kcvs(run: Run) -> str:
    host = await fresh(run)
    keys = await pad_keys(host, 401)
    run.notes.setdefault(_FOUND, keys)
    expect(
        bool(keys.master) or not keys.working,
        "MASTER_KEY_KCV when slot 1 holds a key (a working key is unwrapped under the master key)",
        str(keys),
    )
    return str(keys) + ("" if keys.master else " (no master key, or a pad from before these tags: the loads tell)")


@check(
    KEY_CHECKS,
    "load-key-slot1-wrong-kcv",
    "LOAD_WORKING_KEY slot 1 with a wrong KCV: RESULT 11, WORKING_KEY_KCV unchanged",
    "11; 6",
    keys=True,
)
async def slot1_wrong_kcv(run: Run) -> str:
    return await _wrong_kcv_changes_nothing(
        run, 410, _working_key_for, _load_working, "after RESULT 11 the slot keeps its previous key"
    )


@check(
    KEY_CHECKS,
    "load-key-slot1-right-kcv",
    "LOAD_WORKING_KEY slot 1 with the right KCV: RESULT 00, WORKING_KEY_KCV the KCV sent",
    "11; 5",
    keys=True,
)
async def slot1_right_kcv(run: Run) -> str:
    host = await fresh(run)
    found = await _found(run, host)
    before = await pad_keys(host, 420)
    key = _working_key_for(before)
    try:
        expect_code(await _load_working(host, 421, key, key.kcv), "00", 421, f"{key.name}, KCV {key.kcv}")
        after = await pad_keys(host, 422)
        expect(
            after == PadKeys(before.master, key.kcv),
            f"{PadKeys(before.master, key.kcv)} (the KCV just loaded; the master key unchanged)",
            str(after),
        )
    finally:
        back = await put_back(run, host, found)
    return f"KCV {key.kcv}: RESULT 00, then WORKING_KEY_KCV {key.kcv}{_then(back)}"


@check(
    KEY_CHECKS,
    "load-master-key-wrong-kcv",
    "LOAD_MASTER_KEY with a wrong KCV: RESULT 11, master and working keys unchanged",
    "11; 6",
    keys=True,
)
async def master_wrong_kcv(run: Run) -> str:
    return await _wrong_kcv_changes_nothing(
        run,
        430,
        _master_key_for,
        lambda host, request_id, key, kcv: _load_master(host, request_id, key.enc_hex, kcv),
        "after RESULT 11 the pad keeps its master key and working keys",
    )


async def _wrong_kcv_changes_nothing(
    run: Run,
    first_id: int,
    key_for: Callable[[PadKeys], KnownKey],
    load: Callable[[RawHost, int, KnownKey, str], Awaitable[Result]],
    why: str,
) -> str:
    """Load a known key with a wrong KCV: RESULT 11, and DEVICE_INFO reports the keys it did before."""
    host = await fresh(run)
    found = await _found(run, host)
    before = await pad_keys(host, first_id)
    key = key_for(before)
    sent = wrong_kcv(key.kcv)
    try:
        result = await load(host, first_id + 1, key, sent)
        expect_code(result, "11", first_id + 1, f"KCV {sent} for {key.name}, whose KCV is {key.kcv}")
        after = await pad_keys(host, first_id + 2)
        expect(after == before, f"{before} still ({why})", str(after))
    finally:
        back = await put_back(run, host, found)
    return f"KCV {sent}: RESULT 11; still {before}{_then(back)}"


@check(
    KEY_CHECKS,
    "load-master-key-wrong-size",
    "LOAD_MASTER_KEY with a key that is not 32 hex characters: RESULT 07, keys unchanged",
    "11; 5.4",
    keys=True,
)
async def master_wrong_size(run: Run) -> str:
    host = await fresh(run)
    found = await _found(run, host)
    before = await pad_keys(host, 440)
    key = _master_key_for(before)
    # The KCV is the right one for the first 32 hex characters: only the length is wrong.
    cases = {"48 hex characters": key.enc_hex + "0" * 16, "16 hex characters": key.enc_hex[:16]}
    try:
        for request_id, (what, enc_hex) in enumerate(cases.items(), start=441):
            result = await _load_master(host, request_id, enc_hex, key.kcv)
            expect_code(result, "07", request_id, f"ENC_MASTER_KEY of {what}")
        after = await pad_keys(host, 443)
        expect(after == before, f"{before} still (a refused LOAD_MASTER_KEY changes nothing)", str(after))
    finally:
        back = await put_back(run, host, found)
    return f"{' and '.join(cases)}: RESULT 07; still {before}{_then(back)}"


@check(
    KEY_CHECKS,
    "load-master-key-right-kcv",
    "LOAD_MASTER_KEY with the right KCV: RESULT 00, MASTER_KEY_KCV the KCV sent, slot 1 emptied",
    "11",
    keys=True,
)
async def master_right_kcv(run: Run) -> str:
    host = await fresh(run)
    found = await _found(run, host)
    before = await pad_keys(host, 450)
    key = _master_key_for(before)
    loaded = PadKeys(key.kcv, "")
    try:
        result = await _load_master(host, 451, key.enc_hex, key.kcv)
        older = _OLDER_PAD if result.code == ResultCode.BAD_COMMAND else ""
        expect_code(result, "00", 451, f"{key.name}, KCV {key.kcv}", older)
        after = await pad_keys(host, 452)
        expect(after == loaded, f"{loaded} (the master key just loaded; every working-key slot emptied)", str(after))
    finally:
        back = await put_back(run, host, found)
    return f"KCV {key.kcv}: RESULT 00, then {loaded}{_then(back)}"
