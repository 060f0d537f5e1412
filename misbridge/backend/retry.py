"""Named retry policies for backend calls, and the one rule they share: retry only NOT SENT.

A request that provably never left this host (connection refused, connect timeout, no pooled
connection free in time) can be sent again with the same ``traceNo``: the backend never saw it.
Anything else may have been processed and is never retried here (docs/backend.md, "Errors").

No attempt starts so late that it could not finish inside the call's deadline: the retry window
ends ``connect_timeout + min(read_timeout, reply_reserve_s)`` before the deadline, so a late
attempt that does connect still has time to hear the reply instead of turning a clean
"not sent" into an "unknown".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_before_delay,
    wait_exponential_jitter,
)

#: httpx errors raised before a single request byte was written. Everything else is UNKNOWN.
NOT_SENT: tuple[type[httpx.TransportError], ...] = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
)

T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how fast a NOT SENT request is tried again.

    Waits are ``multiplier * 2**n + uniform(0, jitter_s)`` seconds, capped at ``max_wait_s``.

    Attributes:
        name: shown in logs.
        multiplier: first wait, in seconds, before jitter.
        max_wait_s: longest wait between attempts.
        jitter_s: random extra wait, so many terminals do not retry in step.
        max_attempts: hard cap on attempts, whatever the time left.
        reply_reserve_s: time kept free at the end of the deadline for the reply to arrive.
    """

    name: str
    multiplier: float = 0.1
    max_wait_s: float = 1.0
    jitter_s: float = 0.1
    max_attempts: int = 20
    reply_reserve_s: float = 10.0

    def retry_window(self, *, deadline_s: float, connect_timeout_s: float, read_timeout_s: float) -> float:
        """Seconds after the first attempt during which another attempt may still start."""
        return deadline_s - connect_timeout_s - min(read_timeout_s, self.reply_reserve_s)

    def retrying(self, *, deadline_s: float, connect_timeout_s: float, read_timeout_s: float) -> AsyncRetrying:
        """A tenacity controller that retries only :data:`NOT_SENT` and re-raises the last error."""
        window = self.retry_window(
            deadline_s=deadline_s, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
        )
        return AsyncRetrying(
            retry=retry_if_exception_type(NOT_SENT),
            stop=stop_after_attempt(self.max_attempts) | stop_before_delay(window),
            wait=wait_exponential_jitter(multiplier=self.multiplier, max=self.max_wait_s, jitter=self.jitter_s),
            reraise=True,
        )


#: Every backend request (sale, inquiry, void): the POS is waiting, so retries are quick.
SUBMIT_RETRY = RetryPolicy("submit")


async def call_retrying_not_sent(
    policy: RetryPolicy,
    call: Callable[[], Awaitable[T]],
    *,
    deadline_s: float,
    connect_timeout_s: float,
    read_timeout_s: float,
    on_attempt: Callable[[int], None] | None = None,
) -> T:
    """Run ``call`` until it returns, raises a non-NOT_SENT error, or the policy gives up.

    Args:
        on_attempt: told the attempt number (1, 2, ...) before each attempt.

    Raises:
        httpx.TransportError: one of :data:`NOT_SENT` when every attempt failed that way;
            any other exception of ``call`` at once, after one attempt.
    """
    retrying = policy.retrying(
        deadline_s=deadline_s, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s
    )
    async for attempt in retrying:
        with attempt:
            if on_attempt is not None:
                on_attempt(attempt.retry_state.attempt_number)
            return await call()
    raise AssertionError("unreachable: tenacity either returns or re-raises")  # pragma: no cover
