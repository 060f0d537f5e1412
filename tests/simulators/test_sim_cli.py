"""simulators.backend.cli: options, the one "listening on" line, and shutdown on SIGTERM or cancel."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from pathlib import Path

import httpx
import pytest

from simulators.backend.app import TEST_SIGNING_KEY
from simulators.backend.cli import DEFAULT_PORT, add_arguments, run, signing_key

PREFIX = "e-Buy backend simulator listening on "


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    args = parse()
    assert (args.host, args.port, args.key_file, args.no_signing) == ("127.0.0.1", DEFAULT_PORT, None, False)
    assert signing_key(args) == TEST_SIGNING_KEY


def test_key_file_and_no_signing(tmp_path: Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text("secret-key\n", encoding="utf-8")
    assert signing_key(parse("--key-file", str(key_file))) == "secret-key"
    assert signing_key(parse("--no-signing", "--key-file", str(key_file))) is None


async def test_missing_key_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(parse("--key-file", str(tmp_path / "absent"))) == 2
    assert "--key-file" in capsys.readouterr().err


async def _listening_url(capsys: pytest.CaptureFixture[str]) -> str:
    for _ in range(400):
        out = capsys.readouterr().out
        if out:
            assert out.startswith(PREFIX)
            assert out.count("\n") == 1
            return out[len(PREFIX) :].strip()
        await asyncio.sleep(0.01)
    raise AssertionError("the simulator never printed its URL")


async def test_serves_until_cancelled(capsys: pytest.CaptureFixture[str]) -> None:
    task = asyncio.create_task(run(parse("--port", "0")))
    url = await _listening_url(capsys)
    assert url.endswith("/ebuyweb-posp/api")
    async with httpx.AsyncClient() as client:
        response = await client.get(url.replace("/ebuyweb-posp/api", "/_sim/ledger"))
    assert response.status_code == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_sigterm_stops_it_with_status_0(capsys: pytest.CaptureFixture[str]) -> None:
    original = signal.getsignal(signal.SIGTERM)
    task = asyncio.create_task(run(parse("--port", "0")))
    await _listening_url(capsys)
    for _ in range(400):  # wait until run() has put its handler in place
        if signal.getsignal(signal.SIGTERM) is not original:
            break
        await asyncio.sleep(0.01)
    else:
        raise AssertionError("run() never installed its SIGTERM handler")
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(task, 5) == 0
    assert signal.getsignal(signal.SIGTERM) == original


def test_ledger_file_option(tmp_path: Path) -> None:
    assert parse().ledger_file is None
    assert parse("--ledger-file", str(tmp_path / "l.json")).ledger_file == tmp_path / "l.json"


async def test_unreadable_ledger_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ledger_file = tmp_path / "ledger.json"
    ledger_file.write_text("not a ledger", encoding="utf-8")
    assert await run(parse("--port", "0", "--ledger-file", str(ledger_file))) == 2
    assert "--ledger-file" in capsys.readouterr().err
