"""The state diagrams in ``docs/state-machine.md``, generated from :mod:`misbridge.core.machine`.

Developer command: ``python -m misbridge.core.diagrams --write-docs`` rewrites one Mermaid block
per transaction kind; ``python -m misbridge.core.diagrams sale`` prints one.  The daemon never
imports this module (the library's formatter adds tens of milliseconds to start-up).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Final

from misbridge.core.machine import MACHINES, TransactionKind

__all__ = ["begin_marker", "generated_block", "mermaid_diagram", "replace_generated_block"]

DOCS_PATH: Final = Path(__file__).resolve().parents[2] / "docs" / "state-machine.md"
END_MARKER: Final = "<!-- END GENERATED -->"


def begin_marker(kind: TransactionKind) -> str:
    """The line that opens ``kind``'s generated block in ``docs/state-machine.md``."""
    return f"<!-- BEGIN GENERATED ({kind.value}): python -m misbridge.core.diagrams --write-docs -->"


def mermaid_diagram(kind: TransactionKind) -> str:
    """Mermaid ``stateDiagram-v2`` source for ``kind``'s machine, generated from its class."""
    from statemachine.contrib.diagram import formatter

    return formatter.render(MACHINES[kind], "mermaid").strip() + "\n"


def generated_block(kind: TransactionKind) -> str:
    """The Markdown block (markers and fenced Mermaid) that the docs embed for ``kind``."""
    return f"{begin_marker(kind)}\n```mermaid\n{mermaid_diagram(kind)}```\n{END_MARKER}"


def replace_generated_block(document: str, kind: TransactionKind) -> str:
    """Return ``document`` with ``kind``'s block (markers inclusive) replaced by :func:`generated_block`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    begin = begin_marker(kind)
    start = document.find(begin)
    end = document.find(END_MARKER, start)
    if start < 0 or end < start:
        raise ValueError(f"markers {begin!r} ... {END_MARKER!r} not found")
    return document[:start] + generated_block(kind) + document[end + len(END_MARKER) :]


def _main(argv: list[str]) -> int:
    # Developer command; the only I/O in this module, never run on import.
    if argv == ["--write-docs"]:
        document = DOCS_PATH.read_text(encoding="utf-8")
        for kind in TransactionKind:
            document = replace_generated_block(document, kind)
        DOCS_PATH.write_text(document, encoding="utf-8")
        sys.stdout.write(f"updated {DOCS_PATH}\n")
        return 0
    if len(argv) == 1 and argv[0] in set(TransactionKind):
        sys.stdout.write(mermaid_diagram(TransactionKind(argv[0])))
        return 0
    sys.stderr.write(f"usage: python -m misbridge.core.diagrams [--write-docs | {'|'.join(TransactionKind)}]\n")
    return 2


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))  # pragma: no cover
