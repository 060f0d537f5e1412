"""``python -m misbridge serve`` with counters: what one sale costs in loop turns, hops, commits, connections, frames.

Run by :mod:`bench.counts` as ``python -m bench.counting_daemon serve --config PATH`` (the same
arguments as ``python -m misbridge``). Before misbridge is imported it wraps, at class or module
level, the few places every unit of work passes:

* ``BaseEventLoop._run_once`` (one event-loop iteration) and ``Handle._run`` (one callback: a
  task step, a protocol callback, a timer);
* ``BaseEventLoop.run_in_executor``, by the executor's thread-name prefix (``misbridge-journal``
  is the journal thread; ``default`` is the loop's own pool, e.g. ``getaddrinfo``);
* ``sqlite3.connect``: every connection gets a trace callback that counts ``COMMIT`` statements;
* ``BaseEventLoop.create_connection`` (a new outbound TCP connection: the backend client's) and
  ``httpx.AsyncClient.send`` (a request, on a new or a pooled connection);
* the PIN-pad link session: data frames in (PROGRESS ones apart) and out, ACKs both ways, and
  the transport's reads (wake-ups on the pty) and writes.

On ``SIGUSR2`` it writes the counters as JSON to ``$MISBRIDGE_BENCH_COUNTS`` (then renames it
into place, so a reader never sees half a file). The wrappers cost CPU themselves: this daemon is
for counting, never for timing.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sqlite3
import sys
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

COUNTS: collections.Counter[str] = collections.Counter()
#: Message type of the pad's PROGRESS frame (docs/device-protocol.md §5; misbridge.link.codes).
_PROGRESS_TYPE = 0x84


def _wrap_loop() -> None:
    base = asyncio.base_events.BaseEventLoop
    run_once = base._run_once  # type: ignore[attr-defined]
    run_in_executor = base.run_in_executor
    create_connection = base.create_connection
    handle_run = asyncio.events.Handle._run

    def counted_run_once(self: Any) -> None:
        COUNTS["loop iterations"] += 1
        run_once(self)

    def counted_handle_run(self: Any) -> None:
        COUNTS["loop callbacks"] += 1
        handle_run(self)

    def counted_run_in_executor(self: Any, executor: Executor | None, func: Any, *args: Any) -> Any:
        prefix = getattr(executor, "_thread_name_prefix", "") if executor is not None else "default"
        COUNTS[f"executor hops: {prefix or 'unnamed'}"] += 1
        return run_in_executor(self, executor, func, *args)

    async def counted_create_connection(self: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS["outbound TCP connections opened"] += 1
        return await create_connection(self, *args, **kwargs)

    base._run_once = counted_run_once  # type: ignore[attr-defined]
    base.run_in_executor = counted_run_in_executor  # type: ignore[method-assign,assignment]
    base.create_connection = counted_create_connection  # type: ignore[method-assign]
    asyncio.events.Handle._run = counted_handle_run  # type: ignore[method-assign]


def _wrap_sqlite() -> None:
    connect = sqlite3.connect

    def trace(statement: str) -> None:
        head = statement.lstrip()[:6].upper()
        if head == "COMMIT":
            COUNTS["SQLite commits"] += 1
        elif head == "BEGIN ":
            COUNTS["SQLite transactions begun"] += 1

    def counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        conn: sqlite3.Connection = connect(*args, **kwargs)
        conn.set_trace_callback(trace)
        return conn

    sqlite3.connect = counted_connect  # type: ignore[assignment]


def _wrap_httpx() -> None:
    import httpx

    send = httpx.AsyncClient.send

    async def counted_send(self: Any, request: Any, *args: Any, **kwargs: Any) -> Any:
        COUNTS[f"backend HTTP requests ({request.method})"] += 1
        return await send(self, request, *args, **kwargs)

    httpx.AsyncClient.send = counted_send  # type: ignore[method-assign]


def _wrap_link() -> None:
    from misbridge.link import session
    from misbridge.transport.serial import SerialTransport

    frame_received, ack_received = session.LinkSession._frame_received, session.LinkSession._ack_received
    # The session module's own names of the encoders (it imports them from link.frames).
    encode_frame, encode_ack = getattr(session, "encode_frame"), getattr(session, "encode_ack")  # noqa: B009
    read, write = SerialTransport.read, SerialTransport.write

    def counted_frame_received(self: Any, frame: Any) -> None:
        payload: bytes = frame.payload
        kind = "PROGRESS" if payload and payload[0] == _PROGRESS_TYPE else "other"
        COUNTS[f"pad frames in: {kind}"] += 1
        frame_received(self, frame)

    def counted_ack_received(self: Any, seq: int, now: float) -> None:
        COUNTS["pad ACKs in"] += 1
        ack_received(self, seq, now)

    def counted_encode_frame(data: bytes) -> bytes:
        COUNTS["pad frames out"] += 1
        encoded: bytes = encode_frame(data)
        return encoded

    def counted_encode_ack(seq: int) -> bytes:
        COUNTS["pad ACKs out"] += 1
        encoded: bytes = encode_ack(seq)
        return encoded

    async def counted_read(self: Any) -> bytes:
        data: bytes = await read(self)
        COUNTS["pad transport reads"] += 1
        return data

    def counted_write(self: Any, data: bytes) -> None:
        COUNTS["pad transport writes"] += 1
        write(self, data)

    session.LinkSession._frame_received = counted_frame_received  # type: ignore[method-assign]
    session.LinkSession._ack_received = counted_ack_received  # type: ignore[method-assign]
    setattr(session, "encode_frame", counted_encode_frame)  # noqa: B010
    setattr(session, "encode_ack", counted_encode_ack)  # noqa: B010
    SerialTransport.read = counted_read  # type: ignore[method-assign]
    SerialTransport.write = counted_write  # type: ignore[method-assign]


def _dump(_signum: int, _frame: object) -> None:
    target = Path(os.environ["MISBRIDGE_BENCH_COUNTS"])
    partial = target.with_suffix(".part")
    partial.write_text(json.dumps(dict(COUNTS)), encoding="utf-8")
    partial.replace(target)


def install() -> None:
    """Wrap everything counted and dump the counters on SIGUSR2."""
    _wrap_loop()
    _wrap_sqlite()
    _wrap_httpx()
    _wrap_link()
    signal.signal(signal.SIGUSR2, _dump)


def main() -> int:
    """Install the counters, then run misbridge's command line with this process's arguments."""
    install()
    from misbridge.app.cli import main as misbridge_main

    return misbridge_main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
