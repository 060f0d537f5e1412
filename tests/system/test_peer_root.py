"""Who is calling, with a real second user and the unit's sandbox (issue 10, item 5). Root only.

- A forked child drops to ``nobody`` (no groups, ``nogroup``) and connects over loopback TCP and a
  Unix socket: it reads as uid 65534 and is refused; the parent (root) on the same doors is served.
- The same over TCP inside a private mount namespace whose ``/proc`` is mounted
  ``subset=pid,hidepid=invisible`` (the unit's ProcSubset=pid and ProtectProc=invisible), with
  netlink blocked so the ``/proc/self/net`` fallback must answer.
- A user namespace that maps only root (what PrivateUsers=yes does to the POS user): start-up
  refuses an allow-list it cannot see, and a caller from another user reads as 65534.
"""

from __future__ import annotations

import errno
import grp
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from misbridge.api import peer, policy
from misbridge.api.peer import Caller
from misbridge.api.policy import CallerPolicy
from misbridge.config.settings import ApiSettings
from misbridge.errors import ReturnCode
from tests.system.tools import REPO

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0,
    reason="needs root: drops a forked child to another user and uses mount/user namespaces (run the suite as root)",
)

_REAL_SOCKET = socket.socket
_CHILD_TIMEOUT_S = 10


def _nobody() -> tuple[int, int]:
    """(uid, gid) of nobody:nogroup."""
    try:
        return pwd.getpwnam("nobody").pw_uid, grp.getgrnam("nogroup").gr_gid
    except KeyError:
        pytest.skip("the user database has no nobody:nogroup")


def _ordinary_user() -> tuple[int, int]:
    """(uid, gid) of an existing user other than root and nobody."""
    for user in pwd.getpwall():
        if user.pw_uid not in (0, policy.OVERFLOW_ID):
            return user.pw_uid, user.pw_gid
    pytest.skip("the user database has no user besides root and nobody")


def _connect_as(uid: int, gid: int, family: int, address: str | tuple[str, int]) -> int:
    """Fork a child that becomes ``uid``:``gid`` with no groups, connects, and waits for our close."""
    pid = os.fork()
    if pid:
        return pid
    status = 1
    try:
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
        with _REAL_SOCKET(family, socket.SOCK_STREAM) as client:
            client.settimeout(_CHILD_TIMEOUT_S)
            client.connect(address)
            client.recv(1)
        status = 0
    finally:
        os._exit(status)  # never run the parent's pytest machinery in the child


def _reaped(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@contextmanager
def _listening(family: int, address: str | tuple[str, int]) -> Iterator[socket.socket]:
    with _REAL_SOCKET(family, socket.SOCK_STREAM) as listener:
        listener.bind(address)
        listener.listen()
        listener.settimeout(_CHILD_TIMEOUT_S)
        yield listener


def _identify_caller_as(uid: int, gid: int, family: int) -> tuple[peer.PeerIdentity, int]:
    """Listen, let a child running as ``uid`` connect, and identify it: (identity, the child's pid)."""
    address: str | tuple[str, int] = (
        f"\0misbridge-peer-test-{os.getpid()}" if family == socket.AF_UNIX else ("127.0.0.1", 0)
    )  # an abstract Unix socket: no file permissions stand between nobody and the test
    with _listening(family, address) as listener:
        child = _connect_as(uid, gid, family, listener.getsockname())
        try:
            accepted, _ = listener.accept()
            with accepted:
                return CallerPolicy.allow_all().identify(accepted), child
        finally:
            assert _reaped(child) == 0


def _identify_myself(family: int) -> peer.PeerIdentity:
    address: str | tuple[str, int] = f"\0misbridge-peer-self-{os.getpid()}" if family == socket.AF_UNIX else (
        "127.0.0.1", 0
    )  # fmt: skip
    with _listening(family, address) as listener, _REAL_SOCKET(family, socket.SOCK_STREAM) as client:
        client.connect(listener.getsockname())
        accepted, _ = listener.accept()
        with accepted:
            return CallerPolicy.allow_all().identify(accepted)


def _block_netlink() -> None:
    def without_netlink(family: int = -1, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_NETLINK:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return _REAL_SOCKET(family, *args, **kwargs)

    socket.socket = without_netlink  # type: ignore[assignment,misc]


@pytest.mark.parametrize(
    ("family", "netlink", "source"),
    [
        (socket.AF_INET, True, peer.SOURCE_SOCK_DIAG),
        (socket.AF_INET, False, peer.SOURCE_PROC),
        (socket.AF_UNIX, True, peer.SOURCE_PEERCRED),
    ],
    ids=["tcp-sock_diag", "tcp-proc", "unix"],
)
def test_nobody_is_refused_while_root_is_served(
    family: int, netlink: bool, source: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not netlink:
        monkeypatch.setattr(socket, "socket", socket.socket)  # undone after the test
        _block_netlink()
    uid, gid = _nobody()
    policy = CallerPolicy.from_settings(ApiSettings(allow_root=True, allow_self=True))
    stranger, child = _identify_caller_as(uid, gid, family)
    unix = family == socket.AF_UNIX
    assert stranger == Caller(uid, source, child if unix else None)
    assert policy.refusal(stranger) is ReturnCode.CALLER_NOT_ALLOWED
    myself = _identify_myself(family)
    assert myself == Caller(0, source, os.getpid() if unix else None)
    assert policy.refusal(myself) is None


def test_another_user_is_named_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    uid, gid = _ordinary_user()
    name = pwd.getpwuid(uid).pw_name
    for family in (socket.AF_INET, socket.AF_UNIX):
        caller, _child = _identify_caller_as(uid, gid, family)
        assert isinstance(caller, Caller)
        assert caller.uid == uid
        only_them = CallerPolicy.from_settings(ApiSettings(allowed_users=[name], allow_root=False, allow_self=False))
        assert only_them.refusal(caller) is None


# --- The unit's /proc: subset=pid, hidepid=invisible ---------------------------------------------------

#: Runs inside the namespaces: identifies root and nobody over TCP with netlink blocked, prints JSON.
_INSIDE = """
import json, os, socket, sys
from tests.system import test_peer_root as here
here._block_netlink()
uid, gid = here._nobody()
identities = [here._identify_caller_as(uid, gid, socket.AF_INET)[0], here._identify_myself(socket.AF_INET)]
print(json.dumps({"proc_net_exists": os.path.exists("/proc/net"), "identities": [repr(i) for i in identities]}))
"""


def _run_inside(prefix: list[str], code: str) -> Any:
    result = subprocess.run(  # noqa: S603 - fixed argv built here
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_the_proc_fallback_works_under_proc_subset_pid() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is not installed (util-linux)")
    mount_then_exec = 'mount -t proc -o subset=pid,hidepid=invisible proc /proc && exec "$@"'
    prefix = [unshare, "--mount", "--propagation", "private", "sh", "-c", mount_then_exec, "sh"]
    seen = _run_inside(prefix, _INSIDE)
    assert seen["proc_net_exists"] is False, "the private /proc was not mounted with subset=pid"
    nobody_uid, _ = _nobody()
    assert seen["identities"] == [
        repr(Caller(nobody_uid, peer.SOURCE_PROC)), repr(Caller(0, peer.SOURCE_PROC)),
    ]  # fmt: skip


# --- PrivateUsers=: a user namespace that maps root only -------------------------------------------------

_IN_PRIVATE_USERS = """
import json, sys
from misbridge.api.policy import CallerPolicy
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError
try:
    CallerPolicy.from_settings(ApiSettings(allowed_users=[sys.argv[1]]))
    print(json.dumps("started"))
except ConfigError as err:
    print(json.dumps(str(err)))
"""

_LISTEN_IN_PRIVATE_USERS = """
import json, socket, sys
from misbridge.api.policy import CallerPolicy
with socket.socket() as listener:
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    print(listener.getsockname()[1], flush=True)
    accepted, _ = listener.accept()
    with accepted:
        print(json.dumps(repr(CallerPolicy.allow_all().identify(accepted))))
"""


def test_private_users_hides_the_pos_user() -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare is not installed (util-linux)")
    uid, gid = _ordinary_user()
    prefix = [unshare, "--user", "--map-root-user"]
    refused = _run_inside([*prefix], _IN_PRIVATE_USERS.replace("sys.argv[1]", repr(pwd.getpwuid(uid).pw_name)))
    assert "api.allowed_users" in refused
    assert "is not mapped" in refused
    assert "PrivateUsers=" in refused
    assert _caller_seen_from_private_users(prefix, uid, gid) == repr(Caller(policy.OVERFLOW_ID, peer.SOURCE_SOCK_DIAG))


def _caller_seen_from_private_users(prefix: list[str], uid: int, gid: int) -> str:
    with subprocess.Popen(  # noqa: S603 - fixed argv built here
        [*prefix, sys.executable, "-c", _LISTEN_IN_PRIVATE_USERS], stdout=subprocess.PIPE, text=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    ) as server:  # fmt: skip
        assert server.stdout is not None
        port = int(server.stdout.readline())
        child = _connect_as(uid, gid, socket.AF_INET, ("127.0.0.1", port))
        seen = json.loads(server.stdout.readline())
        assert server.wait(timeout=30) == 0
        assert _reaped(child) == 0
    return str(seen)
