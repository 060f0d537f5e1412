"""Canary run (R16): real redemptions end to end, then no card data anywhere misbridge writes.

The daemon runs in-process against the two simulators (real pty pad, real HTTP backend), every
test card goes through both front doors, with approvals, declines, a wrong PIN, a cancel, an
inquiry and a repeat. The canaries are what the pad knows and sends: every card's PAN and
track 2, and the HEX the pad sent misbridge for the PAN, the track and the PIN block
(recomputed here with the simulators' test key: the pad's 3DES-ECB is deterministic).

Scanned, while the daemon still runs and again after it stopped: the journal file and its
``-wal`` (the WAL disappears at a clean close, so it is read while running), every daemon log
line (loguru at DEBUG into a buffer) and the process's captured stdout/stderr (uvicorn, print,
warnings). Base64 found in them is decoded and scanned too (the e-Buy body is Base64). Result
must be **0 hits** for the canaries and for any Luhn-valid run of 13-19 digits, except runs that
are part of a known non-card identifier (a ``yyyyMMddHHmmss`` date-time, a traceNo misbridge
allocated, a long hex hash).

Not scanned: the simulators' own log. The simulators play the pad and the bank, which hold the
card by design; they are not part of misbridge.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.config import Settings
from misbridge.daemon import Daemon, load_signing_key
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.journaltool import list_transactions, show
from misbridge.logs import configure_logging
from misbridge.pan import luhn_valid
from misbridge.simlaunch import Simulators, launched_simulators
from simulators.cards import CARDS
from simulators.crypto import TEST_WORKING_KEY_HEX, encrypt_pin_block, encrypt_text
from simulators.pinpad.control import enqueue_remote

pytestmark = pytest.mark.timeout(240)

KEY = bytes.fromhex(TEST_WORKING_KEY_HEX)
WRONG_PIN = "000000"
_DIGIT_RUN = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")
_HEX_TOKEN = re.compile(rb"[0-9A-Fa-f]{32,}")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")


def canaries() -> dict[str, bytes]:
    """Name -> bytes that must never appear: clear card data and the pad's encrypted HEX."""
    found: dict[str, bytes] = {}
    for card in CARDS.values():
        found[f"{card.name} PAN"] = card.pan.encode()
        found[f"{card.name} track2"] = card.track2.encode()
        found[f"{card.name} track2 tail"] = card.track2.split("=", 1)[1].encode()
        found[f"{card.name} encrypted PAN"] = encrypt_text(card.pan, KEY).encode()
        found[f"{card.name} encrypted track2"] = encrypt_text(card.track2, KEY).encode()
        found[f"{card.name} PIN block"] = encrypt_pin_block(card.pin, card.pan, KEY).encode()
        found[f"{card.name} wrong-PIN block"] = encrypt_pin_block(WRONG_PIN, card.pan, KEY).encode()
    return found


@dataclass
class Scanner:
    """Finds canaries and unexplained Luhn-valid digit runs in blobs."""

    canaries: dict[str, bytes]
    known_identifiers: set[bytes] = field(default_factory=set)
    around: datetime = field(default_factory=datetime.now)

    def _is_timestamp(self, run: bytes) -> bool:
        try:
            moment = datetime.strptime(run[:14].decode(), "%Y%m%d%H%M%S")
        except ValueError:
            return False
        return abs(moment - self.around) < timedelta(days=2)

    def _explained(self, blob: bytes, match: re.Match[bytes]) -> bool:
        run = match.group()
        if self._is_timestamp(run) or any(run in known for known in self.known_identifiers):
            return True
        return any(h.start() <= match.start() and match.end() <= h.end() for h in _HEX_TOKEN.finditer(blob))

    def hits(self, name: str, blob: bytes, *, decode_base64: bool = True) -> list[str]:
        found = []
        lower = blob.lower()
        for label, canary in self.canaries.items():
            if canary.lower() in lower:
                found.append(f"{name}: canary {label} ({canary.decode()})")
        for match in _DIGIT_RUN.finditer(blob):
            if luhn_valid(match.group().decode()) and not self._explained(blob, match):
                context = blob[max(0, match.start() - 40) : match.end() + 40]
                found.append(f"{name}: Luhn-valid run {match.group().decode()} in {context!r}")
        if decode_base64:
            for match in _BASE64.finditer(blob):
                for decoded in _base64_decodings(match.group()):
                    found += [f"{hit} (Base64)" for hit in self.hits(name, decoded, decode_base64=False)
                              if "canary" in hit]  # fmt: skip
        return found


def _base64_decodings(text: bytes) -> Iterable[bytes]:
    for offset in range(4):
        chunk = text[offset:]
        chunk = chunk[: len(chunk) - len(chunk) % 4] if not chunk.endswith(b"=") else chunk
        try:
            yield base64.b64decode(chunk, validate=True)
        except (binascii.Error, ValueError):
            continue


def test_the_scanner_finds_what_it_must() -> None:
    scanner = Scanner(canaries())
    card = CARDS["points-cash"]
    assert scanner.hits("t", f"pan={card.pan}".encode())
    assert scanner.hits("t", f'"track2":"{encrypt_text(card.track2, KEY).lower()}"'.encode())
    pin_block = encrypt_pin_block(card.pin, card.pan, KEY)
    assert scanner.hits("t", base64.b64encode(f'{{"cardInfo":{{"password":"{pin_block}"}}}}'.encode()))
    assert scanner.hits("t", b"\x00\x13" + b"4111111111111111" + b"\x00")  # any Luhn-valid PAN-length run
    assert scanner.hits("t", b"4111111111111111=2812") != []
    assert scanner.hits("t", b"masked 622562******8888 order 261123000001 trace T1") == []
    stamp = datetime.now().strftime("%Y%m%d%H%M%S").encode()
    assert scanner.hits("t", b'"transDate":"' + stamp + b'"') == []


# --- the run ---------------------------------------------------------------------------------


def _settings(sims: Simulators, workdir: Path) -> Settings:
    return Settings(
        device={"url": str(sims.device_path), "card_timeout_s": 5, "pin_timeout_s": 5, "reply_grace_s": 2.0},
        backend={"url": sims.backend_url, "signing": {"key_file": sims.signing_key_file}},
        api={"socket_port": 0, "http_port": 0, "socket_read_timeout_s": 0.5},
        journal={"path": workdir / "journal.db"},
        log_level="DEBUG",
    )


def _body(trace_no: str) -> dict[str, Any]:
    body = card_redemption_request()
    body["traceNo"] = trace_no
    return body


@dataclass
class Run:
    daemon: Daemon
    sims: Simulators
    http: httpx.AsyncClient
    answers: list[dict[str, Any]] = field(default_factory=list)
    serial: int = 0

    def trace_no(self) -> str:
        self.serial += 1
        return f"CANARY-T{chr(ord('A') + self.serial // 26)}{chr(ord('A') + self.serial % 26)}"

    async def sale(self, card: str, *, pin: str | None = None, action: str = "pay", door: str = "http") -> str:
        await enqueue_remote(self.sims.control_path, card=card, pin=pin, action=action)
        trace_no = self.trace_no()
        body = _body(trace_no)
        if door == "http":
            reply = await self.http.post("/v1/cardRedemption", content=jsonio.dumps(body),
                                         headers={"content-type": "application/json"})  # fmt: skip
            answer: dict[str, Any] = jsonio.loads(reply.content)
        else:
            envelope = envelope_for("cardRedemption", body)
            answer = (await socket_request("127.0.0.1", self.daemon.socket_port, envelope)).body
        self.answers.append(answer)
        return str(answer["returnCode"])


async def _drive(run: Run) -> None:
    for index, name in enumerate(CARDS):
        code = await run.sale(name, door="http" if index % 2 else "socket")
        assert code == ("14" if name == "unknown" else "00"), (name, run.answers[-1])
    assert await run.sale("prepaid", pin=WRONG_PIN) == "55"
    assert await run.sale("member", action="cancel-pin", door="socket") == "MB23"
    approved = run.answers[0]["traceNo"]
    inquiry = await socket_request("127.0.0.1", run.daemon.socket_port, envelope_for(
        "inquiry", {"traceNo": run.trace_no(), "originalTraceNo": approved}))  # fmt: skip
    assert inquiry.body["returnCode"] == "00"
    repeat = await run.http.post("/v1/cardRedemption", content=jsonio.dumps(_body(approved)),
                                 headers={"content-type": "application/json"})  # fmt: skip
    assert jsonio.loads(repeat.content)["returnCode"] == "00"
    assert (await run.http.get(f"/v1/transactions/{approved}")).json()["maskedPan"].count("*") == 6
    assert (await run.http.get("/health")).status_code == 200


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def test_no_card_data_in_journal_wal_logs_or_output(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    logs = io.StringIO()
    configure_logging("DEBUG", stream=logs)
    blobs: dict[str, bytes] = {}
    db = tmp_path / "journal.db"
    try:
        async with launched_simulators(tmp_path, pinpad_args=("--timeout-cap", "0.3")) as sims:
            settings = _settings(sims, tmp_path)
            daemon = Daemon(settings, signing_key=load_signing_key(settings))
            await daemon.start()
            try:
                base = f"http://127.0.0.1:{daemon.http_port}"
                async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                    await _drive(Run(daemon, sims, http))
                blobs["journal.db (running)"] = _read(db)
                blobs["journal.db-wal (running)"] = _read(db.with_name("journal.db-wal"))
                assert blobs["journal.db-wal (running)"], "the WAL should hold the run's commits"
            finally:
                await daemon.stop()
    finally:
        configure_logging("WARNING")
    blobs["journal.db (stopped)"] = _read(db)
    blobs["journal.db-wal (stopped)"] = _read(db.with_name("journal.db-wal"))
    blobs["daemon log"] = logs.getvalue().encode()
    captured = capfd.readouterr()
    blobs["stdout"] = captured.out.encode()
    blobs["stderr"] = captured.err.encode()

    # The run did what it should: every card, approvals and declines, journaled.
    rows = list_transactions(db, limit=None)
    assert {r.state for r in rows} == {"approved", "declined", "aborted"}
    assert len(rows) == len(CARDS) + 2
    assert all(r.masked_pan.count("*") == 6 for r in rows)
    assert "traceNo=CANARY-" in logs.getvalue(), "the daemon logged the run"

    calls = {c["traceNo"].encode() for r in rows for c in (show(db, r.trace_no) or {}).get("backendCalls", [])}
    scanner = Scanner(canaries(), known_identifiers=calls)
    hits = [hit for name, blob in blobs.items() for hit in scanner.hits(name, blob)]
    assert hits == [], "card data found:\n" + "\n".join(hits)
    assert sum(len(b) for b in blobs.values()) > 10_000
    assert Decimal(str(rows[0].total_amount)) == Decimal("40.8")
