"""The example configuration (packaging/gen_config_example.py) documents every setting and parses."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from misbridge.config.settings import Settings, load_settings
from tests.system.tools import REPO, run


def _generator() -> ModuleType:
    # Loaded by path: packaging/ is a folder of scripts, not an importable package.
    spec = importlib.util.spec_from_file_location(
        "misbridge_gen_config_example", REPO / "packaging/gen_config_example.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def example() -> str:
    text = _generator().render()
    assert isinstance(text, str)
    return text


@pytest.fixture(autouse=True)
def no_misbridge_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MISBRIDGE_"):
            monkeypatch.delenv(name)


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _leaf_keys(annotation, f"{prefix}{name}.")
        else:
            keys.append(prefix + name)
    return keys


def _uncomment_defaults(text: str) -> str:
    return re.sub(r"^#(\w+) = ", r"\1 = ", text, flags=re.MULTILINE)


def test_the_example_parses_with_misbridge_check_config(example: str, tmp_path: Path) -> None:
    file = tmp_path / "misbridge.toml"
    file.write_text(example, encoding="utf-8")
    result = run([sys.executable, "-m", "misbridge", "check-config", "--config", str(file)])
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, f"{file}: OK"), result.stderr
    assert "  root (uid 0): api.allow_root" in result.stdout.splitlines()


def test_every_setting_is_documented_with_its_environment_variable(example: str) -> None:
    for key in _leaf_keys(Settings):
        name = key.rsplit(".", 1)[-1]
        env = "MISBRIDGE_" + key.upper().replace(".", "__")
        assert f"env {env})" in example, key
        assert re.search(rf"^(#?{name} = |# {name}: unset by default)", example, re.MULTILINE), key


def test_the_defaults_shown_are_the_defaults(example: str, tmp_path: Path) -> None:
    # Uncommenting every "#key = value" line must change nothing: the example cannot lie.
    file = tmp_path / "all.toml"
    file.write_text(_uncomment_defaults(example), encoding="utf-8")
    parsed = tomllib.loads(file.read_text(encoding="utf-8"))
    assert parsed["device"]["baudrate"] == 115200
    assert load_settings(file).model_dump() == Settings().model_dump()


def test_the_environment_names_shown_do_override(example: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = tmp_path / "misbridge.toml"
    file.write_text(example, encoding="utf-8")
    monkeypatch.setenv("MISBRIDGE_DEVICE__BAUDRATE", "9600")
    monkeypatch.setenv("MISBRIDGE_BACKEND__SIGNING__TRUNCATE", "16")
    settings = load_settings(file)
    assert (settings.device.baudrate, settings.backend.signing.truncate) == (9600, 16)


def test_an_undocumented_setting_is_refused() -> None:
    generator = _generator()

    class Bare(BaseModel):
        mystery: int = 3

    with pytest.raises(generator.UndocumentedSetting, match="mystery"):
        generator.render(Bare)


def test_no_secret_value_is_suggested(example: str) -> None:
    for line in example.splitlines():
        if re.match(r"^#?\w+ = ", line):
            key = line.lstrip("#").split(" = ")[0]
            assert not re.search(r"key$|token|secret|password", key, re.IGNORECASE), line
