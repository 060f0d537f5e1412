"""docs/state-machine.md embeds one Mermaid diagram per kind, generated from its machine."""

from __future__ import annotations

from pathlib import Path

import pytest

from misbridge.core import diagrams
from misbridge.core.diagrams import generated_block, mermaid_diagram, replace_generated_block
from misbridge.core.kinds import TABLES
from misbridge.core.machine import TransactionKind

REGENERATE = "python -m misbridge.core.diagrams --write-docs"


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_docs_diagram_is_current(kind: TransactionKind) -> None:
    document = diagrams.DOCS_PATH.read_text(encoding="utf-8")
    assert generated_block(kind) in document, (
        f"{diagrams.DOCS_PATH} is stale: the {kind} diagram differs from its machine. Run: {REGENERATE}"
    )


@pytest.mark.parametrize("kind", list(TransactionKind))
def test_diagram_shows_every_transition_with_its_event_id(kind: TransactionKind) -> None:
    diagram = mermaid_diagram(kind)
    assert diagram.startswith("stateDiagram-v2\n")
    for source, event, target in TABLES[kind].transitions:
        assert f"{source.value} --> {target.value} : {event}\n" in diagram


def test_replace_generated_block_is_idempotent_and_touches_only_its_kind() -> None:
    sale, void = TransactionKind.SALE, TransactionKind.VOID
    end = diagrams.END_MARKER
    document = f"# T\n{diagrams.begin_marker(sale)}\nold\n{end}\nmid\n{diagrams.begin_marker(void)}\nold\n{end}\n"
    once = replace_generated_block(document, sale)
    assert once == f"# T\n{generated_block(sale)}\nmid\n{diagrams.begin_marker(void)}\nold\n{end}\n"
    assert replace_generated_block(once, sale) == once


@pytest.mark.parametrize(
    "document", ["no markers", f"{diagrams.END_MARKER}\n{diagrams.begin_marker(TransactionKind.SALE)}"]
)
def test_replace_generated_block_needs_markers(document: str) -> None:
    with pytest.raises(ValueError, match="not found"):
        replace_generated_block(document, TransactionKind.SALE)


def test_command_prints_and_writes_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert diagrams._main(["void"]) == 0
    assert capsys.readouterr().out == mermaid_diagram(TransactionKind.VOID)

    docs = tmp_path / "state-machine.md"
    docs.write_text("".join(f"{diagrams.begin_marker(k)}\n{diagrams.END_MARKER}\n" for k in TransactionKind))
    monkeypatch.setattr(diagrams, "DOCS_PATH", docs)
    assert diagrams._main(["--write-docs"]) == 0
    assert docs.read_text(encoding="utf-8") == "".join(f"{generated_block(k)}\n" for k in TransactionKind)

    assert diagrams._main([]) == 2
    assert diagrams._main(["--bogus"]) == 2
