"""udev/99-misbridge-pinpad.rules: a static lint, a small evaluator, and udevadm verify (R22).

The lint parses every rule line as ``KEY<op>"value"`` pairs and checks each key takes that
operator. The evaluator runs the rules (the subset of udev they use) against made-up devices,
so the test checks what a pad actually gets, not only that the words are there: glob matches,
``$env{KEY}`` substitution and SYMLINK's default escaping as systemd's udev does them
(src/udev/udev-rules.c, udev-format.c), with the properties udev's usb_id and path_id builtins
(60-serial.rules) give a USB tty before this file runs. Where a udevadm with the ``verify``
verb exists (systemd >= 254; Debian 12 has 252, `make lint-system` fetches 254 from
bookworm-backports), udev's own parser checks the file too.
"""

from __future__ import annotations

import fnmatch
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
#: The order udev applies a line's assignments in, whatever their order on the line: it sorts a
#: line's tokens by type (sort_tokens() in udev-rules.c; TK_A_GROUP < TK_A_MODE < TK_A_TAG <
#: TK_A_ENV < TK_A_DEVLINK), so ENV{X}="..." takes effect before SYMLINK+="$env{X}" on the same line.
ASSIGN_ORDER = ("GROUP", "MODE", "TAG", "ENV", "SYMLINK")
#: $env{KEY} in a value; any other $ or % substitution is one the evaluator does not know.
ENV_SUBSTITUTION = re.compile(r"\$env\{(?P<key>[^}]+)\}")
#: Characters udev keeps in a device name (allow_listed_char_for_devnode() in device-nodes.c).
DEVNODE_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz#+-.:=@_")
#: A pad's USB path as path_id gives it (ID_PATH_TAG), and its USB serial number (ID_SERIAL_SHORT).
PORT_TAG = "pci-0000_00_14_0-usb-0_2_1_0"
SERIAL = "A10K5XYZ"


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


def _glob(pattern: str, actual: str) -> bool:
    # udev matches with fnmatch(3), "|" separating alternatives (udev(7), "Operators").
    return any(fnmatch.fnmatchcase(actual, alternative) for alternative in pattern.split("|"))


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
    equal = actual is not None and _glob(pair.value, actual)
    return equal if pair.op == "==" else not equal


def _replace_whitespace(value: str) -> str:
    # udev_replace_whitespace(): leading and trailing whitespace dropped, each run inside -> "_".
    return "_".join(value.split())


def _substitute(value: str, device: Device, *, replace_whitespace: bool) -> str:
    """``value`` with each ``$env{KEY}`` replaced by the device's property (empty when unset)."""
    assert "%" not in value, f"the evaluator does not know the substitutions of {value!r}"
    assert "$" not in ENV_SUBSTITUTION.sub("", value), f"the evaluator does not know the substitutions of {value!r}"

    def property_of(found: re.Match[str]) -> str:
        text = device.env.get(found["key"], "")
        return _replace_whitespace(text) if replace_whitespace else text

    return ENV_SUBSTITUTION.sub(property_of, value)


def _symlink_names(value: str, device: Device) -> list[str]:
    """What SYMLINK+="value" links, with no OPTIONS string_escape (udev-rules.c, TK_A_DEVLINK).

    Substituted values have their whitespace replaced, then every character udev does not
    allow in a name but "/" and " " becomes "_" (udev_replace_chars(buf, "/ ")), and the
    result is split at spaces: one SYMLINK may name several links.
    """
    return _replace_chars(_substitute(value, device, replace_whitespace=True), allow="/ ").split()


def _replace_chars(text: str, *, allow: str) -> str:
    """udev_replace_chars(): "_" for each character udev does not allow in a name.

    Kept: DEVNODE_CHARS, ``allow``, a ``\\x`` hex escape's two characters, and non-ASCII
    characters (udev keeps valid UTF-8; a Python str holds nothing else).
    """
    kept: list[str] = []
    for index, char in enumerate(text):
        escape = char == "\\" and text[index + 1 : index + 2] == "x"
        kept.append(char if char in DEVNODE_CHARS or char in allow or not char.isascii() or escape else "_")
    return "".join(kept)


def _assign(pair: Pair, device: Device) -> None:
    if pair.key == "ENV":
        device.env[pair.attr or ""] = _substitute(pair.value, device, replace_whitespace=False)
    elif pair.key == "SYMLINK":
        device.symlinks += _symlink_names(pair.value, device)
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
        for pair in sorted(rule.assigns, key=lambda p: ASSIGN_ORDER.index(p.key)):
            _assign(pair, device)
        if gotos := rule.get("GOTO"):
            skip_to = gotos[0].value
    return device


def tty(vendor: str, product: str, action: str = "add", *, serial: str | None = None, port: str = PORT_TAG) -> Device:
    """A USB tty with the properties 60-serial.rules' usb_id and path_id give it before our rules run.

    ``serial`` is ID_SERIAL_SHORT as usb_id leaves it (None: the pad has no usable serial number,
    so usb_id sets no ID_SERIAL_SHORT); ``port`` is path_id's ID_PATH_TAG.
    """
    env = {"ID_PATH_TAG": port}
    if serial is not None:
        env["ID_SERIAL_SHORT"] = serial
    return Device("tty", env=env, parent_attrs={"idVendor": vendor, "idProduct": product}, action=action)


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
        if rule.get("GROUP"):
            assert modes == ["0660"], f'line {rule.line}: grants a device without MODE="0660"'
            assert [p.value for p in rule.get("GROUP")] == ["misbridge"], f"line {rule.line}"
    assert "0666" not in RULES.read_text(encoding="utf-8")


def test_only_a_device_made_private_gets_a_name(rules: list[Rule]) -> None:
    # A link is only ever given to a marked pad, and the marked pads are what the action rule
    # gives group misbridge, mode 0660: a name never points at a node other users can open.
    (action,) = [rule for rule in rules if rule.get("SYMLINK") and rule.get("GROUP")]
    marker = [(p.op, p.value) for p in action.get("ENV", "MISBRIDGE_PINPAD")]
    assert marker == [("==", "1")]
    for rule in rules:
        if rule.get("SYMLINK"):
            assert [(p.op, p.value) for p in rule.get("ENV", "MISBRIDGE_PINPAD")] == marker, f"line {rule.line}"
            assert all(p.value.startswith("mispos") for p in rule.get("SYMLINK")), f"line {rule.line}"


def test_a_per_pad_name_needs_its_property(rules: list[Rule]) -> None:
    # An unset $env{} substitutes "", which would make one bare /dev/mispos- for every pad.
    for rule in rules:
        for link in rule.get("SYMLINK"):
            for key in ENV_SUBSTITUTION.findall(link.value):
                assert [(p.op, p.value) for p in rule.get("ENV", key)] == [("==", "?*")], f"line {rule.line}: {key}"


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
    device = evaluate(rules, tty(vendor, product, serial=SERIAL))
    assert device.symlinks == ["mispos", f"mispos-{SERIAL}", f"mispos-port-{PORT_TAG}"]
    assert (device.group, device.mode) == ("misbridge", "0660")
    assert device.env.get("ID_MM_DEVICE_IGNORE") == "1"
    assert device.tags == ["systemd"]


def test_a_pad_without_a_serial_number_is_named_by_its_port(rules: list[Rule]) -> None:
    device = evaluate(rules, tty("1a86", "7523", serial=None))
    assert device.symlinks == ["mispos", f"mispos-port-{PORT_TAG}"]
    assert (device.group, device.mode) == ("misbridge", "0660")


def test_an_empty_serial_number_makes_no_bare_name(rules: list[Rule]) -> None:
    device = evaluate(rules, tty("1a86", "7523", serial=""))
    assert "mispos-" not in device.symlinks
    assert device.symlinks == ["mispos", f"mispos-port-{PORT_TAG}"]


def test_two_pads_with_the_same_serial_number_differ_by_port(rules: list[Rule]) -> None:
    # Cheap bridges often share one serial number: both claim mispos-<serial> (udev lets one
    # win), but each keeps a name of its own by the USB socket it is plugged into.
    left = evaluate(rules, tty("0403", "6001", serial="A50285BI", port="pci-0000_00_14_0-usb-0_1_1_0"))
    right = evaluate(rules, tty("0403", "6001", serial="A50285BI", port="pci-0000_00_14_0-usb-0_2_1_0"))
    assert set(left.symlinks) & set(right.symlinks) == {"mispos", "mispos-A50285BI"}
    assert "mispos-port-pci-0000_00_14_0-usb-0_1_1_0" in left.symlinks
    assert "mispos-port-pci-0000_00_14_0-usb-0_2_1_0" in right.symlinks


def test_a_serial_number_becomes_one_safe_name(rules: list[Rule]) -> None:
    # usb_id already replaces these; SYMLINK's escaping would again, so one odd serial number
    # can neither make two links (a space separates links) nor leave the name's rules.
    device = evaluate(rules, tty("10c4", "ea60", serial=" AB 12*\\3 "))
    assert device.symlinks == ["mispos", "mispos-AB_12__3", f"mispos-port-{PORT_TAG}"]


def test_other_devices_are_left_alone(rules: list[Rule]) -> None:
    others = (tty("046d", "c52b", serial=SERIAL), Device("tty"), usb_device("0403", "6001"), Device("input"))
    for device in others:
        evaluate(rules, device)
        assert (device.symlinks, device.tags, device.group, device.mode) == ([], [], None, None), device


def test_a_supported_bulk_usb_pad_gets_a_private_node(rules: list[Rule]) -> None:
    device = evaluate(rules, usb_device("1209", "0001"))
    assert (device.group, device.mode, device.tags) == ("misbridge", "0660", ["systemd"])
    assert device.env.get("ID_MM_DEVICE_IGNORE") == "1"
    assert device.symlinks == []  # pyusb finds it by VID:PID


def test_remove_events_change_nothing(rules: list[Rule]) -> None:
    device = evaluate(rules, tty("0403", "6001", action="remove", serial=SERIAL))
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
