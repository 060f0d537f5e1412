"""The conformance report: one line per check, readable and as JSON.

Every check ends in one of four states (:class:`Status`): passed, failed (with what the kit
expected and what came), needs a person at the pad, or skipped (with why). Each names the section
of docs/device-protocol.md it checks, so a vendor can read the rule beside the verdict.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

#: Bumped when a check is added, removed or changes its rule: a report names the kit that made it.
KIT_VERSION = "2"
PROTOCOL_DOC = "docs/device-protocol.md"


class Status(StrEnum):
    """How a check ended."""

    PASSED = "passed"
    FAILED = "failed"
    PERSON = "needs a person at the pad"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict."""

    id: str
    title: str
    section: str
    status: Status
    #: Passed: what was seen; skipped / person: why; failed: anything beyond expected and got.
    detail: str = ""
    expected: str = ""
    got: str = ""
    duration_s: float = 0.0


@dataclass
class Report:
    """Everything a run found, in the order the checks ran."""

    device_url: str
    customer: str
    started: str
    pad: dict[str, Any] = field(default_factory=dict)
    results: list[CheckResult] = field(default_factory=list)
    duration_s: float = 0.0
    #: What the technician must do after the run: keys the kit changed and could not put back.
    after: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """How many checks ended in each state (every state listed, 0 included)."""
        return {status.value: sum(r.status is status for r in self.results) for status in Status}

    @property
    def failed(self) -> list[CheckResult]:
        """The checks that failed."""
        return [r for r in self.results if r.status is Status.FAILED]

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (what ``--report FILE`` writes)."""
        return {
            "kit": "misbridge mispos-v1 conformance kit",
            "kit_version": KIT_VERSION,
            "protocol": f"mispos-v1 ({PROTOCOL_DOC})",
            "device_url": self.device_url,
            "customer": self.customer,
            "started": self.started,
            "duration_s": round(self.duration_s, 2),
            "pad": self.pad,
            "summary": self.counts(),
            "conformant": not self.failed,
            "after_run": self.after,
            "checks": [
                {**asdict(r), "status": r.status.value, "duration_s": round(r.duration_s, 3)} for r in self.results
            ],
        }

    def write_json(self, path: Path) -> None:
        """Write :meth:`to_json` to ``path`` (UTF-8, indented)."""
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    def text(self) -> str:
        """The readable report: a header, one block per check, the totals and the verdict."""
        pad = self.pad
        lines = [
            "mispos-v1 conformance report",
            f"  pad       {pad.get('model', '?')} firmware {pad.get('firmware', '?')}"
            f" serial {pad.get('serial_no', '?')}"
            f" protocol {pad.get('protocol', '?')}",
            f"  device    {self.device_url}",
            f"  customer  {self.customer}",
            f"  started   {self.started}, took {self.duration_s:.1f} s",
            "",
        ]
        marks = {Status.PASSED: "PASS", Status.FAILED: "FAIL", Status.PERSON: "PERSON", Status.SKIPPED: "SKIP"}
        for r in self.results:
            lines.append(f"{marks[r.status]:<6} {r.id:<28} §{r.section:<8} {r.title}")
            if r.status is Status.FAILED:
                lines.append(f"         expected: {r.expected}")
                lines.append(f"         got:      {r.got}")
                if r.detail:
                    lines.append(f"         note:     {r.detail}")
            elif r.status is Status.PERSON:
                lines.append(f"         needs a person at the pad: {r.detail}")
            elif r.status is Status.SKIPPED:
                lines.append(f"         skipped: {r.detail}")
            elif r.detail:
                lines.append(f"         {r.detail}")
        counts = self.counts()
        lines.append("")
        lines.append(", ".join(f"{n} {status}" for status, n in counts.items()))
        if self.failed:
            lines.append(
                f"NOT CONFORMANT: {len(self.failed)} check(s) failed; each names its section of {PROTOCOL_DOC}."
            )
        elif counts[Status.PERSON] or counts[Status.SKIPPED]:
            lines.append(
                "No check failed; the checks marked PERSON need CUSTOMER=1 (--customer) and someone at the pad,"
                " those marked SKIP say what they need."
            )
        else:
            lines.append("CONFORMANT: every check passed.")
        if self.after:
            lines.append("")
            lines.append("AFTER THIS RUN: the kit changed the pad's keys and could not put them all back:")
            lines.extend(f"  - {step}" for step in self.after)
        return "\n".join(lines)
