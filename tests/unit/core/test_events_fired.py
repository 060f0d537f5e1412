"""No dead events: every event of a kind misbridge runs today is fired somewhere in misbridge/.

An event is fired by naming it: a string literal outside the machine's own file, or an
f-string whose literal prefix names a family (``f"resolve_{outcome}"``).  The kinds the daemon
does not run yet (void, refund: the whole-book work) are declared for it and listed
here, so adding one to the daemon means taking it off this list.  (The sale's ``submit``,
``escalate`` from ``unknown`` and ``resolve_declined`` are fired for ``accumulating``; the
upload's events by the pass-through queries.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from misbridge.core.machine import TABLES, TransactionKind

PACKAGE = Path(__file__).resolve().parents[3] / "misbridge"
MACHINE_FILES = {PACKAGE / "core" / "machine.py", PACKAGE / "core" / "diagrams.py"}
NOT_RUN_YET = {TransactionKind.VOID, TransactionKind.REFUND}


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


@pytest.mark.parametrize("kind", sorted(set(TransactionKind) - NOT_RUN_YET))
def test_every_event_of_a_running_kind_is_fired(kind: TransactionKind) -> None:
    assert _dead(TABLES[kind].events, LITERALS, PREFIXES) == [], "events nothing fires: remove or give a command"


def test_the_check_finds_a_dead_event_and_accepts_a_family() -> None:
    literals, prefixes = _names_in(['step("answer")', 'event = f"resolve_{outcome}"', 'log(f"x{y}")'])
    events = frozenset({"answer", "no_answer", "resolve_voided", "xyz"})
    assert _dead(events, literals, prefixes) == ["no_answer", "xyz"]
