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
import ipaddress
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from loguru import logger

#: The fallback socket tables. ``/proc/self/net``, not ``/proc/net``: the latter is hidden under
#: the unit's ProcSubset=pid, the former is not, and both list every socket of the namespace.
PROC_TCP_TABLES = (Path("/proc/self/net/tcp"), Path("/proc/self/net/tcp6"))

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
