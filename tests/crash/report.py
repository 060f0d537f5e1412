"""The crash harness's results: one run's record (:class:`RunResult`), the table and the failure paragraphs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.crash.checker import COLUMNS as VIOLATIONS


@dataclass
class RunResult:
    """Everything one run observed, and the checker's verdict."""

    point: str
    index: int
    trace_no: str
    variant: str
    crash_at: list[str]
    exits: list[int | None]
    reached: bool
    state: str | None = None
    reversal: str | None = None
    ledger: str = ""
    submissions: int = 0
    transitions: list[str] = field(default_factory=list)
    first_answer: str | None = None
    repeated_answer: str | None = None
    lost: list[str] = field(default_factory=list)
    doubled: list[str] = field(default_factory=list)
    stuck: list[str] = field(default_factory=list)
    answer: list[str] = field(default_factory=list)
    integrity: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    pos_lane: list[str] = field(default_factory=list)
    #: With ``--pos-lanes N`` (tests/crash/pos_lanes.py): each POS lane's transaction of the run
    #: (lane, trace_no, state, reversal, ledger, ...); the fields above are then the first lane's,
    #: the violations every lane's, each prefixed with its lane and traceNo.
    pos_lanes: list[dict[str, Any]] = field(default_factory=list)
    #: Why the scenario did not happen as planned (the run then counts as not reached).
    setup: list[str] = field(default_factory=list)
    #: Times /health answered 200 before the daemon had logged the end of its start-up.
    early_health: int = 0
    seconds: float = 0.0
    log: str = ""

    @property
    def ok(self) -> bool:
        """Reached and no violation."""
        return self.reached and not any(getattr(self, name) for name in VIOLATIONS)


# --- the table ----------------------------------------------------------------------------------------

COLUMNS = ("point", "runs", "reached", *VIOLATIONS, "verdict")


@dataclass
class Row:
    """One line of the table."""

    point: str
    runs: int = 0
    reached: int = 0
    lost: int = 0
    doubled: int = 0
    stuck: int = 0
    answer: int = 0
    integrity: int = 0
    key: int = 0
    pos_lane: int = 0

    @property
    def verdict(self) -> str:
        """ok, or what failed."""
        bad = sum(getattr(self, name) for name in VIOLATIONS)
        if self.runs == 0:
            return "NOT RUN"
        if bad:
            return "FAIL"
        return "ok" if self.reached == self.runs else "UNREACHED"


def summarize(points: Sequence[str], results: Sequence[RunResult]) -> list[Row]:
    """One row per point, in the order given."""
    rows = {point: Row(point) for point in points}
    for result in results:
        row = rows[result.point]
        row.runs += 1
        row.reached += result.reached
        for column in VIOLATIONS:
            setattr(row, column, getattr(row, column) + bool(getattr(result, column)))
    return list(rows.values())


def render(rows: Sequence[Row]) -> str:
    """The table as Markdown (what docs/reliability.md pastes)."""
    lines = [[row.point, *(str(getattr(row, c)) for c in COLUMNS[1:-1]), row.verdict] for row in rows]
    total = Row("total")
    for row in rows:
        for column in COLUMNS[1:-1]:
            setattr(total, column, getattr(total, column) + getattr(row, column))
    lines.append([f"**{total.point}**", *(str(getattr(total, c)) for c in COLUMNS[1:-1]), total.verdict])
    widths = [max(len(COLUMNS[i]), *(len(line[i]) for line in lines)) for i in range(len(COLUMNS))]

    def fmt(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(cells)) + " |"

    out = [fmt(COLUMNS), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [fmt(line) for line in lines]
    return "\n".join(out)


def failures(results: Sequence[RunResult]) -> Iterator[str]:
    """One paragraph per failed run: what happened and why it failed."""
    for r in results:
        if r.ok:
            continue
        problems = [f"{name}: {text}" for name in VIOLATIONS for text in getattr(r, name)]
        if not r.reached:
            problems[:0] = [f"not reached (exit statuses {r.exits})", *r.setup]
        yield (
            f"{r.point} run {r.index} traceNo {r.trace_no} [{r.variant}] crash_at={r.crash_at}\n"
            f"  state {r.state}, reversal {r.reversal}, ledger {r.ledger} x{r.submissions}, "
            f"first answer {r.first_answer}, repeated answer {r.repeated_answer}\n"
            f"  transitions: {'; '.join(r.transitions) or '-'}\n"
            + "".join(f"  {_pos_lane_line(txn)}\n" for txn in r.pos_lanes)
            + "".join(f"  {p}\n" for p in problems)
            + f"  log: {r.log}"
        )


def _pos_lane_line(txn: dict[str, Any]) -> str:
    """One POS lane's transaction of a ``--pos-lanes`` run, on one line."""
    return (
        f"POS lane {txn['lane']} traceNo {txn['trace_no']}: state {txn['state']} (journal lane "
        f"{txn['journal_lane']}), reversal {txn['reversal']}, ledger {txn['ledger']} x{txn['submissions']}, "
        f"first answer {txn['first_answer']}, repeated answer {txn['repeated_answer']}; "
        f"transitions: {'; '.join(txn['transitions']) or '-'}"
    )
