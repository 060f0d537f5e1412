"""Where misbridge's secrets come from: systemd credentials first-class, files as the fallback.

Secrets (the backend signing key, the POS API bearer token, a TLS client key, the e-Buy
``rootKey``) are never
settings, environment variables or arguments (reliability requirement R20). Under systemd the
unit loads them with ``LoadCredential=`` (or ``LoadCredentialEncrypted=``) into
``$CREDENTIALS_DIRECTORY``, a per-service, non-swappable, 0400 directory only this service can
read. The credential names below are the contract with systemd/misbridge.service; a test
keeps the two in step.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from loguru import logger
from pydantic import SecretStr

from misbridge.errors import ConfigError

#: The e-Buy request/response signing key (backend.signing).
SIGNING_KEY_CREDENTIAL = "ebuy-signing-key"
#: The bearer token the POS presents to the local API.
API_TOKEN_CREDENTIAL = "api-token"  # noqa: S105 - the credential's name, not a token
#: The private key of a TLS client certificate towards the backend (if the backend wants one).
TLS_CLIENT_KEY_CREDENTIAL = "tls-client-key"

#: The e-Buy ``rootKey`` of this store machine (docs/backend.md, "Keys and sign-in"): the key
#: DownloadKey is signed with. Installed once by IT; only provisioning needs it.
ROOT_KEY_CREDENTIAL = "ebuy-root-key"

#: Credentials systemd/misbridge.service loads unconditionally (both files must exist).
UNIT_CREDENTIALS = (SIGNING_KEY_CREDENTIAL, API_TOKEN_CREDENTIAL)


#: Where systemd/misbridge.service's LoadCredential= lines read the credentials from.
INSTALLED_CREDENTIALS = Path("/etc/misbridge/credentials")


def use_installed_credentials() -> Path | None:
    """For an administrator's command run from a root shell (no ``$CREDENTIALS_DIRECTORY``): read
    the credentials where the unit loads them from, if that directory exists; returns the directory used.
    """
    directory = credentials_directory()
    if directory is None and INSTALLED_CREDENTIALS.is_dir():
        os.environ["CREDENTIALS_DIRECTORY"] = str(INSTALLED_CREDENTIALS)
        directory = INSTALLED_CREDENTIALS
    return directory


def credentials_directory() -> Path | None:
    """``$CREDENTIALS_DIRECTORY`` if systemd set it and it exists, else None."""
    value = os.environ.get("CREDENTIALS_DIRECTORY", "")
    path = Path(value) if value else None
    return path if path is not None and path.is_dir() else None


def secret_file_problem(path: Path) -> str | None:
    """Why ``path`` is a poor place for a secret (readable by group or others), or None."""
    try:
        mode = path.stat().st_mode
    except OSError as err:
        return f"cannot stat {path}: {err.strerror}"
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is accessible to group or others (mode {stat.filemode(mode)}); use chmod 0400 or 0600"
    return None


def secret_path(name: str, path: Path | None = None) -> Path | None:
    """The file holding secret ``name``, for a library that reads it itself (a TLS private key).

    ``path`` when given (whether or not it exists: the reader then names it in its error), else
    the credential file if systemd provided one, else None.
    """
    if path is not None:
        return path
    directory = credentials_directory()
    return directory / name if directory is not None and (directory / name).is_file() else None


def load_secret(name: str, path: Path | None = None) -> SecretStr | None:
    """The secret called ``name``: from ``path`` if given and present, else from the credential.

    Trailing newlines are stripped (``echo key > file`` adds one). A file ``path`` readable by
    group or others is still used but logged as a warning (its path only, never its content).
    Returns None when neither source has it.
    """
    file = _secret_file(name, path)
    if file is None:
        return None
    if file == path and (problem := secret_file_problem(path)):
        logger.warning("secret {!r}: {}", name, problem)
    return SecretStr(file.read_text(encoding="utf-8").rstrip("\r\n"))


def where_looked(name: str, path: Path | None = None) -> str:
    """Where :func:`load_secret` looked for secret ``name`` (for a message saying it was not found)."""
    directory = credentials_directory()
    if directory is not None:
        credential = f"no credential {name!r} in $CREDENTIALS_DIRECTORY ({directory})"
    elif os.environ.get("CREDENTIALS_DIRECTORY"):
        credential = f"$CREDENTIALS_DIRECTORY ({os.environ['CREDENTIALS_DIRECTORY']}) is not a directory"
    else:
        credential = f"$CREDENTIALS_DIRECTORY is not set, so no credential {name!r}"
    return credential if path is None else f"no file {path}, and {credential}"


def _secret_file(name: str, path: Path | None) -> Path | None:
    """The file :func:`load_secret` reads: ``path`` if present, else the credential, else None."""
    if path is not None and path.is_file():
        return path
    directory = credentials_directory()
    if directory is not None and (directory / name).is_file():
        return directory / name
    return None


def load_root_key(name: str = ROOT_KEY_CREDENTIAL, path: Path | None = None) -> SecretStr | None:
    """The e-Buy ``rootKey`` (credential ``name``, or the file ``path``), as 32 uppercase hex characters.

    The file holds the double-length TDES key as hex (spaces and case ignored), as key ceremonies
    write it. misbridge uses it only as the signing key of DownloadKey and never as a cipher key.

    Raises:
        ConfigError: the secret is there but is not 32 hex characters; the message names the file
            it was read from, never its content.
    """
    source = _secret_file(name, path)
    secret = load_secret(name, path)
    if secret is None:
        return None
    text = "".join(secret.get_secret_value().split()).upper()
    if len(text) != _ROOT_KEY_HEX_LEN or any(c not in _HEX for c in text):
        raise ConfigError(
            f"secret {name!r} (read from {source}) must be a double-length key: {_ROOT_KEY_HEX_LEN} hex characters"
        )
    return SecretStr(text)


_ROOT_KEY_HEX_LEN = 32
_HEX = frozenset("0123456789ABCDEF")
