"""Layering rules: what each misbridge layer may import (code-style-anchors, "Allowed import directions").

Two checks per layer, both driven by the tables below so another layer is one more entry:

- at run time, importing the layer in a fresh interpreter must not load any module of
  ``FORBIDDEN_AT_RUNTIME[layer]``, not even indirectly;
- in the source, every import of every module of the layer must be the layer itself, one of
  ``IMPORT_RULES[layer].allowed``, or the standard library minus ``IMPORT_RULES[layer].denied``.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# I/O, concurrency and heavyweight libraries: the things a pure layer must never drag in.
_IO_AND_FRAMEWORKS = frozenset(
    {"asyncio", "serial", "serial_asyncio_fast", "usb", "httpx", "sqlite3", "statemachine", "pydantic"}
)

#: Layer -> modules that importing the layer must not load (checked in a fresh interpreter).
FORBIDDEN_AT_RUNTIME: dict[str, frozenset[str]] = {
    "misbridge.link": _IO_AND_FRAMEWORKS,
    # The e-Buy message structure is pure too: validation (pydantic) but no I/O.
    "misbridge.ebuy": _IO_AND_FRAMEWORKS - {"pydantic", "asyncio"},
}


@dataclass(frozen=True)
class ImportRule:
    """What a layer's own source may import besides itself.

    ``allowed`` are non-stdlib modules (first or third party) it may use; ``denied`` are
    standard-library modules it must not use.
    """

    allowed: frozenset[str]
    denied: frozenset[str]


def _rule(*allowed: str, sqlite: bool = False, subprocess: bool = False) -> ImportRule:
    """An edge layer's rule: the named modules, and no process spawning or SQLite unless said."""
    denied = {"subprocess", "multiprocessing"} - ({"subprocess"} if subprocess else set())
    if not sqlite:
        denied.add("sqlite3")
    return ImportRule(allowed=frozenset(allowed), denied=frozenset(denied))


#: Layer -> its source import rule (checked on the AST of every module of the layer).
IMPORT_RULES: dict[str, ImportRule] = {
    # Sans-IO: bytes in, events out, time passed in as ``now`` (docs/device-protocol.md).
    "misbridge.link": ImportRule(
        allowed=frozenset({"misbridge.errors"}),
        denied=frozenset(
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
        ),
    ),
    "misbridge.ebuy": _rule("misbridge.errors", "pydantic", "pydantic_core", "simplejson"),
    "misbridge.transport": _rule("misbridge.errors", "serial", "serial_asyncio_fast", "usb", "loguru"),
    "misbridge.device": _rule(
        "misbridge.link", "misbridge.transport", "misbridge.errors", "misbridge.config.settings", "loguru"
    ),
    "misbridge.backend": _rule(
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.host.crashpoints",
        "misbridge.config.secrets",
        "httpx",
        "tenacity",
        "pydantic",
        "loguru",
    ),
    "misbridge.journal": _rule("misbridge.ebuy", "misbridge.errors", "misbridge.core.machine", sqlite=True),
    "misbridge.core": _rule(
        "misbridge.device",
        "misbridge.backend",
        "misbridge.journal",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.host.crashpoints",
        "statemachine",
        "loguru",
    ),
    "misbridge.api": _rule(
        "misbridge.__version__",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.config.settings",
        "misbridge.host.net",
        "misbridge.journal.records",
        "misbridge.host.crashpoints",
        "starlette",
        "pydantic",
        "loguru",
    ),
    "simulators": _rule(
        "misbridge.link",
        "misbridge.device.pump",
        "misbridge.transport",
        "misbridge.ebuy",
        "misbridge.errors",
        "misbridge.host.asgi",
        "misbridge.ebuy.pan",
        "cryptography",
        "starlette",
        "pydantic",
        subprocess=True,
    ),
}

#: The composition root: the only misbridge modules that may import every layer (and api).
COMPOSITION_ROOT = frozenset(
    {"misbridge.app.daemon", "misbridge.app.cli", "misbridge.app.demo", "misbridge.app.simlaunch"}
)


def _is_within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _imported_modules(source: str, package: str) -> Iterator[tuple[int, list[str]]]:
    """(line, candidates) per import; an import is fine if any candidate is.

    ``from a import b`` yields both ``a.b`` and ``a``: ``b`` may be a module or a name.
    Relative imports are resolved against ``package``.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, [alias.name]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            for alias in node.names:
                yield node.lineno, [f"{base}.{alias.name}", base]


def violations(source: str, *, layer: str, package: str, rule: ImportRule) -> list[str]:
    """Imports of ``source`` (a module of ``package``, inside ``layer``) that break ``rule``."""

    def ok(module: str) -> bool:
        top = module.partition(".")[0]
        if _is_within(module, layer) or any(_is_within(module, a) for a in rule.allowed):
            return True
        return top in sys.stdlib_module_names and top not in rule.denied

    return [
        f"line {line}: {candidates[-1]}"
        for line, candidates in _imported_modules(source, package)
        if not any(ok(c) for c in candidates)
    ]


def _layer_modules(layer: str) -> list[tuple[Path, str]]:
    root = REPO.joinpath(*layer.split("."))
    out = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        package = ".".join(parts if path.name == "__init__.py" else parts[:-1])
        out.append((path, package))
    return out


@pytest.mark.parametrize("layer", sorted(FORBIDDEN_AT_RUNTIME))
def test_importing_a_layer_loads_nothing_forbidden(layer: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    code = f"import {layer}, sys; print(sorted(sys.modules))"
    # Fixed argv of the running interpreter: nothing untrusted reaches the command line.
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    loaded: list[str] = ast.literal_eval(result.stdout.strip())
    assert layer in loaded
    bad = sorted(m for m in loaded if any(_is_within(m, f) for f in FORBIDDEN_AT_RUNTIME[layer]))
    assert bad == [], f"importing {layer} loads {bad}"


@pytest.mark.parametrize("layer", sorted(IMPORT_RULES))
def test_layer_source_imports_only_what_it_may(layer: str) -> None:
    modules = _layer_modules(layer)
    assert modules, f"no source found for {layer}"
    rule = IMPORT_RULES[layer]
    found = {
        str(path.relative_to(REPO)): problems
        for path, package in modules
        if (problems := violations(path.read_text(encoding="utf-8"), layer=layer, package=package, rule=rule))
    }
    assert found == {}


def _misbridge_modules() -> list[tuple[str, Path, str]]:
    out = []
    for path, package in _layer_modules("misbridge"):
        name = ".".join(path.relative_to(REPO).with_suffix("").parts)
        out.append((name.removesuffix(".__init__"), path, package))
    return out


def _imports_of(path: Path, package: str) -> set[str]:
    return {c for _, candidates in _imported_modules(path.read_text(encoding="utf-8"), package) for c in candidates}


def test_misbridge_never_imports_the_simulators() -> None:
    offenders = [
        name
        for name, path, package in _misbridge_modules()
        if any(_is_within(m, "simulators") for m in _imports_of(path, package))
    ]
    assert offenders == [], "misbridge starts the simulators as subprocesses; it never imports them"


def test_only_the_composition_root_imports_the_front_doors() -> None:
    offenders = [
        name
        for name, path, package in _misbridge_modules()
        if not _is_within(name, "misbridge.api")
        and name not in COMPOSITION_ROOT
        and any(_is_within(m, "misbridge.api") for m in _imports_of(path, package))
    ]
    assert offenders == []


def test_only_the_service_wires_several_layers_in_core() -> None:
    siblings = ("misbridge.device", "misbridge.backend", "misbridge.journal")
    wiring = {
        name
        for name, path, package in _misbridge_modules()
        if _is_within(name, "misbridge.core")
        and sum(any(_is_within(m, s) for m in _imports_of(path, package)) for s in siblings) > 1
    }
    assert wiring <= {"misbridge.core.service"}


# --- the checker itself ------------------------------------------------------------------------

LINK_RULE = IMPORT_RULES["misbridge.link"]


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
    ],
)
def test_checker_flags_forbidden_imports(source: str) -> None:
    assert violations(source, layer="misbridge.link", package="misbridge.link", rule=LINK_RULE)


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
    assert violations(source, layer="misbridge.link", package="misbridge.link", rule=LINK_RULE) == []
