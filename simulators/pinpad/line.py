"""The simulated pad's end of the line: its injected faults and its frame trace, as a transport.

:class:`FaultyLine` is a :class:`~misbridge.transport.base.ByteTransport` wrapped around the
real one (the pty, or one end of a ``misbridge.transport.memory`` pipe in tests). The pad's
:class:`~misbridge.device.pump.LinkPump` writes correct session output into it; the line cuts
that output into units (``ACK SEQ``, ``NAK``, whole data frames) and spoils each one as the
pad's :class:`~simulators.pinpad.faults.Faults` say before it goes out. The session never
learns: to it the line just lost, doubled or damaged bytes, as a real cable would.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from misbridge.errors import DeviceNotConnected
from misbridge.link.frames import AckControl, BadFrame, DataFrame, Discarded, FrameDecoder, NakControl, encode_frame
from misbridge.transport.base import ByteTransport
from simulators.pinpad.faults import GARBAGE, Faults, describe_unit, is_data_frame, split_units


class FaultyLine:
    """Spoils what the pad sends and traces both directions; a ``ByteTransport``.

    Args:
        faults: the faults to inject (also settable later as :attr:`faults`).
        trace: receives one readable line per unit on the line (hex and decoded, secrets elided).
        on_cut: called on the next loop turn after a frame was cut (``cut_frame``): the unplug.
    """

    def __init__(
        self,
        faults: Faults,
        *,
        trace: Callable[[str], None] | None = None,
        on_cut: Callable[[], None] = lambda: None,
    ) -> None:
        self.faults = faults
        self._trace_line = trace
        self._on_cut = on_cut
        self._inner: ByteTransport | None = None
        self._trace_decoder = FrameDecoder()
        self._silent_until = 0.0
        self._drip = bytearray()
        self._drip_timer: asyncio.TimerHandle | None = None

    def attach(self, transport: ByteTransport) -> None:
        """Carry a new link over ``transport``: nothing half-traced or half-sent is kept."""
        self.stop_drip()
        self._trace_decoder = FrameDecoder()
        self._inner = transport

    def silence(self, seconds: float) -> None:
        """Send nothing for ``seconds`` from now."""
        self._silent_until = _now() + seconds

    def stop_drip(self) -> None:
        """Forget the bytes still to be sent slowly (``slow_ms``)."""
        if self._drip_timer is not None:
            self._drip_timer.cancel()
            self._drip_timer = None
        self._drip.clear()

    # -- ByteTransport -----------------------------------------------------------------------

    async def read(self) -> bytes:
        """The host's next bytes, traced on the way in."""
        data = await self._transport().read()
        if self._trace_line is not None:
            for item in self._trace_decoder.feed(data, _now()):
                self._trace_in(item)
        return data

    def write(self, data: bytes) -> None:
        """Send session output to the host through the armed faults."""
        for unit in split_units(data):
            if _now() < self._silent_until:
                self._trace_out(unit, "dropped, pad silent")
                continue
            for out, note in self.spoil(unit):
                self._trace_out(out, note)
                self._write(out)

    async def drain(self) -> None:
        """Wait until the wrapped transport has handed its bytes on."""
        await self._transport().drain()

    async def aclose(self) -> None:
        """Close the wrapped transport."""
        self.stop_drip()
        if self._inner is not None:
            await self._inner.aclose()

    # -- faults ------------------------------------------------------------------------------

    def spoil(self, unit: bytes) -> list[tuple[bytes, str]]:
        """What goes on the line for one unit of session output, each with a trace note.

        Counters and rates alike go through :meth:`Faults.take`, once per unit: a resent frame
        (or the ACK of a resent host frame) is decided again, on its own.
        """
        f = self.faults
        if unit[:1] == b"\x06":
            if f.take("nak"):
                return [(b"\x15", f"fault: NAK instead of ACK seq={unit[1]}")]
            if f.take("withhold_ack"):
                self._trace_out(unit, "withheld")
                return []
            return [(unit, "")]
        if not is_data_frame(unit):
            return [(unit, "")]
        if f.cut_frame:
            f.cut_frame = False
            asyncio.get_running_loop().call_soon(self._on_cut)
            return [(unit[: len(unit) // 2], "fault: frame cut")]
        out = [(unit, "")]
        if f.take("bad_lrc"):
            out = [(unit[:-1] + bytes([unit[-1] ^ 0xFF]), "fault: LRC flipped")]
        if f.take("duplicate"):
            out = out * 2
        if f.take("garbage"):
            out = [(GARBAGE, ""), *out]
        return out

    def _transport(self) -> ByteTransport:
        if self._inner is None:
            raise DeviceNotConnected("the simulated pad serves no line yet")
        return self._inner

    def _write(self, data: bytes) -> None:
        if self.faults.slow_ms <= 0 and not self._drip:
            self._transport().write(data)
            return
        self._drip += data
        if self._drip_timer is None:
            self._drip_one()

    def _drip_one(self) -> None:
        self._drip_timer = None
        if not self._drip:
            return
        try:
            self._transport().write(bytes(self._drip[:1]))
        except DeviceNotConnected:  # unplugged while dripping: the rest is lost with the cable
            self._drip.clear()
            return
        del self._drip[:1]
        if self._drip:
            delay = max(self.faults.slow_ms, 0.0) / 1000
            self._drip_timer = asyncio.get_running_loop().call_later(delay, self._drip_one)

    # -- trace -------------------------------------------------------------------------------

    def _trace_out(self, unit: bytes, note: str = "") -> None:
        if self._trace_line is not None:
            self._trace_line(_trace_text("pad>host", describe_unit(unit), note))

    def _trace_in(self, item: AckControl | NakControl | BadFrame | Discarded | DataFrame) -> None:
        assert self._trace_line is not None
        if isinstance(item, DataFrame):
            text = describe_unit(encode_frame(item.data))
        elif isinstance(item, AckControl):
            text = describe_unit(bytes([0x06, item.seq]))
        elif isinstance(item, NakControl):
            text = describe_unit(b"\x15")
        elif isinstance(item, BadFrame):
            text = f"bad frame ({item.reason})"
        else:
            text = f"garbage ({item.count} bytes discarded)"
        self._trace_line(_trace_text("host>pad", text, ""))


def _now() -> float:
    return asyncio.get_running_loop().time()


def _trace_text(direction: str, text: str, note: str) -> str:
    stamp = time.strftime("%H:%M:%S") + f".{int(time.time() * 1000) % 1000:03d}"
    return f"{stamp} {direction} {text}{f'  [{note}]' if note else ''}"
