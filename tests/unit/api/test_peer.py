"""Who is calling (issue 10, item 5): the kernel's answer for both doors, and the allow-list.

Everything runs on real sockets against the real kernel tables. The allow-list is flipped
instead of the caller (the current user allowed, or another existing user allowed with root and
self switched off), so no second user is needed; tests/system/test_peer_root.py adds a real
second user (nobody) when run as root. Each TCP test runs twice: through NETLINK_SOCK_DIAG, and
with netlink blocked so the /proc/self/net/tcp* fallback answers.
"""

from __future__ import annotations

import errno
import grp
import os
import pwd
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from misbridge.api import peer, policy
from misbridge.api.peer import Caller, Unidentified, describe
from misbridge.api.policy import CallerPolicy
from misbridge.app import cli
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError, ReturnCode

ME = os.getuid()
FULL_MAP = "         0          0 4294967295\n"
#: What PrivateUsers=yes leaves a service: root and its own user (999 here), nothing else.
PRIVATE_USERS_MAP = "         0          0          1\n       999        999          1\n"
_REAL_SOCKET = socket.socket


def _other_user() -> pwd.struct_passwd:
    """An existing user that is neither the current one, root, nor the overflow user."""
    for user in pwd.getpwall():
        if user.pw_uid not in (ME, 0, policy.OVERFLOW_ID):
            return user
    pytest.skip("the user database has no user besides the current one, root and nobody")


def _group_without_me() -> grp.struct_group:
    mine = set(os.getgrouplist(pwd.getpwuid(ME).pw_name, os.getgid()))
    for group in grp.getgrall():
        if group.gr_gid not in mine and group.gr_gid != policy.OVERFLOW_ID:
            return group
    pytest.skip("every group of the database contains the current user")


class _NetlinkBlocked:
    """socket.socket, except that AF_NETLINK fails as under RestrictAddressFamilies= without it."""

    def __call__(self, family: int = -1, *args: Any, **kwargs: Any) -> socket.socket:
        if family == socket.AF_NETLINK:
            raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
        return _REAL_SOCKET(family, *args, **kwargs)


@pytest.fixture(params=[peer.SOURCE_SOCK_DIAG, peer.SOURCE_PROC])
def lookup(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The table the TCP lookup must use: netlink as is, or /proc with netlink blocked."""
    if request.param == peer.SOURCE_PROC:
        monkeypatch.setattr(socket, "socket", _NetlinkBlocked())
    return str(request.param)


@contextmanager
def tcp_pair(
    client_address: str = "127.0.0.1", *, listen_address: str = "127.0.0.1", client: socket.socket | None = None
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """(client, accepted) over loopback TCP; the families follow the addresses."""
    listen_family = socket.AF_INET6 if ":" in listen_address else socket.AF_INET
    client_family = socket.AF_INET6 if ":" in client_address else socket.AF_INET
    with _REAL_SOCKET(listen_family, socket.SOCK_STREAM) as listener:
        if listen_family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((listen_address, 0))
        listener.listen()
        connecting = client or _REAL_SOCKET(client_family, socket.SOCK_STREAM)
        with connecting:
            connecting.settimeout(5)
            connecting.connect((client_address, listener.getsockname()[1]))
            accepted, _ = listener.accept()
            with accepted:
                accepted.settimeout(5)
                yield connecting, accepted


@pytest.fixture(autouse=True)
def _every_uid_mapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The allow-list tests must not depend on the user namespace they run in (a container may map
    # few uids); the start-up check has its own tests below, with explicit maps.
    full = tmp_path / "full_uid_map"
    full.write_text(FULL_MAP, encoding="ascii")
    monkeypatch.setattr(policy, "UID_MAP", full)


def _policy(**api: Any) -> CallerPolicy:
    return CallerPolicy.from_settings(ApiSettings(**api))


def _only(*users: str) -> CallerPolicy:
    """Only ``users``: root and the daemon's own user switched off."""
    return _policy(allowed_users=list(users), allow_root=False, allow_self=False)


# --- Loopback TCP ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("client_address", "listen_address"),
    [("127.0.0.1", "127.0.0.1"), ("::ffff:127.0.0.1", "127.0.0.1"), ("127.0.0.1", "::"), ("::1", "::1")],
    ids=["ipv4", "ipv6-client-to-mapped-ipv4", "ipv4-client-to-dual-stack", "ipv6"],
)
def test_a_loopback_tcp_caller_is_identified_as_its_user(lookup: str, client_address: str, listen_address: str) -> None:
    with tcp_pair(client_address, listen_address=listen_address) as (_client, accepted):
        assert CallerPolicy.allow_all().identify(accepted) == Caller(ME, lookup)


def test_the_allow_list_decides_on_tcp(lookup: str) -> None:
    me = pwd.getpwuid(ME).pw_name
    other = _other_user().pw_name
    with tcp_pair() as (_client, accepted):
        identity = CallerPolicy.allow_all().identify(accepted)
        assert _only(me).refusal(identity) is None
        assert _only(str(ME)).refusal(identity) is None
        assert _only(other).refusal(identity) is ReturnCode.CALLER_NOT_ALLOWED


def test_an_orphaned_peer_is_unidentified_never_root(lookup: str) -> None:
    # The client sent its request and closed before misbridge looked: the kernel keeps its socket
    # as an orphan (FIN_WAIT*, later TIME_WAIT) that reads as uid 0 with inode 0.
    with tcp_pair() as (client, accepted):
        client.sendall(b"\x00\x02{}")
        client.close()
        identity = CallerPolicy.allow_all().identify(accepted)
        assert isinstance(identity, Unidentified), identity
        assert "closed" in identity.reason
        assert _policy(allow_root=True).refusal(identity) is ReturnCode.CALLER_UNIDENTIFIED


def test_a_listener_on_the_freed_port_is_refused(lookup: str) -> None:
    # Once the client's socket is gone, the kernel's exact lookup answers with whatever listens on
    # its old port (here: one of ours, so a wrong answer would be "allowed").
    client = _REAL_SOCKET(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_LINGER2, 1)  # leave FIN_WAIT2 after ~1 s
    # Address and port reuse on both sides let the listener take the port while our own old
    # socket lingers, so the test does not wait on the kernel's timers.
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    # An explicit bind takes a port no other socket uses; connect()'s own choice may share its
    # port with another program's TIME_WAIT connection, which would block the listener for 60 s.
    client.bind(("127.0.0.1", 0))
    with tcp_pair(client=client) as (_, accepted):
        client_port = client.getsockname()[1]
        client.shutdown(socket.SHUT_WR)
        assert accepted.recv(1) == b""  # the FIN arrived: the client is in FIN_WAIT2
        client.close()
        with _listener_on(client_port):
            identity = CallerPolicy.allow_all().identify(accepted)
            assert isinstance(identity, Unidentified), identity
            assert _policy(allow_root=True).refusal(identity) is ReturnCode.CALLER_UNIDENTIFIED


@contextmanager
def _listener_on(port: int) -> Iterator[None]:
    """A listener on 127.0.0.1:``port``, as soon as the old socket there is fully gone (≤ 10 s)."""
    deadline = time.monotonic() + 10
    while True:
        listener = _REAL_SOCKET(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        try:
            listener.bind(("127.0.0.1", port))
            break
        except OSError as err:
            listener.close()
            if err.errno != errno.EADDRINUSE or time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    with listener:
        listener.listen()
        yield


def test_a_peer_that_is_not_on_loopback_is_unidentified(lookup: str) -> None:
    address = _non_loopback_address()
    with tcp_pair(address, listen_address=address) as (_client, accepted):
        identity = CallerPolicy.allow_all().identify(accepted)
        assert isinstance(identity, Unidentified), identity
        assert "not a loopback address" in identity.reason
        assert _policy().refusal(identity) is ReturnCode.CALLER_UNIDENTIFIED


def _non_loopback_address() -> str:
    with _REAL_SOCKET(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("203.0.113.1", 9))  # no packet is sent: this only picks a source address
        except OSError:
            pytest.skip("this machine has no route off loopback, hence no non-loopback address")
        address = str(probe.getsockname()[0])
    if address.startswith("127."):
        pytest.skip("this machine has no non-loopback address")
    return address


def test_the_proc_fallback_is_used_only_when_netlink_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with tcp_pair() as (_client, accepted):
        assert peer.identify_peer(accepted) == Caller(ME, peer.SOURCE_SOCK_DIAG)
        monkeypatch.setattr(socket, "socket", _NetlinkBlocked())
        assert peer.identify_peer(accepted) == Caller(ME, peer.SOURCE_PROC)


def test_an_unreadable_table_is_unidentified(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(socket, "socket", _NetlinkBlocked())
    monkeypatch.setattr(peer, "PROC_TCP_TABLES", (tmp_path / "absent",))
    with tcp_pair() as (_client, accepted):
        identity = peer.identify_peer(accepted)
    assert isinstance(identity, Unidentified)
    assert "could not be read" in identity.reason


def test_the_sock_diag_lookup_is_fast() -> None:
    # Runs in the event loop on every accept; the kernel answers in about 0.015 ms.
    with tcp_pair() as (_client, accepted):
        started = time.perf_counter()
        for _ in range(200):
            assert peer.identify_peer(accepted) == Caller(ME, peer.SOURCE_SOCK_DIAG)
        per_call = (time.perf_counter() - started) / 200
    assert per_call < 0.002, f"{per_call * 1000:.3f} ms per lookup"


# --- Unix sockets ---------------------------------------------------------------------------------


def test_a_unix_socket_caller_is_identified_with_its_pid(tmp_path: Path) -> None:
    path = str(tmp_path / "door.sock")
    with _REAL_SOCKET(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(path)
        listener.listen()
        with _REAL_SOCKET(socket.AF_UNIX, socket.SOCK_STREAM) as client:
            client.connect(path)
            accepted, _ = listener.accept()
            with accepted:
                identity = CallerPolicy.allow_all().identify(accepted)
    assert identity == Caller(ME, peer.SOURCE_PEERCRED, os.getpid())


def test_the_allow_list_decides_on_unix_sockets_too() -> None:
    me = pwd.getpwuid(ME).pw_name
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours, theirs:
        identity = CallerPolicy.allow_all().identify(ours)
    assert _only(me).refusal(identity) is None
    assert _only(_other_user().pw_name).refusal(identity) is ReturnCode.CALLER_NOT_ALLOWED


def test_a_unix_caller_that_already_left_is_still_identified() -> None:
    # SO_PEERCRED is recorded at connect(): it survives the peer closing (unlike the TCP table).
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    theirs.close()
    with ours:
        assert CallerPolicy.allow_all().identify(ours) == Caller(ME, peer.SOURCE_PEERCRED, os.getpid())


# --- The allow-list ---------------------------------------------------------------------------------


def test_root_and_self_are_allowed_by_default_and_can_be_switched_off() -> None:
    other = _other_user()
    default = _policy()
    assert default.allows(0)
    assert default.allows(ME)
    assert not default.allows(other.pw_uid)
    strict = _policy(allow_root=False, allow_self=False)
    assert not strict.allows(0)
    assert not strict.allows(ME)


def test_groups_come_from_the_user_database() -> None:
    other = _other_user()
    primary = grp.getgrgid(other.pw_gid).gr_name
    by_group = _policy(allowed_groups=[primary], allow_root=False, allow_self=False)
    assert by_group.allows(other.pw_uid)
    assert _policy(allowed_groups=[str(other.pw_gid)], allow_root=False, allow_self=False).allows(other.pw_uid)
    stranger = _group_without_me()
    assert not _policy(allowed_groups=[stranger.gr_name], allow_root=False, allow_self=False).allows(ME)


def test_an_unknown_name_is_a_config_error_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"api\.allowed_users: no local user is named 'no-such-pos-user'"):
        _policy(allowed_users=["no-such-pos-user"])
    with pytest.raises(ConfigError, match=r"api\.allowed_groups: no local group is named 'no-such-group'"):
        _policy(allowed_groups=["no-such-group"])
    with pytest.raises(ConfigError, match=r"api\.allowed_users: an entry is empty"):
        _policy(allowed_users=[""])


@pytest.mark.parametrize("entry", ["65534", "nobody"])
def test_the_overflow_user_is_never_allowed(entry: str) -> None:
    if not entry.isdigit() and _uid_of(entry) != policy.OVERFLOW_ID:
        pytest.skip(f"{entry} is not uid 65534 on this machine")
    with pytest.raises(ConfigError, match=r"api\.allowed_users: .*65534.*never allowed"):
        _policy(allowed_users=[entry])
    with pytest.raises(ConfigError, match=r"api\.allowed_groups: .*65534.*never allowed"):
        _policy(allowed_groups=["65534"])
    assert not CallerPolicy(users=[policy.AllowedId(policy.OVERFLOW_ID, "nobody")]).allows(policy.OVERFLOW_ID)


def _uid_of(name: str) -> int | None:
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        return None


def test_allow_all_lets_everyone_in() -> None:
    everyone = CallerPolicy.allow_all()
    assert everyone.refusal(Caller(_other_user().pw_uid, peer.SOURCE_SOCK_DIAG)) is None
    assert everyone.refusal(Unidentified("gone")) is None


def test_an_unidentified_caller_is_refused_with_mb75_even_when_everyone_is_listed() -> None:
    assert _policy(allow_root=True, allow_self=True).refusal(Unidentified("gone")) is ReturnCode.CALLER_UNIDENTIFIED


def test_describe_is_one_line_for_the_log() -> None:
    assert describe(Caller(1001, peer.SOURCE_PEERCRED, 4242)) == "uid=1001 pid=4242 via SO_PEERCRED"
    assert describe(Caller(1001, peer.SOURCE_SOCK_DIAG)) == "uid=1001 via sock_diag"
    assert describe(Unidentified("the peer already closed its socket")) == (
        "uid=unknown (the peer already closed its socket)"
    )


# --- Start-up: the user namespace must show the allowed users ------------------------------------------


def _uid_map(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "uid_map"
    path.write_text(text, encoding="ascii")
    return path


def test_start_up_refuses_an_allowed_user_hidden_by_private_users(tmp_path: Path) -> None:
    other = _other_user()
    partial = _uid_map(tmp_path, PRIVATE_USERS_MAP)
    with pytest.raises(ConfigError, match=rf"api\.allowed_users: {other.pw_name} \(uid {other.pw_uid}\) is not mapped"):
        CallerPolicy.from_settings(ApiSettings(allowed_users=[other.pw_name]), uid_map=partial)
    CallerPolicy.from_settings(ApiSettings(allowed_users=[other.pw_name]), uid_map=_uid_map(tmp_path, FULL_MAP))


def test_start_up_refuses_a_group_member_hidden_by_private_users(tmp_path: Path) -> None:
    other = _other_user()
    group = grp.getgrgid(other.pw_gid).gr_name
    with pytest.raises(ConfigError, match=rf"api\.allowed_groups: {group} member .*PrivateUsers="):
        CallerPolicy.from_settings(
            ApiSettings(allowed_groups=[group]), uid_map=_uid_map(tmp_path, PRIVATE_USERS_MAP.replace("999", str(ME)))
        )


def test_start_up_refuses_root_when_it_is_unmapped(tmp_path: Path) -> None:
    no_root = _uid_map(tmp_path, f"{ME + 1} {ME + 1} 1\n")
    with pytest.raises(ConfigError, match=r"api\.allow_root: root \(uid 0\) is not mapped"):
        CallerPolicy.from_settings(ApiSettings(allow_root=True), uid_map=no_root)
    CallerPolicy.from_settings(ApiSettings(allow_root=False), uid_map=no_root)


def test_a_shifted_container_map_is_fine(tmp_path: Path) -> None:
    # An unprivileged container maps its uids 0-65535 to 100000-165535 on the host; inside, the
    # user database and the kernel's answers agree.
    other = _other_user()
    shifted = _uid_map(tmp_path, "0 100000 65536\n")
    CallerPolicy.from_settings(ApiSettings(allowed_users=[other.pw_name]), uid_map=shifted)


def test_start_up_check_reads_the_real_uid_map_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.undo()
    assert Path("/proc/self/uid_map") == policy.UID_MAP


# --- check-config ---------------------------------------------------------------------------------------


def test_check_config_prints_the_resolved_allow_list(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    credentials = tmp_path / "credentials"  # check-config runs serve's check, the signing key's lookup too
    credentials.mkdir()
    (credentials / "ebuy-signing-key").write_text("0123456789abcdef\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    other = _other_user()
    group = grp.getgrgid(other.pw_gid)
    config = tmp_path / "misbridge.toml"
    config.write_text(
        f'[api]\nallowed_users = ["{other.pw_name}"]\nallowed_groups = ["{group.gr_gid}"]\nallow_self = false\n',
        encoding="utf-8",
    )
    assert cli.main(["check-config", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{config}: OK"
    assert "  root (uid 0): api.allow_root" in out
    assert f"  user {other.pw_name} (uid {other.pw_uid}): api.allowed_users" in out
    assert any(line.startswith(f"  members of group {group.gr_name} (gid {group.gr_gid}): ") for line in out)
    assert not any("api.allow_self" in line for line in out)


def test_check_config_names_an_unknown_user(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "misbridge.toml"
    config.write_text('[api]\nallowed_users = ["no-such-pos-user"]\n', encoding="utf-8")
    assert cli.main(["check-config", "--config", str(config)]) == 2
    assert "api.allowed_users: no local user is named 'no-such-pos-user'" in capsys.readouterr().err
