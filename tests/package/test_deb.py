"""The Debian packages on a throw-away Debian 12 root: install, upgrade mid-sale, roll back, downgrade, purge.

``make test-deb`` (run by ``.ci/run`` after ``make test``) builds two releases of this tree, the
version of ``misbridge/__init__.py`` and the same code as ``<version>+test2``, lints both with
lintian, and plays a till's life with them in a chroot, as store IT would with apt:

1. install the first release: ``current`` points at it, ``misbridge --version`` says it;
2. configure it like a till on the bench (the simulators stand in for the pad and e-Buy), start
   it, and begin a card sale whose customer takes seconds over the PIN;
3. upgrade to the second release *while that sale is in flight*: the running process keeps its
   release, the links switch (``previous`` is the first one), apt's keep file names both;
4. stop it as ``systemctl restart`` would (SIGTERM): the sale in flight still completes, approved,
   and the process exits 0 only then; the restarted service reports the new version and its
   journal holds the sale;
5. ``misbridgectl rollback``: back on the first release with one command, no network, journal
   kept; then a downgrade with ``apt-get install --allow-downgrades`` of the old front package;
6. ``apt-get autoremove`` would remove no release; purging removes everything but the journal.

Needs root, debootstrap, debhelper, dh-virtualenv and lintian (``make deb-deps``); skipped
without them unless ``MISBRIDGE_REQUIRE_DEB=1`` (``make test-deb`` sets it), then they fail.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest

import misbridge
from misbridge.api.pos_client import envelope_for, socket_request
from misbridge.ebuy.examples import card_redemption_request
from tests.integration.conftest import new_trace_no
from tests.package.chroot import DEB_DIR, Chroot
from tests.system.tools import REPO

V1: Final = misbridge.__version__
V2: Final = f"{misbridge.__version__}+test2"
REVISION: Final = "1"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# The chroot shares the host's network: ports nothing else holds.
SOCKET_PORT: Final = _free_port()
HTTP_PORT: Final = _free_port()
BACKEND_PORT: Final = _free_port()
CONFIG: Final = "/etc/misbridge/misbridge.toml"
TOOLS: Final = ("debootstrap", "dpkg-buildpackage", "dh_virtualenv", "lintian", "chroot")

_missing = [tool for tool in TOOLS if shutil.which(tool) is None]
_why_not = "needs root" if os.geteuid() != 0 else (f"needs {', '.join(_missing)} (make deb-deps)" if _missing else "")
if _why_not and os.environ.get("MISBRIDGE_REQUIRE_DEB") == "1":
    raise RuntimeError(f"make test-deb {_why_not}")
pytestmark = [pytest.mark.deb, pytest.mark.timeout(1800), pytest.mark.skipif(bool(_why_not), reason=_why_not)]


@dataclass(frozen=True)
class Release:
    """The two .deb files of one release."""

    version: str
    front: Path
    program: Path


def _build(version: str) -> Release:
    env = {**os.environ, "MISBRIDGE_VERSION": version, "PYTHON": str(REPO / ".venv" / "bin" / "python")}
    subprocess.run(["sh", str(REPO / "packaging" / "build-deb.sh")], check=True, env=env, capture_output=True)  # noqa: S603, S607
    front = DEB_DIR / f"misbridge_{version}-{REVISION}_all.deb"
    (program,) = DEB_DIR.glob(f"misbridge-{version}_{version}-{REVISION}_*.deb")
    return Release(version, front, program)


@pytest.fixture(scope="module")
def releases() -> tuple[Release, Release]:
    """Both releases, built from this tree (about a minute each)."""
    return _build(V1), _build(V2)


def test_lintian_accepts_both_packages(releases: tuple[Release, Release]) -> None:
    first, _ = releases
    result = subprocess.run(  # noqa: S603
        ["lintian", "--fail-on", "error,warning", str(first.front), str(first.program)],  # noqa: S607
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "E:" not in result.stdout
    assert "W:" not in result.stdout


@pytest.fixture
def till(tmp_path: Path, releases: tuple[Release, Release]) -> Iterator[Chroot]:
    """A fresh Debian 12 root with both releases' .deb files in /root/debs."""
    root = Chroot(DEB_DIR / f"till-{os.getpid()}")
    try:
        debs = root.path("/root/debs")
        debs.mkdir(parents=True)
        for release in releases:
            shutil.copy(release.front, debs)
            shutil.copy(release.program, debs)
        yield root
    finally:
        root.close()


def _debs(release: Release) -> str:
    return f"/root/debs/{release.program.name} /root/debs/{release.front.name}"


def _link(till: Chroot, name: str) -> str:
    return os.readlink(till.path(f"/opt/misbridge/{name}"))


def _configure(till: Chroot) -> None:
    """The till's configuration and signing key, as docs/operations.md has store IT write them."""
    till.run("head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/misbridge/credentials/ebuy-signing-key")
    till.run("chmod 0400 /etc/misbridge/credentials/ebuy-signing-key")
    till.path(CONFIG).write_text(
        f"""[device]
url = "/run/mispos-sim"

[backend]
url = "http://127.0.0.1:{BACKEND_PORT}/ebuyweb-posp/api"

[backend.signing]
key_file = "/etc/misbridge/credentials/ebuy-signing-key"

[api]
socket_port = {SOCKET_PORT}
http_port = {HTTP_PORT}
"""
    )


def _start_bench(till: Chroot, logs: Path) -> None:
    """The two simulators a technician runs on the bench, from the installed package."""
    till.spawn(
        f"misbridge-sim backend --port {BACKEND_PORT} --key-file /etc/misbridge/credentials/ebuy-signing-key",
        logs / "backend.log",
    )
    # The customer takes 6 s over the PIN: long enough to upgrade under a sale in flight.
    till.spawn("misbridge-sim pinpad --link /run/mispos-sim --pin-delay 6", logs / "pinpad.log")


def _health(till: Chroot) -> dict[str, Any] | None:
    result = till.run(f"misbridge status --json --config {CONFIG}", check=False)
    try:
        answer: dict[str, Any] = json.loads(result.stdout)
    except ValueError:
        return None
    return answer


def _start_service(till: Chroot, logs: Path) -> subprocess.Popen[bytes]:
    service = till.spawn(f"misbridge serve --config {CONFIG}", logs / "serve.log")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = _health(till)
        if health is not None and health.get("status") == "ready":
            return service
        assert service.poll() is None, (logs / "serve.log").read_text()
        time.sleep(0.5)
    raise AssertionError("misbridge did not become ready:\n" + (logs / "serve.log").read_text())


def _stop_service(service: subprocess.Popen[bytes]) -> int:
    service.send_signal(signal.SIGTERM)
    return service.wait(timeout=120)


async def _sale(trace_no: str) -> dict[str, Any]:
    body = card_redemption_request()
    body["traceNo"] = trace_no
    answer = await socket_request("127.0.0.1", SOCKET_PORT, envelope_for("cardRedemption", body), reply_timeout_s=120)
    return answer.body


def _journal_state(till: Chroot, trace_no: str) -> str:
    shown = till.run(f"misbridge journal show {trace_no} --config {CONFIG}").stdout
    state: str = json.loads(shown)["state"]
    return state


async def test_install_upgrade_mid_sale_rollback_downgrade_purge(
    till: Chroot, releases: tuple[Release, Release], tmp_path: Path
) -> None:
    first, second = releases
    # 1. Install the first release.
    till.run(f"dpkg -i {_debs(first)}")
    assert _link(till, "current") == f"releases/{V1}"
    assert till.run("misbridge --version").stdout.strip() == f"misbridge {V1}"
    assert till.run("id misbridge").returncode == 0
    assert till.path("/lib/udev/rules.d/99-misbridge-pinpad.rules").is_file()
    assert till.path("/usr/share/doc/misbridge/docs/operations.md").is_file()

    # 2. Configure, start, and begin a sale whose customer is slow over the PIN.
    _configure(till)
    _start_bench(till, tmp_path)
    service = _start_service(till, tmp_path)
    trace_no = new_trace_no()
    sale = asyncio.create_task(_sale(trace_no))
    await asyncio.sleep(2)
    health = _health(till)
    assert health is not None
    assert health["inFlight"] == 1
    assert health["version"] == V1

    # 3. Upgrade under the sale in flight: the links switch, the running process keeps its release.
    upgrade = await asyncio.to_thread(till.run, f"dpkg -i {_debs(second)}")
    assert "now running release" in upgrade.stdout, upgrade.stdout
    assert (_link(till, "current"), _link(till, "previous")) == (f"releases/{V2}", f"releases/{V1}")
    keep = till.path("/etc/apt/apt.conf.d/01misbridge-keep").read_text()
    assert f'"^misbridge-{V1.replace(".", chr(92) + ".")}$"' in keep
    assert "misbridge-" in keep.split(V1)[-1]
    assert till.run("misbridge --version").stdout.strip() == f"misbridge {V2}"
    assert not sale.done()

    # 4. systemctl restart's SIGTERM: the sale still completes, then the process exits 0.
    stopping = asyncio.create_task(asyncio.to_thread(_stop_service, service))
    answer = await asyncio.wait_for(sale, 60)
    assert answer["returnCode"] == "00", answer
    assert await stopping == 0
    service = _start_service(till, tmp_path)
    health = _health(till)
    assert health is not None
    assert health["version"] == V2
    assert _journal_state(till, trace_no) == "approved"
    second_sale = new_trace_no()
    assert (await _sale(second_sale))["returnCode"] == "00"
    assert _stop_service(service) == 0

    # 5. Roll back with one command (no systemd here: it says so and leaves the start to us).
    rollback = till.run("misbridgectl rollback", check=False)
    assert rollback.returncode == 0, rollback.stdout + rollback.stderr
    assert f"rolled back from {V2} to {V1}" in rollback.stdout
    assert (_link(till, "current"), _link(till, "previous")) == (f"releases/{V1}", f"releases/{V2}")
    assert till.run("misbridge --version").stdout.strip() == f"misbridge {V1}"
    service = _start_service(till, tmp_path)
    health = _health(till)
    assert health is not None
    assert health["version"] == V1
    assert [_journal_state(till, t) for t in (trace_no, second_sale)] == ["approved", "approved"]
    assert _stop_service(service) == 0
    assert "rolled back" in till.run("misbridgectl status").stdout

    # ... and a package downgrade with apt, after upgrading again.
    till.run(f"dpkg -i /root/debs/{second.front.name}")
    assert _link(till, "current") == f"releases/{V2}"
    till.run(f"apt-get install -y --allow-downgrades /root/debs/{first.front.name}")
    assert _link(till, "current") == f"releases/{V1}"
    assert till.run("misbridge --version").stdout.strip() == f"misbridge {V1}"

    # 6. apt would remove no release that a rollback needs; purge keeps only the journal.
    till.run(f"apt-mark auto misbridge-{V1} misbridge-{V2}")
    autoremove = till.run("apt-get -s autoremove").stdout
    assert "Remv misbridge" not in autoremove, autoremove
    purge = till.run(f"dpkg --purge misbridge misbridge-{V1} misbridge-{V2}")
    assert "/var/lib/misbridge (the journal and its backups) is kept" in purge.stdout
    assert not till.path("/opt/misbridge").exists() or not any(till.path("/opt/misbridge").iterdir())
    assert not till.path("/usr/bin/misbridge").exists()
    assert not till.path("/etc/apt/apt.conf.d/01misbridge-keep").exists()
    assert till.path("/var/lib/misbridge/journal.db").is_file()


#: The store's repository, as docs/operations.md "Automatic updates" has store IT publish it.
REPO_SCRIPT: Final = """
set -e
export GNUPGHOME=/root/gnupg
mkdir -p -m 0700 "$GNUPGHOME"
gpg --batch --quiet --passphrase '' --quick-gen-key 'Store IT test <it@store.invalid>' ed25519 sign never
gpg --batch --export > /usr/share/keyrings/store-it-archive-keyring.gpg
cd /srv/repo
apt-ftparchive packages . > Packages
apt-ftparchive -o APT::FTPArchive::Release::Origin='Store IT' -o APT::FTPArchive::Release::Label=misbridge \
    -o APT::FTPArchive::Release::Suite=bookworm-store -o APT::FTPArchive::Release::Codename=bookworm-store \
    release . > Release
gpg --batch --yes --clearsign -o InRelease Release
echo 'deb [signed-by=/usr/share/keyrings/store-it-archive-keyring.gpg] file:/srv/repo ./' \
    > /etc/apt/sources.list.d/misbridge-store.list
"""


def _decoy(till: Chroot, version: str) -> str:
    """A package of the store's repository that is not misbridge: unattended upgrades must leave it."""
    folder = till.path(f"/root/decoy-{version}")
    (folder / "DEBIAN").mkdir(parents=True)
    (folder / "DEBIAN" / "control").write_text(
        f"Package: store-decoy\nVersion: {version}\nArchitecture: all\nMaintainer: Store IT <it@store.invalid>\n"
        "Description: not misbridge\n decoy for the whitelist test\n"
    )
    till.run(f"dpkg-deb -b /root/decoy-{version} /root/store-decoy_{version}_all.deb >/dev/null")
    return f"/root/store-decoy_{version}_all.deb"


def test_unattended_upgrade_from_the_store_repository(till: Chroot, releases: tuple[Release, Release]) -> None:
    first, second = releases
    shutil.copy("/etc/resolv.conf", till.path("/etc/resolv.conf"))  # apt in the chroot fetches Debian's packages
    till.run("apt-get update -qq && apt-get install -y -qq --no-install-recommends unattended-upgrades apt-utils gnupg")
    till.run(f"dpkg -i {_debs(first)} {_decoy(till, '1.0')}")
    repo = till.path("/srv/repo")
    repo.mkdir(parents=True)
    for release in releases:
        shutil.copy(release.front, repo)
        shutil.copy(release.program, repo)
    shutil.copy(till.path(_decoy(till, "2.0")), repo)
    till.run(REPO_SCRIPT)
    shutil.copy(REPO / "packaging" / "apt" / "52unattended-upgrades-misbridge", till.path("/etc/apt/apt.conf.d/"))
    till.run("apt-get update -qq")

    dry = till.run("unattended-upgrade --dry-run --debug").stdout + till.run("true").stderr
    assert "origin=Store IT,label=misbridge,codename=bookworm-store" in dry
    run = till.run("unattended-upgrade -v")
    assert f"now running release {second.version}; previous: {first.version}" in run.stdout, run.stdout
    assert (_link(till, "current"), _link(till, "previous")) == (f"releases/{V2}", f"releases/{V1}")
    installed = till.run("dpkg-query -W -f='${Package} ${Version}\\n' 'misbridge*' store-decoy").stdout
    # The previous release stays for rollback (the keep file), and the decoy is not touched.
    assert f"misbridge-{V1} {V1}-{REVISION}" in installed
    assert f"misbridge {V2}-{REVISION}" in installed
    assert "store-decoy 1.0" in installed, installed


def _systemd_stand_in(till: Chroot) -> None:
    """The package scripts' view of a till with systemd: /run/systemd/system and a systemctl for misbridge."""
    shutil.copy(Path(__file__).with_name("fake-systemctl"), till.path("/usr/local/bin/systemctl"))
    till.path("/usr/local/bin/systemctl").chmod(0o755)
    till.path("/run/systemd/system").mkdir(parents=True, exist_ok=True)
    till.path("/usr/sbin/policy-rc.d").unlink()  # services may be restarted, as on a till


async def test_the_package_restarts_misbridge_only_after_the_sale_in_flight(
    till: Chroot, releases: tuple[Release, Release], tmp_path: Path
) -> None:
    first, second = releases
    _systemd_stand_in(till)
    installed = till.run(f"dpkg -i {_debs(first)}")
    assert "not configured yet" in installed.stdout  # and no start was tried without a configuration
    _configure(till)
    _start_bench(till, tmp_path)
    till.run("systemctl start misbridge.service")
    trace_no = new_trace_no()
    sale = asyncio.create_task(_sale(trace_no))
    await asyncio.sleep(2)
    health = _health(till)
    assert health is not None
    assert (health["inFlight"], health["version"]) == (1, V1)

    # The upgrade's postinst waits for the sale, restarts, and checks the new process's version.
    upgrade = asyncio.create_task(asyncio.to_thread(till.run, f"dpkg -i {_debs(second)}"))
    answer = await asyncio.wait_for(sale, 60)
    answered_at = time.monotonic()
    assert answer["returnCode"] == "00", answer
    done = await asyncio.wait_for(upgrade, 120)
    upgraded_at = time.monotonic()
    assert "waiting until no transaction is in flight" in done.stdout, done.stdout
    assert f"misbridge {V2} is running" in done.stdout, done.stdout
    assert upgraded_at > answered_at
    health = _health(till)
    assert health is not None
    assert health["version"] == V2
    assert _journal_state(till, trace_no) == "approved"
    calls = till.path("/var/log/fake-systemctl.calls").read_text()
    assert calls.count("restart misbridge.service") == 1, calls

    # misbridgectl rollback restarts too, between two transactions, and the journal stays.
    rollback = till.run("misbridgectl rollback")
    assert f"misbridge {V1} is running" in rollback.stdout, rollback.stdout
    health = _health(till)
    assert health is not None
    assert health["version"] == V1
    assert _journal_state(till, trace_no) == "approved"
    assert "previous:  " + V2 in till.run("misbridgectl status").stdout
