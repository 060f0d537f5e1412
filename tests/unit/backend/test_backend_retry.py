"""misbridge.backend.retry: only NOT SENT is retried, and no attempt starts too late."""

from __future__ import annotations

import time

import httpx
import pytest

from misbridge.backend.retry import NOT_SENT, SUBMIT_RETRY, RetryPolicy, call_retrying_not_sent

QUICK = RetryPolicy("test", multiplier=0.01, max_wait_s=0.05, jitter_s=0.0, max_attempts=50)


def test_not_sent_is_exactly_the_three_pre_send_errors() -> None:
    assert set(NOT_SENT) == {httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout}
    for unsafe in (httpx.ReadTimeout, httpx.WriteTimeout, httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError):
        assert not issubclass(unsafe, NOT_SENT)


def test_submit_policy_matches_the_guide() -> None:
    assert (SUBMIT_RETRY.multiplier, SUBMIT_RETRY.max_wait_s) == (0.1, 1.0)


def test_retry_window_leaves_room_for_connect_and_reply() -> None:
    assert SUBMIT_RETRY.retry_window(deadline_s=50, connect_timeout_s=5, read_timeout_s=45) == 35
    assert SUBMIT_RETRY.retry_window(deadline_s=2, connect_timeout_s=0.2, read_timeout_s=0.5) == pytest.approx(1.3)


async def test_returns_after_not_sent_failures() -> None:
    calls: list[int] = []

    async def call() -> str:
        if len(calls) <= 3:  # attempts 1..3 fail
            raise httpx.ConnectError("refused")
        return "ok"

    result = await call_retrying_not_sent(
        QUICK, call, deadline_s=5, connect_timeout_s=0.1, read_timeout_s=0.1, on_attempt=calls.append
    )
    assert result == "ok"
    assert calls == [1, 2, 3, 4]


@pytest.mark.parametrize("error", [httpx.ReadTimeout("x"), httpx.RemoteProtocolError("x"), ValueError("x")])
async def test_anything_else_is_raised_after_one_attempt(error: Exception) -> None:
    calls: list[int] = []

    async def call() -> str:
        raise error

    with pytest.raises(type(error)):
        await call_retrying_not_sent(
            QUICK, call, deadline_s=5, connect_timeout_s=0.1, read_timeout_s=0.1, on_attempt=calls.append
        )
    assert calls == [1]


async def test_no_attempt_starts_after_the_window() -> None:
    starts: list[float] = []
    began = time.monotonic()

    async def call() -> str:
        starts.append(time.monotonic() - began)
        raise httpx.ConnectTimeout("x")

    with pytest.raises(httpx.ConnectTimeout):
        await call_retrying_not_sent(QUICK, call, deadline_s=0.6, connect_timeout_s=0.1, read_timeout_s=0.2)
    window = QUICK.retry_window(deadline_s=0.6, connect_timeout_s=0.1, read_timeout_s=0.2)
    assert len(starts) > 2
    assert max(starts) < window


async def test_window_of_zero_means_a_single_attempt() -> None:
    calls: list[int] = []

    async def call() -> str:
        raise httpx.ConnectError("x")

    with pytest.raises(httpx.ConnectError):
        await call_retrying_not_sent(
            QUICK, call, deadline_s=1, connect_timeout_s=0.5, read_timeout_s=0.5, on_attempt=calls.append
        )
    assert calls == [1]


async def test_attempt_cap() -> None:
    policy = RetryPolicy("capped", multiplier=0.001, max_wait_s=0.001, jitter_s=0.0, max_attempts=3)
    calls: list[int] = []

    async def call() -> str:
        raise httpx.PoolTimeout("x")

    with pytest.raises(httpx.PoolTimeout):
        await call_retrying_not_sent(
            policy, call, deadline_s=10, connect_timeout_s=0.1, read_timeout_s=0.1, on_attempt=calls.append
        )
    assert calls == [1, 2, 3]
