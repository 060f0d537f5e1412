"""Every command of docs/operations.md's shell blocks is classified, and the ones that can run here run.

A command the doc shows must work as written on an installed service. Most need what no test
machine has (systemd as PID 1, a real pad, a real till's /etc); the rest run here for real,
against a stand-in for the installed service:

- a temporary tree holds ``/etc/misbridge`` (the example configuration the install writes,
  edited the way the doc says: the pad, the backend, two lanes, free ports), the credentials
  in ``/etc/misbridge/credentials`` and ``/var/lib/misbridge``;
- the unit's ``ExecStart`` (``misbridge serve --config /etc/misbridge/misbridge.toml``) runs
  with ``$CREDENTIALS_DIRECTORY`` as ``LoadCredential=`` gives it, on the PIN-pad and backend
  simulators;
- each command runs in bash as a root shell on the till would run it (no
  ``$CREDENTIALS_DIRECTORY``), after the substitutions of :func:`_localised`: the tree's
  paths, the free ports, ``sudo`` and ``runuser -u misbridge --`` dropped (the test is root
  already, or is the only user), ``misbridge`` and ``misbridge-sim`` from this checkout.

A command that is in the doc but in none of the tables fails the test: a new command gets
classified (and, if it can run here, run) when it is written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta
from enum import Enum
from pathlib import Path

import httpx
import pytest

from misbridge.ebuy import jsonio
from misbridge.ebuy.examples import card_redemption_request
from simulators.pinpad.faults import load_scenario
from tests.system.preloaded import launchers
from tests.system.test_config_example import _generator
from tests.system.tools import REPO, tool

DOC = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
BASH = shutil.which("bash") or "/bin/bash"


class Where(Enum):
    """Why a command of the doc does not run here."""

    SYSTEMD = "needs systemd as PID 1 (systemctl, journalctl, udevd, credentials, transient units)"
    HARDWARE = "needs real hardware (a PIN pad, USB)"
    TILL = "needs root on a real till (changes its users, /etc, /usr or the pad's keys)"
    INTERACTIVE = "interactive (an editor, a person at the pad)"


@dataclass(frozen=True)
class Expect:
    """What a command that runs here must do: its exit status and a key part of its output."""

    output: str
    status: int = 0


#: Commands that run here, once, against the stand-in service (:func:`_localised` maps the doc's
#: paths, ports and example traceNo onto it: the traceNo becomes the stand-in's one card sale).
RUN_HERE: dict[str, Expect] = {
    "misbridge check-config --config /etc/misbridge/misbridge.toml": Expect(": OK"),
    "curl -s 127.0.0.1:9101/health": Expect('"status":"ready"'),
    "curl -s 127.0.0.1:9101/health | jq '.lanes'": Expect('"deviceNo": "POS02"'),
    'curl -s -H "Authorization: Bearer $(sudo cat /etc/misbridge/credentials/api-token)" '
    "127.0.0.1:9101/v1/lanes/lane2/health": Expect('"status":"ready"'),
    "sudo misbridge status": Expect("READY"),
    "misbridge status": Expect("READY"),
    "misbridge journal schema": Expect("readable by code >="),
    "misbridge journal list": Expect("approved"),
    "misbridge journal list --state open": Expect("traceNo"),
    "misbridge journal list --since 7d --state needs_manual --limit 200": Expect("traceNo"),
    "misbridge journal show 202611231501020000000001": Expect('"state": "approved"'),
    "misbridge journal export --format csv --since 2026-11-01 --output /tmp/november.csv": Expect(
        "1 transaction(s) written to"
    ),
    "misbridge journal export --format json --since 24h": Expect('"action": "cardRedemption"'),
    "misbridge journal list --lane lane2": Expect("traceNo"),
    "misbridge journal export --format csv --lane default --since 2026-11-01": Expect("traceNo,action"),
    "misbridge journal key-calls": Expect("signIn"),
    "misbridge journal key-calls --kind signIn --limit 5": Expect("answered"),
    "misbridge journal key-calls --kind batchUpload --since 2026-05-01 --json": Expect("["),
    "misbridge journal key-calls --lane lane2 --kind signIn": Expect("signIn"),
    "misbridge journal purge --dry-run": Expect("would be purged"),
    "runuser -u misbridge -- misbridge journal purge": Expect("purged"),
    "misbridge journal purge --older-than-days 365": Expect("purged"),
    # The sale is approved, not needs_manual: refused, nothing written (the command and its options work).
    'runuser -u misbridge -- misbridge journal resolve 202611231501020000000001 --as voided --note "e-Buy ticket '
    '4711: no charge, J. Li"': Expect("not 'needs_manual'", status=1),
    'runuser -u misbridge -- misbridge journal resolve 202611231501020000000001 --as approved --note "e-Buy order '
    '2611230001 stands, customer paid"': Expect("not 'needs_manual'", status=1),
    "misbridge conformance --list": Expect("timing-reply"),
    "misbridge demo": Expect("as expected"),
    "misbridge demo --scenario day": Expect("as expected"),
    "misbridge demo --scenario void": Expect("as expected"),
    "misbridge probe": Expect("Serial ports:"),
}

#: Commands that serve until stopped: started in the doc's order, each must print its line, then stopped.
#: They get ports of their own (``MISBRIDGE_API__*_PORT=0``) beside the stand-in service.
SERVES: dict[str, str] = {
    "misbridge serve --simulators": "misbridge serving",
    "misbridge-sim pinpad --link /tmp/mispos-sim --control /tmp/mispos-sim.ctl &": "PIN pad simulator on",
    "misbridge-sim backend --port 9200 --no-signing &": "listening on http://127.0.0.1:",
    "MISBRIDGE_DEVICE__URL=/tmp/mispos-sim MISBRIDGE_LANES='[]' "
    "MISBRIDGE_BACKEND__URL=http://127.0.0.1:9200/ebuyweb-posp/api "
    "MISBRIDGE_BACKEND__SIGNING__ENABLED=false MISBRIDGE_JOURNAL__PATH=/tmp/bench-journal.db "
    "misbridge serve --config /etc/misbridge/misbridge.toml": "misbridge serving",
}

#: Commands for the bench pad the commands above started: run while it runs, after them.
WITH_BENCH: dict[str, Expect] = {
    'misbridge-sim customer /tmp/mispos-sim.ctl \'{"card": "points", "pin": "000000"}\'': Expect('{"ok": true}'),
    'misbridge-sim customer /tmp/mispos-sim.ctl \'{"step": "unplug", "replug_after_s": 2}\'': Expect('{"ok": true}'),
}

NOT_HERE: dict[str, Where] = {
    # The Debian packages (tests/package/test_deb.py plays them in a chroot: make test-deb)
    "apt-get install ./misbridge-0.1.0_0.1.0-1_amd64.deb ./misbridge_0.1.0-1_all.deb": Where.TILL,
    "apt-get install ./misbridge-0.2.0_0.2.0-1_amd64.deb ./misbridge_0.2.0-1_all.deb": Where.TILL,
    "apt-get update && apt-get install misbridge": Where.TILL,
    "misbridgectl status": Where.TILL,
    "misbridgectl rollback": Where.TILL,
    "apt-get install --allow-downgrades ./misbridge_0.1.0-1_all.deb": Where.TILL,
    "install -m 0644 store-it-archive-keyring.gpg /usr/share/keyrings/": Where.TILL,
    "cp /usr/share/doc/misbridge/examples/misbridge-store.sources /etc/apt/sources.list.d/": Where.TILL,
    "apt-get install unattended-upgrades": Where.TILL,
    "cp /usr/share/doc/misbridge/examples/52unattended-upgrades-misbridge /etc/apt/apt.conf.d/": Where.TILL,
    "mkdir -p /etc/systemd/system/apt-daily-upgrade.timer.d": Where.TILL,
    (
        "cp /usr/share/doc/misbridge/examples/apt-daily-upgrade-window.conf "
        "/etc/systemd/system/apt-daily-upgrade.timer.d/misbridge-window.conf"
    ): Where.TILL,
    "apt-get remove misbridge": Where.TILL,
    "apt-get purge misbridge 'misbridge-[0-9]*'": Where.TILL,
    # The system user and udev, by hand
    "systemctl daemon-reload": Where.SYSTEMD,
    "udevadm control --reload && udevadm trigger --action=add --subsystem-match=tty --subsystem-match=usb": (
        Where.SYSTEMD
    ),
    # The pad
    "lsusb": Where.HARDWARE,
    "ls -l /dev/serial/by-id/": Where.HARDWARE,
    "ls -l /dev/mispos": Where.HARDWARE,
    "ls -l /dev/mispos-*": Where.HARDWARE,
    "stat -L -c '%a %G' /dev/mispos": Where.HARDWARE,
    "udevadm info --attribute-walk --name=/dev/ttyUSB0 | grep -E 'idVendor|idProduct|serial'": Where.HARDWARE,
    "udevadm info --query=symlink --name=/dev/ttyUSB1": Where.HARDWARE,
    "udevadm info --query=property --name=/dev/ttyUSB1 | grep -E 'ID_SERIAL_SHORT|ID_PATH_TAG'": Where.HARDWARE,
    "misbridge probe --try /dev/mispos-B20M7QRS": Where.HARDWARE,
    "misbridge probe --try /dev/mispos": Where.HARDWARE,
    "misbridge probe --try usb://1209:0001": Where.HARDWARE,
    "make test-hardware DEVICE_URL=/dev/mispos": Where.HARDWARE,
    "make test-hardware DEVICE_URL=/dev/mispos CUSTOMER=1": Where.HARDWARE,
    "make test-hardware DEVICE_URL=/dev/mispos TEST_KEYS=1": Where.HARDWARE,
    "make test-hardware DEVICE_URL=/dev/ttyACM0 [CUSTOMER=1] [TEST_KEYS=1]": Where.HARDWARE,
    "misbridge conformance --device-url /dev/ttyACM0": Where.HARDWARE,
    "misbridge conformance --device-url /dev/ttyACM0 --customer": Where.HARDWARE,
    "misbridge conformance --device-url /dev/ttyACM0 --customer --test-keys": Where.HARDWARE,
    "misbridge conformance --device-url usb://1209:0001 --report pad.json --text pad.txt": Where.HARDWARE,
    # Configuration, users, credentials
    "cp /etc/misbridge/misbridge.toml.example /etc/misbridge/misbridge.toml": Where.TILL,
    "editor /etc/misbridge/misbridge.toml": Where.INTERACTIVE,
    "usermod -aG misbridge-pos pos": Where.TILL,
    "install -m 0400 -o root -g root /dev/null /etc/misbridge/credentials/ebuy-signing-key": Where.TILL,
    "editor /etc/misbridge/credentials/ebuy-signing-key": Where.INTERACTIVE,
    "python3 -c 'import secrets; print(secrets.token_urlsafe(32))' | install -m 0400 -o root -g root /dev/stdin "
    "/etc/misbridge/credentials/api-token": Where.TILL,
    "install -m 0400 -o root -g root /dev/null /etc/misbridge/credentials/ebuy-root-key": Where.TILL,
    "editor /etc/misbridge/credentials/ebuy-root-key": Where.INTERACTIVE,
    "systemd-creds encrypt --name=ebuy-signing-key /etc/misbridge/credentials/ebuy-signing-key "
    "/etc/misbridge/credentials/ebuy-signing-key.cred": Where.SYSTEMD,
    "systemd-creds encrypt --name=api-token /etc/misbridge/credentials/api-token "
    "/etc/misbridge/credentials/api-token.cred": Where.SYSTEMD,
    "shred -u /etc/misbridge/credentials/ebuy-signing-key /etc/misbridge/credentials/api-token": Where.TILL,
    "sudo misbridge pad provision": Where.TILL,
    "sudo misbridge pad provision --lane lane2": Where.TILL,
    # The service and its timer
    "systemctl edit misbridge": Where.SYSTEMD,
    "systemctl edit misbridge-reconcile.timer": Where.SYSTEMD,
    "systemctl enable --now misbridge": Where.SYSTEMD,
    "systemctl enable --now misbridge-reconcile.timer": Where.SYSTEMD,
    "systemctl status misbridge": Where.SYSTEMD,
    "systemctl restart misbridge": Where.SYSTEMD,
    "systemctl stop misbridge": Where.SYSTEMD,
    "systemctl start misbridge": Where.SYSTEMD,
    "sudo systemctl stop misbridge": Where.SYSTEMD,
    "sudo systemctl start misbridge": Where.SYSTEMD,
    "systemctl list-timers misbridge-reconcile.timer": Where.SYSTEMD,
    "systemctl start misbridge-reconcile.service": Where.SYSTEMD,
    "systemd-analyze security misbridge": Where.SYSTEMD,
    # Its misbridge reconcile runs here with the credential it hands over (test_reconcile_as_its_unit_runs_it).
    "systemd-run --wait --pipe --quiet --uid=misbridge --gid=misbridge "
    "-p LoadCredential=ebuy-signing-key:/etc/misbridge/credentials/ebuy-signing-key "
    "misbridge reconcile --date 2026-05-01": Where.SYSTEMD,
    "journalctl -u misbridge -f": Where.SYSTEMD,
    "journalctl -u misbridge -b -p warning": Where.SYSTEMD,
    "journalctl -u misbridge | grep -E 'lane=lane2( |$)'": Where.SYSTEMD,
    "journalctl -u misbridge | grep 'traceNo=T0001234'": Where.SYSTEMD,
    "journalctl -u misbridge-reconcile": Where.SYSTEMD,
}

#: The doc's example traceNo, replaced by the stand-in's one sale.
DOC_TRACE_NO = "202611231501020000000001"
SHELL_FENCE = re.compile(r"^(?P<indent> *)```(?:sh|bash|shell)\n(?P<body>.*?)^(?P=indent)```", re.MULTILINE | re.DOTALL)
TRAILING_COMMENT = re.compile(r"\s+#( .*)?$")


def doc_commands(doc: str = DOC) -> list[str]:
    """Every command of the doc's shell blocks, in order: continuations joined, comments dropped, spaces single."""
    commands = []
    for block in SHELL_FENCE.finditer(doc):
        pending = ""
        for raw in block.group("body").splitlines():
            line = raw.strip()
            if line.endswith("\\"):
                pending += line[:-1] + " "
                continue
            line = TRAILING_COMMENT.sub("", pending + line) if not line.startswith("#") else pending.strip()
            pending = ""
            if line:
                commands.append(" ".join(line.split()))
    return commands


def test_every_command_is_classified() -> None:
    commands = doc_commands()
    assert len(commands) > 50, "the shell blocks were not found"
    tables = {**RUN_HERE, **SERVES, **WITH_BENCH, **NOT_HERE}
    unclassified = [command for command in commands if command not in tables]
    assert not unclassified, "classify these commands of docs/operations.md in this test:\n" + "\n".join(unclassified)
    stale = set(tables) - set(commands)
    assert not stale, "no longer in docs/operations.md: " + "\n".join(sorted(stale))


def test_the_extractor_joins_continuations_and_drops_comments() -> None:
    text = "```sh\nfoo --a \\\n    --b   # why\n# only a comment\n  bar 'x  y'\n```\n   ```sh\n   baz\n   ```\n"
    assert doc_commands(text) == ["foo --a --b", "bar 'x y'", "baz"]


# --- the stand-in service ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Till:
    """The temporary tree standing in for an installed till, and what runs on it."""

    root: Path
    env: dict[str, str]
    http_port: int
    sale: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(process: subprocess.Popen[str], line: str, log: Path, timeout: float = 20) -> str:
    """Wait for ``line`` on the process's output (written to ``log``); the whole output so far."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log.read_text(encoding="utf-8")
        if line in text:
            return text
        if process.poll() is not None:
            break
        time.sleep(0.05)
    pytest.fail(f"no {line!r} within {timeout} s; it said:\n{log.read_text(encoding='utf-8')[-3000:]}")


def _start(argv: list[str] | str, log: Path, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    with log.open("w", encoding="utf-8") as output:
        # Fixed commands built by this test (or the doc's own lines, run through bash on purpose).
        return subprocess.Popen(  # noqa: S603
            [BASH, "-c", argv] if isinstance(argv, str) else argv,
            env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip


def _stop(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _configuration(example: str, root: Path, pads: list[Path], backend_url: str, ports: tuple[int, int]) -> str:
    """The example as a technician edits it: the pad, the backend, the journal, the ports, two lanes."""
    edits = {
        'url = "/dev/mispos"': f'url = "{pads[0]}"',
        'url = "https://ebuy.invalid/ebuyweb-posp/api"': f'url = "{backend_url}"',
        "#socket_port = 9100": f"socket_port = {ports[0]}",
        "#http_port = 9101": f"http_port = {ports[1]}",
        '#path = "/var/lib/misbridge/journal.db"': f'path = "{root}/var/lib/misbridge/journal.db"',
    }
    for old, new in edits.items():
        assert old in example, f"the example configuration no longer has {old!r}"
        example = example.replace(old, new, 1)
    lanes = "".join(
        f'\n[[lanes]]\nname = "lane{n}"\ndevice_url = "{pad}"\ndevice_no = "POS0{n}"\n'
        for n, pad in enumerate(pads, start=1)
    )
    return example + lanes


def _sell(port: int, token: str) -> str:
    """One card redemption on lane 1 through the HTTP door; its traceNo."""
    body = card_redemption_request()
    body["traceNo"] = trace_no = time.strftime("%Y%m%d%H%M%S") + "0000000042"
    response = httpx.post(
        f"http://127.0.0.1:{port}/v1/lanes/lane1/cardRedemption",
        content=jsonio.dumps(body), headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=20, trust_env=False,
    )  # fmt: skip
    assert response.json()["returnCode"] == "00", response.text
    return trace_no


@pytest.fixture(scope="module")
def till(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Till]:
    for name in ("curl", "jq"):  # the doc's commands use them; a machine without them skips
        tool(name, package=name)
    root = tmp_path_factory.mktemp("till")
    etc, state, tmp = root / "etc/misbridge", root / "var/lib/misbridge", root / "tmp"
    for folder in (etc / "credentials", state, tmp):
        folder.mkdir(parents=True)
    signing_key, token = os.urandom(16).hex(), os.urandom(24).hex()
    for name, value in (("ebuy-signing-key", signing_key), ("api-token", token)):
        (etc / "credentials" / name).write_text(value + "\n", encoding="utf-8")
        (etc / "credentials" / name).chmod(0o400)
    with launchers(root, REPO) as bin_dir:
        shell = {k: v for k, v in os.environ.items() if not k.startswith(("MISBRIDGE_", "CREDENTIALS_", "NOTIFY_"))}
        shell |= {
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "MISBRIDGE_CONFIG": str(etc / "misbridge.toml"),  # where the installed commands look by default
            "http_proxy": "", "https_proxy": "", "no_proxy": "*",
        }  # fmt: skip
        with _service(root, shell, token) as service:
            yield service


@contextlib.contextmanager
def _service(root: Path, shell: dict[str, str], token: str) -> Iterator[Till]:
    """Two simulated pads, the backend simulator and the unit's ExecStart on the edited example configuration."""
    etc, tmp = root / "etc/misbridge", root / "tmp"
    pads = [tmp / "pad1", tmp / "pad2"]
    processes = [
        _start(["misbridge-sim", "pinpad", "--link", str(pad)], root / f"{pad.name}.log", shell, root) for pad in pads
    ]
    key_file = str(etc / "credentials/ebuy-signing-key")
    processes.append(
        _start(["misbridge-sim", "backend", "--port", "0", "--key-file", key_file], root / "backend.log", shell, root)
    )
    try:
        for process, pad in zip(processes, pads, strict=False):
            _ready(process, "PIN pad simulator on", root / f"{pad.name}.log")
        backend_url = _ready(processes[-1], "listening on", root / "backend.log").split()[-1]
        http_port = _free_port()
        (etc / "misbridge.toml").write_text(
            _configuration(_generator().render(), root, pads, backend_url, (_free_port(), http_port)),
            encoding="utf-8",
        )
        unit = shell | {"CREDENTIALS_DIRECTORY": str(etc / "credentials")}  # what LoadCredential= gives the service
        serve = ["misbridge", "serve", "--config", str(etc / "misbridge.toml")]  # the unit's ExecStart
        processes.append(_start(serve, root / "service.log", unit, root))
        _ready(processes[-1], "misbridge serving", root / "service.log")
        yield Till(root, shell, http_port, _sell(http_port, token))
    finally:
        for process in reversed(processes):
            _stop(process)


def _localised(command: str, till: Till) -> str:
    """``command`` as it runs on the stand-in: its tree, its ports, its sale; root's sudo and runuser dropped."""
    today = date.today()
    replacements = {
        "runuser -u misbridge -- ": "",
        "sudo ": "",
        "/etc/misbridge/": f"{till.root}/etc/misbridge/",
        "/var/lib/misbridge/": f"{till.root}/var/lib/misbridge/",
        "/tmp/": f"{till.root}/tmp/",  # noqa: S108 - the doc's path, mapped into the test's own tree
        "127.0.0.1:9101": f"127.0.0.1:{till.http_port}",
        DOC_TRACE_NO: till.sale,
        # A business day must have ended (the cut-off is 04:00) and be at most 7 days old.
        "--date 2026-05-01": f"--date {today - timedelta(days=2)}",
        "--since 2026-04-29": f"--since {today - timedelta(days=3)}",
    }
    # One pass: the tree itself lives under /tmp/, so a replacement must never be replaced again.
    pattern = re.compile("|".join(re.escape(old) for old in replacements))
    return pattern.sub(lambda match: replacements[match.group(0)], command)


def _run(command: str, till: Till, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    if command.startswith("misbridge check-config"):
        # On a till check-config reads the installed credentials, /etc/misbridge/credentials; the
        # stand-in's are in its own tree, which CREDENTIALS_DIRECTORY names (the lookup serve uses first).
        env = env | {"CREDENTIALS_DIRECTORY": str(till.root / "etc/misbridge/credentials")}
    # The doc's own commands, through bash on purpose (pipes, $(...)); nothing else reaches the shell.
    return subprocess.run(  # noqa: S603
        [BASH, "-c", _localised(command, till)],
        env=env, cwd=till.root, capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def _run_all(expected: dict[str, Expect], till: Till, env: dict[str, str]) -> None:
    """Run every command of ``expected`` side by side; fail naming each one that did not do what it should."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(expected, pool.map(lambda command: _run(command, till, env), expected), strict=True))
    failures = []
    for command, result in results.items():
        want, output = expected[command], result.stdout + result.stderr
        if result.returncode != want.status or want.output not in output:
            failures.append(
                f"$ {_localised(command, till)}\nexit {result.returncode} (expected {want.status}), "
                f"expected {want.output!r} in:\n{output[-1500:]}"
            )
    assert not failures, "\n\n".join(failures)


def test_the_runnable_commands_work_as_written(till: Till) -> None:
    # Independent reads of one service (the purges find nothing old enough), so they run side by side.
    _run_all(RUN_HERE, till, till.env)


_TOKEN = '-H "Authorization: Bearer $(sudo cat /etc/misbridge/credentials/api-token)"'
#: Commands of the return-code rows of "Troubleshooting" (inline, ``\\|`` for ``|``) that run here too.
TROUBLESHOOTING: dict[str, Expect] = {
    f"curl -s {_TOKEN} 127.0.0.1:9101/openapi.json | jq '.paths | keys'": Expect('"/v1/cardRedemption"'),
    f"curl -s {_TOKEN} 127.0.0.1:9101/openapi.json | jq '.paths | map_values(keys)'": Expect('"post"'),
    f"curl -s -o /dev/null -w '%{{http_code}}\\n' {_TOKEN} 127.0.0.1:9101/v1/transactions/T1": Expect("404"),
    "curl -s 127.0.0.1:9101/health | jq '.lanes | map_values(.deviceNo)'": Expect('"lane2": "POS02"'),
    "misbridge journal list --since 1h": Expect("approved"),
    "misbridge journal show <traceNo>": Expect('"returnCode": "00"'),
    "misbridge --version": Expect("misbridge "),
}


def test_the_troubleshooting_commands_work(till: Till) -> None:
    section = DOC.split("\n## Troubleshooting\n", 1)[1].split("\n## ", 1)[0].replace("\\|", "|")
    missing = [command for command in TROUBLESHOOTING if f"`{command}`" not in section]
    assert not missing, f"no longer in Troubleshooting: {missing}"
    _run_all(
        {command.replace("<traceNo>", DOC_TRACE_NO): want for command, want in TROUBLESHOOTING.items()}, till, till.env
    )


#: ``misbridge reconcile``'s arguments as the doc's table lists them, and what each run prints. The
#: stand-in's sale is in a business day that has not ended, so every day reconciled matches (exit 0).
RECONCILE: dict[str, Expect] = {
    "": Expect("business day"),
    "--date 2026-05-01": Expect("uploaded 0 record(s)"),
    "--since 2026-04-29": Expect("business day"),
    "--since last": Expect("business day"),
    "--json": Expect('"businessDate"'),
    "--lane lane2": Expect("lane lane2 (deviceNo POS02)"),
    "--config /etc/misbridge/misbridge.toml": Expect("business day"),
}


def _reconcile_arguments() -> list[str]:
    table = DOC.split("| arguments | what it reconciles |\n|---|---|\n", 1)[1].split("\n\n", 1)[0]
    cells = [row.split(" | ")[0].removeprefix("| ") for row in table.splitlines()]
    return ["" if cell == "(none)" else cell.strip("`") for cell in cells]


def test_reconcile_as_its_unit_runs_it(till: Till) -> None:
    """The doc's systemd-run line hands the command the signing key as a credential: so does this run."""
    assert _reconcile_arguments() == list(RECONCILE)
    with_credential = till.env | {"CREDENTIALS_DIRECTORY": str(till.root / "etc/misbridge/credentials")}
    _run_all({f"misbridge reconcile {args}".strip(): want for args, want in RECONCILE.items()}, till, with_credential)


def test_the_commands_that_serve_start(till: Till) -> None:
    """The bench's long-running commands in the doc's order, each until it serves; then its pad's control socket."""
    env = till.env | {"MISBRIDGE_API__SOCKET_PORT": "0", "MISBRIDGE_API__HTTP_PORT": "0"}  # beside the service
    bench_port = str(_free_port())
    started: list[subprocess.Popen[str]] = []
    logs: list[Path] = []
    try:
        for number, command in enumerate(c for c in doc_commands() if c in SERVES):
            line = _localised(command, till).replace("9200", bench_port).removesuffix(" &")
            logs.append(till.root / f"serves-{number}.log")
            started.append(_start(line, logs[-1], env, till.root))
            _ready(started[-1], SERVES[command], logs[-1])
        _run_all(WITH_BENCH, till, env)
        # The unplug step plugs the pad back in: the bench's misbridge connects to it a second time.
        bench = logs[-1]
        deadline = time.monotonic() + 20
        while bench.read_text(encoding="utf-8").count("PIN pad connected at") < 2:
            assert time.monotonic() < deadline, (
                "the pad did not come back:\n" + bench.read_text(encoding="utf-8")[-3000:]
            )
            time.sleep(0.1)
    finally:
        for process in reversed(started):
            _stop(process)
    assert len(started) == len(SERVES)


def test_the_scenario_example_loads_and_keeps_the_pad_plugged_in(tmp_path: Path) -> None:
    block = re.search(r"scenario file \(`--scenario FILE`.*?```toml\n(.*?)```", DOC, re.DOTALL)
    assert block, "the scenario file example is missing"
    (tmp_path / "scenario.toml").write_text(block.group(1), encoding="utf-8")
    scenario = load_scenario(tmp_path / "scenario.toml")
    assert scenario.faults.unplug_after is None
    assert not scenario.faults.cut_frame
    assert scenario.customers, "the example queues customers"
