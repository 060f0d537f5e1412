"""The whole key chain on the simulators: provision -> DownloadKey -> signIn -> LOAD_WORKING_KEY -> a sale
whose PIN block the backend simulator decrypts with the day's key; next-day expiry; a wrong key; no sign-in at all."""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient
from misbridge.backend.keys import KeyExchange, WrappedKey, download_key, sign_in
from misbridge.config.settings import BackendSettings, DeviceSettings, IdentitySettings, KeySettings
from misbridge.device.link_driver import LinkDriver
from misbridge.device.mispos import MisPosV1Driver
from misbridge.errors import DeviceRejected, KeyExchangeError
from misbridge.link import DeviceInfo, DeviceInfoRequest
from misbridge.transport.memory import memory_pipe
from simulators.backend import TEST_SIGNING_KEY, BackendSimulator
from simulators.backend.app import DEFAULT_PREFIX
from simulators.crypto import TEST_KEY_SEED, TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX, day_key, key_check_value
from simulators.pinpad.cli import add_arguments, build_pad, signed_in_key_hex
from simulators.pinpad.device import SimulatedPinPad
from tests.keys import signed_in_pad_key
from tests.simulators.booksim import fresh_trace_no, running
from tests.unit.device.fakes import fast_session

KEYS = KeySettings()
TODAY = date(2024, 1, 2)


class KeyCenter(Protocol):
    """Core's view of the key chain, restated here so mypy checks that KeyExchange fits it."""

    async def download_key(self, trace_no: str) -> WrappedKey: ...  # raises KeyExchangeError if no rootKey

    async def sign_in(self, trace_no: str) -> WrappedKey: ...

    @property
    def has_root_key(self) -> bool: ...


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2024, 1, 2, 9, 0)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def backend(clock: Clock) -> AsyncIterator[tuple[BackendSimulator, BackendClient]]:
    sim = BackendSimulator(clock=clock)
    url = await sim.start()
    client = BackendClient(BackendSettings(url=url), IdentitySettings(), SecretStr(TEST_SIGNING_KEY))
    yield sim, client
    await client.aclose()
    await sim.stop()


@pytest.fixture
async def pad(tmp_path: Path) -> AsyncIterator[tuple[SimulatedPinPad, MisPosV1Driver]]:
    link = tmp_path / "mispos"
    simulator = SimulatedPinPad(link=str(link), master_key_hex="", working_key_hex="")  # unprovisioned
    await simulator.start()
    driver = MisPosV1Driver(DeviceSettings(url=str(link), command_timeout_s=2.0), keepalive_s=None)
    await driver.start()
    assert await driver.wait_connected(3)
    yield simulator, driver
    await driver.stop()
    await simulator.stop()


async def redeem(client: BackendClient, driver: MisPosV1Driver) -> dict[str, Any]:
    card = await driver.read_card(4080, 30)
    pin = await driver.read_pin(4080, 30)
    body = {
        "traceNo": fresh_trace_no(),
        "totalAmount": 40.8,
        "undiscountAmount": 0,
        "goodsDetail": [],
        "cardInfo": {"cardNo": card.enc_pan_hex, "password": pin.pin_block_hex, "cardType": card.card_type},
    }
    return (await client.submit("cardRedemption", body)).body


async def provision_and_sign_in(client: BackendClient, driver: MisPosV1Driver) -> str:
    mw_tmk = await download_key(client, KEYS, SecretStr(TEST_ROOT_KEY_HEX), fresh_trace_no())
    await driver.load_master_key(mw_tmk.enc_key_hex, mw_tmk.kcv_hex)
    pin_key = await sign_in(client, KEYS, fresh_trace_no())
    await driver.load_working_key(1, pin_key.enc_key_hex, pin_key.kcv_hex)
    info = await driver.device_info()
    assert (info.master_key_kcv, info.working_key_kcv) == (mw_tmk.kcv_hex, pin_key.kcv_hex)
    return pin_key.kcv_hex


async def test_the_whole_chain_then_a_sale_verified_with_the_day_key(backend: Any, pad: Any) -> None:
    (_sim, client), (_pad, driver) = backend, pad
    with pytest.raises(DeviceRejected) as caught:  # unprovisioned: no card is read at all
        await driver.read_card(4080, 30)
    assert caught.value.device_code == "06"
    kcv = await provision_and_sign_in(client, driver)
    assert kcv == key_check_value(day_key(TEST_KEY_SEED, "POS01", TODAY))
    assert (await redeem(client, driver))["returnCode"] == "00"


async def test_a_sign_in_two_days_old_is_key_expired_and_the_next_day_key_works(
    backend: Any, pad: Any, clock: Clock
) -> None:
    (_sim, client), (_pad, driver) = backend, pad
    first = await provision_and_sign_in(client, driver)
    clock.now += timedelta(days=1)
    assert (await redeem(client, driver))["returnCode"] == "00"  # yesterday's key is still accepted
    clock.now += timedelta(days=1)
    assert (await redeem(client, driver))["returnCode"] == "A0"
    pin_key = await sign_in(client, KEYS, fresh_trace_no())
    assert pin_key.kcv_hex != first
    await driver.load_working_key(1, pin_key.enc_key_hex, pin_key.kcv_hex)
    assert (await redeem(client, driver))["returnCode"] == "00"


async def test_a_pad_with_another_key_gets_incorrect_pin(backend: Any, pad: Any) -> None:
    (sim, client), (_pad, driver) = backend, pad
    await provision_and_sign_in(client, driver)
    sim.keys.signed_in["POS01"] = TODAY - timedelta(days=1)  # the backend expects yesterday's key
    assert (await redeem(client, driver))["returnCode"] == "55"


async def test_a_working_key_under_another_master_key_is_refused_by_the_pad(backend: Any, pad: Any) -> None:
    (_sim, client), (_pad, driver) = backend, pad
    pin_key = await sign_in(client, KEYS, fresh_trace_no())
    with pytest.raises(DeviceRejected) as caught:  # unprovisioned
        await driver.load_working_key(1, pin_key.enc_key_hex, pin_key.kcv_hex)
    assert caught.value.device_code == "06"
    await driver.load_master_key("E51D9047310F731798CF74AF483931B3", "712C8C")  # a master key, not the store's
    with pytest.raises(DeviceRejected) as caught:
        await driver.load_working_key(1, pin_key.enc_key_hex, pin_key.kcv_hex)
    assert caught.value.device_code == "11"


async def test_key_exchange_provisions_and_signs_in_a_pad_that_then_sells(backend: Any, pad: Any) -> None:
    (_sim, client), (_pad, driver) = backend, pad
    center: KeyCenter = KeyExchange(client, KEYS, SecretStr(TEST_ROOT_KEY_HEX))
    assert center.has_root_key
    mw_tmk = await center.download_key(fresh_trace_no())
    await driver.load_master_key(mw_tmk.enc_key_hex, mw_tmk.kcv_hex)
    pin_key = await center.sign_in(fresh_trace_no())
    await driver.load_working_key(1, pin_key.enc_key_hex, pin_key.kcv_hex)
    assert pin_key.kcv_hex == key_check_value(day_key(TEST_KEY_SEED, "POS01", TODAY))
    assert (await redeem(client, driver))["returnCode"] == "00"


async def test_key_exchange_without_a_root_key_sends_no_download_key_but_signs_in(backend: Any) -> None:
    sim, client = backend
    center: KeyCenter = KeyExchange(client, KEYS, None)
    trace_no = fresh_trace_no()
    assert not center.has_root_key
    with pytest.raises(KeyExchangeError, match="DownloadKey needs the rootKey") as caught:
        await center.download_key(trace_no)
    assert "ebuy-root-key" in str(caught.value)
    assert sim.ledger.get(trace_no) is None  # refused before anything was sent
    assert (await center.sign_in(fresh_trace_no())).name == "pinKey"


async def test_the_clock_moved_over_http_dates_the_sign_in_and_the_key_checked(backend: Any, pad: Any) -> None:
    # What a test does to a simulator in another process: "the next day" through /_sim/clock.
    (sim, client), (_pad, driver) = backend, pad
    await provision_and_sign_in(client, driver)
    async with httpx.AsyncClient(base_url=sim.url.removesuffix(DEFAULT_PREFIX)) as control:
        assert (await control.get("/_sim/clock")).json() == {"now": "2024-01-02T09:00:00", "offset_s": 0.0}
        moved = await control.post("/_sim/clock", json={"offset_s": 86400})
        assert moved.json() == {"now": "2024-01-03T09:00:00", "offset_s": 86400.0}
        assert (await redeem(client, driver))["returnCode"] == "00"  # yesterday's sign-in still holds
        key = await sign_in(client, KEYS, fresh_trace_no())
        assert key.kcv_hex == key_check_value(day_key(TEST_KEY_SEED, "POS01", TODAY + timedelta(days=1)))
        assert (await redeem(client, driver))["returnCode"] == "55"  # the pad still holds yesterday's key
        await driver.load_working_key(1, key.enc_key_hex, key.kcv_hex)
        assert (await redeem(client, driver))["returnCode"] == "00"
        back = await control.post("/_sim/clock", json={"offset_s": 0})
        assert back.json() == {"now": "2024-01-02T09:00:00", "offset_s": 0.0}


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b"{}",
        b'{"offset_s": "60"}',
        b'{"offset_s": true}',
        b'{"offset_s": 1e12}',
        b'{"offset_s": 1, "x": 0}',
    ],
)
async def test_a_bad_clock_body_is_400_and_moves_nothing(backend: Any, body: bytes) -> None:
    sim, _client = backend
    async with httpx.AsyncClient(base_url=sim.url.removesuffix(DEFAULT_PREFIX)) as control:
        answer = await control.post("/_sim/clock", content=body)
        assert answer.status_code == 400
        assert answer.json()["error"]
        assert (await control.get("/_sim/clock")).json()["offset_s"] == 0.0


async def test_a_terminal_that_never_signed_in_gets_a0_even_with_the_right_key() -> None:
    sim = BackendSimulator(clock=Clock())
    async with running(sim, signed_in=False) as client:
        client.key = day_key(TEST_KEY_SEED, "POS01", TODAY)  # the very key a sign-in would issue
        refused = await client.call("cardRedemption", client.card_sale(fresh_trace_no()))
        assert (refused["returnCode"], refused["returnDesc"]) == ("A0", "not signed in: sign in again")
        assert await client.sign_in() == day_key(TEST_KEY_SEED, "POS01", TODAY)
        assert (await client.call("cardRedemption", client.card_sale(fresh_trace_no())))["returnCode"] == "00"


async def test_the_signed_in_pad_holds_what_the_backend_issues_pos01_that_day() -> None:
    async with running(BackendSimulator(clock=Clock())) as client:  # signs in as POS01 on TODAY
        assert client.key is not None
        assert signed_in_key_hex(TODAY) == client.key.hex().upper()
    assert signed_in_key_hex(TODAY) != signed_in_key_hex(TODAY + timedelta(days=1))


async def _kcvs(pad: SimulatedPinPad) -> tuple[str, str]:
    """The master and slot-1 KCVs ``pad`` reports in DEVICE_INFO, over an in-memory line."""
    host_end, pad_end = memory_pipe()
    pad.serve(pad_end)
    link = LinkDriver(host_end, fast_session())
    link.start()
    try:
        info = await link.request(DeviceInfoRequest(1), timeout=2)
        assert isinstance(info, DeviceInfo)
        return info.master_key_kcv, info.working_key_kcv
    finally:
        await link.aclose()
        await pad.stop()


@pytest.mark.parametrize(
    ("argv", "master", "working"),
    [
        ([], True, False),
        (["--keys", "provisioned"], True, False),
        (["--keys", "signed-in"], True, True),
        (["--keys", "unprovisioned"], False, False),
    ],
    ids=["default", "provisioned", "signed-in", "unprovisioned"],
)
async def test_the_pad_simulator_starts_provisioned_unless_told_otherwise(
    argv: list[str], master: bool, working: bool
) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    master_kcv = key_check_value(bytes.fromhex(TEST_MASTER_KEY_HEX)) if master else ""
    working_kcv = key_check_value(signed_in_pad_key()) if working else ""
    assert await _kcvs(build_pad(parser.parse_args(argv))) == (master_kcv, working_kcv)
