"""Who is calling: the local user behind a connection to either front door (issue 10, item 5).

The e-Buy socket envelope has no room for a credential, so misbridge asks the kernel which user
opened the peer's socket, before it reads a single byte (docs/operations.md, "Who may talk to
misbridge"):

- Unix socket: ``SO_PEERCRED`` (uid and pid at ``connect()`` time).
- Loopback TCP: one exact ``NETLINK_SOCK_DIAG`` query for the peer's socket by its 4-tuple; when
  the netlink socket cannot be created, a scan of ``/proc/self/net/tcp`` and ``tcp6``. Both read
  the same kernel table and go through the same checks (:func:`_verdict`).
- Anything else (a non-loopback peer, another socket family): unidentified, hence refused.

Group membership comes from the user database (``pwd``/``grp``), the same way for both doors.
"""

from __future__ import annotations

import errno
import grp
import ipaddress
import os
import pwd
import socket
import struct
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError, ReturnCode

#: The kernel's overflow uid/gid: every user a user namespace cannot map reads as this one, so
#: allowing it would allow every unmapped user. Never allowed, whatever the configuration says.
OVERFLOW_ID = 65534
#: Where the start-up check reads this process's uid mapping (PrivateUsers= would shrink it).
UID_MAP = Path("/proc/self/uid_map")
#: The fallback socket tables. ``/proc/self/net``, not ``/proc/net``: the latter is hidden under
#: the unit's ProcSubset=pid, the former is not, and both list every socket of the namespace.
PROC_TCP_TABLES = (Path("/proc/self/net/tcp"), Path("/proc/self/net/tcp6"))
#: How long a uid's groups from the user database are reused (an NSS lookup may be slow).
GROUP_CACHE_S = 10.0

SOURCE_PEERCRED = "SO_PEERCRED"
SOURCE_SOCK_DIAG = "sock_diag"
SOURCE_PROC = "/proc/self/net/tcp"

_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid: 16 bytes
_DIAG_REQUEST = struct.Struct("=BBBxI")  # family, protocol, ext, pad, states: then the 48-byte sockid
_SOCKID_PORTS_ADDRESSES = struct.Struct("!HH16s16s")  # sport, dport, src, dst (network order)
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie (two words)
_NO_COOKIE = 0xFFFFFFFF
_ALL_STATES = 0xFFFFFFFF
_DIAG_MSG_SIZE = 72
_DIAG_UID_INODE = struct.Struct("=II")
_DIAG_UID_OFFSET = 64  # in inet_diag_msg, after the 16-byte nlmsghdr
_NETLINK_REPLY_BYTES = 8192
_NETLINK_TIMEOUT_S = 0.2  # the kernel answers inside sendmsg(); this only bounds the impossible

_TCP_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
               7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}  # fmt: skip
#: States in which the peer's socket still belongs to the program that connected it.
_CONNECTED_STATES = frozenset({1, 4, 5})

_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_Endpoint = tuple[_IpAddress, int]


@dataclass(frozen=True)
class Caller:
    """An identified local peer: the uid that opened its socket, how we know, its pid if known.

    The pid (Unix sockets only) is for the log; it can be recycled, so never decide on it.
    """

    uid: int
    source: str
    pid: int | None = None


@dataclass(frozen=True)
class Unidentified:
    """A peer whose user could not be established (always refused)."""

    reason: str


PeerIdentity = Caller | Unidentified


def describe(identity: PeerIdentity) -> str:
    """One log-ready line: ``uid=1001 pid=4242 via SO_PEERCRED`` or ``uid=unknown (<reason>)``."""
    if isinstance(identity, Unidentified):
        return f"uid=unknown ({identity.reason})"
    pid = f" pid={identity.pid}" if identity.pid is not None else ""
    return f"uid={identity.uid}{pid} via {identity.source}"


# --- Identification ---------------------------------------------------------------------------


def identify_peer(sock: socket.socket) -> PeerIdentity:
    """Who opened the peer end of ``sock``, a connected Unix or loopback TCP stream socket.

    Never raises for a peer that misbehaves or vanished: that is an :class:`Unidentified`.
    """
    if sock.family == socket.AF_UNIX:
        return _identify_unix(sock)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        return _identify_tcp(sock)
    return Unidentified(f"socket family {sock.family!r} is not a front door's")


def _identify_unix(sock: socket.socket) -> PeerIdentity:
    ucred = struct.Struct("=iII")  # pid_t pid, uid_t uid, gid_t gid
    try:
        pid, uid, _gid = ucred.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, ucred.size))
    except OSError as err:
        return Unidentified(f"SO_PEERCRED failed: {err.strerror}")
    return Caller(uid, SOURCE_PEERCRED, pid if pid > 0 else None)


def _identify_tcp(sock: socket.socket) -> PeerIdentity:
    try:
        peer = _endpoint_of(sock.getpeername())
        local = _endpoint_of(sock.getsockname())
    except (OSError, ValueError) as err:
        return Unidentified(f"the connection is already gone ({err})")
    if not peer[0].is_loopback:
        return Unidentified(f"{peer[0]} is not a loopback address; only local programs can be identified")
    try:
        return _verdict(_query_sock_diag(peer, local), peer, local, SOURCE_SOCK_DIAG)
    except _NetlinkUnavailable as err:
        _warn_netlink_unavailable(str(err))
    try:
        return _verdict(_scan_proc_tables(peer, local), peer, local, SOURCE_PROC)
    except OSError as err:
        return Unidentified(f"the kernel's socket table could not be read ({err.strerror})")


def _endpoint_of(address: tuple[str, int] | tuple[str, int, int, int]) -> _Endpoint:
    return _unmapped(ipaddress.ip_address(address[0])), address[1]


def _unmapped(address: _IpAddress) -> _IpAddress:
    """``::ffff:127.0.0.1`` → ``127.0.0.1``, so both spellings of a peer compare equal."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class _TableEntry:
    """One row of the kernel's TCP socket table, as netlink or /proc gives it."""

    peer: _Endpoint  # the socket's own (local) end: the caller's address and port
    local: _Endpoint  # its remote end: our address and port
    state: int
    uid: int
    inode: int


def _verdict(entry: _TableEntry | None, peer: _Endpoint, local: _Endpoint, source: str) -> PeerIdentity:
    """The identity an entry proves, or why it proves none; one rule set for netlink and /proc."""
    if entry is None:
        return Unidentified("the peer's socket is not in the kernel's table (it closed)")
    state = _TCP_STATES.get(entry.state, str(entry.state))
    if (entry.peer, entry.local) != (peer, local):
        # The kernel's exact lookup falls back to a listener on the peer's old port.
        return Unidentified(f"the peer's socket is gone; the kernel named another socket ({state})")
    if entry.inode == 0:
        # An orphaned socket (closed by its program, FIN_WAIT2/TIME_WAIT) reads as uid 0: not root.
        return Unidentified(f"the peer already closed its socket ({state}, no owner)")
    if entry.state not in _CONNECTED_STATES:
        return Unidentified(f"the peer's socket is not connected ({state})")
    return Caller(entry.uid, source)


# --- NETLINK_SOCK_DIAG: one exact query by 4-tuple ------------------------------------------------


class _NetlinkUnavailable(Exception):
    """The netlink socket or query cannot be used here; the /proc fallback takes over."""


def _query_sock_diag(peer: _Endpoint, local: _Endpoint) -> _TableEntry | None:
    """The kernel's entry for the socket whose local end is ``peer`` and remote end ``local``."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG) as diag:
            diag.settimeout(_NETLINK_TIMEOUT_S)
            diag.sendto(_sock_diag_request(peer, local), (0, 0))
            reply = diag.recv(_NETLINK_REPLY_BYTES)
    except OSError as err:  # EAFNOSUPPORT/EPERM from a sandbox, or anything odd: /proc still works
        raise _NetlinkUnavailable(f"sock_diag netlink: {err.strerror or err}") from err
    return _parse_sock_diag_reply(reply)


def _sock_diag_request(peer: _Endpoint, local: _Endpoint) -> bytes:
    # For an IPv4 pair the kernel's AF_INET lookup also finds AF_INET6 sockets using mapped addresses.
    family = socket.AF_INET if peer[0].version == 4 else socket.AF_INET6
    sockid = _SOCKID_PORTS_ADDRESSES.pack(peer[1], local[1], _padded(peer[0]), _padded(local[0]))
    sockid += _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
    body = _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, _ALL_STATES) + sockid
    header = _NLMSG_HEADER.pack(_NLMSG_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    return header + body


def _padded(address: _IpAddress) -> bytes:
    return address.packed.ljust(16, b"\0")


def _parse_sock_diag_reply(reply: bytes) -> _TableEntry | None:
    header = _NLMSG_HEADER.size
    if len(reply) < header + 4:
        raise _NetlinkUnavailable(f"sock_diag netlink: a {len(reply)}-byte reply")
    _length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(reply)
    if kind == _NLMSG_ERROR:
        (error,) = struct.unpack_from("=i", reply, header)
        if error == -errno.ENOENT:
            return None
        raise _NetlinkUnavailable(f"sock_diag netlink: {os.strerror(-error)}")
    if kind != _SOCK_DIAG_BY_FAMILY or len(reply) < header + _DIAG_MSG_SIZE:
        raise _NetlinkUnavailable(f"sock_diag netlink: unexpected reply type {kind}, {len(reply)} bytes")
    family, state = struct.unpack_from("=BB", reply, header)
    sport, dport, src, dst = _SOCKID_PORTS_ADDRESSES.unpack_from(reply, header + 4)
    uid, inode = _DIAG_UID_INODE.unpack_from(reply, header + _DIAG_UID_OFFSET)
    return _TableEntry(
        peer=(_reply_address(family, src), sport), local=(_reply_address(family, dst), dport),
        state=state, uid=uid, inode=inode,
    )  # fmt: skip


def _reply_address(family: int, raw: bytes) -> _IpAddress:
    if family == socket.AF_INET:
        return ipaddress.IPv4Address(raw[:4])
    return _unmapped(ipaddress.IPv6Address(raw))


_netlink_warned = False


def _warn_netlink_unavailable(why: str) -> None:
    global _netlink_warned  # one warning per process, not one per connection
    if not _netlink_warned:
        _netlink_warned = True
        logger.warning("{}; identifying callers from /proc/self/net/tcp instead (slower)", why)


# --- Fallback: /proc/self/net/tcp and tcp6 ----------------------------------------------------------


def _scan_proc_tables(peer: _Endpoint, local: _Endpoint) -> _TableEntry | None:
    """The row of the peer's socket in the kernel's text tables (an AF_INET6 client may be in tcp6)."""
    peer_fields = _proc_spellings(peer)
    local_fields = _proc_spellings(local)
    for table in PROC_TCP_TABLES:
        for fields in _proc_rows(table):
            if fields[1] in peer_fields and fields[2] in local_fields:
                return _TableEntry(peer, local, state=int(fields[3], 16), uid=int(fields[7]), inode=int(fields[9]))
    return None


def _proc_rows(table: Path) -> Iterator[list[str]]:
    with table.open(encoding="ascii") as rows:
        next(rows, None)  # the column titles
        for row in rows:
            yield row.split()


def _proc_spellings(endpoint: _Endpoint) -> frozenset[str]:
    """How the kernel prints ``endpoint`` in tcp, and in tcp6 (IPv4 there as ``::ffff:a.b.c.d``)."""
    address, port = endpoint
    forms = [address.packed] if address.version == 6 else [address.packed, _mapped(address).packed]
    return frozenset(f"{_proc_hex(form)}:{port:04X}" for form in forms)


def _mapped(address: _IpAddress) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(b"\0" * 10 + b"\xff" * 2 + address.packed)


def _proc_hex(packed: bytes) -> str:
    # The kernel prints each 32-bit word of the address as a host-order integer.
    words = struct.unpack(f"={len(packed) // 4}I", packed)
    return "".join(f"{word:08X}" for word in words)


# --- The policy -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AllowedId:
    """A resolved allow-list entry: the uid or gid, and the name it goes by (for check-config)."""

    id: int
    name: str


class CallerPolicy:
    """The allow-list of local users for both doors.

    A uid is allowed when it is root (``allow_root``), the daemon's own (``allow_self``), listed in
    ``allowed_users``, or a member of a group in ``allowed_groups`` per the user database.
    """

    def __init__(
        self, *, users: Iterable[AllowedId] = (), groups: Iterable[AllowedId] = (), allow_root: bool = True,
        allow_self: bool = True, self_uid: int | None = None, everyone: bool = False,
    ) -> None:  # fmt: skip
        self._users = tuple(users)
        self._groups = tuple(groups)
        self._allow_root = allow_root
        self._allow_self = allow_self
        self._self_uid = os.getuid() if self_uid is None else self_uid
        self._everyone = everyone
        self._user_ids = frozenset(user.id for user in self._users)
        self._group_ids = frozenset(group.id for group in self._groups)
        self._groups_of_uid: dict[int, tuple[float, frozenset[int]]] = {}

    @classmethod
    def from_settings(cls, api: ApiSettings, *, uid_map: Path | None = None) -> CallerPolicy:
        """The policy of ``api`` (raises ConfigError for an unknown user or group name).

        Also refuses the overflow uid/gid 65534 and any allowed user this process's user
        namespace does not map (``uid_map``, default :data:`UID_MAP`): the kernel would show
        that user as 65534.
        """
        users = [_resolve_user(entry) for entry in api.allowed_users]
        groups = [_resolve_group(entry) for entry in api.allowed_groups]
        policy = cls(users=users, groups=groups, allow_root=api.allow_root, allow_self=api.allow_self)
        policy._check_mapped(uid_map or UID_MAP)
        return policy

    @classmethod
    def allow_all(cls) -> CallerPolicy:
        """A policy that identifies callers but lets every one of them in (tests of other things).

        Unidentified callers are let in too: it is for tests of the doors' other behaviour only.
        """
        return cls(everyone=True)

    def identify(self, sock: socket.socket) -> PeerIdentity:
        """Who opened the peer end of ``sock`` (a connected TCP or Unix stream socket)."""
        return identify_peer(sock)

    def refusal(self, identity: PeerIdentity) -> ReturnCode | None:
        """None when ``identity`` may talk; else MB74 (not allowed) or MB75 (unidentified)."""
        if self._everyone:
            return None
        if isinstance(identity, Unidentified):
            return ReturnCode.CALLER_UNIDENTIFIED
        return None if self.allows(identity.uid) else ReturnCode.CALLER_NOT_ALLOWED

    def allows(self, uid: int) -> bool:
        """Whether the user ``uid`` is on the allow-list (65534 never is)."""
        if uid == OVERFLOW_ID:
            return False
        if (self._allow_root and uid == 0) or (self._allow_self and uid == self._self_uid):
            return True
        return uid in self._user_ids or not self._group_ids.isdisjoint(self._groups_of(uid))

    def summary(self) -> list[str]:
        """The resolved allow-list, one line per kind of entry (``misbridge check-config``)."""
        if self._everyone:
            return ["every local user (test policy)"]
        lines = []
        if self._allow_root:
            lines.append("root (uid 0): api.allow_root")
        if self._allow_self:
            lines.append(f"misbridge's own user (uid {self._self_uid} when run as {_user_name(self._self_uid)}): "
                         "api.allow_self")  # fmt: skip
        lines += [f"user {user.name} (uid {user.id}): api.allowed_users" for user in self._users]
        lines += [f"members of group {group.name} (gid {group.id}): {', '.join(_member_names(group.id)) or 'none yet'}"
                  ": api.allowed_groups" for group in self._groups]  # fmt: skip
        return lines or ["nobody: every caller gets MB74"]

    def _groups_of(self, uid: int) -> frozenset[int]:
        now = time.monotonic()
        cached = self._groups_of_uid.get(uid)
        if cached is not None and cached[0] > now:
            return cached[1]
        if len(self._groups_of_uid) > 1024:  # a flood of distinct uids must not grow the cache forever
            self._groups_of_uid.clear()
        groups = _groups_in_user_database(uid)
        self._groups_of_uid[uid] = (now + GROUP_CACHE_S, groups)
        return groups

    def _check_mapped(self, uid_map_path: Path) -> None:
        uid_map = _read_uid_map(uid_map_path)
        if uid_map is None:
            return
        candidates = [("api.allowed_users", user.name, user.id) for user in self._users]
        if self._allow_root:
            candidates.append(("api.allow_root", "root", 0))
        for group in self._groups:
            members = _member_uids(group.id)
            candidates += [("api.allowed_groups", f"{group.name} member {name}", uid) for name, uid in members]
        for key, name, uid in candidates:
            if not _is_mapped(uid, uid_map):
                raise ConfigError(
                    f"{key}: {name} (uid {uid}) is not mapped in misbridge's user namespace ({uid_map_path}), so the "
                    f"kernel would show its connections as uid {OVERFLOW_ID} and refuse them; remove PrivateUsers= "
                    "from the unit (docs/operations.md, 'Who may talk to misbridge')"
                )


def _resolve_user(entry: str) -> AllowedId:
    uid = _numeric_id(entry, "api.allowed_users")
    try:
        resolved = AllowedId(uid, _user_name(uid)) if uid is not None else AllowedId(pwd.getpwnam(entry).pw_uid, entry)
    except KeyError:
        raise ConfigError(f"api.allowed_users: no local user is named {entry!r}") from None
    if resolved.id == OVERFLOW_ID:
        raise ConfigError(
            f"api.allowed_users: {entry!r} is uid {OVERFLOW_ID}, the kernel's overflow uid that every unmappable "
            "user reads as; it is never allowed (run the POS as its own user)"
        )
    return resolved


def _resolve_group(entry: str) -> AllowedId:
    gid = _numeric_id(entry, "api.allowed_groups")
    try:
        resolved = AllowedId(gid, _group_name(gid)) if gid is not None else AllowedId(grp.getgrnam(entry).gr_gid, entry)
    except KeyError:
        raise ConfigError(
            f"api.allowed_groups: no local group is named {entry!r} (the package creates misbridge-pos)"
        ) from None
    if resolved.id == OVERFLOW_ID:
        raise ConfigError(
            f"api.allowed_groups: {entry!r} is gid {OVERFLOW_ID}, the kernel's overflow gid; it is never allowed"
        )
    return resolved


def _numeric_id(entry: str, key: str) -> int | None:
    """The id when ``entry`` is all digits (allowed without a database entry), else None (a name)."""
    if not entry.strip():
        raise ConfigError(f"{key}: an entry is empty; give a name or a numeric id")
    if not entry.isdigit():
        return None
    value = int(entry)
    if value >= 2**32 - 1:
        raise ConfigError(f"{key}: {entry} is not a valid id (0 to 4294967294)")
    return value


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid} (no user database entry)"


def _group_name(gid: int) -> str:
    try:
        return grp.getgrgid(gid).gr_name
    except KeyError:
        return f"gid {gid} (no group database entry)"


def _groups_in_user_database(uid: int) -> frozenset[int]:
    """The uid's primary and supplementary groups as the user database lists them (not live)."""
    try:
        user = pwd.getpwuid(uid)
        return frozenset(os.getgrouplist(user.pw_name, user.pw_gid))
    except (KeyError, OSError):
        return frozenset()


def _member_uids(gid: int) -> list[tuple[str, int]]:
    """Users whose primary group is ``gid`` or who are listed in it, by name and uid."""
    try:
        listed = set(grp.getgrgid(gid).gr_mem)
    except KeyError:
        listed = set()
    return sorted(
        ((user.pw_name, user.pw_uid) for user in pwd.getpwall() if user.pw_gid == gid or user.pw_name in listed),
        key=lambda member: member[1],
    )


def _member_names(gid: int) -> list[str]:
    return [name for name, _uid in _member_uids(gid)]


def _read_uid_map(path: Path) -> list[tuple[int, int, int]] | None:
    """The (inside, outside, count) ranges of ``path``; None where there are no user namespaces."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(f"cannot read {path} to check the allow-list's users are visible: {err.strerror}") from err
    ranges = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) != 3 or not all(field.isdigit() for field in fields):
            raise ConfigError(f"{path}: unexpected line {line!r}")
        inside, outside, count = (int(field) for field in fields)
        ranges.append((inside, outside, count))
    return ranges


def _is_mapped(uid: int, uid_map: list[tuple[int, int, int]]) -> bool:
    # Only "is it mapped at all": inside a container the whole map is shifted (0 100000 65536) and
    # still fine, while PrivateUsers= maps root and the service user alone (identically).
    return any(inside <= uid < inside + count for inside, _outside, count in uid_map)
