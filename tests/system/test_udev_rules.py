"""udev/99-misbridge-pinpad.rules: a static lint, a small evaluator, and udevadm verify (R22).

The lint parses every rule line as ``KEY<op>"value"`` pairs and checks each key takes that
operator. The evaluator runs the rules (the subset of udev they use) against made-up devices,
so the test checks what a pad actually gets, not only that the words are there. Where a
udevadm with the ``verify`` verb exists (systemd >= 254; Debian 12 has 252, `make lint-system`
fetches 254 from bookworm-backports), udev's own parser checks the file too.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.system.tools import REPO, RULES, run, tool, unavailable

PAIR = re.compile(r'(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|-=|:=|=)"(?P<value>[^"]*)"')
SEPARATOR = re.compile(r"\s*,\s*")
MATCH_OPS = frozenset({"==", "!="})
ASSIGN_OPS = frozenset({"=", "+=", "-=", ":="})
#: Key -> operators udev accepts for it (udev(7)), for the keys a rule of ours may use.
OPERATORS: dict[str, frozenset[str]] = {
    "ACTION": MATCH_OPS, "SUBSYSTEM": MATCH_OPS, "SUBSYSTEMS": MATCH_OPS, "KERNEL": MATCH_OPS,
    "KERNELS": MATCH_OPS, "DRIVERS": MATCH_OPS, "ATTR": MATCH_OPS | ASSIGN_OPS, "ATTRS": MATCH_OPS,
    "ENV": MATCH_OPS | ASSIGN_OPS, "TAG": MATCH_OPS | ASSIGN_OPS, "SYMLINK": MATCH_OPS | ASSIGN_OPS,
    "GROUP": ASSIGN_OPS, "MODE": ASSIGN_OPS, "GOTO": frozenset({"="}), "LABEL": frozenset({"="}),
}  # fmt: skip
#: Keys that take {attribute}.
WITH_ATTR = frozenset({"ATTR", "ATTRS", "ENV"})
#: The USB-serial bridges the rule must cover out of the box, and the placeholder pad.
EXPECTED_IDS = {("0403", "6001"), ("067b", "2303"), ("1a86", "7523"), ("10c4", "ea60"), ("1209", "0001")}


@dataclass(frozen=True)
class Pair:
    key: str
    attr: str | None
    op: str
    value: str


@dataclass(frozen=True)
class Rule:
    line: int
    pairs: tuple[Pair, ...]

    def get(self, key: str, attr: str | None = None) -> list[Pair]:
        return [p for p in self.pairs if p.key == key and p.attr == attr]

    @property
    def assigns(self) -> list[Pair]:
        return [p for p in self.pairs if p.op in ASSIGN_OPS and p.key not in ("GOTO", "LABEL")]


def parse_rules(text: str) -> list[Rule]:
    """Every rule of ``text``; AssertionError names the first line that is not valid."""
    rules = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: keep each rule on one line"
        pairs = []
        for chunk in SEPARATOR.split(line):
            found = PAIR.fullmatch(chunk)
            assert found, f'line {number}: {chunk!r} is not KEY<op>"value" (no comment may follow a rule)'
            pair = Pair(found["key"], found["attr"], found["op"], found["value"])
            assert pair.key in OPERATORS, f"line {number}: unexpected key {pair.key}"
            assert pair.op in OPERATORS[pair.key], f"line {number}: {pair.key} does not take {pair.op}"
            assert (pair.attr is not None) == (pair.key in WITH_ATTR), f"line {number}: {pair.key} and {{attr}}"
            pairs.append(pair)
        rules.append(Rule(number, tuple(pairs)))
    return rules


@pytest.fixture(scope="module")
def rules() -> list[Rule]:
    return parse_rules(RULES.read_text(encoding="utf-8"))


# --- The evaluator -------------------------------------------------------------------------


@dataclass
class Device:
    """A made-up device: its own properties and attributes, and those of its parents."""

    subsystem: str
    env: dict[str, str] = field(default_factory=dict)
    attrs: dict[str, str] = field(default_factory=dict)
    parent_attrs: dict[str, str] = field(default_factory=dict)
    action: str = "add"
    # What the rules did to it:
    symlinks: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    mode: str | None = None


def _matches(pair: Pair, device: Device) -> bool:
    actual: str | None
    if pair.key == "ACTION":
        actual = device.action
    elif pair.key == "SUBSYSTEM":
        actual = device.subsystem
    elif pair.key == "ENV":
        actual = device.env.get(pair.attr or "", "")
    elif pair.key == "ATTR":
        actual = device.attrs.get(pair.attr or "")
    elif pair.key == "ATTRS":
        actual = device.attrs.get(pair.attr or "") or device.parent_attrs.get(pair.attr or "")
    else:
        raise AssertionError(f"the evaluator does not know how to match {pair.key}")
    equal = actual is not None and actual == pair.value
    return equal if pair.op == "==" else not equal


def _assign(pair: Pair, device: Device) -> None:
    if pair.key == "ENV":
        device.env[pair.attr or ""] = pair.value
    elif pair.key == "SYMLINK":
        device.symlinks.append(pair.value)
    elif pair.key == "TAG":
        device.tags.append(pair.value)
    elif pair.key == "GROUP":
        device.group = pair.value
    elif pair.key == "MODE":
        device.mode = pair.value
    else:
        raise AssertionError(f"the evaluator does not know how to assign {pair.key}")


def evaluate(rules: list[Rule], device: Device) -> Device:
    """Run ``rules`` on ``device`` the way udev does: in order, GOTO jumps forward to a LABEL."""
    skip_to: str | None = None
    for rule in rules:
        labels = rule.get("LABEL")
        if skip_to is not None:
            if labels and labels[0].value == skip_to:
                skip_to = None
            continue
        conditions = [p for p in rule.pairs if p.op in MATCH_OPS]
        if labels or not all(_matches(p, device) for p in conditions):
            continue
        for pair in rule.assigns:
            _assign(pair, device)
        if gotos := rule.get("GOTO"):
            skip_to = gotos[0].value
    return device


def tty(vendor: str, product: str, action: str = "add") -> Device:
    return Device("tty", parent_attrs={"idVendor": vendor, "idProduct": product}, action=action)


def usb_device(vendor: str, product: str) -> Device:
    return Device("usb", env={"DEVTYPE": "usb_device"}, attrs={"idVendor": vendor, "idProduct": product})


# --- Static lint ---------------------------------------------------------------------------


def test_every_line_is_a_valid_rule(rules: list[Rule]) -> None:
    assert rules


def test_every_goto_has_its_label(rules: list[Rule]) -> None:
    labels = {p.value for rule in rules for p in rule.get("LABEL")}
    gotos = {p.value for rule in rules for p in rule.get("GOTO")}
    assert gotos <= labels


def test_mode_is_0660_wherever_access_is_granted(rules: list[Rule]) -> None:
    for rule in rules:
        modes = [p.value for p in rule.get("MODE")]
        assert modes in ([], ["0660"]), f"line {rule.line}: MODE {modes}"
        if rule.get("GROUP") or rule.get("SYMLINK"):
            assert modes == ["0660"], f'line {rule.line}: grants a device without MODE="0660"'
            assert [p.value for p in rule.get("GROUP")] == ["misbridge"], f"line {rule.line}"
    assert "0666" not in RULES.read_text(encoding="utf-8")


def test_tty_and_usb_actions_hide_the_pad_from_modemmanager_and_tag_it(rules: list[Rule]) -> None:
    actions = [rule for rule in rules if rule.get("GROUP")]
    assert len(actions) == 2  # one for serial pads, one for bulk USB pads
    for rule in actions:
        assert [p.value for p in rule.get("ENV", "ID_MM_DEVICE_IGNORE")] == ["1"], f"line {rule.line}"
        assert [(p.op, p.value) for p in rule.get("TAG")] == [("+=", "systemd")], f"line {rule.line}"
    assert sum(1 for rule in actions if [(p.op, p.value) for p in rule.get("SYMLINK")] == [("+=", "mispos")]) == 1


def test_the_id_list_is_easy_to_extend(rules: list[Rule]) -> None:
    ids = set()
    for rule in rules:
        vendor = rule.get("ATTRS", "idVendor") + rule.get("ATTR", "idVendor")
        product = rule.get("ATTRS", "idProduct") + rule.get("ATTR", "idProduct")
        if vendor or product:
            assert len(vendor) == len(product) == 1, f"line {rule.line}: one VID and one PID per line"
            assert re.fullmatch(r"[0-9a-f]{4}", vendor[0].value), f"line {rule.line}: lowercase 4-digit hex"
            assert re.fullmatch(r"[0-9a-f]{4}", product[0].value), f"line {rule.line}: lowercase 4-digit hex"
            ids.add((vendor[0].value, product[0].value))
    assert ids >= EXPECTED_IDS


# --- What devices actually get ---------------------------------------------------------------


@pytest.mark.parametrize(("vendor", "product"), sorted(EXPECTED_IDS))
def test_a_supported_serial_pad_gets_a_private_stable_node(rules: list[Rule], vendor: str, product: str) -> None:
    device = evaluate(rules, tty(vendor, product))
    assert device.symlinks == ["mispos"]
    assert (device.group, device.mode) == ("misbridge", "0660")
    assert device.env.get("ID_MM_DEVICE_IGNORE") == "1"
    assert device.tags == ["systemd"]


def test_other_devices_are_left_alone(rules: list[Rule]) -> None:
    for device in (tty("046d", "c52b"), Device("tty"), usb_device("0403", "6001"), Device("input")):
        evaluate(rules, device)
        assert (device.symlinks, device.tags, device.group, device.mode) == ([], [], None, None), device


def test_a_supported_bulk_usb_pad_gets_a_private_node(rules: list[Rule]) -> None:
    device = evaluate(rules, usb_device("1209", "0001"))
    assert (device.group, device.mode, device.tags) == ("misbridge", "0660", ["systemd"])
    assert device.env.get("ID_MM_DEVICE_IGNORE") == "1"
    assert device.symlinks == []  # pyusb finds it by VID:PID


def test_remove_events_change_nothing(rules: list[Rule]) -> None:
    device = evaluate(rules, tty("0403", "6001", action="remove"))
    assert (device.symlinks, device.group) == ([], None)


# --- udev's own parser -----------------------------------------------------------------------


def _udevadm_with_verify() -> str:
    # `make lint-system` leaves udevadm 254 in .venv/system-tools; later plain runs use it too.
    fetched = REPO / ".venv" / "system-tools" / "udevadm"
    if fetched.exists() and "MISBRIDGE_UDEVADM" not in os.environ:
        udevadm = str(fetched)
    else:
        udevadm = tool("udevadm", package="udev", env_var="MISBRIDGE_UDEVADM")
    if run([udevadm, "verify", "--help"]).returncode != 0:
        version = run([udevadm, "--version"]).stdout.strip()
        unavailable(
            f"udevadm {version} has no `verify` verb (needs systemd >= 254; Debian 12 ships 252): "
            "`make lint-system` fetches udevadm 254 from bookworm-backports"
        )
    return udevadm


def test_udevadm_verify_accepts_the_rules() -> None:
    udevadm = _udevadm_with_verify()
    # Names are not resolved: the misbridge group exists on the POS, not on the build machine.
    result = run([udevadm, "verify", "--resolve-names=never", str(RULES)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert str(RULES) not in result.stdout + result.stderr, result.stdout + result.stderr


def test_udevadm_verify_rejects_a_broken_copy(tmp_path: Path) -> None:
    # Guards the gate: a wrong operator must fail, so a pass above means something.
    udevadm = _udevadm_with_verify()
    broken = tmp_path / "99-broken.rules"
    broken.write_text(RULES.read_text(encoding="utf-8").replace('SUBSYSTEM!="tty"', 'SUBSYSTEM="tty"'), "utf-8")
    assert run([udevadm, "verify", "--resolve-names=never", str(broken)]).returncode != 0
