"""Bytes on the PIN-pad link per redemption, counted at the simulated pad.

The PIN-pad simulator runs in this process (the same ``SimulatedPinPad`` class as
``python -m simulators pinpad``) with its pty port wrapped to count every byte each way; the
backend simulator and the daemon run as subprocesses. The count includes every frame, ACK and
PROGRESS the redemption exchanges; wire time = bytes x 10 bits (8N1) / baud, because the pty
itself does not pace bytes.

Run alone: ``python -m bench.wire [--redemptions N]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench.common import (
    BITS_PER_BYTE,
    Row,
    backend_simulator,
    bench_args,
    daemon,
    daemon_config,
    emit,
    write_key,
)
from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.ebuy.examples import card_redemption_request
from misbridge.link import DEFAULT_BAUDRATE
from simulators.pinpad.device import SimulatedPinPad


@dataclass
class LinkBytes:
    """Bytes counted at the pad: written by the daemon (to the pad) and by the pad (to the daemon)."""

    to_pad: int = 0
    to_host: int = 0

    @property
    def total(self) -> int:
        """Both directions (the link is stop-and-wait: they do not overlap)."""
        return self.to_pad + self.to_host


def wire_seconds(byte_count: float, baud: int = DEFAULT_BAUDRATE) -> float:
    """Time ``byte_count`` bytes take on the wire at ``baud``, 8N1."""
    return byte_count * BITS_PER_BYTE / baud


def new_trace_no() -> str:
    """A traceNo never used before (the backend refuses repeats)."""
    return "T" + uuid.uuid4().hex[:20]


def _count(pad: SimulatedPinPad, counts: LinkBytes) -> None:
    port = pad._port
    write: Callable[[bytes], None] = port.write
    read: Callable[[], Awaitable[bytes]] = port.read

    def counting_write(data: bytes) -> None:
        counts.to_host += len(data) if port.is_open else 0
        write(data)

    async def counting_read() -> bytes:
        data = await read()
        counts.to_pad += len(data)
        return data

    port.write = counting_write  # type: ignore[method-assign]
    port.read = counting_read  # type: ignore[method-assign]


@contextlib.asynccontextmanager
async def counting_bench(prefix: str) -> AsyncIterator[tuple[LinkBytes, int]]:
    """A daemon wired to an in-process pad that counts every link byte: ``(counts, socket port)``.

    The pad simulator runs in this process so its reads and writes can be counted; the backend
    simulator and the daemon run as processes, as on every bench line.
    """
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        workdir = Path(tmp)
        key_file = write_key(workdir)
        pad = SimulatedPinPad(link=str(workdir / "pinpad"), timeout_cap_s=5.0)
        counts = LinkBytes()
        _count(pad, counts)
        await pad.start()
        try:
            async with backend_simulator(workdir, key_file) as url:
                config, socket_port, http_port = daemon_config(workdir, workdir / "pinpad", url, key_file)
                async with daemon(config, socket_port, http_port, workdir / "daemon.log"):
                    yield counts, socket_port
        finally:
            await pad.stop()


async def count_link_bytes(redemptions: int = 20) -> LinkBytes:
    """Average link bytes per redemption (each way) over ``redemptions`` approved redemptions."""
    async with counting_bench("misbridge-bench-wire-") as (counts, socket_port):
        total = LinkBytes()
        for _ in range(redemptions):
            body = card_redemption_request()
            body["traceNo"] = new_trace_no()
            before = LinkBytes(counts.to_pad, counts.to_host)
            answer = await socket_request("127.0.0.1", socket_port, envelope_for("cardRedemption", body))
            code = answer.body.get("returnCode")
            if code != "00":
                raise RuntimeError(f"redemption not approved: returnCode {code}")
            await asyncio.sleep(0.05)  # the final ACK of the last frame
            total.to_pad += counts.to_pad - before.to_pad
            total.to_host += counts.to_host - before.to_host
    return LinkBytes(round(total.to_pad / redemptions), round(total.to_host / redemptions))


def rows(counts: LinkBytes) -> list[Row]:
    """The table line for the link bytes."""
    return [
        Row(
            "link bytes per redemption",
            "(input to the floor)",
            f"{counts.to_pad} B to pad + {counts.to_host} B to POS = {counts.total} B",
            "info",
            f"= {wire_seconds(counts.total) * 1000:.2f} ms at {DEFAULT_BAUDRATE} baud 8N1, computed: "
            "the pty does not pace bytes",
        )
    ]


def main() -> None:
    """Count and print."""
    parser = bench_args(__doc__ or "")
    parser.add_argument("--redemptions", type=int, default=20)
    args = parser.parse_args()
    emit(rows(asyncio.run(count_link_bytes(args.redemptions))), args.json)


if __name__ == "__main__":
    main()
