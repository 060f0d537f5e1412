"""misbridge.config.secrets: credentials from $CREDENTIALS_DIRECTORY or a file, never logged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from loguru import logger

from misbridge.config import secrets
from misbridge.errors import ConfigError

KEY = "0123456789abcdef-test-signing-key"


@pytest.fixture
def warnings() -> Iterator[list[str]]:
    messages: list[str] = []
    handler = logger.add(messages.append, level="WARNING", format="{message}")
    yield messages
    logger.remove(handler)


@pytest.fixture
def credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "credentials"
    directory.mkdir(mode=0o700)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(directory))
    return directory


def test_from_the_credentials_directory(credentials: Path) -> None:
    (credentials / secrets.SIGNING_KEY_CREDENTIAL).write_text(KEY + "\n", encoding="utf-8")
    secret = secrets.load_secret(secrets.SIGNING_KEY_CREDENTIAL)
    assert secret is not None
    assert secret.get_secret_value() == KEY
    assert KEY not in repr(secret)


def test_an_explicit_file_wins_over_the_credential(credentials: Path, tmp_path: Path) -> None:
    (credentials / secrets.API_TOKEN_CREDENTIAL).write_text("from-credential", encoding="utf-8")
    file = tmp_path / "token"
    file.write_text("from-file\r\n", encoding="utf-8")
    file.chmod(0o600)
    secret = secrets.load_secret(secrets.API_TOKEN_CREDENTIAL, file)
    assert secret is not None
    assert secret.get_secret_value() == "from-file"


def test_a_missing_file_falls_back_to_the_credential(credentials: Path, tmp_path: Path) -> None:
    (credentials / secrets.API_TOKEN_CREDENTIAL).write_text("from-credential", encoding="utf-8")
    secret = secrets.load_secret(secrets.API_TOKEN_CREDENTIAL, tmp_path / "absent")
    assert secret is not None
    assert secret.get_secret_value() == "from-credential"


def test_nothing_anywhere_is_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    assert secrets.credentials_directory() is None
    assert secrets.load_secret(secrets.SIGNING_KEY_CREDENTIAL, tmp_path / "absent") is None


def test_a_world_readable_file_is_used_but_warned_about_without_its_content(
    tmp_path: Path, warnings: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    file = tmp_path / "key"
    file.write_text(KEY, encoding="utf-8")
    file.chmod(0o644)
    secret = secrets.load_secret(secrets.SIGNING_KEY_CREDENTIAL, file)
    assert secret is not None
    assert len(warnings) == 1
    assert str(file) in warnings[0]
    assert "-rw-r--r--" in warnings[0]
    assert KEY not in warnings[0]


def test_a_private_file_is_not_warned_about(tmp_path: Path, warnings: list[str]) -> None:
    file = tmp_path / "key"
    file.write_text(KEY, encoding="utf-8")
    file.chmod(0o400)
    assert secrets.secret_file_problem(file) is None
    assert secrets.load_secret(secrets.SIGNING_KEY_CREDENTIAL, file) is not None
    assert warnings == []


ROOT_KEY = "3131313131313131 3131313131313131"


def test_the_root_key_comes_from_its_credential_as_32_uppercase_hex(credentials: Path) -> None:
    (credentials / secrets.ROOT_KEY_CREDENTIAL).write_text(ROOT_KEY.lower() + "\n", encoding="utf-8")
    secret = secrets.load_root_key()
    assert secret is not None
    assert secret.get_secret_value() == "31" * 16
    assert "31" * 16 not in repr(secret)


def test_no_root_key_is_none_and_a_malformed_one_is_refused_without_quoting_it(
    credentials: Path, tmp_path: Path
) -> None:
    assert secrets.load_root_key() is None
    bad = tmp_path / "root"
    bad.write_text("not-a-key-31313131", encoding="utf-8")
    bad.chmod(0o400)
    with pytest.raises(ConfigError) as caught:
        secrets.load_root_key(path=bad)
    assert "not-a-key" not in str(caught.value)
    assert "32 hex" in str(caught.value)


def test_the_root_key_comes_from_a_file_before_the_credential(credentials: Path, tmp_path: Path) -> None:
    (credentials / secrets.ROOT_KEY_CREDENTIAL).write_text("32" * 16, encoding="utf-8")
    file = tmp_path / "root"
    file.write_text("0123456789abcdef FEDCBA9876543210\n", encoding="utf-8")
    file.chmod(0o400)
    secret = secrets.load_root_key(secrets.ROOT_KEY_CREDENTIAL, file)
    assert secret is not None
    assert secret.get_secret_value() == "0123456789ABCDEFFEDCBA9876543210"


@pytest.mark.parametrize(
    "bad",
    ["0123456789ABCDEF0123456789ABCDEG", "0123456789ABCDEF", "0123456789ABCDEF" * 3],
    ids=["not-hex", "too-short", "too-long"],
)
def test_a_root_key_that_is_not_32_hex_is_refused_naming_its_file_not_its_value(
    credentials: Path, tmp_path: Path, bad: str
) -> None:
    file = tmp_path / "root"
    file.write_text(bad, encoding="utf-8")
    file.chmod(0o400)
    with pytest.raises(ConfigError) as caught:
        secrets.load_root_key(secrets.ROOT_KEY_CREDENTIAL, file)
    message = str(caught.value)
    assert str(file) in message
    assert "0123456789" not in message


def test_a_malformed_root_key_credential_is_named_by_its_credential_file(credentials: Path) -> None:
    (credentials / secrets.ROOT_KEY_CREDENTIAL).write_text("31" * 15, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        secrets.load_root_key()
    assert str(credentials / secrets.ROOT_KEY_CREDENTIAL) in str(caught.value)
    assert "3131" not in str(caught.value)
