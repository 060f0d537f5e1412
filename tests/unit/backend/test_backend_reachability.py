"""Is the backend reachable? BackendClient's record and probe against real local sockets.

The backend simulator answers over a real socket; a refusing port (nothing listens), a silent
server (accepts, never answers) and a blackhole listener (SYNs dropped) are the three ways a
backend can fail to answer.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr

from misbridge.backend import BackendClient
from misbridge.config.settings import BackendSettings, IdentitySettings
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, ConfigError
from simulators.backend import (
    DEFAULT_PREFIX,
    TEST_SIGNING_KEY,
    BackendSimulator,
    Fault,
    blackhole_listener,
    refusing_port,
)
from tests.simulators.booksim import fresh_trace_no
from tests.unit.backend.test_backend_client_sockets import SilentServer

#: Short timers: a NOT SENT call gives up within about a second.
TIMERS = {"connect_timeout_s": 0.2, "read_timeout_s": 0.3, "request_deadline_s": 1.0}


class Attempts(list[tuple[str, int]]):
    """The on_attempt callback: every (action, attempt number) it was told."""

    def __call__(self, action: str, attempt: int) -> None:
        self.append((action, attempt))


def client_for(url: str, attempts: Attempts | None = None, **settings: object) -> BackendClient:
    backend = BackendSettings.model_validate({"url": url, **TIMERS, **settings})
    return BackendClient(backend, IdentitySettings(), SecretStr(TEST_SIGNING_KEY), on_attempt=attempts)


def url_of(port: int) -> str:
    return f"http://127.0.0.1:{port}{DEFAULT_PREFIX}"


@pytest.fixture
async def sim() -> AsyncIterator[BackendSimulator]:
    simulator = BackendSimulator()
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def silent() -> AsyncIterator[tuple[SilentServer, str]]:
    state = SilentServer()
    server = await asyncio.start_server(state.handle, "127.0.0.1", 0)
    yield state, url_of(server.sockets[0].getsockname()[1])
    state.close_all()
    server.close()
    await server.wait_closed()


async def inquire(client: BackendClient) -> None:
    """One definite call: an inquiry of a traceNo the simulator never saw (it answers 25)."""
    await client.submit("inquiry", {"traceNo": fresh_trace_no(), "originalTraceNo": fresh_trace_no()})


async def test_a_fresh_client_knows_nothing_and_a_reply_starts_the_clock(sim: BackendSimulator) -> None:
    client = client_for(sim.url)
    try:
        before = (client.last_ok_age_s(), client.known_down, client.last_error)
        await inquire(client)
        just_after = client.last_ok_age_s()
        await asyncio.sleep(0.05)
        later = client.last_ok_age_s()
    finally:
        await client.aclose()
    assert before == (None, False, None)
    assert just_after is not None
    assert 0 <= just_after < 0.5
    assert later is not None
    assert later >= just_after + 0.05


async def test_a_bad_answer_is_still_an_answer(sim: BackendSimulator) -> None:
    client = client_for(sim.url)
    sim.faults.add(Fault.HTTP_500_BEFORE_COMMIT, action="inquiry")
    try:
        with pytest.raises(BackendOutcomeUnknown):
            await inquire(client)
        age, down, error = client.last_ok_age_s(), client.known_down, client.last_error
    finally:
        await client.aclose()
    assert age is not None
    assert age < 0.5
    assert not down
    assert error == "inquiry UNKNOWN: backend answered HTTP 500"


async def test_a_closed_port_is_known_down_until_the_backend_answers_again() -> None:
    port = refusing_port()
    client = client_for(url_of(port))
    comeback = BackendSimulator()
    try:
        with pytest.raises(BackendNotSent):
            await inquire(client)
        down_while_closed, error = client.known_down, client.last_error
        await comeback.start(port=port)
        await inquire(client)
        down_after_reply, age = client.known_down, client.last_ok_age_s()
    finally:
        await client.aclose()
        await comeback.stop()
    assert down_while_closed
    assert error == "inquiry NOT SENT: backend not reached (ConnectError); nothing was sent"
    assert not down_after_reply
    assert age is not None
    assert age < 0.5


async def test_a_read_timeout_is_not_down_the_host_took_the_connection() -> None:
    port = refusing_port()
    client = client_for(url_of(port))
    comeback = BackendSimulator()
    try:
        with pytest.raises(BackendNotSent):
            await inquire(client)
        down_while_closed = client.known_down
        await comeback.start(port=port)
        comeback.faults.add(Fault.DELAY_AFTER_COMMIT, action="inquiry", delay_s=2.0)
        with pytest.raises(BackendOutcomeUnknown, match="ReadTimeout"):
            await inquire(client)
        down_after_timeout, age = client.known_down, client.last_ok_age_s()
    finally:
        await client.aclose()
        await comeback.stop()
    assert down_while_closed
    assert not down_after_timeout
    assert age is None  # connected, but nothing ever answered


async def test_a_probe_of_a_live_backend_is_true_whatever_the_status_and_is_no_attempt(
    sim: BackendSimulator,
) -> None:
    async with httpx.AsyncClient() as plain:
        status = (await plain.head(sim.url)).status_code
    assert status >= 400  # the base URL is no route: an error status still means "the host answered"
    attempts = Attempts()
    client = client_for(sim.url, attempts)
    try:
        reachable = await client.probe()
        age = client.last_ok_age_s()
        probe_attempts = list(attempts)
        await inquire(client)
    finally:
        await client.aclose()
    assert reachable
    assert age is not None
    assert age < 0.5
    assert probe_attempts == []
    assert attempts == [("inquiry", 1)]  # the callback works: the probe just never calls it


async def test_a_probe_that_answers_clears_known_down() -> None:
    closed, live = refusing_port(), BackendSimulator()
    await live.start()
    client = client_for(url_of(closed), probe_url=live.url)
    try:
        with pytest.raises(BackendNotSent):
            await inquire(client)
        down_before = client.known_down
        reachable = await client.probe()
        down_after = client.known_down
    finally:
        await client.aclose()
        await live.stop()
    assert (down_before, reachable, down_after) == (True, True, False)


async def test_a_probe_of_a_closed_port_is_false_at_once_and_keeps_known_down() -> None:
    client = client_for(url_of(refusing_port()))
    try:
        fresh = await client.probe()
        down_after_fresh_probe = client.known_down
        with pytest.raises(BackendNotSent):
            await inquire(client)
        started = time.monotonic()
        again = await client.probe()
        elapsed = time.monotonic() - started
        down, error = client.known_down, client.last_error
    finally:
        await client.aclose()
    assert (fresh, down_after_fresh_probe) == (False, False)  # a probe is no call: it does not set it
    assert not again
    assert elapsed < 0.3
    assert down
    assert error == "probe: ConnectError"


async def test_a_probe_of_a_host_that_never_answers_is_false_within_its_timeout(
    silent: tuple[SilentServer, str],
) -> None:
    state, url = silent
    client = client_for(url, read_timeout_s=30.0, request_deadline_s=40.0)
    try:
        started = time.monotonic()
        reachable = await client.probe(timeout_s=1.0)
        elapsed = time.monotonic() - started
        error = client.last_error
    finally:
        await client.aclose()
    assert not reachable
    assert 0.9 <= elapsed < 1.2
    assert state.connections == 1
    assert state.received.startswith(b"HEAD " + DEFAULT_PREFIX.encode())
    assert error is not None
    assert error.startswith("probe: ")


async def test_a_probe_whose_connect_hangs_is_false_within_its_timeout() -> None:
    async with blackhole_listener() as (host, port):
        client = client_for(f"http://{host}:{port}/", connect_timeout_s=30.0, request_deadline_s=40.0)
        try:
            started = time.monotonic()
            reachable = await client.probe(timeout_s=0.5)
            elapsed = time.monotonic() - started
        finally:
            await client.aclose()
    assert not reachable
    assert 0.4 <= elapsed < 0.7


def test_a_probe_url_that_is_not_http_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=re.escape("backend probe_url 'ftp://backend.test/' must be http")):
        client_for("http://backend.test/api", probe_url="ftp://backend.test/")
