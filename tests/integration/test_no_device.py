"""With no PIN pad attached, a card request is answered at once with MB20 and nothing is charged."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import DEVICE_WAIT_S, PADLESS_SIGN_IN_WAIT_S, Daemon
from misbridge.config.settings import Settings
from misbridge.ebuy.examples import card_redemption_request


async def test_card_request_without_a_pad_gets_mb20_and_health_is_503(tmp_path: Path) -> None:
    settings = Settings(
        device={"url": str(tmp_path / "no-such-pinpad")},
        backend={"url": "http://127.0.0.1:9/ebuyweb-posp/api", "signing": {"enabled": False}},
        api={"socket_port": 0, "http_port": 0},
        journal={"path": tmp_path / "journal.db"},
    )
    daemon = Daemon(settings, signing_key=None)
    starting = time.monotonic()
    await daemon.start()
    # The absent pad is waited for once: the first sign-in does not wait DEVICE_WAIT_S for it again.
    assert time.monotonic() - starting < DEVICE_WAIT_S + PADLESS_SIGN_IN_WAIT_S + 1.5
    try:
        started = time.monotonic()
        request = envelope_for("cardRedemption", card_redemption_request())
        answer = await socket_request("127.0.0.1", daemon.socket_port, request)
        assert answer.body["returnCode"] == "MB20"
        assert "PIN pad" in answer.body["returnDesc"]
        assert time.monotonic() - started < 2.0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.http_port}") as http:
            health = await http.get("/health")
            assert health.status_code == 503
            assert health.json()["pad"]["connected"] is False
            record = (await http.get("/v1/transactions/99000009100010101732123")).json()
            assert record["state"] == "aborted"
            assert record["returnCode"] == "MB20"
    finally:
        await daemon.stop()


def test_non_loopback_bind_is_refused_without_the_explicit_setting(tmp_path: Path) -> None:
    from misbridge.app.daemon import check_bind_address
    from misbridge.errors import ConfigError

    settings = Settings(api={"host": "0.0.0.0"}, journal={"path": tmp_path / "j.db"})
    with pytest.raises(ConfigError, match="allow_non_loopback"):
        check_bind_address(settings)
    check_bind_address(Settings(api={"host": "0.0.0.0", "allow_non_loopback": True}))
