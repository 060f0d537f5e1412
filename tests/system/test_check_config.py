"""`misbridge check-config` runs the check `misbridge serve` runs: what one refuses, the other refuses.

The real command in a subprocess, on real TOML files; a port in use is held by a real listening
socket. A configuration error is exit status 2 (the unit's RestartPreventExitStatus=2) and, from
serve, one line on stderr naming the setting, never a traceback (exit 1, restarted every 2 s).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.system.tools import REPO

#: Long enough for a start that wrongly goes on past the check to show as a failure, not a hang.
TIMEOUT_S = 30


@pytest.fixture
def credentials(tmp_path: Path) -> Path:
    """An empty credentials directory: the lookup serve does finds nothing the test did not put there."""
    directory = tmp_path / "credentials"
    directory.mkdir()
    return directory


def misbridge(*args: str, credentials: Path) -> subprocess.CompletedProcess[str]:
    """``python -m misbridge ARGS`` with this tree, no MISBRIDGE_* variables, and ``credentials``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("MISBRIDGE_")}
    env.update(PYTHONPATH=str(REPO), CREDENTIALS_DIRECTORY=str(credentials))
    env.pop("NOTIFY_SOCKET", None)
    # Fixed argv built by the test itself.
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "misbridge", *args],
        capture_output=True, text=True, timeout=TIMEOUT_S, check=False, stdin=subprocess.DEVNULL, env=env,
    )  # fmt: skip


def config(tmp_path: Path, text: str, *, signed: bool = True, device: str = "") -> Path:
    """A TOML file with ``text`` and ``device`` lines; its pad does not exist, its journal and key are in tmp_path."""
    key = tmp_path / "signing.key"
    key.write_text("0123456789abcdef\n", encoding="utf-8")
    key.chmod(0o600)
    signing = f'[backend.signing]\nkey_file = "{key}"\n' if signed else ""
    file = tmp_path / "misbridge.toml"
    journal = f'[journal]\npath = "{tmp_path / "journal.db"}"\n'
    file.write_text(f'[device]\nurl = "{tmp_path / "no-pad"}"\n{device}{journal}{signing}{text}', encoding="utf-8")
    return file


def assert_refused(result: subprocess.CompletedProcess[str], *names: str, one_line: bool) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    if one_line:
        assert len(result.stderr.splitlines()) == 1, result.stderr
    for name in names:
        assert name in result.stderr, (name, result.stderr)


# --- the same check ----------------------------------------------------------------------------

#: (TOML, signed, [device] lines, what the refusal must name): each is refused by serve.
REFUSED = {
    "no signing key": ("", False, "", "ebuy-signing-key"),
    "not loopback": ('[api]\nhost = "0.0.0.0"\n', True, "", "api.host"),
    "unknown pad protocol": ("", True, 'protocol = "mispos-v9"\n', "device.protocol"),
    "two doors on one port": ("[api]\nsocket_port = 9300\nhttp_port = 9300\n", True, "", "api.http_port 9300"),
    "two lanes on one port": (
        '[[lanes]]\nname = "a"\ndevice_url = "/dev/a"\ndevice_no = "P1"\nsocket_port = 9310\n'
        '[[lanes]]\nname = "b"\ndevice_url = "/dev/b"\ndevice_no = "P2"\nsocket_port = 9310\n',
        True, "", "lanes[1].socket_port 9310",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", list(REFUSED))
def test_check_config_and_serve_refuse_the_same_configuration(tmp_path: Path, credentials: Path, case: str) -> None:
    text, signed, device, named = REFUSED[case]
    file = config(tmp_path, text, signed=signed, device=device)
    checked = misbridge("check-config", "--config", str(file), credentials=credentials)
    assert_refused(checked, named, one_line=False)
    served = misbridge("serve", "--config", str(file), credentials=credentials)
    assert_refused(served, named, one_line=True)


def test_check_config_prints_every_problem_with_its_fix(tmp_path: Path, credentials: Path) -> None:
    file = config(tmp_path, '[api]\nhost = "0.0.0.0"\n', signed=False, device='protocol = "x"\n')
    result = misbridge("check-config", "--config", str(file), credentials=credentials)
    assert_refused(result, "api.host", "backend.signing.key_file", "device.protocol", one_line=False)
    problems = result.stderr.splitlines()[1:]
    assert len(problems) == 3, result.stderr
    assert all("(fix: " in line for line in problems), result.stderr
    assert f"$CREDENTIALS_DIRECTORY ({credentials})" in result.stderr


def test_the_signing_key_is_found_where_serve_looks(tmp_path: Path, credentials: Path) -> None:
    (credentials / "ebuy-signing-key").write_text("0123456789abcdef\n", encoding="utf-8")
    file = config(tmp_path, "", signed=False)
    result = misbridge("check-config", "--config", str(file), credentials=credentials)
    assert (result.returncode, result.stdout.splitlines()[0]) == (0, f"{file}: OK"), result.stderr
    assert f"  credentials: {credentials}" in result.stdout
    assert "Not checked (only the running misbridge can): whether the ports are free" in result.stdout


# --- a port held by another program -----------------------------------------------------------


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port another program listens on."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield int(holder.getsockname()[1])


@pytest.mark.parametrize("setting", ["socket_port", "http_port"])
def test_serve_refuses_a_port_in_use_in_one_line(
    tmp_path: Path, credentials: Path, held_port: int, setting: str
) -> None:
    other = "http_port" if setting == "socket_port" else "socket_port"
    file = config(tmp_path, f"[api]\n{setting} = {held_port}\n{other} = 0\n")
    # Not a problem of the file: check-config cannot see who holds a port, and says so.
    assert misbridge("check-config", "--config", str(file), credentials=credentials).returncode == 0
    result = misbridge("serve", "--config", str(file), credentials=credentials)
    assert_refused(
        result, f"api.{setting} {held_port}", "already in use", f"ss -ltnp 'sport = :{held_port}'", one_line=True
    )
    assert not (tmp_path / "journal.db").exists(), "the doors are bound before the journal is opened"
