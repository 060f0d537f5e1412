"""The example configuration (packaging/gen_config_example.py) documents every setting and parses."""

from __future__ import annotations

import importlib.util
import re
import sys
import tomllib
import typing
from pathlib import Path
from types import ModuleType

import pytest
from pydantic import BaseModel

from misbridge.config.settings import LaneSettings, Settings, load_settings
from tests.system.tools import REPO, UNIT, parse_unit, run, values

#: Where the commented-out [[lanes]] example block starts; it runs to the end of the file.
LANES_BLOCK = "\n#[[lanes]]\n"


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


@pytest.fixture
def signing_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signing key as the unit provides it: check-config, like serve, refuses to pass without it."""
    directory = tmp_path / "credentials"
    directory.mkdir()
    (directory / "ebuy-signing-key").write_text("0123456789abcdef\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))


def _leaf_keys(model: type[BaseModel], prefix: str = "") -> list[str]:
    keys = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            keys += _leaf_keys(annotation, f"{prefix}{name}.")
        elif _list_item(annotation) is None:
            keys.append(prefix + name)
    return keys


def _list_item(annotation: object) -> type[BaseModel] | None:
    """The entry model of a list of tables (``list[LaneSettings]``), or None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) is list and isinstance(args[0], type) and issubclass(args[0], BaseModel):
        return args[0]
    return None


def _lists_of_tables(model: type[BaseModel]) -> dict[str, type[BaseModel]]:
    return {name: item for name, field in model.model_fields.items() if (item := _list_item(field.annotation))}


def _uncomment_defaults(text: str) -> str:
    # Only the defaults: the [[lanes]] block after them is an example, not defaults.
    defaults, block, rest = text.partition(LANES_BLOCK)
    return re.sub(r"^#(\w+) = ", r"\1 = ", defaults, flags=re.MULTILINE) + block + rest


def _uncommented_lanes_block(example: str) -> str:
    """The [[lanes]] example block with its leading "#" removed, as a technician uncomments it."""
    _, found, block = example.partition(LANES_BLOCK)
    assert found, "the example has no commented-out [[lanes]] block"
    lines = (found.strip("\n") + "\n" + block).splitlines()
    assert all(line.startswith("#") for line in lines), "every line of the block must start with #"
    return "\n".join(line[1:] for line in lines) + "\n"


@pytest.mark.usefixtures("signing_credential")
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


def test_every_lane_setting_is_in_the_lanes_block(example: str) -> None:
    assert _lists_of_tables(Settings) == {"lanes": LaneSettings}
    assert "(env MISBRIDGE_LANES: the whole list as JSON" in example
    block = _uncommented_lanes_block(example)
    assert block.startswith("[[lanes]]\n")
    for name, field in LaneSettings.model_fields.items():
        assert field.description, name
        assert f"# {field.description}.\n" in block, name
        assert re.search(rf"^{name} = ", block, re.MULTILINE), name
        required = "required" in re.findall(rf"# \(([^)]*)\)\n{name} = ", block)[0].split("; ")
        assert required == field.is_required(), name


def test_the_lanes_block_is_commented_out_by_default(example: str, tmp_path: Path) -> None:
    # A one-pad POS copies the example as it is: one lane named "default", as before lanes.
    file = tmp_path / "misbridge.toml"
    file.write_text(example, encoding="utf-8")
    settings = load_settings(file)
    assert settings.lanes == []
    assert [lane.name for lane in settings.lane_list()] == ["default"]


@pytest.mark.usefixtures("signing_credential")
def test_the_lanes_block_uncommented_for_two_lanes_parses(example: str, tmp_path: Path) -> None:
    first = _uncommented_lanes_block(example)
    second = (
        first.replace('name = "lane1"', 'name = "lane2"')
        .replace('device_url = "/dev/mispos-A10K5XYZ"', 'device_url = "/dev/mispos-port-pci-0000_00_14_0-usb-0_2_1_0"')
        .replace('device_no = "POS01"', 'device_no = "POS02"')
        .replace("socket_port = 9110", "socket_port = 9111")
    )
    for changed in ('name = "lane2"', "/dev/mispos-port-", 'device_no = "POS02"', "socket_port = 9111"):
        assert changed in second, f"the block no longer shows {changed.split(' = ')[0]} as the test expects"
    file = tmp_path / "misbridge.toml"
    file.write_text(example.partition(LANES_BLOCK)[0] + "\n" + first + "\n" + second, encoding="utf-8")
    result = run([sys.executable, "-m", "misbridge", "check-config", "--config", str(file)])
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, f"{file}: OK"), result.stdout + result.stderr
    lanes = load_settings(file).lane_list()
    assert [(lane.name, lane.identity.device_no, lane.socket_port, lane.default) for lane in lanes] == [
        ("lane1", "POS01", 9110, True),
        ("lane2", "POS02", 9111, False),
    ]
    assert lanes[1].device.url == "/dev/mispos-port-pci-0000_00_14_0-usb-0_2_1_0"
    assert {lane.identity.shop_no for lane in lanes} == {Settings().identity.shop_no}


def test_the_fallbacks_the_block_names_are_the_codes() -> None:
    # "default: identity.shop_no" must be what a lane gets when it leaves the key out: set the
    # fallback to a value that is no default, so a wrong claim cannot pass by coincidence.
    generator = _generator()
    assert generator.LIST_FALLBACKS
    for dotted, fallback in generator.LIST_FALLBACKS.items():
        section, name = fallback.split(".")
        # The lane's key and its fallback share a name (a lane's value lands in its copy of
        # [section]), so checking the copy checks the key the block documents.
        assert name == dotted.removeprefix("lanes."), dotted
        field = LaneSettings.model_fields[name]
        other = "CN999999" if field.annotation == str | None else 42
        lane = {"name": "lane1", "device_url": "/dev/mispos-A1", "device_no": "POS07"}
        settings = load_settings(None, **{section: {name: other}, "lanes": [lane]})
        (built,) = settings.lane_list()
        assert getattr(getattr(built, section), name) == other, dotted


def test_the_example_lane_port_is_one_the_unit_allows(example: str) -> None:
    port = tomllib.loads(_uncommented_lanes_block(example))["lanes"][0]["socket_port"]
    ranges = [
        rule.removeprefix("tcp:") for rule in values(parse_unit(UNIT.read_text(encoding="utf-8")), "SocketBindAllow")
    ]
    lane_range = next(r for r in ranges if "-" in r)
    low, high = (int(end) for end in lane_range.split("-"))
    assert low <= port <= high
    assert f"The unit allows {lane_range}, one port per lane" in example.replace("\n## ", " ")


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
