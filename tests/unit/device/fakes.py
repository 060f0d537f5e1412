"""A scripted pad on an in-memory pipe: a real DEVICE LinkSession, replies chosen by the test."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from misbridge.errors import DeviceNotConnected
from misbridge.link import (
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    LinkSession,
    Message,
    PayloadReceived,
    Result,
    ResultCode,
    Role,
    StatusRequest,
    decode_message,
    encode_message,
)
from misbridge.transport.memory import MemoryTransport, memory_pipe

#: Given a command, the messages the pad sends back (in order).
Responder = Callable[[Message], list[Message]]

#: Link timer short enough for unit tests: a silent peer fails the link in 4 x 0.05 s.
FAST_ACK_TIMEOUT_S = 0.05


def fast_session(role: Role = Role.HOST) -> LinkSession:
    """A session whose ACK and inter-byte timers are :data:`FAST_ACK_TIMEOUT_S`."""
    return LinkSession(
        role, ack_timeout=FAST_ACK_TIMEOUT_S, max_retransmits=3, inter_byte_timeout=FAST_ACK_TIMEOUT_S
    )


def standard_replies(msg: Message) -> list[Message]:
    """DEVICE_INFO and STATUS answered, every other command OK."""
    if isinstance(msg, DeviceInfoRequest):
        return [DeviceInfo(msg.request_id, "FAKE", "0.1", "F001", 1)]
    if isinstance(msg, StatusRequest):
        return [DeviceStatus(msg.request_id, DeviceState.IDLE)]
    return [Result(msg.request_id, ResultCode.OK)]


class FakePad:
    """The device end of a memory pipe, speaking the real link protocol.

    Attributes:
        received: every command decoded, in order.
        deaf: when True, incoming bytes are dropped (no ACK, no reply): the host's link fails.
    """

    def __init__(self, transport: MemoryTransport, respond: Responder = standard_replies) -> None:
        self.transport = transport
        self.respond = respond
        self.session = fast_session(Role.DEVICE)
        self.received: list[Message] = []
        self.deaf = False
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._task = asyncio.create_task(self._run())

    def send(self, msg: Message) -> None:
        """Send one message to the host."""
        self.session.send(encode_message(msg), self._loop.time())
        self._pump()

    def send_raw_payload(self, payload: bytes) -> None:
        """Send a frame whose payload may not be a valid message."""
        self.session.send(payload, self._loop.time())
        self._pump()

    async def close(self) -> None:
        """Stop and close the device end (the host then reads end of file)."""
        self._task.cancel()
        await asyncio.wait([self._task])
        if self._timer is not None:
            self._timer.cancel()
        await self.transport.aclose()

    async def _run(self) -> None:
        try:
            while True:
                data = await self.transport.read()
                if not self.deaf:
                    self.session.receive_data(data, self._loop.time())
                    self._pump()
        except DeviceNotConnected:
            pass

    def _pump(self) -> None:
        data = self.session.data_to_send()
        if data and not self.transport.closed:
            self.transport.write(data)
        for event in self.session.events():
            if isinstance(event, PayloadReceived):
                msg = decode_message(event.payload)
                self.received.append(msg)
                for reply in self.respond(msg):
                    self.send(reply)
        if self._timer is not None:
            self._timer.cancel()
        deadline = self.session.next_deadline()
        self._timer = self._loop.call_at(deadline, self._on_timer) if deadline is not None else None

    def _on_timer(self) -> None:
        self._timer = None
        self.session.handle_timeout(self._loop.time())
        self._pump()


def pad_pipe(respond: Responder = standard_replies) -> tuple[MemoryTransport, FakePad]:
    """A host transport wired to a new :class:`FakePad`."""
    host, device = memory_pipe()
    return host, FakePad(device, respond)
