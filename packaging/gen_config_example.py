"""Write the commented example configuration (misbridge.toml.example) from misbridge.config.settings.

Every setting of :class:`misbridge.config.settings.Settings` appears with its meaning, its default, its
allowed range and the environment variable that overrides it, so the example cannot drift
from the code: ``make install`` runs this script with the installed interpreter, and
tests/system/test_config_example.py checks the output parses and covers every field.

Site-specific keys (who the terminal is, where the pad and the backend are) are active
lines holding the defaults; everything else is a commented-out default (``#key = value``)
that is uncommented to change it. A list of tables (``[[lanes]]``, empty by default) is a
commented-out example block at the end instead: every line starts with one "#" that is removed
to use it (its own comments start with "##"), once per entry.

Usage: ``python packaging/gen_config_example.py > misbridge.toml.example``
"""

from __future__ import annotations

import json
import sys
import textwrap
import typing
from pathlib import Path
from typing import Any, Literal

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from misbridge.config.settings import Settings

#: Meanings for settings whose Field() has no description (config.py's own descriptions win).
EXTRA_HELP: dict[str, str] = {
    "log_level": "least severe log level written (to stderr, i.e. the journal under systemd)",
    "device.baudrate": "serial line speed in bit/s (ignored for usb:// and socket:// URLs)",
    "backend.connect_timeout_s": "TCP + TLS connect timeout for one backend attempt",
    "backend.ca_bundle": "PEM file of CAs trusted for the backend (unset: the system's CA store)",
    "backend.signing.enabled": "sign requests and check response signatures (docs/backend.md)",
    "backend.signing.verify_responses": "reject backend responses whose signature does not match",
    "resolution.reversal_backoff_initial_s": "first pause before retrying an unconfirmed void",
    "resolution.reversal_backoff_max_s": "longest pause between two void attempts (exponential backoff)",
    "api.host": "address both POS front doors listen on; loopback only unless allow_non_loopback",
    "api.allow_non_loopback": "allow a non-loopback api.host (anyone on that network can then pay)",
    "journal.path": "SQLite journal of every transaction step (the unit's StateDirectory)",
}

#: Keys written as active lines: every site must check them.
SITE_KEYS = frozenset({"identity.device_no", "identity.shop_no", "identity.brand", "device.url", "backend.url"})

#: Extra guidance printed above a key.
NOTES: dict[str, str] = {
    "backend.signing.key_file": "Leave unset under systemd: the key comes from the credential "
    "'ebuy-signing-key' (LoadCredential=, see docs/operations.md). Never put the key itself here.",
    "backend.url": "Also allow the backend's addresses in the unit (IPAddressAllow= drop-in).",
    "api.socket_port": "Changing a port also needs SocketBindAllow= in a unit drop-in.",
    "api.http_port": "Changing a port also needs SocketBindAllow= in a unit drop-in.",
    "lanes.device_url": "With several pads, each pad's own name (ls -l /dev/mispos-*), never /dev/mispos: "
    "that name points at any one of them.",
    "lanes.socket_port": "Leave it out and the POS reaches the lane on api.socket_port by its deviceNo. "
    "The unit allows 9110-9139, one port per lane; another port needs SocketBindAllow= in a unit drop-in.",
}

#: Example values of list-of-table entries (``[[lanes]]``), for keys that have no default.
LIST_EXAMPLES: dict[str, Any] = {
    "lanes.name": "lane1",
    "lanes.device_url": "/dev/mispos-A10K5XYZ",
    "lanes.device_no": "POS01",
    "lanes.socket_port": 9110,
}

#: Entry keys that, left out, take another setting's value (Settings.lane_list()); the example
#: shows that setting's default.
LIST_FALLBACKS: dict[str, str] = {"lanes.shop_no": "identity.shop_no", "lanes.key_index": "device.key_index"}

#: What a list of tables is for and how to use its block, printed above it.
LIST_NOTES: dict[str, str] = {
    "lanes": 'Without [[lanes]], misbridge serves one lane named "default" from [device] and [identity], '
    "as it always did: a one-pad POS needs nothing here. For several POS terminals, each with its own PIN "
    "pad, write one block per lane (the first is the default lane): copy the block below, remove the "
    'first "#" of each of its lines, and give each lane its own name, pad, deviceNo and port. '
    'docs/operations.md, "Lanes".',
}

HEADER = """\
# misbridge configuration: /etc/misbridge/misbridge.toml
#
# Generated from misbridge/config/settings.py by packaging/gen_config_example.py (misbridge {version}).
# Copy this file to misbridge.toml, set the site-specific values (the active lines below),
# then run:  misbridge check-config --config /etc/misbridge/misbridge.toml
#
# Lines "#key = value" show a default; remove the "#" to change it. Every key can also be set
# from the environment as MISBRIDGE_<SECTION>__<KEY> (shown for each key), which wins over
# this file. Secrets never go in this file: see "Credentials" in docs/operations.md.
# The commented-out [[lanes]] block at the end is an example, not a default: it is only for a
# POS machine serving several POS terminals, each with its own PIN pad.
"""


class UndocumentedSetting(Exception):
    """A setting has neither a Field(description=...) nor an EXTRA_HELP entry."""


def toml_value(value: Any) -> str:
    """``value`` as a TOML literal."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        return json.dumps(str(value), ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):  # an inline table
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML form for {value!r}")


def _constraints(field: FieldInfo) -> str:
    words = []
    for item in field.metadata:
        for cls, sign in ((annotated_types.Ge, ">="), (annotated_types.Gt, ">"),
                          (annotated_types.Le, "<="), (annotated_types.Lt, "<")):  # fmt: skip
            if isinstance(item, cls):
                words.append(f"{sign} {getattr(item, cls.__name__.lower())}")
        if isinstance(item, annotated_types.MaxLen):
            words.append(f"at most {item.max_length} characters")
        if pattern := getattr(item, "pattern", None):
            words.append(f"matches {pattern}")
    if typing.get_origin(field.annotation) is Literal:
        words.append("one of " + ", ".join(str(arg) for arg in typing.get_args(field.annotation)))
    return "; ".join(words)


def _section_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a nested section (a [table]), or None for a plain key."""
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _list_model(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a list of tables (``[[name]]`` entries), or None."""
    if typing.get_origin(field.annotation) is not list:
        return None
    (item,) = typing.get_args(field.annotation)
    return item if isinstance(item, type) and issubclass(item, BaseModel) else None


def _meaning(dotted: str, field: FieldInfo) -> str:
    meaning = field.description or EXTRA_HELP.get(dotted)
    if not meaning:
        raise UndocumentedSetting(
            f"setting {dotted} has no meaning: add Field(description=...) in misbridge/config/settings.py"
        )
    return meaning


def _key_lines(dotted: str, field: FieldInfo) -> list[str]:
    key = dotted.rsplit(".", 1)[-1]
    env = "MISBRIDGE_" + dotted.upper().replace(".", "__")
    lines = [f"# {_meaning(dotted, field)}."]
    if dotted in NOTES:
        lines += textwrap.wrap(NOTES[dotted], width=96, initial_indent="# ", subsequent_indent="# ")
    details = [f"env {env}"]
    if constraints := _constraints(field):
        details.insert(0, constraints)
    lines.append(f"# ({'; '.join(details)})")
    default = field.get_default(call_default_factory=True)
    if default is None:
        lines.append(f"# {key}: unset by default.")
    elif dotted in SITE_KEYS:
        lines.append(f"{key} = {toml_value(default)}")
    else:
        lines.append(f"#{key} = {toml_value(default)}")
    return lines


def _section(model: type[BaseModel], path: tuple[str, ...]) -> list[str]:
    lines: list[str] = []
    if path:
        doc = (model.__doc__ or "").strip().splitlines()
        lines += ["", "# " + "-" * 94, f"[{'.'.join(path)}]"]
        lines += [f"# {line.strip()}" for line in doc if line.strip()]
    sections: list[tuple[str, type[BaseModel]]] = []
    lists: list[tuple[str, FieldInfo, type[BaseModel]]] = []
    for name, field in model.model_fields.items():
        if (sub := _section_model(field)) is not None:
            sections.append((name, sub))  # TOML: tables come after the keys of their parent
        elif (item := _list_model(field)) is not None:
            lists.append((name, field, item))  # and a [[list]] block after the tables, or it would swallow them
        else:
            lines += ["", *_key_lines(".".join((*path, name)), field)]
    for name, sub in sections:
        lines += _section(sub, (*path, name))
    for name, field, item in lists:
        lines += _list_block(".".join((*path, name)), field, item)
    return lines


def _list_block(dotted: str, field: FieldInfo, item: type[BaseModel]) -> list[str]:
    """A list of tables as a commented-out example entry: ``#[[name]]`` and ``#key = value`` lines."""
    env = "MISBRIDGE_" + dotted.upper().replace(".", "__")
    required = {name: _example(f"{dotted}.{name}", sub) for name, sub in item.model_fields.items() if sub.is_required()}
    doc = [line.strip() for line in (item.__doc__ or "").strip().splitlines() if line.strip()]
    lines = ["", "# " + "-" * 94, f"# [[{dotted}]]: {_meaning(dotted, field)}."]
    lines += [f"# {line}" for line in doc]
    if dotted in LIST_NOTES:
        lines += textwrap.wrap(LIST_NOTES[dotted], width=96, initial_indent="# ", subsequent_indent="# ")
    lines.append(f"# (env {env}: the whole list as JSON, e.g. '[{json.dumps(required, ensure_ascii=False)}]')")
    lines += ["#", f"#[[{dotted}]]"]
    for name, sub in item.model_fields.items():
        lines += ["#", *(f"#{line}" for line in _entry_key_lines(f"{dotted}.{name}", sub))]
    return lines


def _entry_key_lines(dotted: str, field: FieldInfo) -> list[str]:
    """One key of a list entry, as it reads once the block's leading "#" is removed."""
    key = dotted.rsplit(".", 1)[-1]
    lines = [f"# {_meaning(dotted, field)}."]
    if dotted in NOTES:
        lines += textwrap.wrap(NOTES[dotted], width=95, initial_indent="# ", subsequent_indent="# ")
    details = [_constraints(field)] if _constraints(field) else []
    if field.is_required():
        details.append("required")
    elif dotted in LIST_FALLBACKS:
        details.append(f"default: {LIST_FALLBACKS[dotted]}")
    elif (default := field.get_default(call_default_factory=True)) is None:
        details.append("default: none")
    else:
        details.append(f"default: {toml_value(default)}")
    lines.append(f"# ({'; '.join(details)})")
    lines.append(f"{key} = {toml_value(_example(dotted, field))}")
    return lines


def _example(dotted: str, field: FieldInfo) -> Any:
    """The value an example entry shows for ``dotted``: its example, its fallback's default, or its default."""
    if dotted in LIST_EXAMPLES:
        return LIST_EXAMPLES[dotted]
    if dotted in LIST_FALLBACKS:
        # The code's default, not Settings(): that would read MISBRIDGE_* from the environment.
        section, name = LIST_FALLBACKS[dotted].split(".")
        model = _section_model(Settings.model_fields[section])
        assert model is not None, LIST_FALLBACKS[dotted]
        return model.model_fields[name].get_default(call_default_factory=True)
    default = field.get_default(call_default_factory=True)
    if field.is_required() or default is None:
        raise UndocumentedSetting(f"setting {dotted} has no example: add it to LIST_EXAMPLES or LIST_FALLBACKS")
    return default


def render(settings: type[BaseModel] = Settings) -> str:
    """The whole example file."""
    from misbridge import __version__

    return HEADER.format(version=__version__) + "\n".join(_section(settings, ())) + "\n"


def main() -> int:
    """Print the example to stdout."""
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
