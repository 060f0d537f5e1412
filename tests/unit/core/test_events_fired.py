"""No dead events: every event of a kind misbridge runs today is fired somewhere in misbridge/.

An event is fired by naming it: a string literal outside the machine's own file, or an
f-string whose literal prefix names a family (``f"resolve_{outcome}"``).  Events declared for
steps misbridge does not run yet would be listed per kind in :data:`NOT_FIRED_YET`; it is
empty since the card void and refund (voidCardSale, refundCardSale) run the void and refund
machines' pad steps (``start_card``, ``card_read``, ``pin_entered``).  The check goes by name,
so a listed event a sale fires (``start_card``) would pass anyway: the list says, per kind,
what is not run yet, and running such a step means taking its event off the list.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from misbridge.core.kinds import TABLES
from misbridge.core.machine import TransactionKind

PACKAGE = Path(__file__).resolve().parents[3] / "misbridge"
MACHINE_FILES = {PACKAGE / "core" / "machine.py", PACKAGE / "core" / "diagrams.py"}
NOT_FIRED_YET: dict[TransactionKind, frozenset[str]] = {}


def _names_in(sources: list[str]) -> tuple[set[str], set[str]]:
    """String literals, and the literal prefixes ending in ``_`` of f-strings, in ``sources``."""
    literals: set[str] = set()
    prefixes: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                literals.add(node.value)
            elif isinstance(node, ast.JoinedStr) and node.values:
                first = node.values[0]
                if isinstance(first, ast.Constant) and isinstance(first.value, str) and first.value.endswith("_"):
                    prefixes.add(first.value)
    return literals, prefixes


def _dead(events: frozenset[str], literals: set[str], prefixes: set[str]) -> list[str]:
    return sorted(e for e in events if e not in literals and not any(e.startswith(p) for p in prefixes))


LITERALS, PREFIXES = _names_in(
    [path.read_text(encoding="utf-8") for path in PACKAGE.rglob("*.py") if path not in MACHINE_FILES]
)


@pytest.mark.parametrize("kind", sorted(TransactionKind))
def test_every_event_of_a_kind_is_fired_but_the_listed_ones(kind: TransactionKind) -> None:
    not_yet = NOT_FIRED_YET.get(kind, frozenset())
    assert not_yet <= TABLES[kind].events, "a listed event the kind does not have: take it off the list"
    assert _dead(TABLES[kind].events - not_yet, LITERALS, PREFIXES) == [], "events nothing fires: remove or fire"


def test_the_check_finds_a_dead_event_and_accepts_a_family() -> None:
    literals, prefixes = _names_in(['step("answer")', 'event = f"resolve_{outcome}"', 'log(f"x{y}")'])
    events = frozenset({"answer", "no_answer", "resolve_voided", "xyz"})
    assert _dead(events, literals, prefixes) == ["no_answer", "xyz"]
