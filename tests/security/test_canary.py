"""Canary run (R16): real redemptions end to end, then no card data anywhere misbridge writes.

The daemon runs in-process against the two simulators (real pty pad, real HTTP backend), every
test card goes through both front doors, with approvals, declines, a wrong PIN, a cancel, an
inquiry and a repeat. The canaries are what the pad knows and sends: every card's PAN and
track 2, and the HEX the pad sent misbridge for the PAN, the track and the PIN block
(recomputed here with the working key the daemon signed in for and loaded, found by the KCV the
pad reports: the pad's 3DES-ECB is deterministic).

Scanned, while the daemon still runs and again after it stopped: the journal file and its
``-wal`` (the WAL disappears at a clean close, so it is read while running), every daemon log
line (loguru at DEBUG into a buffer) and the process's captured stdout/stderr (uvicorn, print,
warnings). Base64 found in them is decoded and scanned too (the e-Buy body is Base64). Result
must be **0 hits** for the canaries and for any Luhn-valid run of 13-19 digits, except runs that
are part of a known non-card identifier (a ``yyyyMMddHHmmss`` date-time, a traceNo misbridge
allocated, a long hex hash).

A careless POS is played too (issue 10, item 4): it sends every card-data field name of
docs/pos-api.md ("Input limits and card data") in the body, in memberDetail, in a goods line and
in the envelope, spelled in several cases, and card numbers in free text (contiguous, spaced,
dashed), in an action name and in an envelope field. Each must be refused with MB16 and its
values (canaries of their own, :data:`CARELESS_CANARIES`) must be found nowhere.

Every key of the chain is a canary too (issue 14, :func:`key_canaries`): the rootKey, ``mwTmk``
and the day's ``pinKey``, clear and as the backend wraps them (misbridge forwards the wrapped
ones to the pad and keeps and logs neither); their KCVs may appear. The card run above signs in
at start-up; a second run finds the pad unprovisioned and, holding the rootKey, provisions it
(DownloadKey, LOAD_MASTER_KEY), signs in, loads the key and makes one approved sale.

Not scanned: the simulators' own log. The simulators play the pad and the bank, which hold the
card by design; they are not part of misbridge.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import functools
import io
import re
import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon
from misbridge.app.simulated import Simulators, simulated_daemon, simulated_settings
from misbridge.config.settings import IdentitySettings, Settings
from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from misbridge.ebuy.pan import luhn_valid
from misbridge.telemetry.logs import configure_logging
from misbridge.tools.journal import list_transactions, show
from simulators.cards import CARDS
from simulators.crypto import (
    TEST_KEY_SEED,
    TEST_MASTER_KEY_HEX,
    TEST_ROOT_KEY_HEX,
    day_key,
    encrypt_pin_block,
    encrypt_text,
    key_check_value,
    wrap_key,
)
from simulators.pinpad.control import enqueue_remote
from tests.keys import issued_day_key, signed_in_pad_key

pytestmark = pytest.mark.timeout(240)

WRONG_PIN = "000000"
_DIGIT_RUN = re.compile(rb"(?<![0-9])[0-9]{13,19}(?![0-9])")
_HEX_TOKEN = re.compile(rb"[0-9A-Fa-f]{32,}")
_BASE64 = re.compile(rb"[A-Za-z0-9+/]{24,}={0,2}")


#: A card number only the careless POS sends (Luhn-valid, not a simulator card), and its forms.
CARELESS_PAN = "4000056655665556"
CARELESS_PAN_FORMS = {
    "spaced": "4000 0566 5566 5556", "dashed": "4000-0566-5566-5556", "grouped 4-6-6": "4000 056655 665556",
}  # fmt: skip
#: Every card-data field name a careless POS could use, spelled as it might (docs/pos-api.md).
CARELESS_FIELDS = (
    "cardNo", "CARDNO", "card_no", "cardNumber", "pan", "PAN", "cvv", "CVV2", "cvc", "cvn", "password", "Password",
    "pin", "PIN", "pinBlock", "PIN_BLOCK", "track1", "track2", "TRACK2", "track3", "trackData", "icData", "cardInfo",
    "cardSn", "expiry", "expiryDate", "validDate",
)  # fmt: skip


def careless_value(field_name: str) -> str:
    """The value a careless POS sends in ``field_name``: a canary of its own."""
    return f"CARELESS-{field_name.upper()}-{CARELESS_PAN}"


def careless_canaries() -> dict[str, bytes]:
    """Name -> bytes the careless POS sent that must never appear."""
    found = {f"careless {name} value": careless_value(name).encode() for name in CARELESS_FIELDS}
    found["careless PAN"] = CARELESS_PAN.encode()
    found.update({f"careless PAN {how}": form.encode() for how, form in CARELESS_PAN_FORMS.items()})
    return found


def canaries(key: bytes) -> dict[str, bytes]:
    """Name -> bytes that must never appear: clear card data, the pad's encrypted HEX, and
    what the careless POS sent."""
    found: dict[str, bytes] = careless_canaries()
    for card in CARDS.values():
        found[f"{card.name} PAN"] = card.pan.encode()
        found[f"{card.name} track2"] = card.track2.encode()
        found[f"{card.name} track2 tail"] = card.track2.split("=", 1)[1].encode()
        found[f"{card.name} encrypted PAN"] = encrypt_text(card.pan, key).encode()
        found[f"{card.name} encrypted track2"] = encrypt_text(card.track2, key).encode()
        found[f"{card.name} PIN block"] = encrypt_pin_block(card.pin, card.pan, key).encode()
        found[f"{card.name} wrong-PIN block"] = encrypt_pin_block(WRONG_PIN, card.pan, key).encode()
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
    key = signed_in_pad_key()
    scanner = Scanner(canaries(key))
    card = CARDS["points-cash"]
    assert scanner.hits("t", f"pan={card.pan}".encode())
    assert scanner.hits("t", f'"track2":"{encrypt_text(card.track2, key).lower()}"'.encode())
    pin_block = encrypt_pin_block(card.pin, card.pan, key)
    assert scanner.hits("t", base64.b64encode(f'{{"cardInfo":{{"password":"{pin_block}"}}}}'.encode()))
    assert scanner.hits("t", b"\x00\x13" + b"4111111111111111" + b"\x00")  # any Luhn-valid PAN-length run
    assert scanner.hits("t", b"4111111111111111=2812") != []
    assert scanner.hits("t", b"masked 622562******8888 order 261123000001 trace T1") == []
    stamp = datetime.now().strftime("%Y%m%d%H%M%S").encode()
    assert scanner.hits("t", b'"transDate":"' + stamp + b'"') == []
    assert scanner.hits("t", b"goodsName=x 4000 0566 5566 5556") != []
    assert scanner.hits("t", careless_value("TRACK2").lower().encode()) != []


# --- the run ---------------------------------------------------------------------------------


def _settings(sims: Simulators, workdir: Path, keys: dict[str, Any] | None = None) -> Settings:
    return simulated_settings(
        sims,
        workdir / "journal.db",
        device={"card_timeout_s": 5, "pin_timeout_s": 5, "reply_grace_s": 2.0},
        api={"socket_read_timeout_s": 0.5},
        keys=keys or {},
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

    async def send(self, action: str, body: dict[str, Any], *, door: str) -> dict[str, Any]:
        """One request through a door; the answer body."""
        if door == "http":
            reply = await self.http.post(f"/v1/{quote(action)}", content=jsonio.dumps(body),
                                         headers={"content-type": "application/json"})  # fmt: skip
            answer: dict[str, Any] = jsonio.loads(reply.content)
            return answer
        return (await socket_request("127.0.0.1", self.daemon.socket_port, envelope_for(action, body))).body

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


def _careless_bodies(trace_no: Callable[[], str]) -> list[tuple[str, dict[str, Any]]]:
    """(where, body): every card-data field in four places, and card numbers in free text."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name in CARELESS_FIELDS:
        for where in ("body", "memberDetail", "goodsDetail[1]", "extension.payment[0]"):
            body = _body(trace_no())
            holder = {"body": body, "memberDetail": body["memberDetail"], "goodsDetail[1]": body["goodsDetail"][1]}
            if where == "extension.payment[0]":
                body["extension"] = {"payment": [{}]}
                holder[where] = body["extension"]["payment"][0]
            holder[where][name] = careless_value(name)
            out.append((f"{where}.{name}", body))
    for how, form in {"contiguous": CARELESS_PAN, **CARELESS_PAN_FORMS}.items():
        body = _body(trace_no())
        body["goodsDetail"][0]["goodsName"] = f"牙膏 {form}"
        out.append((f"goodsName ({how})", body))
    body = _body(trace_no())
    body["memberDetail"]["memberId"] = CARELESS_PAN
    out.append(("memberDetail.memberId", body))
    body = _body(trace_no())
    body["memo"] = int(CARELESS_PAN)
    out.append(("memo (a JSON number)", body))
    return out


async def _careless_pos(run: Run) -> None:
    """Every careless request is refused with MB16, through both doors."""
    refused: list[str] = []
    for index, (where, body) in enumerate(_careless_bodies(run.trace_no)):
        answer = await run.send("cardRedemption", body, door="http" if index % 2 else "socket")
        if answer["returnCode"] != "MB16":
            refused.append(f"{where}: {answer['returnCode']} {answer['returnDesc']}")
    for how, form in CARELESS_PAN_FORMS.items():  # the HTTP door: test_a_grouped_card_number_in_an_http_action...
        answer = await run.send(f"pay {form}", _body(run.trace_no()), door="socket")
        if answer["returnCode"] != "MB16":
            refused.append(f"action with a {how} PAN on the socket door: {answer['returnCode']}")
    answer = await run.send(f"pay {CARELESS_PAN}", _body(run.trace_no()), door="http")
    if answer["returnCode"] != "MB16":
        refused.append(f"action with a PAN on the HTTP door: {answer['returnCode']}")
    envelope = envelope_for("cardRedemption", _body(run.trace_no()), device_no=f"POS {CARELESS_PAN_FORMS['dashed']}")
    answer = (await socket_request("127.0.0.1", run.daemon.socket_port, envelope)).body
    if answer["returnCode"] != "MB16":
        refused.append(f"deviceNo with a PAN: {answer['returnCode']}")
    assert refused == [], "careless requests not refused with MB16:\n" + "\n".join(refused)


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
    await _careless_pos(run)


def _read(path: Path) -> bytes:
    return path.read_bytes() if path.exists() else b""


async def _run_daemon(
    tmp_path: Path,
    drive: Callable[[Run], Awaitable[None]],
    *,
    keys: dict[str, Any] | None = None,
    pad_keys: str | None = None,
) -> tuple[dict[str, bytes], str]:
    """Run the daemon on the simulators, ``drive`` it.

    Returns every blob it wrote, read while running and after, and the KCV of the working key in
    the pad (``/health``), which the daemon signed in for and loaded. ``keys``: the daemon's
    ``[keys]`` settings; ``pad_keys``: what the pad holds at start (its ``--keys``).
    """
    logs = io.StringIO()
    configure_logging("DEBUG", stream=logs)
    blobs: dict[str, bytes] = {}
    db = tmp_path / "journal.db"
    try:
        settings = functools.partial(_settings, workdir=tmp_path, keys=keys)
        pad = ("--timeout-cap", "0.3", *(("--keys", pad_keys) if pad_keys else ()))
        async with simulated_daemon(tmp_path, settings, pinpad_args=pad) as running:
            base = f"http://127.0.0.1:{running.daemon.http_port}"
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                await drive(Run(running.daemon, running.sims, http))
                working_key_kcv = str((await http.get("/health")).json()["pad"]["working_key_kcv"])
            blobs["journal.db (running)"] = _read(db)
            blobs["journal.db-wal (running)"] = _read(db.with_name("journal.db-wal"))
    finally:
        configure_logging("WARNING")
    blobs["journal.db (stopped)"] = _read(db)
    blobs["journal.db-wal (stopped)"] = _read(db.with_name("journal.db-wal"))
    blobs["daemon log"] = logs.getvalue().encode()
    return blobs, working_key_kcv


async def test_no_card_data_in_journal_wal_logs_or_output(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "journal.db"
    blobs, working_key_kcv = await _run_daemon(tmp_path, _drive)
    assert blobs["journal.db-wal (running)"], "the WAL should hold the run's commits"
    captured = capfd.readouterr()
    blobs["stdout"] = captured.out.encode()
    blobs["stderr"] = captured.err.encode()

    # The run did what it should: every card, approvals and declines, journaled.
    rows = list_transactions(db, limit=None)
    assert {r.state for r in rows} == {"approved", "declined", "aborted"}
    assert len(rows) == len(CARDS) + 2
    assert all(r.masked_pan.count("*") == 6 for r in rows)
    assert b"traceNo=CANARY-" in blobs["daemon log"], "the daemon logged the run"

    calls = {c["traceNo"].encode() for r in rows for c in (show(db, r.trace_no) or {}).get("backendCalls", [])}
    card_key = issued_day_key(working_key_kcv, DEVICE_NO)  # the key the pad encrypted the cards with
    scanner = Scanner(canaries(card_key) | key_canaries(DEVICE_NO, date.today()), known_identifiers=calls)
    hits = [hit for name, blob in blobs.items() for hit in scanner.hits(name, blob)]
    assert hits == [], "card data or key material found:\n" + "\n".join(hits)
    assert sum(len(b) for b in blobs.values()) > 10_000
    assert Decimal(str(rows[0].total_amount)) == Decimal("40.8")


async def _http_actions_with_a_pan(run: Run) -> None:
    for form in CARELESS_PAN_FORMS.values():
        answer = await run.send(f"pay {form}", _body(run.trace_no()), door="http")
        assert answer["returnCode"] == "MB16", answer


async def test_a_grouped_card_number_in_an_http_action_never_reaches_the_log(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blobs, _ = await _run_daemon(tmp_path, _http_actions_with_a_pan)
    captured = capfd.readouterr()
    blobs["stdout"] = captured.out.encode()
    blobs["stderr"] = captured.err.encode()
    assert b"MB16" in blobs["daemon log"], "the daemon logged the refusals"
    scanner = Scanner(careless_canaries())
    hits = [hit for name, blob in blobs.items() for hit in scanner.hits(name, blob)]
    assert hits == [], "card data found:\n" + "\n".join(hits)


# --- the keys of the chain (issue 14) ----------------------------------------------------------

#: The terminal the daemons sign in as (``identity.device_no``): its day keys are canaries.
DEVICE_NO = IdentitySettings().device_no


def key_canaries(device_no: str, around: date) -> dict[str, bytes]:
    """Name -> hex of every key of the chain (docs/backend.md, "Keys and sign-in"), clear and wrapped.

    The rootKey, ``mwTmk`` (clear, and under the rootKey as DownloadKey answers it) and the
    ``pinKey`` the backend simulator issues ``device_no`` (clear, and under ``mwTmk`` as the
    sign-in answers it) for the day before, of and after ``around`` (a run across midnight).
    misbridge forwards the wrapped ones to the pad and must keep and log neither; the clear ones
    it never holds at all. Their KCVs are no canaries: check values are what it logs and journals.
    The scanner compares case-blind, so upper and lower case hex are both found.
    """
    root, master = bytes.fromhex(TEST_ROOT_KEY_HEX), bytes.fromhex(TEST_MASTER_KEY_HEX)
    found = {"rootKey": root.hex(), "mwTmk": master.hex(), "mwTmk under the rootKey": wrap_key(master, root)}
    for day in (around - timedelta(days=1), around, around + timedelta(days=1)):
        pin_key = day_key(TEST_KEY_SEED, device_no, day)
        found[f"pinKey of {day}"] = pin_key.hex()
        found[f"pinKey of {day} under mwTmk"] = wrap_key(pin_key, master)
    return {name: value.encode() for name, value in found.items()}


def test_the_scanner_finds_every_key_of_the_chain() -> None:
    today = date.today()
    scanner = Scanner(key_canaries(DEVICE_NO, today))
    pin_key = day_key(TEST_KEY_SEED, DEVICE_NO, today)
    wrapped = wrap_key(pin_key, bytes.fromhex(TEST_MASTER_KEY_HEX))
    assert scanner.hits("t", f'"pinKey": "{wrapped}"'.encode())
    assert scanner.hits("t", f"enc={wrapped.lower()}".encode())
    assert scanner.hits(
        "t",
        base64.b64encode(
            f'{{"mwTmk":"{key_canaries(DEVICE_NO, today)["mwTmk under the rootKey"].decode()}"}}'.encode()
        ),
    )
    assert scanner.hits("t", TEST_ROOT_KEY_HEX.lower().encode())
    assert scanner.hits("t", f"working key loaded (KCV {key_check_value(pin_key)})".encode()) == []


async def _provisioned_sale(run: Run) -> None:
    """The daemon provisions the pad it found without a master key, signs in, loads the key; a sale is approved."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while (await run.http.get("/health")).status_code != 200:
        assert loop.time() < deadline, "the daemon did not provision the pad and load the day's key"
        await asyncio.sleep(0.05)
    # Approved: the backend decrypted the PIN block with the key it issued today.
    assert await run.sale("points-cash") == "00", run.answers[-1]


def _key_calls(db: Path) -> list[tuple[str, str, str | None]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT kind, state, return_code FROM key_calls ORDER BY created_at, trace_no").fetchall()
    return [(str(kind), str(state), code) for kind, state, code in rows]


async def test_no_key_of_the_chain_in_journal_wal_logs_or_output(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    root_key = tmp_path / "root.key"
    root_key.write_text(TEST_ROOT_KEY_HEX, encoding="utf-8")
    root_key.chmod(0o600)
    keys = {"replaced_pad": "provision", "root_key_file": root_key}
    blobs, _ = await _run_daemon(tmp_path, _provisioned_sale, keys=keys, pad_keys="unprovisioned")
    captured = capfd.readouterr()
    blobs["stdout"] = captured.out.encode()
    blobs["stderr"] = captured.err.encode()

    # The run did what it should: signed in, found the pad unprovisioned, DownloadKey, signed in
    # again, each key checked by the KCV the pad reported; the KCVs are in the log.
    calls = _key_calls(tmp_path / "journal.db")
    assert [kind for kind, _, _ in calls] == ["signIn", "downloadKey", "signIn"], calls
    assert {(state, code) for _, state, code in calls} == {("answered", "00")}
    log = blobs["daemon log"]
    pin_key = day_key(TEST_KEY_SEED, DEVICE_NO, date.today())
    assert f"provisioned: master key KCV {key_check_value(bytes.fromhex(TEST_MASTER_KEY_HEX))}".encode() in log
    assert f"loaded into slot 1 (KCV {key_check_value(pin_key)})".encode() in log

    scanner = Scanner(key_canaries(DEVICE_NO, date.today()))
    hits = [hit for name, blob in blobs.items() for hit in scanner.hits(name, blob)]
    assert hits == [], "key material found:\n" + "\n".join(hits)
