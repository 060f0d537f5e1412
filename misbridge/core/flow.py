"""One transaction step = one state-machine move + one journal commit, in that order."""

from __future__ import annotations

from typing import Any

from loguru import logger

from misbridge.core.machine import TxnState
from misbridge.journal.store import Journal

#: Step fields safe and useful in the log line (never the POS response or anything unmasked).
_LOGGED_FIELDS = ("masked_pan", "card_type", "return_code")


async def journaled_step(journal: Journal, trace_no: str, state: str, event: str, **fields: Any) -> TxnState:
    """Move ``trace_no`` from ``state`` by ``event``; returns the new state once it is committed.

    Raises:
        InvalidTransition: the transaction's machine does not allow ``event`` in ``state``
            (the journal takes the target from the machine's table and refuses).
        JournalError: the journal row is not in ``state`` any more, or the write failed.
    """
    target = await journal.record_transition(trace_no, state, event, **fields)
    # One INFO line per step carries what the step learned (masked PAN, return code), so the
    # device and backend layers need no INFO line of their own for the same event.
    shown = {name: fields[name] for name in _LOGGED_FIELDS if fields.get(name) is not None}
    logger.bind(traceNo=trace_no, state=str(target), **shown).info("{} -> {} on {}", state, target, event)
    return target


class Flow:
    """A transaction's current state plus the journal it is committed to."""

    def __init__(self, journal: Journal, trace_no: str, state: str = TxnState.RECEIVED) -> None:
        self.journal = journal
        self.trace_no = trace_no
        self.state = state

    async def step(self, event: str, **fields: Any) -> TxnState:
        """Fire ``event`` and commit it; the flow's state follows only after the commit."""
        self.state = await journaled_step(self.journal, self.trace_no, self.state, event, **fields)
        return TxnState(self.state)


async def sent_as(journal: Journal, trace_no: str) -> str:
    """The traceNo the backend knows ``trace_no``'s money-moving request by.

    A ``qrcodeSale`` whose first round offered options was paid by a second round under a
    traceNo misbridge allocated (an ``option`` call): inquiries and voids name that one.
    Anything else went out under its own traceNo.
    """
    rounds = [call.trace_no for call in await journal.calls(trace_no) if call.kind == "option"]
    return rounds[-1] if rounds else trace_no
