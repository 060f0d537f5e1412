"""Seeding journals for tests: a transaction in any state, reached the only way the journal allows.

The journal records an intent only in its kind's initial state and moves it only by events of
the kind's machine, so a test that needs a row in ``unknown`` walks it there along the
machine's shortest path, exactly as the service would.
"""

from __future__ import annotations

from collections import deque
from dataclasses import replace

from misbridge.core.kinds import TABLES
from misbridge.core.machine import TransactionKind, TxnState, kind_of
from misbridge.journal import Journal, TransactionRecord


def events_to(kind: TransactionKind, state: str) -> list[str]:
    """The shortest list of events that takes a new ``kind`` transaction to ``state``.

    Raises:
        ValueError: ``state`` cannot be reached in ``kind``'s machine.
    """
    table = TABLES[kind]
    paths: dict[TxnState, list[str]] = {table.initial: []}
    queue = deque([table.initial])
    while queue:
        current = queue.popleft()
        for spec in table.transitions:
            if spec.source is current and spec.target not in paths:
                paths[spec.target] = [*paths[current], spec.event]
                queue.append(spec.target)
    if state not in paths:
        raise ValueError(f"{state!r} cannot be reached in a {kind.value} transaction")
    return paths[TxnState(state)]


async def seed_transaction(journal: Journal, record: TransactionRecord) -> None:
    """Record ``record``'s intent in its kind's initial state, then walk it to ``record.state``."""
    kind = kind_of(record.action)
    initial = TABLES[kind].initial
    await journal.record_intent(replace(record, state=initial))
    state: str = initial
    for event in events_to(kind, record.state):
        state = await journal.record_transition(record.trace_no, state, event)
