"""What a check is, how it says it failed, and what it shares with the others in a run."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from misbridge.tools.conformance.line import RawHost
from misbridge.tools.conformance.people import Act, Person


class Failed(Exception):
    """A check found the pad breaking its rule: what the kit expected and what came."""

    def __init__(self, expected: str, got: str, note: str = "") -> None:
        super().__init__(f"expected {expected}; got {got}")
        self.expected = expected
        self.got = got
        self.note = note


class Skipped(Exception):
    """A check cannot run on this pad (the reason is its message)."""


def expect(condition: bool, expected: str, got: str, note: str = "") -> None:
    """Raise :class:`Failed` unless ``condition``."""
    if not condition:
        raise Failed(expected, got, note)


@dataclass
class Run:
    """What the checks of one run share."""

    url: str
    baudrate: int
    person: Person
    #: The technician said the pad holds the §11 test keys (``--test-keys``): checks may load keys.
    test_keys: bool = False
    host: RawHost | None = None
    pad: dict[str, Any] = field(default_factory=dict)
    #: Set by a check for a later one (e.g. the PIN block the key check decrypts).
    notes: dict[str, Any] = field(default_factory=dict)
    #: What the technician must do after the run (keys the kit changed and could not put back).
    after: list[str] = field(default_factory=list)

    def must_afterwards(self, step: str) -> None:
        """Add ``step`` to :attr:`after`, once."""
        if step not in self.after:
            self.after.append(step)

    @property
    def raw(self) -> RawHost:
        """The kit's raw host (open during the link and command phase)."""
        assert self.host is not None, "the raw phase opens the line first"
        return self.host


CheckFn = Callable[[Run], Awaitable[str]]


@dataclass(frozen=True)
class Check:
    """One rule of docs/device-protocol.md, checked.

    ``acts`` are what a person must do at the pad; without someone who can, the check is not run.
    ``keys``: the check sends keys to the pad (or judges a key the kit loaded), so it runs only
    when the technician said the pad holds the §11 test keys (``--test-keys``).
    ``limit_s`` bounds it (a pad that never answers fails it, the run goes on).
    """

    id: str
    title: str
    section: str
    run: CheckFn
    acts: tuple[Act, ...] = ()
    limit_s: float = 30.0
    keys: bool = False


def check(
    registry: list[Check],
    id: str,
    title: str,
    section: str,
    *,
    acts: tuple[Act, ...] = (),
    limit_s: float = 30.0,
    keys: bool = False,
) -> Callable[[CheckFn], CheckFn]:
    """Decorator: append the function to ``registry`` as a :class:`Check`."""

    def register(fn: CheckFn) -> CheckFn:
        registry.append(Check(id, title, section, fn, acts, limit_s, keys))
        return fn

    return register
