"""The key chain end to end on the simulators (issue 14, "Keys and sign-in").

Nothing is faked: the pad simulator runs as a subprocess on a real pty, the backend simulator as a
subprocess on a real HTTP socket, the daemon in this process with its real journal, and
``misbridge pad provision`` and ``misbridge status`` run as processes of their own. Each test has
its own simulators and journal, so none depends on the keys another left behind. Every pad is
started with an explicit ``--keys``, and every sale is checked with a key the backend issued at a
sign-in (the simulators share no fixed key).

* provisioning: an unprovisioned pad refuses cards before the prompt; ``misbridge pad
  provision`` loads the store's master key (DownloadKey) and the day's key (signIn); the next
  daemon sells with it;
* the next day's rotation: the keeper signs in again after the sign-in hour and loads the new key;
* a pad holding another key than the backend's: the PIN is declined (55), as in the field;
* a pad swapped for an unprovisioned one while the daemon runs: cards refused before the prompt;
* the backend down: refused in under a second, nobody prompted, ``/health`` says why; back up:
  ready again and selling;
* ``misbridge status`` reads it all from the running daemon.

The backend's clock is moved through its ``/_sim/clock`` and the daemon's through ``Daemon(clock=)``.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.app.daemon import Daemon, load_signing_key
from misbridge.app.simulated import Simulators, launched_backend, write_signing_key
from misbridge.backend import BackendClient
from misbridge.backend.keys import WrappedKey, sign_in
from misbridge.config.settings import BackendSettings, IdentitySettings, KeySettings, Settings, SigningSettings
from misbridge.ebuy.examples import book_request
from simulators.crypto import TEST_KEY_SEED, TEST_MASTER_KEY_HEX, TEST_ROOT_KEY_HEX, day_key, key_check_value
from tests.integration.blackhole_proxy import BlackholeProxy
from tests.integration.faultbench import fault_settings, fresh_trace_no, redemption_body

REPO_ROOT = Path(__file__).resolve().parents[2]
DEVICE_NO = IdentitySettings().device_no
SIGN_IN_AT = KeySettings().sign_in_at
#: The store's master key as the backend simulator issues it at DownloadKey, by its check value.
MASTER_KCV = key_check_value(bytes.fromhex(TEST_MASTER_KEY_HEX))
#: What /health says of a pad without a master key (core/keys.py), and of a backend that refuses connects.
NO_MASTER_KEY = "the PIN pad holds no master key: run 'misbridge pad provision'"
BACKEND_DOWN = "the e-Buy backend is unreachable (the last call could not connect)"
#: "refused in under a second" (issue 14).
REFUSAL_BUDGET_S = 1.0
#: How soon after the backend is back the daemon is ready again, signed in if it had to: the
#: keeper probes a backend known down every second (core/keys.py POLL_S), then signs in and loads.
BACK_UP_WITHIN_S = 3.0
#: How long the daemon may take to notice a change (its keeper looks every second, the pad link
#: reconnects within its back-off): generous for a loaded machine, still far below a test's timeout.
SETTLE_S = 10.0
READY_LINE = b"PIN pad simulator on"


def day_kcv(day: date) -> str:
    """The KCV of the working key the backend simulator issues this terminal for ``day``."""
    return key_check_value(day_key(TEST_KEY_SEED, DEVICE_NO, day))


def subprocess_env() -> dict[str, str]:
    """This environment without misbridge's own settings or credentials, able to import the repository."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("MISBRIDGE_") and key != "CREDENTIALS_DIRECTORY"
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return env


class ShiftedClock:
    """Local aware time moved by :attr:`offset`: the daemon's "next day" without waiting for it."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now().astimezone() + self.offset


class PadSimulator:
    """``misbridge-sim pinpad`` as a subprocess on one link path, which a test may stop and replace.

    Every frame goes to a trace file: a READ_CARD the host sent is a customer asked for a card.
    """

    def __init__(self, workdir: Path) -> None:
        self.link = workdir / "pinpad"
        self.control = workdir / "pinpad.ctl"
        self.trace = workdir / "pinpad-trace.log"
        self.log = workdir / "pinpad.log"
        self._process: asyncio.subprocess.Process | None = None
        self._drain: asyncio.Task[None] | None = None

    async def start(self, keys: str, *, serial_no: str | None = None) -> None:
        """Start a pad holding ``keys`` (``--keys``), with that serial number if given."""
        assert self._process is None, "a pad simulator is already running"
        args = ["pinpad", "--link", str(self.link), "--control", str(self.control), "--trace", str(self.trace)]
        args += ["--timeout-cap", "0.3", "--keys", keys] + (["--serial-no", serial_no] if serial_no else [])
        with self.log.open("ab") as log:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "simulators", *args,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=log, env=subprocess_env(),
            )  # fmt: skip
        self._process = process
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 15)
        assert line.startswith(READY_LINE), f"the pad simulator did not start: {line!r}; see {self.log}"
        self._drain = asyncio.create_task(self._keep_reading(process))

    @staticmethod
    async def _keep_reading(process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while await process.stdout.readline():
            pass

    async def stop(self) -> None:
        """Stop the pad (its pty goes away, as a pad unplugged). Safe without one."""
        process, self._process = self._process, None
        if process is not None and process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 5)
            except TimeoutError:
                process.kill()
                await process.wait()
        drain, self._drain = self._drain, None
        if drain is not None:
            drain.cancel()
            await asyncio.gather(drain, return_exceptions=True)

    def card_prompts(self) -> int:
        """READ_CARD commands the pad received so far: each one asked a customer for a card."""
        if not self.trace.exists():
            return 0
        lines = self.trace.read_text(encoding="utf-8").splitlines()
        return sum(1 for line in lines if " host>pad frame " in line and " ReadCard id=" in line)


@dataclass(frozen=True)
class Health:
    """One ``GET /health``: its HTTP status and its JSON."""

    status_code: int
    body: dict[str, Any]

    @property
    def pad(self) -> dict[str, Any]:
        pad: dict[str, Any] = self.body["pad"]
        return pad

    @property
    def backend(self) -> dict[str, Any]:
        backend: dict[str, Any] = self.body["backend"]
        return backend

    @property
    def reasons(self) -> list[str]:
        reasons: list[str] = self.body["reasons"]
        return reasons


class Chain:
    """One test's bench: the two simulators, a proxy in front of the backend, and at most one daemon.

    The daemon reaches the backend through :attr:`proxy`; stopping the proxy is the backend going
    away (nothing listens at its address, connects are refused) without the backend simulator
    forgetting who signed in, which a real backend would not forget either.
    """

    def __init__(self, workdir: Path, backend_url: str, key_file: Path, proxy: BlackholeProxy) -> None:
        self.workdir = workdir
        self.backend_url = backend_url
        self.key_file = key_file
        self.proxy = proxy
        self.pad = PadSimulator(workdir)
        self.clock = ShiftedClock()
        self._daemon: Daemon | None = None
        self._http: httpx.AsyncClient | None = None

    # -- the daemon ----------------------------------------------------------------------------

    @property
    def daemon(self) -> Daemon:
        assert self._daemon is not None, "no daemon running"
        return self._daemon

    @property
    def http_url(self) -> str:
        """The running daemon's HTTP door."""
        return f"http://{self.daemon.settings.api.host}:{self.daemon.http_port}"

    @property
    def daemon_backend_url(self) -> str:
        """The backend as the daemon reaches it: through the proxy."""
        return f"http://127.0.0.1:{self.proxy.port}{httpx.URL(self.backend_url).path}"

    def settings(self) -> Settings:
        """The fault table's short timers, wired to this bench's pad, proxy and journal."""
        sims = Simulators(
            device_path=self.pad.link,
            control_path=self.pad.control,
            backend_url=self.daemon_backend_url,
            signing_key_file=self.key_file,
            log_path=self.pad.log,
        )
        return fault_settings(sims, self.workdir)

    async def start_daemon(self) -> None:
        """Start a daemon on this bench's journal, with :attr:`clock` as its key keeper's clock."""
        assert self._daemon is None, "a daemon is already running"
        settings = self.settings()
        daemon = Daemon(settings, signing_key=load_signing_key(settings), clock=self.clock)
        await daemon.start()
        self._daemon = daemon
        self._http = httpx.AsyncClient(base_url=self.http_url, timeout=30)

    async def stop_daemon(self) -> None:
        """Stop the daemon (safe without one)."""
        daemon, self._daemon = self._daemon, None
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
        if daemon is not None:
            await daemon.stop()

    async def up(self, keys: str) -> Health:
        """A pad holding ``keys`` and a daemon that made it ready; the ready ``/health``."""
        await self.pad.start(keys)
        await self.start_daemon()
        return await self.ready()

    # -- what the POS and a technician see -----------------------------------------------------

    async def health(self) -> Health:
        assert self._http is not None, "no daemon running"
        reply = await self._http.get("/health")
        return Health(reply.status_code, reply.json())

    async def wait_for(self, what: str, condition: Callable[[Health], bool], timeout_s: float = SETTLE_S) -> Health:
        """Poll ``/health`` until ``condition`` holds; the ``/health`` that satisfied it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            health = await self.health()
            if condition(health):
                return health
            assert loop.time() < deadline, f"not {what} within {timeout_s:g} s; /health: {health.body}"
            await asyncio.sleep(0.05)

    async def ready(self, timeout_s: float = SETTLE_S) -> Health:
        """Wait for ``/health`` 200 ready: the pad holds the signed-in key and the backend answers."""
        health = await self.wait_for("ready", lambda h: h.status_code == 200, timeout_s)
        assert health.body["status"] == "ready", health.body
        assert health.pad["key_ok"], health.body
        assert health.backend["signed_in"], health.body
        return health

    async def send(self, action: str, body: dict[str, Any]) -> dict[str, Any]:
        """One POS request through the socket door; the POS's answer."""
        envelope = envelope_for(action, body)
        answer = await socket_request(
            self.daemon.settings.api.host, self.daemon.socket_port, envelope, reply_timeout_s=30
        )
        assert answer.body["traceNo"] == body["traceNo"]
        return answer.body

    async def sale(self) -> dict[str, Any]:
        """The book's cardRedemption under a new traceNo; the POS's answer."""
        return await self.send("cardRedemption", redemption_body())

    # -- the backend simulator, as another process reaches it ----------------------------------

    @property
    def _sim_base(self) -> str:
        url = httpx.URL(self.backend_url)
        return f"{url.scheme}://{url.netloc.decode('ascii')}"

    async def ledger(self) -> dict[str, dict[str, Any]]:
        """The backend simulator's ledger entries by traceNo (its own address, not the proxy's)."""
        async with httpx.AsyncClient(base_url=self._sim_base, timeout=10) as client:
            entries: dict[str, dict[str, Any]] = (await client.get("/_sim/ledger")).json()["transactions"]
        return entries

    async def ledger_actions(self, action: str) -> list[dict[str, Any]]:
        """The ledger entries of ``action`` (``DownloadKey``, ``signIn``, ``cardRedemption``)."""
        return [entry for entry in (await self.ledger()).values() if entry["action"] == action]

    async def move_backend_clock(self, offset: timedelta) -> date:
        """Move the backend simulator's time by ``offset`` from the real clock; its date now."""
        async with httpx.AsyncClient(base_url=self._sim_base, timeout=10) as client:
            reply = await client.post("/_sim/clock", json={"offset_s": offset.total_seconds()})
        assert reply.status_code == 200, reply.text
        return datetime.fromisoformat(reply.json()["now"]).date()

    async def next_day(self) -> datetime:
        """Move the backend's and the daemon's clocks to a minute past the sign-in hour of tomorrow; that time.

        The backend's first: the key a sign-in gets is the one of the backend's date.
        """
        now = datetime.now().astimezone()
        hour, minute = (int(part) for part in SIGN_IN_AT.split(":"))
        later = datetime.combine(now.date() + timedelta(days=1), time(hour, minute), tzinfo=now.tzinfo)
        later += timedelta(minutes=1)
        assert await self.move_backend_clock(later - now) == later.date()
        self.clock.offset = later - now
        return later

    async def failed_sign_in(self, timeout_s: float = SETTLE_S) -> None:
        """Wait until the daemon's journal holds a sign-in that got no answer."""
        journal = self.daemon.service.journal
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            calls = await journal.key_calls()
            if any(call.kind == "signIn" and call.state == "unknown" for call in calls):
                return
            assert loop.time() < deadline, f"no failed sign-in within {timeout_s:g} s; key calls: {calls}"
            await asyncio.sleep(0.05)

    async def sign_in_elsewhere(self) -> WrappedKey:
        """Sign this terminal in at the backend directly, behind the daemon's back."""
        settings = BackendSettings(url=self.backend_url, signing=SigningSettings(key_file=self.key_file))
        key = SecretStr(self.key_file.read_text(encoding="utf-8").strip())
        client = BackendClient(settings, IdentitySettings(), key)
        try:
            return await sign_in(client, KeySettings(), fresh_trace_no())
        finally:
            await client.aclose()


@pytest.fixture
async def chain(tmp_path: Path) -> AsyncIterator[Chain]:
    key_file = write_signing_key(tmp_path)
    async with launched_backend(tmp_path, key_file, log=tmp_path / "backend.log") as backend_url:
        upstream = httpx.URL(backend_url)
        assert upstream.port is not None
        async with BlackholeProxy(upstream.host, upstream.port) as proxy:
            bench = Chain(tmp_path, backend_url, key_file, proxy)
            try:
                yield bench
            finally:
                await bench.stop_daemon()
                await bench.pad.stop()


async def refused_before_the_prompt(chain: Chain, code: str) -> tuple[dict[str, Any], float]:
    """A card sale now is refused with ``code``: nobody asked for a card, nothing sent. The answer and its seconds."""
    prompts = chain.pad.card_prompts()
    loop = asyncio.get_running_loop()
    started = loop.time()
    refused = await chain.sale()
    took = loop.time() - started
    assert refused["returnCode"] == code, refused
    assert chain.pad.card_prompts() == prompts, "the customer was asked for a card"
    assert refused["traceNo"] not in await chain.ledger()
    return refused, took


# -- provisioning ----------------------------------------------------------------------------------


def write_provision_config(chain: Chain, root_key_file: Path) -> Path:
    """The misbridge.toml of the technician's machine: the daemon's pad, backend and journal, and the rootKey file."""
    settings = chain.settings()

    def toml(value: object) -> str:  # a TOML basic string (a JSON string is one)
        return json.dumps(str(value))

    config = chain.workdir / "misbridge.toml"
    config.write_text(
        f"[device]\nurl = {toml(settings.device.url)}\n"
        f"[backend]\nurl = {toml(settings.backend.url)}\n"
        f"[backend.signing]\nkey_file = {toml(chain.key_file)}\n"
        f"[journal]\npath = {toml(settings.journal.path)}\n"
        f"[keys]\nroot_key_file = {toml(root_key_file)}\n",
        encoding="utf-8",
    )
    return config


async def run_misbridge(*args: str) -> tuple[int, str, str]:
    """``python -m misbridge ARGS`` as a process of its own; its exit status, stdout and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "misbridge", *args,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=subprocess_env(), cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        out, err = await asyncio.wait_for(process.communicate(), 60)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_an_unprovisioned_pad_refuses_cards_until_provisioned_then_sells_with_the_days_key(chain: Chain) -> None:
    await chain.pad.start("unprovisioned")  # the store's transport key (the rootKey), no master key
    await chain.start_daemon()
    health = await chain.wait_for("refusing for want of a master key", lambda h: NO_MASTER_KEY in h.reasons)
    assert health.status_code == 503
    assert (health.pad["connected"], health.pad["master_key_kcv"], health.pad["key_ok"]) == (True, None, False)

    refused, _ = await refused_before_the_prompt(chain, "MB50")
    assert "misbridge pad provision" in refused["returnDesc"]

    # A technician stops the service (it owns the pad's port) and provisions the pad.
    await chain.stop_daemon()
    root_key_file = chain.workdir / "ebuy-root-key"
    root_key_file.write_text(TEST_ROOT_KEY_HEX + "\n", encoding="utf-8")
    root_key_file.chmod(0o400)
    config = write_provision_config(chain, root_key_file)
    code, out, err = await run_misbridge("pad", "provision", "--config", str(config))
    assert code == 0, out + err
    [download] = await chain.ledger_actions("DownloadKey")
    assert (download["state"], download["returnCode"]) == ("approved", "00")
    signed = await chain.ledger_actions("signIn")
    assert len(signed) == 2, signed  # the first daemon's (the pad refused its key) and provisioning's
    assert all(entry["returnCode"] == "00" for entry in signed)
    today = max(datetime.strptime(entry["transDate"], "%Y%m%d%H%M%S") for entry in signed).date()  # the backend's
    assert "master key before: KCV (none)" in out
    assert f"master key loaded: KCV {MASTER_KCV} (the backend's)" in out
    assert f"working key loaded into slot 1: KCV {day_kcv(today)}" in out
    assert "provisioned: the pad is ready for card sales" in out
    assert TEST_ROOT_KEY_HEX not in out + err

    await chain.start_daemon()
    health = await chain.ready()
    assert (health.pad["master_key_kcv"], health.pad["working_key_kcv"]) == (MASTER_KCV, day_kcv(today))
    prompts = chain.pad.card_prompts()
    approved = await chain.sale()
    assert approved["returnCode"] == "00", approved  # the backend decrypted the PIN block with the day's key
    assert chain.pad.card_prompts() == prompts + 1  # a prompt shows in the trace
    assert (await chain.ledger())[approved["traceNo"]]["state"] == "approved"


# -- the next day ------------------------------------------------------------------------------------


async def test_the_next_day_the_daemon_signs_in_again_loads_the_new_key_and_sells_with_it(chain: Chain) -> None:
    health = await chain.up("provisioned")
    today = datetime.fromisoformat(health.backend["signed_in_at"]).date()
    assert health.pad["working_key_kcv"] == health.backend["working_key_kcv"] == day_kcv(today)
    assert (await chain.sale())["returnCode"] == "00"
    sign_ins = len(await chain.ledger_actions("signIn"))

    later = await chain.next_day()
    health = await chain.wait_for(
        "signed in with the next day's key", lambda h: h.pad["working_key_kcv"] not in (None, day_kcv(today))
    )
    assert health.pad["working_key_kcv"] == health.backend["working_key_kcv"] == day_kcv(later.date())
    assert datetime.fromisoformat(health.backend["signed_in_at"]).date() == later.date()
    assert (await chain.ready()).pad["key_ok"]
    assert len(await chain.ledger_actions("signIn")) == sign_ins + 1
    assert (await chain.sale())["returnCode"] == "00"  # the backend checked it with the next day's key


# -- a key the backend did not issue ---------------------------------------------------------------


async def test_a_pad_holding_another_key_than_the_backends_gets_the_pin_declined(chain: Chain) -> None:
    health = await chain.up("provisioned")
    loaded = health.pad["working_key_kcv"]
    # The terminal signs in elsewhere on the backend's next day: the backend now checks PIN blocks
    # with a key the pad does not hold, and nothing tells misbridge so.
    await chain.move_backend_clock(timedelta(days=1))
    issued = await chain.sign_in_elsewhere()
    assert issued.kcv_hex != loaded
    prompts = chain.pad.card_prompts()
    declined = await chain.sale()
    assert declined["returnCode"] == "55", declined  # incorrect PIN, as a real HSM answers
    assert chain.pad.card_prompts() == prompts + 1  # only the backend can tell: the customer was asked
    assert (await chain.ledger())[declined["traceNo"]]["state"] == "declined"
    assert (await chain.health()).pad["working_key_kcv"] == loaded  # 55 is no key-expired code: no sign-in


# -- a swapped pad ---------------------------------------------------------------------------------


async def test_a_pad_swapped_for_an_unprovisioned_one_is_refused_before_the_prompt(chain: Chain) -> None:
    await chain.up("provisioned")
    await chain.pad.stop()
    await chain.pad.start("unprovisioned", serial_no="SIM0099")
    health = await chain.wait_for(
        "refusing the swapped pad", lambda h: h.pad.get("serialNo") == "SIM0099" and NO_MASTER_KEY in h.reasons
    )
    assert health.status_code == 503
    assert (health.pad["master_key_kcv"], health.pad["working_key_kcv"], health.pad["key_ok"]) == (None, None, False)
    refused, _ = await refused_before_the_prompt(chain, "MB50")
    assert "misbridge pad provision" in refused["returnDesc"]


# -- the backend down --------------------------------------------------------------------------------


async def assert_refused_at_once(chain: Chain) -> None:
    """A card sale now gets MB51 in under a second, nobody prompted, nothing sent."""
    refused, took = await refused_before_the_prompt(chain, "MB51")
    assert took < REFUSAL_BUDGET_S, f"refused after {took:.2f} s: {refused}"


async def test_the_backend_down_refuses_at_once_and_back_up_the_daemon_is_ready_and_sells(chain: Chain) -> None:
    await chain.up("provisioned")
    await chain.proxy.stop()  # nothing listens at the backend's address any more
    # A call finds it out (a POS summary: no pad, no money); the client now knows it is down.
    summary = await chain.send("summary", {**book_request("summary"), "traceNo": fresh_trace_no()})
    assert summary["returnCode"] == "MB30", summary  # not sent, nothing happened
    health = await chain.wait_for("reporting the backend down", lambda h: BACKEND_DOWN in h.reasons)
    assert (health.status_code, health.backend["reachable"]) == (503, False)
    await assert_refused_at_once(chain)

    await chain.proxy.start(chain.proxy.port)  # back up, at the same address
    health = await chain.ready(timeout_s=BACK_UP_WITHIN_S)
    assert health.backend["reachable"]
    prompts = chain.pad.card_prompts()
    assert (await chain.sale())["returnCode"] == "00"
    assert chain.pad.card_prompts() == prompts + 1


async def test_a_sign_in_due_while_the_backend_is_down_is_made_as_soon_as_it_is_back(chain: Chain) -> None:
    health = await chain.up("provisioned")
    kept = health.pad["working_key_kcv"]
    await chain.proxy.stop()
    later = await chain.next_day()  # the next day's sign-in is due, and cannot be sent
    await chain.failed_sign_in()  # the call gave up: the keeper waits out its back-off now
    health = await chain.health()
    assert health.status_code == 503
    assert BACKEND_DOWN in health.reasons
    assert (health.pad["working_key_kcv"], health.pad["key_ok"]) == (kept, True)  # the backend takes it a day more
    await assert_refused_at_once(chain)

    await chain.proxy.start(chain.proxy.port)
    # Ready comes first (yesterday's key still stands), the new day's sign-in a moment later.
    await chain.ready(timeout_s=BACK_UP_WITHIN_S)
    today = day_kcv(later.date())
    health = await chain.wait_for(
        "the new day's key", lambda h: h.status_code == 200 and h.pad["working_key_kcv"] == today, BACK_UP_WITHIN_S
    )
    assert health.backend["working_key_kcv"] == today
    assert (await chain.sale())["returnCode"] == "00"


# -- misbridge status --------------------------------------------------------------------------------


async def test_misbridge_status_shows_the_sign_in_and_the_pads_key(chain: Chain) -> None:
    health = await chain.up("provisioned")
    kcv = health.pad["working_key_kcv"]
    code, out, err = await run_misbridge("status", "--url", chain.http_url)
    assert code == 0, out + err
    lines = out.splitlines()
    assert lines[0] == f"misbridge at {chain.http_url}: READY"
    assert f"working key  KCV {kcv} (the backend's: {kcv}) ok" in lines
    assert any(line.startswith("signed in    yes, at ") for line in lines), lines
    assert f"master key   KCV {MASTER_KCV}" in lines
