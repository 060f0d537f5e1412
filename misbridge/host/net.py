"""Binding listening sockets: one home for the TCP bind both front doors and the simulators use."""

from __future__ import annotations

import errno
import socket

from misbridge.errors import PortUnavailable


def bind_tcp(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv4 or IPv6), with SO_REUSEADDR, not yet listening.

    Raises:
        OSError: the address cannot be resolved or bound.
    """
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def bind_door(host: str, port: int, *, setting: str) -> socket.socket:
    """:func:`bind_tcp` for a front door whose port ``setting`` names (``api.socket_port``).

    The operating system's refusal is translated here, at the edge, into one sentence that
    names the port, the setting and what to do, so ``misbridge serve`` can print it as one line
    and exit 2 instead of a traceback the unit would restart every 2 s.

    Raises:
        PortUnavailable: the port is in use, not permitted, or ``host`` cannot be bound.
    """
    try:
        return bind_tcp(host, port)
    except OSError as err:
        raise PortUnavailable(_bind_refusal(host, port, setting, err), setting=setting) from err


def _bind_refusal(host: str, port: int, setting: str, err: OSError) -> str:
    """Why ``host:port`` could not be bound, and the fix, in one line."""
    where = f"{setting} {port}: cannot listen on {host}:{port}"
    if err.errno == errno.EADDRINUSE:
        return (
            f"{where}: the port is already in use by another program; find it with "
            f"ss -ltnp 'sport = :{port}' and stop it, or change {setting}"
        )
    if err.errno == errno.EACCES:
        return (
            f"{where}: permission denied (a port below 1024 needs privileges; under systemd the unit's "
            f"SocketBindAllow= must list it); change {setting}, or allow tcp:{port} in a drop-in"
        )
    reason = err.strerror or str(err)
    return f"{where}: {reason}; check api.host ({host!r} must be an address of this machine) and {setting}"
