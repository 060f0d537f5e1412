"""The HTTP door on a Unix socket (``api.http_socket``) instead of 127.0.0.1:9101.

A Unix socket is reachable only by processes that may open its path: mode 0660 and a group
(``api.http_socket_group``, e.g. ``misbridge-pos``) leave out every other local user, and no
browser can connect to one. uvicorn would chmod a socket it creates itself to 0666
(python-ecosystem-notes §5), so misbridge binds it here and hands the bound socket to
:class:`misbridge.host.asgi.AsgiServer` (``sock=``).

Put the socket in the service's ``RuntimeDirectory=`` (``/run/misbridge/api.sock``) with
``RuntimeDirectoryMode=0750`` so the directory, too, is closed to others.
"""

from __future__ import annotations

import contextlib
import grp
import os
import socket
import stat
from pathlib import Path

from misbridge.errors import ConfigError

#: Mode of the socket file: owner and group may connect, nobody else.
SOCKET_MODE = 0o660


def check_unix_socket(path: Path, *, group: str = "") -> int:
    """What :func:`bind_unix_socket` checks before it binds (``misbridge check-config`` runs it too).

    Returns the gid of ``group``, -1 when no group is asked for.

    Raises:
        ConfigError: ``path`` exists and is not a socket, or ``group`` does not exist.
    """
    gid = -1
    if group:
        try:
            gid = grp.getgrnam(group).gr_gid
        except KeyError as err:
            raise ConfigError(f"api.http_socket_group: no group {group!r}") from err
    with contextlib.suppress(FileNotFoundError):
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ConfigError(f"api.http_socket: {path} exists and is not a socket; refusing to replace it")
    return gid


def bind_unix_socket(path: Path, *, group: str = "", mode: int = SOCKET_MODE) -> socket.socket:
    """A Unix stream socket bound at ``path`` with ``mode`` (and ``group``), not yet listening.

    A stale socket file left by a previous run is replaced; any other file at ``path`` is not.
    The socket is created under a umask of 0o177, so it is never more open than 0600 before
    the chmod.

    Raises:
        ConfigError: ``path`` exists and is not a socket, or ``group`` does not exist.
        OSError: the socket cannot be bound or its mode or group set.
    """
    gid = check_unix_socket(path, group=group)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a stale socket: check_unix_socket refused anything else
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        sock.bind(str(path))
        os.chmod(path, mode)
        if gid != -1:
            os.chown(path, -1, gid)
    except OSError:
        sock.close()
        raise
    finally:
        os.umask(old_umask)
    sock.setblocking(False)
    return sock
