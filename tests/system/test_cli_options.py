"""Issue 17: the field tools say what is wrong.

- ``--config`` and ``--journal`` work before and after every subcommand that reads them, and a
  subcommand's default never erases a value given before it (the enumeration below walks the
  parser itself, so a new subcommand is checked without being named here);
- an unknown ``--state`` is refused (exit 2) naming the valid ones, instead of an empty list;
- ``misbridge serve --help`` says how to change the ports, and which the unit lets it bind.

The commands run as the technician runs them: ``python -m misbridge`` in a subprocess, against a
real journal file written through the Journal API (tests/security/journals.py).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from misbridge.app import cli
from misbridge.config.settings import ApiSettings
from misbridge.journal.queries import STATE_FILTERS
from misbridge.tools import journal as journaltool
from tests.security.journals import ROWS, build_journal
from tests.system.tools import REPO, UNIT, parse_unit, values

#: The options a subcommand shares with the commands above it.
SHARED_OPTIONS = ("--config", "--journal")
OPEN_ROWS = {"OLD-NEEDS-MANUAL", "OLD-VOIDING", "OLD-SUBMITTING", "OLD-INQUIRING"}


# --- the parser, walked -----------------------------------------------------------------------


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    return dict(actions[0].choices) if actions else {}


def _command_paths(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], list[argparse.ArgumentParser]]]:
    """Every runnable command (``("journal", "list")``) with the parsers along it, the top one first."""
    children = _subcommands(parser)
    if not children:
        yield path, [parser]
    for name, child in children.items():
        for sub_path, chain in _command_paths(child, (*path, name)):
            yield sub_path, [parser, *chain]


def _takes(parser: argparse.ArgumentParser, option: str) -> bool:
    return any(option in action.option_strings for action in parser._actions)


def _required_arguments(parser: argparse.ArgumentParser) -> list[str]:
    """The least a command needs to parse: its positionals and required options, each a valid value."""
    argv: list[str] = []
    for action in parser._actions:
        if action.option_strings and not action.required:
            continue
        value = str(next(iter(action.choices))) if action.choices else "1"
        argv += [action.option_strings[0], value] if action.option_strings else [value]
    return argv


def _parses(argv: list[str]) -> argparse.Namespace | None:
    """The namespace ``misbridge argv`` runs with, or None when it is refused as a usage error (exit 2)."""
    try:
        return cli.parse_arguments(argv)
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2, argv
    return None


COMMAND_PATHS = list(_command_paths(cli._parser()))


def test_the_walk_finds_the_nested_commands() -> None:
    paths = {path for path, _ in COMMAND_PATHS}
    assert {("serve",), ("journal", "list"), ("journal", "resolve"), ("pad", "provision")} <= paths


@pytest.mark.parametrize("option", SHARED_OPTIONS)
@pytest.mark.parametrize(("path", "chain"), COMMAND_PATHS, ids=[" ".join(path) for path, _ in COMMAND_PATHS])
def test_a_shared_option_works_before_and_after_the_subcommand(
    path: tuple[str, ...],
    chain: list[argparse.ArgumentParser],
    option: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Position k puts the option after the first k words of the command: 0 before ``journal``, 1 before ``list``."""
    dest = option.removeprefix("--")
    needed = _required_arguments(chain[-1])
    taken_at = [k for k, parser in enumerate(chain) if _takes(parser, option)]
    for k in range(len(path) + 1):
        given = Path(f"/srv/{dest}-at-{k}")
        args = _parses([*path[:k], option, str(given), *path[k:], *needed])
        if _takes(chain[-1], option) and k in taken_at:
            assert args is not None, f"misbridge {' '.join(path)}: {option} at position {k} refused"
            assert getattr(args, dest) == given, f"misbridge {' '.join(path)}: {option} at position {k} lost"
        else:
            # Not taken there, or the command reads no such thing: refused, never silently ignored.
            assert args is None, f"misbridge {' '.join(path)}: {option} at position {k} accepted but unused"
    capsys.readouterr()
    if _takes(chain[-1], option):
        # Before and after the last subcommand at least, and from where it is first taken down to the end.
        assert taken_at == list(range(taken_at[0], len(path) + 1)), taken_at
        assert len(path) - 1 in taken_at
        unset = _parses([*path, *needed]) if path != ("check-config",) else None
        assert unset is None or getattr(unset, dest) is None
        # Given twice: the later one wins, as everywhere in argparse.
        both = _parses([*path[:-1], option, "/srv/first", path[-1], option, "/srv/second", *needed])
        assert both is not None
        assert getattr(both, dest) == Path("/srv/second")


def test_check_config_still_needs_its_configuration(capsys: pytest.CaptureFixture[str]) -> None:
    assert _parses(["check-config"]) is None
    assert "--config" in capsys.readouterr().err


# --- the real command, on a real journal ---------------------------------------------------------


def _misbridge(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "MISBRIDGE_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "misbridge", *argv], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def _listed(out: str) -> set[str]:
    return {line.split()[0] for line in out.splitlines()[1:] if line.strip()}


@pytest.fixture
async def journal_path(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    await build_journal(path)
    return path


@pytest.fixture
def config_path(tmp_path: Path, journal_path: Path) -> Path:
    """A configuration whose journal is ``journal_path``, with a retention that keeps every row."""
    config = tmp_path / "misbridge.toml"
    config.write_text(f'[journal]\npath = "{journal_path}"\nretention_days = 3650\n', encoding="utf-8")
    return config


def test_journal_list_takes_journal_after_the_subcommand(journal_path: Path) -> None:
    done = _misbridge("journal", "list", "--journal", str(journal_path), "--state", "open")
    assert done.returncode == 0, done.stderr
    assert _listed(done.stdout) == OPEN_ROWS


def test_config_works_before_and_after_the_subcommand(config_path: Path) -> None:
    for argv in (
        ["journal", "list", "--limit", "50", "--config", str(config_path)],
        ["journal", "--config", str(config_path), "list"],
        ["--config", str(config_path), "journal", "list"],
    ):
        done = _misbridge(*argv)
        assert done.returncode == 0, (argv, done.stderr)
        assert _listed(done.stdout) == set(ROWS), argv
    # The configured retention (3650 days) purges nothing, wherever --config stands.
    done = _misbridge("journal", "purge", "--dry-run", "--config", str(config_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("0 final transaction(s)")


def test_a_journal_given_before_the_subcommand_is_not_erased_by_its_default(journal_path: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.toml"
    elsewhere.write_text(f'[journal]\npath = "{tmp_path / "missing.db"}"\n', encoding="utf-8")
    done = _misbridge("journal", "--journal", str(journal_path), "list", "--config", str(elsewhere))
    assert done.returncode == 0, done.stderr
    assert _listed(done.stdout) == set(ROWS)


def test_config_given_to_a_command_that_reads_none_is_refused(config_path: Path) -> None:
    done = _misbridge("--config", str(config_path), "probe")
    assert done.returncode == 2
    assert "probe reads no configuration" in done.stderr


@pytest.mark.parametrize("command", ["list", "export"])
def test_an_unknown_state_is_refused_naming_the_valid_ones(journal_path: Path, command: str) -> None:
    done = _misbridge("journal", "--journal", str(journal_path), command, "--state", "pending")
    assert done.returncode == 2
    assert done.stdout == ""
    assert "--state" in done.stderr
    assert "'pending'" in done.stderr
    for state in ("needs_manual", "approved", "final", "open"):
        assert f"'{state}'" in done.stderr


def test_every_state_offered_is_one_the_journal_can_hold(journal_path: Path) -> None:
    assert {"approved", "declined", "aborted", "voided", "needs_manual", "unknown", "final", "open"} <= set(
        STATE_FILTERS
    )
    assert not {"sent", "answered", "pending", "done"} & set(STATE_FILTERS)  # other tables' states
    done = _misbridge("journal", "list", "--journal", str(journal_path), "--state", "needs_manual")
    assert done.returncode == 0, done.stderr
    assert _listed(done.stdout) == {"OLD-NEEDS-MANUAL"}


def test_the_read_side_refuses_an_unknown_state_too(journal_path: Path) -> None:
    with pytest.raises(ValueError, match="no transaction state 'pending': use one of received, "):
        journaltool.list_transactions(journal_path, state="pending")


@pytest.mark.parametrize("limit", ["0", "-5"])
def test_a_limit_below_one_is_refused_not_an_empty_list(journal_path: Path, limit: str) -> None:
    done = _misbridge("journal", "--journal", str(journal_path), "list", "--limit", limit)
    assert done.returncode == 2
    assert "--limit" in done.stderr


# --- serve --help: the ports ---------------------------------------------------------------------


def test_serve_help_says_how_to_change_the_ports() -> None:
    done = _misbridge("serve", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.split())
    for setting in ("api.socket_port", "api.http_port", "[[lanes]] socket_port", "SocketBindAllow=", "drop-in"):
        assert setting in text, setting
    api = ApiSettings()
    assert f"api.socket_port (default {api.socket_port})" in text
    assert f"api.http_port (default {api.http_port})" in text
    allowed = values(parse_unit(UNIT.read_text(encoding="utf-8")), "SocketBindAllow")
    assert tuple(allowed) == cli.UNIT_SOCKET_BIND_ALLOW
    for port in allowed:
        assert port in text, f"the unit allows {port}; serve --help does not say so"
