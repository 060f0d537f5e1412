"""The key keeper (core/keys.py): sign-in, the working key in the pad, and cards refused before the prompt.

A real journal, the real KeyExchange adapter over the scripted backend, the scripted pad. The pad's
reported KCV is what decides: a load it refused, or one that left another KCV, is never used.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pydantic import SecretStr

from misbridge.backend.keys import KeyExchange
from misbridge.config.settings import Settings
from misbridge.core.keys import KeyKeeper, next_sign_in
from misbridge.core.service import TransactionService
from misbridge.ebuy.examples import card_redemption_request
from misbridge.errors import BackendNotSent, DeviceRejected, KeyExchangeError, ReturnCode
from misbridge.journal.store import Journal
from tests.unit.core.fakes import APPROVED, ScriptedBackend, ScriptedPad, reply

ZONE = timezone(timedelta(hours=8))
KEY_A = {"returnCode": "00", "pinKey": "11" * 16, "pinKeyKcv": "A1A2A3A4"}
KEY_B = {"returnCode": "00", "pinKey": "22" * 16, "pinKeyKcv": "B1B2B3B4"}
MASTER = {"returnCode": "00", "mwTmk": "33" * 16, "mwTmkKcv": "C1C2C3"}
SALE: dict[str, Any] = {**card_redemption_request(), "traceNo": "KEYS000000001"}


def qr_sale(trace_no: str) -> dict[str, Any]:
    """A qrcodeSale of the book's amounts whose code the POS scanned (the pad is not asked)."""
    body = {key: SALE[key] for key in ("totalAmount", "undiscountAmount", "goodsDetail")}
    return {**body, "traceNo": trace_no, "qrcode": "280123121234567890"}


class Clock:
    """A settable local time."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 5, 10, 0, tzinfo=ZONE)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest_asyncio.fixture
async def journal(tmp_path: Path, clock: Clock) -> AsyncIterator[Journal]:
    """A real journal on the test's clock (a sign-in's time is the journal's)."""
    opened = await Journal.open(tmp_path / "journal.db", clock=lambda: clock.now.astimezone(UTC))
    async with opened:
        yield opened


@pytest.fixture
def provisioned(pad: ScriptedPad) -> ScriptedPad:
    """The pad holds the store's master key and a working key of an earlier day."""
    pad.master_key_kcv, pad.working_key_kcv = "C1C2C3", "0F0F0F"
    return pad


def keeper_for(
    settings: Settings,
    journal: Journal,
    pad: ScriptedPad,
    backend: ScriptedBackend,
    clock: Clock,
    root_key: SecretStr | None = None,
) -> KeyKeeper:
    center = KeyExchange(backend, settings.keys, root_key)  # the scripted backend fits
    return KeyKeeper(settings, journal, pad, center, backend, clock=clock, poll_s=0.01, retry_initial_s=0.01)


@pytest.fixture
def keeper(
    settings: Settings, journal: Journal, provisioned: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> KeyKeeper:
    return keeper_for(settings, journal, provisioned, backend, clock)


@pytest.fixture
async def keyed(
    settings: Settings, journal: Journal, provisioned: ScriptedPad, backend: ScriptedBackend, keeper: KeyKeeper
) -> TransactionService:
    """A recovered service whose card actions go through the keeper."""
    service = TransactionService(settings, journal, provisioned, backend, keys=keeper)
    await service.recover()
    return service


async def test_the_first_round_signs_in_and_loads_the_key_into_the_pads_slot(
    keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend, journal: Journal, settings: Settings
) -> None:
    backend.will("signIn", KEY_A)
    assert await keeper.first_round(1.0)
    assert provisioned.keys_loaded == [(settings.device.key_index, "11" * 16, "A1A2A3")]
    status = keeper.status
    assert (status.signed_in, status.working_key_kcv, status.pad_key_ok, status.problem) == (True, "A1A2A3", True, None)
    [call] = await journal.key_calls()
    assert (call.kind, call.state, call.return_code) == ("signIn", "answered", "00")
    assert call.trace_no == backend.calls[0][1]["traceNo"]
    assert backend.signed_with == [None]  # the sign-in is signed with the shared key, never the rootKey


async def test_a_card_sale_before_the_sign_in_is_refused_with_mb50_before_the_card_prompt(
    keyed: TransactionService, provisioned: ScriptedPad, backend: ScriptedBackend, journal: Journal
) -> None:
    answer = await keyed.handle("cardRedemption", SALE)
    assert answer["returnCode"] == ReturnCode.KEYS_NOT_READY.code
    assert "not signed in" in answer["returnDesc"]
    assert provisioned.card_prompts == 0
    assert await journal.get(SALE["traceNo"]) is None  # nothing recorded: the traceNo stays free
    assert backend.actions() == []


async def test_once_signed_in_the_sale_runs_and_its_traceno_is_not_one_the_sign_in_used(
    keyed: TransactionService, keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    backend.will("signIn", KEY_A)
    backend.will("cardRedemption", APPROVED)
    assert await keeper.first_round(1.0)
    answer = await keyed.handle("cardRedemption", SALE)
    assert answer["returnCode"] == "00"
    assert provisioned.card_prompts == 1


async def test_a_pad_that_refuses_the_key_is_reported_not_hammered_and_cards_are_refused(
    keyed: TransactionService, keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    backend.will("signIn", KEY_A)
    provisioned.key_error = DeviceRejected("KEY_CHECK_FAILED", device_code="11")
    assert not await keeper.first_round(1.0)
    assert "master key is not this store's" in (keeper.status.problem or "")
    await keeper.maintain()  # the same pad: no second load, no second sign-in
    assert (provisioned.keys_loaded, backend.actions()) == ([], ["signIn"])
    answer = await keyed.handle("cardRedemption", SALE)
    assert (answer["returnCode"], provisioned.card_prompts) == ("MB50", 0)


async def test_an_unprovisioned_pad_is_named_as_such(
    keyed: TransactionService, keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    provisioned.master_key_kcv = provisioned.working_key_kcv = ""
    backend.will("signIn", KEY_A)
    provisioned.key_error = DeviceRejected("NO_KEY", device_code="06")
    assert not await keeper.first_round(1.0)
    answer = await keyed.handle("cardRedemption", SALE)
    assert answer["returnCode"] == "MB50"
    assert "misbridge pad provision" in answer["returnDesc"]


async def test_a_pad_that_comes_back_without_the_key_gets_it_again_without_a_new_sign_in(
    keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    backend.will("signIn", KEY_A)
    await keeper.first_round(1.0)
    provisioned.working_key_kcv = ""  # a power cycle that lost the slot, or a swapped pad of this store
    assert not keeper.status.pad_key_ok
    await keeper.maintain()
    assert [kcv for _, _, kcv in provisioned.keys_loaded] == ["A1A2A3", "A1A2A3"]
    assert backend.actions() == ["signIn"]
    assert keeper.status.pad_key_ok


async def test_the_daily_sign_in_at_its_hour_loads_the_new_key(
    keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    backend.will("signIn", KEY_A, KEY_B)
    await keeper.first_round(1.0)
    clock.now += timedelta(hours=16, minutes=59)  # 02:59 next day: not yet
    await keeper.maintain()
    assert backend.actions() == ["signIn"]
    clock.now += timedelta(minutes=1)
    await keeper.maintain()
    assert backend.actions() == ["signIn", "signIn"]
    assert provisioned.working_key_kcv == "B1B2B3"
    assert keeper.status.signed_in_at == clock.now


async def test_a_failed_daily_sign_in_keeps_yesterdays_key_usable(
    keeper: KeyKeeper, backend: ScriptedBackend, clock: Clock
) -> None:
    backend.will("signIn", KEY_A, BackendNotSent("connect refused"))
    await keeper.first_round(1.0)
    clock.now += timedelta(days=1)
    with pytest.raises(BackendNotSent):
        await keeper.maintain()
    assert keeper.status.signed_in
    assert keeper.status.problem is None


async def test_key_expired_answer_is_not_resent_and_the_next_sale_waits_for_the_new_sign_in(
    keyed: TransactionService, keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    backend.will("signIn", KEY_A, KEY_B)
    backend.will("cardRedemption", reply("A0", "sign in again"), APPROVED)
    await keeper.first_round(1.0)
    answer = await keyed.handle("cardRedemption", SALE)
    assert answer["returnCode"] == "A0"
    assert not keeper.status.signed_in
    second = {**SALE, "traceNo": "KEYS000000002"}
    refused = await keyed.handle("cardRedemption", second)
    assert refused["returnCode"] == "MB50"
    await keeper.maintain()
    assert (await keyed.handle("cardRedemption", second))["returnCode"] == "00"
    assert backend.actions() == ["signIn", "cardRedemption", "signIn", "cardRedemption"]
    sales = [body["traceNo"] for action, body in backend.calls if action == "cardRedemption"]
    assert sales == ["KEYS000000001", "KEYS000000002"]  # the declined one never went again


async def test_backend_known_down_refuses_with_mb51_after_one_probe_and_nobody_prompted(
    keyed: TransactionService, keeper: KeyKeeper, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    backend.will("signIn", KEY_A)
    await keeper.first_round(1.0)
    backend.down, backend.probe_answers = True, False
    answer = await keyed.handle("cardRedemption", SALE)
    assert (answer["returnCode"], provisioned.card_prompts, backend.probes) == ("MB51", 0, 1)
    qr = await keyed.handle("qrcodeSale", qr_sale("KEYS000000003"))
    assert qr["returnCode"] == "MB51"  # a QR sale needs the backend too
    backend.probe_answers = True  # back up: the probe clears it and the sale goes ahead
    backend.will("cardRedemption", APPROVED)
    assert (await keyed.handle("cardRedemption", SALE))["returnCode"] == "00"


async def test_a_qr_sale_needs_no_working_key(
    keyed: TransactionService, provisioned: ScriptedPad, backend: ScriptedBackend
) -> None:
    backend.will("qrcodeSale", APPROVED)
    qr = await keyed.handle("qrcodeSale", qr_sale("KEYS000000004"))
    assert qr["returnCode"] == "00"


async def test_a_declined_sign_in_is_journaled_with_its_code_and_shown_as_the_problem(
    keeper: KeyKeeper, backend: ScriptedBackend, journal: Journal
) -> None:
    backend.will("signIn", reply("96", "terminal unknown"))
    assert not await keeper.first_round(1.0)
    assert "signIn declined: 96" in (keeper.status.problem or "")
    [call] = await journal.key_calls()
    assert (call.state, call.return_code) == ("answered", "96")


async def test_health_is_not_ready_until_signed_in_and_says_why(
    keyed: TransactionService, keeper: KeyKeeper, backend: ScriptedBackend
) -> None:
    ready, detail = await keyed.health()
    assert not ready
    assert "not signed in yet" in detail["reasons"]
    assert detail["backend"]["signed_in"] is False
    backend.will("signIn", KEY_A)
    await keeper.first_round(1.0)
    ready, detail = await keyed.health()
    assert ready, detail["reasons"]
    assert detail["pad"]["working_key_kcv"] == detail["backend"]["working_key_kcv"] == "A1A2A3"
    assert detail["backend"]["last_ok_s"] == 0.0
    backend.down = True
    ready, detail = await keyed.health()
    assert not ready
    assert detail["reasons"] == ["the e-Buy backend is unreachable (the last call could not connect)"]


async def test_provision_needs_the_root_key(keeper: KeyKeeper) -> None:
    with pytest.raises(KeyExchangeError, match="ebuy-root-key"):
        await keeper.provision()


async def test_provision_loads_the_master_key_signed_with_the_root_key_then_signs_in(
    settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    root = SecretStr("44" * 16)
    keeper = keeper_for(settings, journal, pad, backend, clock, root_key=root)
    backend.will("DownloadKey", MASTER)
    backend.will("signIn", KEY_A)
    info = await keeper.provision()
    assert (info.master_key_kcv, info.working_key_kcv) == ("C1C2C3", "A1A2A3")
    assert backend.actions() == ["DownloadKey", "signIn"]
    assert backend.signed_with == [root, None]
    assert [call.kind for call in await journal.key_calls()] == ["signIn", "downloadKey"]


async def test_provision_refused_by_the_pad_names_the_transport_key(
    settings: Settings, journal: Journal, pad: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    keeper = keeper_for(settings, journal, pad, backend, clock, root_key=SecretStr("44" * 16))
    backend.will("DownloadKey", MASTER)
    pad.key_error = DeviceRejected("KEY_CHECK_FAILED", device_code="11")
    with pytest.raises(KeyExchangeError, match="transport key is not this store's rootKey"):
        await keeper.provision()
    assert backend.actions() == ["DownloadKey"]


async def test_a_replaced_pad_is_provisioned_at_once_when_configured(
    journal: Journal, pad: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    settings = Settings(keys={"replaced_pad": "provision"})
    keeper = keeper_for(settings, journal, pad, backend, clock, root_key=SecretStr("44" * 16))
    pad.master_key_kcv = "DEAD00"  # another store's pad
    pad.key_error = DeviceRejected("KEY_CHECK_FAILED", device_code="11")
    backend.will("signIn", KEY_A)
    backend.will("DownloadKey", MASTER)
    with pytest.raises(KeyExchangeError):
        await keeper.maintain()
    for _ in range(50):
        if keeper.status.pad_key_ok:
            break
        await asyncio.sleep(0.01)
    assert backend.actions() == ["signIn", "DownloadKey", "signIn"]
    assert (pad.master_key_kcv, pad.working_key_kcv) == ("C1C2C3", "A1A2A3")


def test_next_sign_in_is_the_next_occurrence_of_the_hour() -> None:
    at = datetime(2026, 12, 5, 2, 59, tzinfo=ZONE)
    assert next_sign_in(at, "03:00") == datetime(2026, 12, 5, 3, 0, tzinfo=ZONE)
    assert next_sign_in(at.replace(hour=3, minute=0), "03:00") == datetime(2026, 12, 6, 3, 0, tzinfo=ZONE)


async def test_run_recovers_from_a_failed_sign_in_by_itself(keeper: KeyKeeper, backend: ScriptedBackend) -> None:
    backend.will("signIn", BackendNotSent("connect refused"), KEY_A)
    task = asyncio.create_task(keeper.run())
    try:
        for _ in range(200):
            if keeper.status.pad_key_ok:
                break
            await asyncio.sleep(0.01)
        assert keeper.status.pad_key_ok
    finally:
        task.cancel()


async def until(condition: Callable[[], bool], timeout_s: float = 2.0) -> None:
    """Return once ``condition()`` holds; fail after about ``timeout_s``."""
    for _ in range(int(timeout_s / 0.005)):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"not true within {timeout_s:g} s")


async def test_a_backend_known_down_is_probed_every_poll_so_its_return_shows_at_once(
    keeper: KeyKeeper, backend: ScriptedBackend
) -> None:
    backend.will("signIn", KEY_A)
    await keeper.first_round(1.0)
    backend.down, backend.probe_answers = True, False
    task = asyncio.create_task(keeper.run())
    try:
        await until(lambda: backend.probes >= 5)  # every poll, not once per idle-probe interval (a minute)
        backend.probe_answers = True
        await until(lambda: not backend.known_down)
    finally:
        task.cancel()
    assert backend.actions() == ["signIn"]  # probes only: no call while it was down


async def test_a_sign_in_that_failed_while_the_backend_was_down_is_made_as_soon_as_it_answers(
    settings: Settings, journal: Journal, provisioned: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    center = KeyExchange(backend, settings.keys, None)
    # A back-off far longer than the test: only the backend's return can bring the next sign-in.
    keeper = KeyKeeper(settings, journal, provisioned, center, backend, clock=clock, poll_s=0.01, retry_initial_s=60)
    backend.will("signIn", BackendNotSent("connect refused"), KEY_A)
    backend.down, backend.probe_answers = True, False
    task = asyncio.create_task(keeper.run())
    try:
        await until(lambda: backend.probes >= 5)
        assert backend.actions() == ["signIn"]  # while it is down the keeper probes; it does not sign in again
        backend.probe_answers = True
        await until(lambda: keeper.status.pad_key_ok)
    finally:
        task.cancel()
    assert backend.actions() == ["signIn", "signIn"]
    assert provisioned.working_key_kcv == "A1A2A3"


async def test_a_restart_takes_over_todays_sign_in_while_the_pad_still_holds_its_key(
    settings: Settings, journal: Journal, provisioned: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    backend.will("signIn", KEY_A, KEY_B)
    assert await keeper_for(settings, journal, provisioned, backend, clock).first_round(1.0)
    backend.down, backend.probe_answers = True, False  # the backend went away with the old run
    clock.now += timedelta(hours=1)
    restarted = keeper_for(settings, journal, provisioned, backend, clock)
    assert await restarted.first_round(1.0)
    assert backend.actions() == ["signIn"]
    status = restarted.status
    assert (status.signed_in, status.working_key_kcv, status.pad_key_ok) == (True, "A1A2A3", True)
    provisioned.working_key_kcv = ""  # now the pad lost it: only a new sign-in can bring a key again
    backend.down, backend.probe_answers = False, True
    await restarted.maintain()
    assert backend.actions() == ["signIn", "signIn"]
    assert provisioned.working_key_kcv == "B1B2B3"


async def test_a_restart_after_the_sign_in_hour_signs_in_again(
    settings: Settings, journal: Journal, provisioned: ScriptedPad, backend: ScriptedBackend, clock: Clock
) -> None:
    backend.will("signIn", KEY_A, KEY_B)
    await keeper_for(settings, journal, provisioned, backend, clock).first_round(1.0)
    clock.now += timedelta(days=1)
    restarted = keeper_for(settings, journal, provisioned, backend, clock)
    assert await restarted.first_round(1.0)
    assert backend.actions() == ["signIn", "signIn"]
    assert restarted.status.working_key_kcv == "B1B2B3"
