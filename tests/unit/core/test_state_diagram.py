"""docs/state-machine.md embeds the Mermaid diagram generated from TransactionMachine."""

from __future__ import annotations

from pathlib import Path

import pytest

from misbridge.core import machine
from misbridge.core.machine import TRANSITIONS, generated_block, mermaid_diagram, replace_generated_block

REGENERATE = "python -m misbridge.core.machine --write-docs"


def test_docs_diagram_is_current() -> None:
    document = machine.DOCS_PATH.read_text(encoding="utf-8")
    assert generated_block() in document, (
        f"{machine.DOCS_PATH} is stale: the Mermaid block differs from the machine. Run: {REGENERATE}"
    )


def test_diagram_shows_every_transition_with_its_event_id() -> None:
    diagram = mermaid_diagram()
    assert diagram.startswith("stateDiagram-v2\n")
    for source, event, target in TRANSITIONS:
        assert f"{source.value} --> {target.value} : {event}\n" in diagram


def test_replace_generated_block_is_idempotent() -> None:
    document = f"# Title\n\n{machine.BEGIN_MARKER}\nold\n{machine.END_MARKER}\ntrailer\n"
    once = replace_generated_block(document)
    assert once == f"# Title\n\n{generated_block()}\ntrailer\n"
    assert replace_generated_block(once) == once


@pytest.mark.parametrize("document", ["no markers", f"{machine.END_MARKER}\n{machine.BEGIN_MARKER}"])
def test_replace_generated_block_needs_markers(document: str) -> None:
    with pytest.raises(ValueError, match="not found"):
        replace_generated_block(document)


def test_command_prints_and_writes_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert machine._main([]) == 0
    assert capsys.readouterr().out == mermaid_diagram()

    docs = tmp_path / "state-machine.md"
    docs.write_text(f"intro\n{machine.BEGIN_MARKER}\n{machine.END_MARKER}\n", encoding="utf-8")
    monkeypatch.setattr(machine, "DOCS_PATH", docs)
    assert machine._main(["--write-docs"]) == 0
    assert docs.read_text(encoding="utf-8") == f"intro\n{generated_block()}\n"

    assert machine._main(["--bogus"]) == 2
