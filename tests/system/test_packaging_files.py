"""The Debian packaging's inputs agree with the tree (cheap checks; make test-deb builds the packages).

What ``packaging/debian/misbridge.install`` and ``misbridge.manpages`` name must exist, the
version the build reads must be ``misbridge.__version__`` and a valid package-name part, and
the unit files the package installs point at the documentation where the package puts it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import misbridge
from tests.system.tools import REPO

DEBIAN = REPO / "packaging" / "debian"
#: Files build-deb.sh generates into the build's copy before dpkg-buildpackage reads them.
GENERATED = {"build-units"}


def _listed(name: str) -> list[str]:
    lines = (DEBIAN / name).read_text(encoding="utf-8").splitlines()
    return [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]


def test_every_file_the_package_installs_is_in_the_tree() -> None:
    for source in _listed("misbridge.install") + _listed("misbridge.manpages") + _listed("misbridge.docs"):
        if source.split("/")[0] in GENERATED:
            continue
        assert (REPO / source).exists(), f"packaging/debian names {source}, which is not in the tree"


def test_the_units_the_package_installs_are_the_ones_in_systemd() -> None:
    generated = [
        s for s in _listed("misbridge.install") if s.startswith("build-units/") and s.endswith((".service", ".timer"))
    ]
    assert sorted(Path(s).name for s in generated) == sorted(p.name for p in (REPO / "systemd").iterdir())


def test_the_build_reads_the_one_version() -> None:
    script = (REPO / "packaging" / "build-deb.sh").read_text(encoding="utf-8")
    pattern = re.search(r"sed -n '(s/\^__version__[^']+)'", script)
    assert pattern is not None
    read = subprocess.run(  # noqa: S603 - fixed argv built here
        ["sed", "-n", pattern.group(1), str(REPO / "misbridge" / "__init__.py")],  # noqa: S607 - as build-deb.sh
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert read == misbridge.__version__
    # It becomes part of a package name (misbridge-<version>): Debian allows [a-z0-9.+-] there.
    assert re.fullmatch(r"[a-z0-9][a-z0-9.+]*", read)


def test_units_point_at_the_documentation_where_the_package_installs_it() -> None:
    docs = _listed("misbridge.docs")
    assert "docs" in docs  # installed as /usr/share/doc/misbridge/docs/
    for unit in (REPO / "systemd").iterdir():
        for line in unit.read_text(encoding="utf-8").splitlines():
            if line.startswith("Documentation=file:"):
                installed = line.removeprefix("Documentation=file:/usr/share/doc/misbridge/")
                assert (REPO / installed).is_file(), f"{unit.name}: {line}"


def test_the_tmpfiles_entries_name_the_unit_s_state_directory() -> None:
    entries = (DEBIAN / "misbridge.tmpfiles").read_text(encoding="utf-8")
    unit = (REPO / "systemd" / "misbridge.service").read_text(encoding="utf-8")
    assert "StateDirectory=misbridge" in unit
    assert "d /var/lib/misbridge 0750 misbridge misbridge -" in entries


def test_the_maintainer_scripts_are_valid_shell() -> None:
    for script in [
        *DEBIAN.glob("misbridge.post*"),
        *(REPO / "packaging" / "bin").iterdir(),
        REPO / "packaging" / "build-deb.sh",
    ]:
        subprocess.run(["sh", "-n", str(script)], check=True)  # noqa: S603, S607 - the tree's own scripts, sh from PATH


_LINK = re.compile(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)")


def test_the_installed_documentation_links_only_to_itself() -> None:
    # The package installs README.md and docs/ as /usr/share/doc/misbridge/{README.md,docs/}:
    # a relative link to anything else of the source tree would be broken on a till.
    installed = {REPO / "README.md", *(REPO / "docs").glob("*.md")}
    for page in sorted(installed):
        for target in _LINK.findall(page.read_text(encoding="utf-8")):
            resolved = (page.parent / target).resolve()
            assert resolved in installed, (
                f"{page.relative_to(REPO)} links to {target}, which the package does not install"
            )
