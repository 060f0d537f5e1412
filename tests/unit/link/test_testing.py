"""The in-memory LinkPair and its manipulators (misbridge.link.testing)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from misbridge.link import LinkSession, Role
from misbridge.link.testing import (
    LinkPair,
    Manipulator,
    corrupt_write,
    drop_writes,
    duplicate_writes,
    lossy,
    passthrough,
    split_every,
)


def test_passthrough() -> None:
    assert passthrough(b"abc") == [b"abc"]


def test_drop_writes_counts_from_one() -> None:
    drop = drop_writes(2, 3)
    assert [drop(b"w") for _ in range(4)] == [[b"w"], [], [], [b"w"]]


@pytest.mark.parametrize("make", [drop_writes, duplicate_writes, lambda n: corrupt_write(n, offset=0)])
def test_write_numbers_start_at_one(make: Callable[[int], Manipulator]) -> None:
    with pytest.raises(ValueError, match="numbered from 1"):
        make(0)


def test_duplicate_writes() -> None:
    dup = duplicate_writes(1)
    assert dup(b"a") == [b"a", b"a"]
    assert dup(b"b") == [b"b"]


def test_corrupt_write() -> None:
    corrupt = corrupt_write(2, offset=-1, xor=0x01)
    assert corrupt(b"\x00\x00") == [b"\x00\x00"]
    assert corrupt(b"\x00\x00") == [b"\x00\x01"]


def test_split_every() -> None:
    assert split_every(2)(b"abcde") == [b"ab", b"cd", b"e"]
    assert split_every(1)(b"ab") == [b"a", b"b"]


def test_lossy_is_deterministic_and_keeps_bytes_when_fault_free() -> None:
    data = bytes(range(50))
    first = [lossy(7)(data) for _ in range(3)]
    assert first == [lossy(7)(data) for _ in range(3)]
    clean = lossy(7, drop=0, duplicate=0)
    assert all(b"".join(clean(data)) == data for _ in range(20))


def test_lossy_respects_its_fault_budget() -> None:
    manipulate = lossy(1, drop=1.0, max_faults=2)
    assert [b"".join(manipulate(b"xy")) for _ in range(4)] == [b"", b"", b"xy", b"xy"]


def test_lossy_duplicate_delivers_the_bytes_twice() -> None:
    chunks = lossy(5, drop=0, duplicate=1.0)(b"abcdef")
    assert b"".join(chunks) == b"abcdefabcdef"


def test_lossy_corruption_changes_one_byte() -> None:
    damaged = b"".join(lossy(3, drop=0, duplicate=0, corrupt=1.0)(bytes(20)))
    assert len(damaged) == 20
    assert sum(b != 0 for b in damaged) == 1


def test_run_gives_up_on_a_busy_pair() -> None:
    pair = LinkPair()
    pair.host.send(b"\x06x", 0.0)
    with pytest.raises(RuntimeError, match="still busy"):
        pair.run(max_steps=1)


def test_pair_uses_the_sessions_given() -> None:
    host = LinkSession(Role.HOST, ack_timeout=5.0)
    pair = LinkPair(host, now=10.0)
    assert pair.host is host
    assert pair.device.role is Role.DEVICE
    host.send(b"\x06x", pair.now)
    assert host.next_deadline() == 15.0
