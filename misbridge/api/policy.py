"""Who may call: the allow-list of local users for both front doors (issue 10, item 5).

:mod:`misbridge.api.peer` establishes *who* is calling (the kernel's answer); this module
decides whether that user *may* (docs/operations.md, "Who may talk to misbridge"): root, the
daemon's own user, the listed users, or members of the listed groups per the user database.
"""

from __future__ import annotations

import grp
import os
import pwd
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from misbridge.api.peer import PeerIdentity, Unidentified, identify_peer
from misbridge.config.settings import ApiSettings
from misbridge.errors import ConfigError, ReturnCode

#: The kernel's overflow uid/gid: every user a user namespace cannot map reads as this one, so
#: allowing it would allow every unmapped user. Never allowed, whatever the configuration says.
OVERFLOW_ID = 65534
#: Where the start-up check reads this process's uid mapping (PrivateUsers= would shrink it).
UID_MAP = Path("/proc/self/uid_map")
#: How long a uid's groups from the user database are reused (an NSS lookup may be slow).
GROUP_CACHE_S = 10.0


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
