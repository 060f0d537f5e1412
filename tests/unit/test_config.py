"""Settings: defaults are consistent, inconsistent timer sets are refused naming the keys (R11)."""

from __future__ import annotations

from datetime import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from misbridge.config.settings import Settings, load_settings
from misbridge.errors import ConfigError


def test_defaults_are_consistent() -> None:
    settings = Settings()
    assert settings.api.pos_deadline_s > settings.backend.request_deadline_s + settings.resolution.inquiry_bound_s


@given(
    card=st.integers(5, 300),
    pin=st.integers(5, 300),
    grace=st.floats(0.1, 30),
    backend=st.floats(6, 120),
    bound=st.floats(1, 600),
    pos=st.floats(1, 2000),
)
def test_pos_deadline_must_exceed_every_internal_timer(
    card: int, pin: int, grace: float, backend: float, bound: float, pos: float
) -> None:
    internal = card + pin + 2 * grace + backend + bound
    values = {
        "device": {"card_timeout_s": card, "pin_timeout_s": pin, "reply_grace_s": grace},
        "backend": {"request_deadline_s": backend},
        "resolution": {"inquiry_bound_s": bound},
        "api": {"pos_deadline_s": pos},
    }
    if pos > internal:
        Settings(**values)  # type: ignore[arg-type]
    else:
        with pytest.raises(ValueError, match=r"api\.pos_deadline_s"):
            Settings(**values)  # type: ignore[arg-type]


def test_toml_file_and_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "misbridge.toml"
    config.write_text('[device]\nurl = "/dev/ttyACM0"\n[identity]\nshop_no = "SHOP9"\n', encoding="utf-8")
    monkeypatch.setenv("MISBRIDGE_DEVICE__BAUDRATE", "57600")
    settings = load_settings(config)
    assert settings.device.url == "/dev/ttyACM0"
    assert settings.device.baudrate == 57600
    assert settings.identity.shop_no == "SHOP9"
    assert Settings().device.url == "/dev/mispos", "the file must not leak into later Settings()"


def test_invalid_file_names_the_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[api]\npos_deadline_s = 10\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="pos_deadline_s"):
        load_settings(config)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "absent.toml")


def test_misspelt_key_and_bad_values_are_each_named(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[device]\nbaudrate = -5\n[api]\nport = 9100\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    message = str(caught.value)
    assert "device.baudrate: Input should be greater than 0 (got -5)" in message
    assert "api.port: unknown setting" in message
    assert str(config) in message


def test_reconcile_defaults() -> None:
    reconcile = Settings().reconcile
    assert (reconcile.cut_off, reconcile.time_zone, reconcile.batch_size) == ("04:00", "", 5000)
    assert reconcile.cut_off_time() == time(4, 0)
    assert reconcile.zone() is not None  # the machine's zone (UTC where it has none)


def test_reconcile_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MISBRIDGE_RECONCILE__CUT_OFF", "02:30")
    monkeypatch.setenv("MISBRIDGE_RECONCILE__TIME_ZONE", "Asia/Shanghai")
    monkeypatch.setenv("MISBRIDGE_RECONCILE__BATCH_SIZE", "1000")
    reconcile = load_settings().reconcile
    assert reconcile.cut_off_time() == time(2, 30)
    assert reconcile.zone() == ZoneInfo("Asia/Shanghai")
    assert reconcile.batch_size == 1000


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("cut_off", "24:00", "reconcile.cut_off"),
        ("cut_off", "4:00", "reconcile.cut_off"),
        ("time_zone", "Mars/Olympus", "not an IANA time zone"),
        ("time_zone", "Asia", "not an IANA time zone"),
        ("time_zone", "/etc/localtime", "not an IANA time zone"),
        ("time_zone", "../../etc/passwd", "not an IANA time zone"),
        ("batch_size", 0, "reconcile.batch_size"),
        ("batch_size", 5001, "reconcile.batch_size"),
    ],
)
def test_bad_reconcile_settings_are_refused(key: str, value: object, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        load_settings(reconcile={key: value})
