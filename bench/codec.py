"""Link codec throughput: encode + decode of a 256-byte frame against its wire time at 115200 baud.

The frame is ``STX | LEN | DATA | ETX | LRC`` with DATA sized so the whole frame is 256 bytes.
One operation = ``encode_frame`` + ``FrameDecoder.feed`` of the whole frame (as one serial read
would deliver it) + a check that the DATA came back. Best of 5 rounds, time.perf_counter.
Also, for information, the same frame fed to the decoder one byte per call (the worst read
pattern a driver could have).

Run alone: ``python -m bench.codec``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.common import Row, bench_args, emit, verdict
from bench.wire import wire_seconds
from misbridge.link import DEFAULT_BAUDRATE, DataFrame, FrameDecoder, encode_frame

FRAME_LEN = 256
GOAL = 500.0
ROUNDS = 5


def frame_data() -> bytes:
    """DATA (SEQ, TYPE, payload) that makes a FRAME_LEN-byte frame."""
    overhead = len(encode_frame(b"\x01\x01")) - 2
    return b"\x01\x01" + bytes(range(256))[: FRAME_LEN - overhead - 2]


def per_op_seconds(operation: Callable[[], None], count: int) -> float:
    """Best-of-ROUNDS seconds per call of ``operation``."""
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for _ in range(count):
            operation()
        best = min(best, (time.perf_counter() - started) / count)
    return best


def measure() -> tuple[float, float, int]:
    """(seconds per whole-frame op, seconds per byte-at-a-time op, frame length)."""
    data = frame_data()
    frame = encode_frame(data)
    decoder = FrameDecoder()
    clock = [0.0]

    def whole() -> None:
        clock[0] += 0.001
        decoded = decoder.feed(encode_frame(data), clock[0])
        if not (len(decoded) == 1 and isinstance(decoded[0], DataFrame)):
            raise RuntimeError(f"frame did not decode: {decoded}")

    def bytewise() -> None:
        clock[0] += 0.001
        encoded = encode_frame(data)
        decoded = []
        for i in range(len(encoded)):
            decoded += decoder.feed(encoded[i : i + 1], clock[0])
        if len(decoded) != 1:
            raise RuntimeError(f"frame did not decode: {decoded}")

    return per_op_seconds(whole, 20000), per_op_seconds(bytewise, 1000), len(frame)


def rows(whole_s: float, bytewise_s: float, frame_len: int) -> list[Row]:
    """The table lines."""
    wire = wire_seconds(frame_len, DEFAULT_BAUDRATE)
    ratio = wire / whole_s
    return [
        Row(
            f"5. link codec, {frame_len}-byte frame",
            f">= {GOAL:g}x wire rate",
            f"{whole_s * 1e6:.1f} us/frame = {ratio:.0f}x",
            verdict(ratio >= GOAL, f"{ratio / GOAL:.1f}x of goal"),
            f"encode + decode (whole frame per feed) vs {wire * 1000:.2f} ms on the wire at "
            f"{DEFAULT_BAUDRATE} baud 8N1; "
            f"fed one byte per call: {bytewise_s * 1e6:.0f} us/frame = {wire / bytewise_s:.0f}x",
        ),
    ]


def main() -> None:
    """Measure and print."""
    args = bench_args(__doc__ or "").parse_args()
    emit(rows(*measure()), args.json)


if __name__ == "__main__":
    main()
