"""In-memory test double: a HOST and a DEVICE :class:`LinkSession` wired back to back.

Like h11's ``ConnectionPair`` and pymodbus' ``NullModem``: :class:`LinkPair` moves whatever
one session wants to write into the other one, through an optional :data:`Manipulator` per
direction that can drop, duplicate, corrupt or split writes, and advances a virtual clock to
the next deadline whenever the line is quiet.  Being sans-IO, the whole exchange runs in a
plain loop: no event loop, no sleeping.  Used by the link tests and available to simulator
and device-layer tests.

**The line-fault vocabulary.**  This module is its home; ``misbridge.transport.memory`` takes
the same manipulators (per end, so per direction) and the simulated pad's own faults
(``simulators/pinpad/faults.py``) count the same way.  A manipulator sees each *write* of one
direction, in order, and numbers them from 1, "the nth write", as crash points number passes
(``MISBRIDGE_CRASH_AT=<point>:<nth>``, default the first):

- ``drop_writes(n, ...)``: the nth write is lost;
- ``duplicate_writes(n, ...)``: the nth write is delivered twice;
- ``corrupt_write(n, offset, xor)``: byte ``offset`` of the nth write is XORed (``offset=-1``:
  the LRC, the pad's ``bad_lrc``);
- ``split_every(size)``: every write arrives in pieces of ``size`` bytes;
- ``lossy(seed, ...)``: random drops, duplicates and corruptions, reproducible from ``seed``;
- ``passthrough``: no fault.

A write is whatever the session handed over in one go (often a frame, sometimes an ACK and a
frame together); the simulated pad, which sees its own output, spoils per unit instead (an ACK,
a NAK or a whole frame) and counts "the next n" units of a kind from when a fault is armed.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypeAlias

from misbridge.link.events import LinkEvent, PayloadReceived
from misbridge.link.session import LinkSession, Role

__all__ = [
    "LinkPair",
    "Manipulator",
    "corrupt_write",
    "drop_writes",
    "duplicate_writes",
    "lossy",
    "passthrough",
    "split_every",
]

#: Rewrites one write: returns the chunks the reader receives, in order (``[]`` drops it).
Manipulator: TypeAlias = Callable[[bytes], list[bytes]]


def passthrough(data: bytes) -> list[bytes]:
    """Deliver the write unchanged."""
    return [data]


def _on_writes(numbers: tuple[int, ...], action: Manipulator) -> Manipulator:
    if any(n < 1 for n in numbers):
        raise ValueError(f"writes are numbered from 1 (the first write is 1), not {min(numbers)}")
    count = 0

    def manipulate(data: bytes) -> list[bytes]:
        nonlocal count
        count += 1
        return action(data) if count in numbers else [data]

    return manipulate


def drop_writes(*numbers: int) -> Manipulator:
    """Lose the writes with these numbers (1 = first write in this direction).

    Raises:
        ValueError: a number below 1 (as for every write number here).
    """
    return _on_writes(numbers, lambda data: [])


def duplicate_writes(*numbers: int) -> Manipulator:
    """Deliver the writes with these numbers twice."""
    return _on_writes(numbers, lambda data: [data, data])


def corrupt_write(number: int, offset: int, xor: int = 0xFF) -> Manipulator:
    """XOR byte ``offset`` (negative counts from the end) of write ``number`` with ``xor``."""

    def corrupt(data: bytes) -> list[bytes]:
        damaged = bytearray(data)
        damaged[offset] ^= xor
        return [bytes(damaged)]

    return _on_writes((number,), corrupt)


def split_every(size: int) -> Manipulator:
    """Deliver every write in chunks of ``size`` bytes (1 = byte at a time)."""
    return lambda data: [data[i : i + size] for i in range(0, len(data), size)] or [data]


def lossy(
    seed: int,
    *,
    drop: float = 0.1,
    duplicate: float = 0.05,
    corrupt: float = 0.0,
    max_faults: int | None = None,
) -> Manipulator:
    """A seeded noisy line: random drops, duplicates and one-byte corruptions, random chunks.

    At most ``max_faults`` writes are damaged (dropped, duplicated or corrupted).  When the
    faults of both directions together are at most ``MAX_RETRANSMITS``, no frame can lose
    all its sends, so every payload must get through exactly once: always with drops and
    duplicates, and with corruption as long as data flows one way (see the limitations in
    :mod:`misbridge.link.frames`).
    """
    rng = random.Random(seed)
    faults = 0

    def manipulate(data: bytes) -> list[bytes]:
        nonlocal faults
        roll = rng.random()
        if roll >= drop + duplicate + corrupt or (max_faults is not None and faults >= max_faults):
            return _random_chunks(rng, data)
        faults += 1
        if roll < drop:
            return []
        if roll < drop + duplicate:
            return _random_chunks(rng, data) + _random_chunks(rng, data)
        damaged = bytearray(data)
        damaged[rng.randrange(len(damaged))] ^= rng.randrange(1, 256)
        return _random_chunks(rng, bytes(damaged))

    return manipulate


def _random_chunks(rng: random.Random, data: bytes) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randrange(4))))
    return [data[i:j] for i, j in zip([0, *cuts], [*cuts, len(data)], strict=True)]


class LinkPair:
    """A HOST and a DEVICE session joined by an in-memory line with a virtual clock.

    Events are drained from both sessions as the pair runs and kept in :attr:`host_events`
    and :attr:`device_events`.

    Args:
        host, device: the sessions (fresh ones with default timers if omitted).
        host_to_device, device_to_host: manipulators of each direction.
        now: the starting time of the virtual clock.
    """

    def __init__(
        self,
        host: LinkSession | None = None,
        device: LinkSession | None = None,
        *,
        host_to_device: Manipulator = passthrough,
        device_to_host: Manipulator = passthrough,
        now: float = 0.0,
    ) -> None:
        self.host = host or LinkSession(Role.HOST)
        self.device = device or LinkSession(Role.DEVICE)
        self.host_to_device = host_to_device
        self.device_to_host = device_to_host
        self.now = now
        self.host_events: list[LinkEvent] = []
        self.device_events: list[LinkEvent] = []

    def transfer(self) -> bool:
        """Deliver everything both sessions want to write; True if any bytes were written."""
        moved = self._move(self.host, self.device, self.host_to_device)
        moved |= self._move(self.device, self.host, self.device_to_host)
        self._collect()
        return moved

    def advance(self) -> bool:
        """Jump the clock to the earliest deadline and fire it; False if no timer runs."""
        deadlines = [d for d in (self.host.next_deadline(), self.device.next_deadline()) if d is not None]
        if not deadlines:
            return False
        self.now = max(self.now, min(deadlines))
        self.host.handle_timeout(self.now)
        self.device.handle_timeout(self.now)
        self._collect()
        return True

    def run(self, max_steps: int = 100_000) -> None:
        """Transfer and advance until the line is quiet and no timer runs.

        Raises:
            RuntimeError: still busy after ``max_steps`` (a livelock: a bug in the link).
        """
        for _ in range(max_steps):
            if not self.transfer() and not self.advance():
                return
        raise RuntimeError(f"link pair still busy after {max_steps} steps")

    def received_by(self, role: Role) -> list[bytes]:
        """Payloads delivered to the HOST or DEVICE so far, in order."""
        events = self.host_events if role is Role.HOST else self.device_events
        return [e.payload for e in events if isinstance(e, PayloadReceived)]

    def _move(self, src: LinkSession, dst: LinkSession, manipulate: Manipulator) -> bool:
        data = src.data_to_send()
        if data:
            for chunk in manipulate(data):
                dst.receive_data(chunk, self.now)
        return bool(data)

    def _collect(self) -> None:
        self.host_events += self.host.events()
        self.device_events += self.device.events()
