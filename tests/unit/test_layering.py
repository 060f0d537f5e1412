"""Layering rules: every module has a layer, and each layer imports only what it may.

code-style-anchors, "Allowed import directions". One table, :data:`LAYERS`, names every layer of
``misbridge/`` and ``simulators/``, which modules form it and what its source may import. The
checks below are all driven by it:

- every module under ``misbridge/`` and ``simulators/`` belongs to exactly one layer: none may
  be unruled (a new package needs a row before it needs code);
- in the source, every import of every module of a layer must be the layer itself, one of its
  ``allowed`` modules, or the standard library minus its ``denied`` modules;
- at run time, importing ``misbridge.link`` or ``misbridge.ebuy`` in a fresh interpreter must not
  load any module of ``FORBIDDEN_AT_RUNTIME[package]``, not even indirectly;
- misbridge never imports the simulators; only the composition root (the ``app`` layer) imports
  the front doors (``api``); in ``core`` only ``core/service.py`` wires several sibling layers;
- no import cycle between modules;
- the import table of ``docs/architecture.md`` is rendered from :data:`LAYERS`
  (regenerate it with ``python -m tests.unit.test_layering --write-docs``).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCS_PATH = REPO / "docs" / "architecture.md"
REGENERATE = "python -m tests.unit.test_layering --write-docs"
BEGIN_MARKER = f"<!-- BEGIN GENERATED: {REGENERATE} -->"
END_MARKER = "<!-- END GENERATED -->"

# I/O, concurrency and heavyweight libraries: the things a pure layer must never drag in.
_IO_AND_FRAMEWORKS = frozenset(
    {"asyncio", "serial", "serial_asyncio_fast", "usb", "httpx", "sqlite3", "statemachine", "pydantic"}
)

#: Package -> modules that importing it must not load (checked in a fresh interpreter).
FORBIDDEN_AT_RUNTIME: dict[str, frozenset[str]] = {
    "misbridge.link": _IO_AND_FRAMEWORKS,
    # The e-Buy message structure is pure too: validation (pydantic) but no I/O.
    "misbridge.ebuy": _IO_AND_FRAMEWORKS - {"pydantic", "asyncio"},
}

# Standard-library modules a pure layer must not use: no I/O, no threads, no clock.
_PURE_DENIED = frozenset(
    {
        "asyncio",
        "concurrent",
        "multiprocessing",
        "select",
        "selectors",
        "socket",
        "sqlite3",
        "subprocess",
        "threading",
        "time",
    }
)


@dataclass(frozen=True)
class Layer:
    """One layer: the modules that form it and what their source may import besides the layer.

    ``packages`` hold every module within them; ``modules`` are single modules (the top-level
    ``misbridge`` package itself is one: its ``__init__``, not everything under it). ``allowed``
    are non-stdlib modules (first or third party; a package allows everything within it);
    ``denied`` are standard-library modules the layer must not use.
    """

    name: str
    what: str
    allowed: frozenset[str]
    denied: frozenset[str]
    packages: tuple[str, ...] = ()
    modules: tuple[str, ...] = ()

    def holds(self, module: str) -> bool:
        """Whether ``module`` belongs to this layer."""
        return module in self.modules or any(_is_within(module, p) for p in self.packages)


def _layer(
    name: str,
    what: str,
    *allowed: str,
    packages: tuple[str, ...] = (),
    modules: tuple[str, ...] = (),
    sqlite: bool = False,
    subprocess: bool = False,
    denied: frozenset[str] | None = None,
) -> Layer:
    """A layer; an edge layer (the default) spawns no processes and opens no SQLite unless said."""
    if denied is None:
        edge = {"subprocess", "multiprocessing"} - ({"subprocess"} if subprocess else set())
        denied = frozenset(edge if sqlite else edge | {"sqlite3"})
    return Layer(name, what, frozenset(allowed), denied, packages or (f"misbridge.{name}",), modules)


#: Every layer, lowest first, with what it may import. The checks, and the import table of
#: docs/architecture.md, come from this one table.
LAYERS: tuple[Layer, ...] = (
    _layer(
        "root",
        "the exception tree and return codes; the version",
        packages=("misbridge.errors",),
        modules=("misbridge",),
        denied=_PURE_DENIED,
    ),
    # Sans-IO: bytes in, events out, time passed in as ``now`` (docs/device-protocol.md).
    _layer("link", "the PIN-pad wire protocol, pure", "misbridge.errors", denied=_PURE_DENIED),
    _layer(
        "ebuy",
        "the e-Buy message structure, pure",
        "misbridge.errors",
        "pydantic",
        "pydantic_core",
        "simplejson",
    ),
    _layer("config", "settings and credentials", "misbridge.errors", "pydantic", "pydantic_settings", "loguru"),
    _layer(
        "host",
        "the operating system: TCP, uvicorn, systemd, crash hooks",
        "misbridge.errors",
        "h11",
        "uvicorn",
        "starlette",
        "loguru",
    ),
    _layer(
        "telemetry",
        "logs (card data masked) and Prometheus metrics",
        "misbridge.__version__",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.journal.records",
        "misbridge.link.events",
        "loguru",
        "prometheus_client",
    ),
    _layer("transport", "byte pipes to the pad", "misbridge.errors", "serial", "serial_asyncio_fast", "usb", "loguru"),
    _layer(
        "device",
        "PIN-pad drivers over a link session",
        "misbridge.link",
        "misbridge.transport",
        "misbridge.errors",
        "misbridge.config.settings",
        "loguru",
    ),
    _layer(
        "backend",
        "the e-Buy backend client: the only place httpx is used",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.config.secrets",
        "misbridge.host.crashpoints",
        "httpx",
        "tenacity",
        "pydantic",
        "loguru",
    ),
    _layer(
        "journal",
        "the SQLite journal",
        "misbridge.ebuy",
        "misbridge.errors",
        # The state machine's pure transition table: the journal takes target states from it.
        "misbridge.core.machine",
        "misbridge.core.kinds",
        sqlite=True,
    ),
    _layer(
        "core",
        "transactions: one state machine per kind, the service, inquiry, reversals, recovery, the POS's"
        " answers; only core/service.py wires device + journal, the backend comes in through protocols",
        # /health names the release that answers (the package's restart checks it).
        "misbridge.__version__",
        "misbridge.device",
        "misbridge.journal",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.host.crashpoints",
        "statemachine",
        "loguru",
    ),
    _layer(
        "api",
        "the POS front doors; they reach core through a narrow protocol",
        "misbridge.__version__",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.host.net",
        "misbridge.host.crashpoints",
        "misbridge.journal.records",
        "starlette",
        "pydantic",
        "loguru",
    ),
    _layer(
        "tools",
        "`misbridge probe`, `misbridge journal` and `misbridge conformance` (the pad makers' kit, which"
        " speaks the link itself)",
        "misbridge.ebuy",
        "misbridge.link",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.device",
        "misbridge.transport",
        "misbridge.journal",
        "misbridge.telemetry.logs",
        "serial",
        "loguru",
        sqlite=True,
    ),
    _layer(
        "app",
        "the composition root: the daemon, the CLI, the demo, the simulated bench",
        "misbridge.__version__",
        "misbridge.api",
        "misbridge.core",
        "misbridge.device",
        "misbridge.backend",
        "misbridge.journal",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config",
        "misbridge.host",
        "misbridge.telemetry",
        "misbridge.tools",
        "httpx",
        "pydantic",
        "loguru",
        modules=("misbridge.__main__",),
    ),
    _layer(
        "simulators",
        "the bench PIN pad and backend (misbridge starts them as subprocesses, never imports them)",
        "misbridge.link",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.host.asgi",
        "misbridge.ebuy.pan",
        "misbridge.device.pump",
        "misbridge.transport",
        "cryptography",
        "starlette",
        "pydantic",
        packages=("simulators",),
        subprocess=True,
    ),
)

LAYER: dict[str, Layer] = {layer.name: layer for layer in LAYERS}


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _is_type_checking_block(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST, *, typing_only: bool) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth; the bodies of ``if TYPE_CHECKING:`` only if ``typing_only``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        if not typing_only and _is_type_checking_block(node):
            assert isinstance(node, ast.If)
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _imported_modules(source: str, package: str, *, typing_only: bool = True) -> Iterator[tuple[int, list[str]]]:
    """(line, candidates) per import; an import is fine if any candidate is.

    ``from a import b`` yields both ``a.b`` and ``a``: ``b`` may be a module or a name.
    Relative imports are resolved against ``package``.
    """
    for node in _import_nodes(ast.parse(source), typing_only=typing_only):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        else:
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                yield node.lineno, [f"{base}.{alias.name}", base]


def violations(source: str, *, layer: Layer, package: str) -> list[str]:
    """Imports of ``source`` (a module of ``package``, inside ``layer``) that break the layer's rule."""

    def ok(module: str) -> bool:
        top = module.partition(".")[0]
        if layer.holds(module) or any(_is_within(module, a) for a in layer.allowed):
            return True
        return top in sys.stdlib_module_names and top not in layer.denied

    return [
        f"line {line}: {candidates[-1]}"
        for line, candidates in _imported_modules(source, package)
        if not any(ok(c) for c in candidates)
    ]


@dataclass(frozen=True)
class Module:
    """One source module: dotted name, file, and the package its relative imports resolve in."""

    name: str
    path: Path
    package: str

    def imports(self, *, typing_only: bool = True) -> set[str]:
        source = self.path.read_text(encoding="utf-8")
        return {c for _, cands in _imported_modules(source, self.package, typing_only=typing_only) for c in cands}


def all_modules() -> list[Module]:
    """Every module of ``misbridge/`` and ``simulators/``."""
    out = []
    for top in ("misbridge", "simulators"):
        for path in sorted((REPO / top).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
            out.append(Module(".".join(parts).removesuffix(".__init__"), path, package))
    return out


def layer_of(module: str) -> Layer | None:
    """The one layer holding ``module``, or None (an unruled module)."""
    holders = [layer for layer in LAYERS if layer.holds(module)]
    assert len(holders) <= 1, f"{module} is in several layers: {[h.name for h in holders]}"
    return holders[0] if holders else None


# --- every module has a layer ------------------------------------------------------------------


def test_every_module_belongs_to_a_layer() -> None:
    unruled = [m.name for m in all_modules() if layer_of(m.name) is None]
    assert unruled == [], "none may be unruled: add the package to LAYERS (and docs/architecture.md)"


def test_every_layer_holds_a_module() -> None:
    names = [m.name for m in all_modules()]
    empty = [layer.name for layer in LAYERS if not any(layer.holds(n) for n in names)]
    assert empty == []


def test_allowed_modules_are_ruled_too() -> None:
    # A misbridge module named in an allow-list must be in a layer of its own (no typo'd holes).
    stray = sorted(
        (layer.name, allowed)
        for layer in LAYERS
        for allowed in layer.allowed
        if allowed.startswith("misbridge.") and allowed != "misbridge.__version__" and layer_of(allowed) is None
    )
    assert stray == []


# --- what each layer imports -------------------------------------------------------------------


@pytest.mark.parametrize("package", sorted(FORBIDDEN_AT_RUNTIME))
def test_importing_a_layer_loads_nothing_forbidden(package: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    # Loaded modules only: a None entry is an import misbridge blocks (httpx._main, misbridge/__init__.py).
    code = f"import {package}, sys; print(sorted(name for name, module in sys.modules.items() if module is not None))"
    # Fixed argv of the running interpreter: nothing untrusted reaches the command line.
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = ast.literal_eval(result.stdout.strip())
    assert package in loaded
    bad = sorted(m for m in loaded if any(_is_within(m, f) for f in FORBIDDEN_AT_RUNTIME[package]))
    assert bad == [], f"importing {package} loads {bad}"


@pytest.mark.parametrize("name", [layer.name for layer in LAYERS])
def test_layer_source_imports_only_what_it_may(name: str) -> None:
    layer = LAYER[name]
    modules = [m for m in all_modules() if layer.holds(m.name)]
    assert modules, f"no source found for {name}"
    found = {
        str(m.path.relative_to(REPO)): problems
        for m in modules
        if (problems := violations(m.path.read_text(encoding="utf-8"), layer=layer, package=m.package))
    }
    assert found == {}


def _misbridge_modules() -> list[Module]:
    return [m for m in all_modules() if _is_within(m.name, "misbridge")]


def test_misbridge_never_imports_the_simulators() -> None:
    offenders = [m.name for m in _misbridge_modules() if any(_is_within(i, "simulators") for i in m.imports())]
    assert offenders == [], "misbridge starts the simulators as subprocesses; it never imports them"


def test_only_the_composition_root_imports_the_front_doors() -> None:
    offenders = [
        m.name
        for m in _misbridge_modules()
        if not _is_within(m.name, "misbridge.api")
        and not LAYER["app"].holds(m.name)
        and any(_is_within(i, "misbridge.api") for i in m.imports())
    ]
    assert offenders == []
    assert [layer.name for layer in LAYERS if any(_is_within(a, "misbridge.api") for a in layer.allowed)] == ["app"]


def test_only_the_service_wires_several_layers_in_core() -> None:
    siblings = ("misbridge.device", "misbridge.backend", "misbridge.journal")
    wiring = {
        m.name
        for m in _misbridge_modules()
        if _is_within(m.name, "misbridge.core")
        and sum(any(_is_within(i, s) for i in m.imports()) for s in siblings) > 1
    }
    assert wiring <= {"misbridge.core.service"}


# --- no import cycle ---------------------------------------------------------------------------


def import_graph(modules: Iterable[Module]) -> dict[str, set[str]]:
    """Module -> the modules it imports, among ``modules``, from the AST.

    Every import counts, a lazy one inside a function too (it closes the cycle later, at run
    time), except those under ``if TYPE_CHECKING:``, which never run. An edge goes to the module
    named (``from a import b`` reaches ``a.b`` when that is a module, else ``a``), not to the
    parent packages Python initialises on the way: ``a.b.c`` importing ``a.b.d`` is no cycle
    with ``a.b/__init__`` re-exporting both.
    """
    modules = list(modules)
    known = {m.name for m in modules}
    graph: dict[str, set[str]] = {}
    for m in modules:
        targets = set()
        for _, candidates in _imported_modules(m.path.read_text(encoding="utf-8"), m.package, typing_only=False):
            target = next((c for c in candidates if c in known), None)
            if target is None:  # ``import a.b.c`` with ``c`` a name: the deepest known module
                target = next((p for p in _prefixes(candidates[0]) if p in known), None)
            if target is not None and target != m.name:
                targets.add(target)
        graph[m.name] = targets
    return graph


def _prefixes(module: str) -> Iterator[str]:
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def test_no_import_cycle() -> None:
    assert import_cycles(import_graph(all_modules())) == []


def test_cycle_finder_finds_cycles_and_ignores_type_checking(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from pkg.a import A\n")
    (pkg / "a.py").write_text("from pkg import b\nA = 1\n")
    (pkg / "b.py").write_text("def f():\n    from pkg.a import A\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.d import D\n")
    (pkg / "d.py").write_text("import pkg.c\nD = 1\n")
    modules = [Module("pkg" if p.stem == "__init__" else f"pkg.{p.stem}", p, "pkg") for p in sorted(pkg.glob("*.py"))]
    graph = import_graph(modules)
    assert graph["pkg.a"] == {"pkg.b"}
    assert graph["pkg.c"] == set()
    assert import_cycles(graph) == [["pkg.a", "pkg.b"]]


# --- docs/architecture.md's import table -------------------------------------------------------


def _short(module: str) -> str:
    return f"`{module.removeprefix('misbridge.')}`" if module.startswith("misbridge.") else module


def _members(layer: Layer) -> str:
    """The layer's files as paths under ``misbridge/`` (``link/``, ``errors.py``) or the repository."""
    out = []
    for name in (*layer.packages, *layer.modules):
        path = REPO.joinpath(*name.split("."))
        shown = path.relative_to(REPO / "misbridge" if _is_within(name, "misbridge") else REPO).as_posix()
        if not path.is_dir():
            out.append(f"`{shown}.py`")
        elif name in layer.packages:
            out.append(f"`{shown}/`")
        else:  # a package as a single module: its __init__
            out.append("`__init__.py`" if shown == "." else f"`{shown}/__init__.py`")
    return ", ".join(out)


def import_table() -> str:
    """The Markdown table of :data:`LAYERS`: what each layer may import besides itself."""
    rows = [
        "| layer | modules | what | may import (besides itself and the standard library)"
        " | standard library it must not use |",
        "|---|---|---|---|---|",
    ]
    for layer in LAYERS:
        ours = sorted(a for a in layer.allowed if a.startswith("misbridge."))
        theirs = sorted(a for a in layer.allowed if not a.startswith("misbridge."))
        allowed = ", ".join([_short(a) for a in ours] + theirs) or "nothing"
        denied = ", ".join(sorted(layer.denied))
        rows.append(f"| **{layer.name}** | {_members(layer)} | {layer.what} | {allowed} | {denied} |")
    return "\n".join(rows) + "\n"


def generated_block() -> str:
    """The block (markers included) that docs/architecture.md embeds."""
    return f"{BEGIN_MARKER}\n{import_table()}{END_MARKER}"


def replace_generated_block(document: str) -> str:
    """``document`` with the text between the markers (inclusive) replaced by :func:`generated_block`.

    Raises:
        ValueError: the markers are missing or out of order.
    """
    start = document.find(BEGIN_MARKER)
    end = document.find(END_MARKER, max(start, 0))
    if start < 0 or end < start:
        raise ValueError(f"markers {BEGIN_MARKER!r} ... {END_MARKER!r} not found")
    return document[:start] + generated_block() + document[end + len(END_MARKER) :]


def test_architecture_doc_import_table_is_current() -> None:
    document = DOCS_PATH.read_text(encoding="utf-8")
    assert generated_block() in document, (
        f"{DOCS_PATH} is stale: its import table differs from LAYERS. Run: {REGENERATE}"
    )


def test_replace_generated_block_is_idempotent() -> None:
    document = f"# Title\n\n{BEGIN_MARKER}\nold\n{END_MARKER}\ntrailer\n"
    once = replace_generated_block(document)
    assert once == f"# Title\n\n{generated_block()}\ntrailer\n"
    assert replace_generated_block(once) == once
    with pytest.raises(ValueError, match="not found"):
        replace_generated_block("no markers")


def main(argv: list[str]) -> int:
    """``--write-docs``: rewrite the table in docs/architecture.md; no argument: print it."""
    if argv == ["--write-docs"]:
        DOCS_PATH.write_text(replace_generated_block(DOCS_PATH.read_text(encoding="utf-8")), encoding="utf-8")
        sys.stdout.write(f"updated {DOCS_PATH}\n")
        return 0
    if not argv:
        sys.stdout.write(import_table())
        return 0
    sys.stderr.write(f"usage: {REGENERATE.removesuffix(' --write-docs')} [--write-docs]\n")
    return 2


def test_main_prints_and_writes_docs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out == import_table()
    docs = tmp_path / "architecture.md"
    docs.write_text(f"intro\n{BEGIN_MARKER}\n{END_MARKER}\n", encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "DOCS_PATH", docs)
    assert main(["--write-docs"]) == 0
    assert docs.read_text(encoding="utf-8") == f"intro\n{generated_block()}\n"
    assert main(["--bogus"]) == 2


# --- the checker itself ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "import asyncio",
        "import time",
        "from threading import Lock",
        "import serial.tools",
        "from usb import core",
        "import httpx",
        "from misbridge import core",
        "from misbridge.device import driver",
        "from .. import config",
        "from ..journal.store import Journal",
        "def f():\n    import sqlite3",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from misbridge.core import service",
    ],
)
def test_checker_flags_forbidden_imports(source: str) -> None:
    assert violations(source, layer=LAYER["link"], package="misbridge.link")


@pytest.mark.parametrize(
    "source",
    [
        "from __future__ import annotations",
        "import re, struct",
        "from collections.abc import Iterable",
        "from misbridge.errors import MessageError",
        "from misbridge import errors",
        "from misbridge.link.frames import encode_frame",
        "from . import frames",
        "from .constants import ControlByte",
        "from .. import errors",
    ],
)
def test_checker_accepts_allowed_imports(source: str) -> None:
    assert violations(source, layer=LAYER["link"], package="misbridge.link") == []


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
