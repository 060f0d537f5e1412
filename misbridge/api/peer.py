"""Who is calling: the local user behind a connection to either front door (issue 10, item 5).

INTERFACE STUB: the real lookups (SO_PEERCRED, sock_diag, /proc/self/net/tcp*) replace the
bodies below; the names and signatures are what the doors are wired against.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

from misbridge.config import ApiSettings
from misbridge.errors import ReturnCode


@dataclass(frozen=True)
class Caller:
    """An identified local peer: the uid that opened its socket, how we know, its pid if known."""

    uid: int
    source: str
    pid: int | None = None


@dataclass(frozen=True)
class Unidentified:
    """A peer whose user could not be established (always refused)."""

    reason: str


PeerIdentity = Caller | Unidentified


class CallerPolicy:
    """The allow-list of local users for both doors."""

    @classmethod
    def from_settings(cls, api: ApiSettings) -> CallerPolicy:
        """The policy of ``api`` (raises ConfigError for an unknown user or group name)."""
        return cls()

    @classmethod
    def allow_all(cls) -> CallerPolicy:
        """A policy that identifies callers but lets every one of them in (tests of other things)."""
        return cls()

    def identify(self, sock: socket.socket) -> PeerIdentity:
        """Who opened the peer end of ``sock`` (a connected TCP or Unix stream socket)."""
        return Caller(os.getuid(), "stub")

    def refusal(self, identity: PeerIdentity) -> ReturnCode | None:
        """None when ``identity`` may talk; else MB74 (not allowed) or MB75 (unidentified)."""
        if isinstance(identity, Unidentified):
            return ReturnCode.CALLER_UNIDENTIFIED
        return None
