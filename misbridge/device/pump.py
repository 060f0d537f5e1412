"""The asyncio pump of one link session: the only glue between a sans-IO session and a transport.

:class:`~misbridge.link.LinkSession` owns every protocol rule and never touches a port or a
clock (docs/device-protocol.md §3). :class:`LinkPump` moves bytes and time for it, the same way
in either role (the daemon's HOST end, the simulated pad's DEVICE end):

* a read task feeds ``session.receive_data(data, clock())``;
* a loop timer fires ``session.handle_timeout(clock())`` at ``session.next_deadline()``;
* after every session call (:meth:`LinkPump.flush`) the bytes of ``data_to_send()`` are written,
  the events handed to ``on_event`` and the timer re-armed.

What the events *mean* is the caller's business: a HOST matches replies to requests, a DEVICE
dispatches commands. A transport error or end of file is reported once to ``on_failure``; a
failed *session* (a :class:`~misbridge.link.LinkFailed` event) is just an event, because the
two roles react differently (the host reopens, the pad waits for the host to reopen).

One pump serves one session: a reopened link is a new session (§3 Reset), hence a new pump.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from misbridge.errors import DeviceNotConnected
from misbridge.link import LinkEvent, LinkSession
from misbridge.transport.base import ByteTransport

#: Seconds on a monotonic clock; the session's deadlines are on the same clock.
Clock = Callable[[], float]


class LinkPump:
    """Drive ``session`` over ``transport`` on the running event loop.

    Args:
        session: a fresh session, HOST or DEVICE.
        transport: an open byte pipe; the pump never closes it (its owner does).
        on_event: receives every session event, in order, synchronously.
        on_failure: called once when the transport fails (read or write) or reaches end of file.
        clock: the clock passed to the session as ``now``; the loop's clock by default.
        name: label of the read task.
    """

    def __init__(
        self,
        session: LinkSession,
        transport: ByteTransport,
        *,
        on_event: Callable[[LinkEvent], None],
        on_failure: Callable[[DeviceNotConnected], None],
        clock: Clock | None = None,
        name: str = "link",
    ) -> None:
        self._session = session
        self._transport = transport
        self._on_event = on_event
        self._on_failure = on_failure
        self._loop = asyncio.get_running_loop()
        self._clock: Clock = clock or self._loop.time
        self._name = name
        self._timer: asyncio.TimerHandle | None = None
        self._reader: asyncio.Task[None] | None = None
        self._stopped = False

    @property
    def session(self) -> LinkSession:
        """The session this pump drives."""
        return self._session

    @property
    def running(self) -> bool:
        """True from :meth:`start` until :meth:`stop` or a transport failure."""
        return self._reader is not None and not self._stopped

    def now(self) -> float:
        """The injected clock's time: what to pass a session call made outside the pump."""
        return self._clock()

    def start(self) -> None:
        """Start the read task; call once."""
        if self._reader is None and not self._stopped:
            self._reader = asyncio.create_task(self._read_loop(), name=f"link-read {self._name}")

    def send(self, payload: bytes) -> int:
        """Queue ``payload`` on the session, write what it produced and return its SEQ.

        Raises:
            LinkFailedError: the session has failed.
            ValueError: the payload is empty or too long.
        """
        seq = self._session.send(payload, self._clock())
        self.flush()
        return seq

    def flush(self) -> None:
        """Write what the session produced, hand out its events and re-arm the timer.

        Call it after any session call made outside the pump. Re-entrant: an ``on_event``
        handler may send (and so flush) again, since each call takes its own batch of events.
        """
        data = self._session.data_to_send()
        if data:
            try:
                self._transport.write(data)
            except DeviceNotConnected as err:
                self._fail(err)
                return
        for event in self._session.events():
            self._on_event(event)
        self._arm_timer()

    def stop(self) -> None:
        """Stop the timer and the read task (without waiting for it); idempotent."""
        self._stopped = True
        self._cancel_timer()
        # From inside the read task (a handler stopping the link) the loop ends on its own.
        if self._reader is not None and self._reader is not asyncio.current_task():
            self._reader.cancel()

    async def aclose(self) -> None:
        """:meth:`stop`, then wait until the read task has ended."""
        self.stop()
        if self._reader is not None and not self._reader.done():
            # wait() never raises, so our own cancellation is not swallowed here.
            await asyncio.wait([self._reader])

    async def _read_loop(self) -> None:
        try:
            while not self._stopped:
                data = await self._transport.read()
                self._session.receive_data(data, self._clock())
                self.flush()
        except DeviceNotConnected as err:
            self._fail(err)

    def _on_timer(self) -> None:
        self._timer = None
        self._session.handle_timeout(self._clock())
        self.flush()

    def _arm_timer(self) -> None:
        self._cancel_timer()
        deadline = self._session.next_deadline()
        if deadline is not None and not self._stopped:
            # call_later, not call_at: the deadline is on the injected clock, not the loop's.
            self._timer = self._loop.call_later(max(deadline - self._clock(), 0.0), self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fail(self, error: DeviceNotConnected) -> None:
        if self._stopped:
            return
        self.stop()
        self._on_failure(error)
