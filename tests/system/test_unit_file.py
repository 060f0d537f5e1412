"""systemd/misbridge.service: verified offline by systemd itself, scored, and linted (R20, R21).

``systemd-analyze verify`` returns 0 on warnings (unknown keys, unparsable values), so the
gate is that it prints nothing at all. It also fails when the ExecStart binary is missing;
``--root=`` would need a whole unit tree (sysinit.target, ...) on systemd 252, so the test
verifies a copy of the unit whose ExecStart points at a stub executable in a temporary folder.
That the real path exists after ``make install`` is checked by test_install.py.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from misbridge.config import secrets
from misbridge.config.settings import ApiSettings, BackendSettings, JournalSettings
from tests.system.tools import REPO, UNIT, Setting, parse_unit, run, tool, values

#: R21: the exposure systemd-analyze security may report (0 = locked down, 10 = unsafe).
MAX_EXPOSURE = 2.0
EXEC_START = "/usr/bin/misbridge serve --config /etc/misbridge/misbridge.toml"
SECRET_WORDS = re.compile(r"KEY|TOKEN|SECRET|PASS|PIN|SIGN|CRED|CERT", re.IGNORECASE)
#: The ports the unit keeps for lanes' own socket ports ([[lanes]] socket_port), one per lane;
#: docs/operations.md and the example configuration name the same range.
LANE_PORTS = range(9110, 9140)


@pytest.fixture(scope="module")
def unit() -> list[Setting]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


def _verifiable_copy(directory: Path, *, extra: str = "") -> Path:
    """The unit with ExecStart pointing at an executable stub (verify requires it to exist)."""
    stub = directory / "misbridge"
    stub.write_text("#!/bin/sh\nexit 0\n", encoding="utf-8")
    stub.chmod(0o755)
    text = UNIT.read_text(encoding="utf-8")
    assert f"\nExecStart={EXEC_START}\n" in text
    text = text.replace("\nExecStart=/usr/bin/misbridge ", f"\nExecStart={stub} ", 1)
    text = text.replace("\n[Service]\n", f"\n[Service]\n{extra}", 1)
    copy = directory / "misbridge.service"
    copy.write_text(text, encoding="utf-8")
    return copy


def test_systemd_analyze_verify_prints_nothing(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", package="systemd")
    result = run([analyze, "verify", str(_verifiable_copy(tmp_path))])
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_the_verify_gate_sees_a_typo(tmp_path: Path) -> None:
    # Guards the gate itself: if verify stopped reading the file, "prints nothing" would pass.
    analyze = tool("systemd-analyze", package="systemd")
    result = run([analyze, "verify", str(_verifiable_copy(tmp_path, extra="ExecStrat=/bin/true\n"))])
    assert "ExecStrat" in result.stdout + result.stderr


def test_security_exposure_is_at_most_2(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze", package="systemd")
    # --threshold is on a x10 scale: 20 means an exposure of 2.0.
    result = run([analyze, "security", "--offline=yes", f"--threshold={round(MAX_EXPOSURE * 10)}", str(UNIT)])
    output = result.stdout + result.stderr
    found = re.search(r"Overall exposure level for misbridge\.service: (\d+\.\d+)", output)
    assert found, output[-2000:]
    assert float(found.group(1)) <= MAX_EXPOSURE, output
    assert result.returncode == 0, output[-2000:]


def test_type_notify_with_watchdog_and_restart(unit: list[Setting]) -> None:
    one = {key: values(unit, key) for key in (
        "Type", "NotifyAccess", "WatchdogSec", "Restart", "RestartSec", "RestartPreventExitStatus",
        "TimeoutStopSec", "User", "Group", "StateDirectory", "ConfigurationDirectory", "RuntimeDirectory",
        "RuntimeDirectoryMode", "UMask", "ExecStart",
    )}  # fmt: skip
    assert one == {
        "Type": ["notify"], "NotifyAccess": ["main"], "WatchdogSec": ["30"], "Restart": ["on-failure"],
        "RestartSec": ["2"], "RestartPreventExitStatus": ["2 243"], "TimeoutStopSec": ["90"],
        "User": ["misbridge"], "Group": ["misbridge"], "StateDirectory": ["misbridge"],
        "ConfigurationDirectory": ["misbridge"], "RuntimeDirectory": ["misbridge"],
        "RuntimeDirectoryMode": ["0750"], "UMask": ["0077"], "ExecStart": [EXEC_START],
    }  # fmt: skip


def test_stop_timeout_outlasts_a_backend_call(unit: list[Setting]) -> None:
    (stop_s,) = values(unit, "TimeoutStopSec")
    assert float(stop_s) > BackendSettings().request_deadline_s


def test_the_journal_lives_in_the_state_directory(unit: list[Setting]) -> None:
    (state,) = values(unit, "StateDirectory")
    assert JournalSettings().path.parent == Path("/var/lib") / state


def test_no_secret_travels_in_the_environment_or_argv(unit: list[Setting]) -> None:
    assert values(unit, "EnvironmentFile") == []
    assert values(unit, "PassEnvironment") == []
    for assignment in values(unit, "Environment"):
        for word in shlex.split(assignment):
            name = word.partition("=")[0]
            assert not SECRET_WORDS.search(name), f"Environment={assignment} looks like a secret"
    argv = shlex.split(values(unit, "ExecStart")[0])
    assert not [arg for arg in argv if SECRET_WORDS.search(arg)]


def test_secrets_come_as_credentials_the_code_knows(unit: list[Setting]) -> None:
    loaded = [value.split(":", 1) for value in values(unit, "LoadCredential")]
    assert [name for name, _ in loaded] == list(secrets.UNIT_CREDENTIALS)
    for name, source in loaded:
        assert source == f"/etc/misbridge/credentials/{name}"
    assert values(unit, "SetCredential") == [], "a credential's value must never be written in the unit"


def test_binds_nothing_but_what_we_expect(unit: list[Setting]) -> None:
    for key in ("BindPaths", "BindReadOnlyPaths", "ReadWritePaths", "TemporaryFileSystem", "RootDirectory",
                "SupplementaryGroups", "AmbientCapabilities", "CapabilityBoundingSet"):  # fmt: skip
        assert all(value == "" for value in values(unit, key)), f"{key}= must be absent or empty"
    assert values(unit, "CapabilityBoundingSet") == [""]
    api = ApiSettings()
    lanes = f"tcp:{LANE_PORTS[0]}-{LANE_PORTS[-1]}"
    assert sorted(values(unit, "SocketBindAllow")) == sorted([f"tcp:{api.socket_port}", f"tcp:{api.http_port}", lanes])
    assert values(unit, "SocketBindDeny") == ["any"]
    assert values(unit, "IPAddressDeny") == ["any"]
    assert values(unit, "IPAddressAllow") == ["localhost"]
    assert values(unit, "DevicePolicy") == ["closed"]
    assert sorted(values(unit, "DeviceAllow")) == sorted(
        ["/dev/mispos rw", "char-ttyACM rw", "char-ttyUSB rw", "char-usb_device rw"]
    )
    assert values(unit, "RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]


def test_the_lane_range_is_apart_from_the_doors_ports() -> None:
    # A lane's own port may never be one of [api]'s (the settings refuse it): the range must
    # not hold a default door port, or the first lane a technician numbers would be refused.
    api = ApiSettings()
    assert api.socket_port not in LANE_PORTS
    assert api.http_port not in LANE_PORTS
    assert len(LANE_PORTS) >= 16, "room for a large store's lanes"


def test_systemd_reads_the_lane_range(tmp_path: Path) -> None:
    # systemd itself must read the range (SocketBindAllow= ranges need systemd >= 249):
    # a malformed range is a warning that "prints nothing" above would catch, a valid one none.
    analyze = tool("systemd-analyze", package="systemd")
    broken = _verifiable_copy(tmp_path, extra="SocketBindAllow=tcp:9139-9110\n")
    result = run([analyze, "verify", str(broken)])
    assert "SocketBindAllow" in result.stdout + result.stderr


def test_the_unit_never_needs_the_pad_to_start(unit: list[Setting]) -> None:
    # misbridge serves MB20 and reconnects; a hard dependency would stop it on every unplug.
    for key in ("Requires", "BindsTo", "Requisite", "PartOf"):
        assert not [v for v in values(unit, key, section="Unit") if "dev-" in v or ".device" in v]


def test_callers_keep_their_uids(unit: list[Setting]) -> None:
    # In a private user namespace every user but root and misbridge reads as 65534, so the POS
    # user could never pass the allow-list (misbridge.api.peer). "identity" needs systemd >= 257.
    assert values(unit, "PrivateUsers") in ([], ["no"], ["identity"])


def test_the_fd_limit_fits_both_doors_at_their_largest_cap(unit: list[Setting]) -> None:
    (limit,) = values(unit, "LimitNOFILE")
    largest_cap = next(rule.le for rule in ApiSettings.model_fields["max_connections"].metadata if hasattr(rule, "le"))
    internal = 256  # journal, pad, backend, event loop, refused connections being answered
    assert int(limit) >= 2 * largest_cap + internal
    assert int(limit) > 1024, "systemd's default soft limit is what the fd flood of issue 10 exhausted"


def test_the_package_creates_the_pos_group(tmp_path: Path) -> None:
    sysusers = tool("systemd-sysusers", package="systemd")
    (tmp_path / "etc").mkdir()
    conf = REPO / "packaging" / "sysusers.conf"
    result = run([sysusers, f"--root={tmp_path}", str(conf)])
    assert result.returncode == 0, result.stdout + result.stderr
    groups = [line.split(":")[0] for line in (tmp_path / "etc/group").read_text(encoding="utf-8").splitlines()]
    assert sorted(groups) == ["misbridge", "misbridge-pos"]
