"""A scripted pad on an in-memory pipe: a real DEVICE LinkSession, replies chosen by the test."""

from __future__ import annotations

from collections.abc import Callable

from misbridge.device.pump import LinkPump
from misbridge.link import (
    DeviceInfo,
    DeviceInfoRequest,
    DeviceState,
    DeviceStatus,
    LinkEvent,
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
    return LinkSession(role, ack_timeout=FAST_ACK_TIMEOUT_S, max_retransmits=3, inter_byte_timeout=FAST_ACK_TIMEOUT_S)


def standard_replies(msg: Message) -> list[Message]:
    """DEVICE_INFO and STATUS answered, every other command OK."""
    if isinstance(msg, DeviceInfoRequest):
        return [DeviceInfo(msg.request_id, "FAKE", "0.1", "F001", 1)]
    if isinstance(msg, StatusRequest):
        return [DeviceStatus(msg.request_id, DeviceState.IDLE)]
    return [Result(msg.request_id, ResultCode.OK)]


class _DeafSwitch:
    """The pad's end of the pipe, with a switch that drops everything the host sends."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.deaf = False

    async def read(self) -> bytes:
        while True:
            data = await self.inner.read()
            if not self.deaf:
                return data

    def write(self, data: bytes) -> None:
        if not self.inner.closed:
            self.inner.write(data)

    async def drain(self) -> None:
        await self.inner.drain()

    async def aclose(self) -> None:
        await self.inner.aclose()


class FakePad:
    """The device end of a memory pipe, speaking the real link protocol.

    Attributes:
        received: every command decoded, in order.
        deaf: when True, incoming bytes are dropped (no ACK, no reply): the host's link fails.
    """

    def __init__(self, transport: MemoryTransport, respond: Responder = standard_replies) -> None:
        self.transport = transport
        self.respond = respond
        self.received: list[Message] = []
        self._line = _DeafSwitch(transport)
        self._pump = LinkPump(fast_session(Role.DEVICE), self._line, on_event=self._on_event, on_failure=lambda _: None)
        self._pump.start()

    @property
    def session(self) -> LinkSession:
        """The pad's DEVICE session."""
        return self._pump.session

    @property
    def deaf(self) -> bool:
        """True while the pad drops whatever the host sends."""
        return self._line.deaf

    @deaf.setter
    def deaf(self, value: bool) -> None:
        self._line.deaf = value

    def send(self, msg: Message) -> None:
        """Send one message to the host."""
        self._pump.send(encode_message(msg))

    def send_raw_payload(self, payload: bytes) -> None:
        """Send a frame whose payload may not be a valid message."""
        self._pump.send(payload)

    async def close(self) -> None:
        """Stop and close the device end (the host then reads end of file)."""
        await self._pump.aclose()
        await self.transport.aclose()

    def _on_event(self, event: LinkEvent) -> None:
        if isinstance(event, PayloadReceived):
            msg = decode_message(event.payload)
            self.received.append(msg)
            for reply in self.respond(msg):
                self.send(reply)


def pad_pipe(respond: Responder = standard_replies) -> tuple[MemoryTransport, FakePad]:
    """A host transport wired to a new :class:`FakePad`."""
    host, device = memory_pipe()
    return host, FakePad(device, respond)
