"""Control channel: script the simulated customers from another process.

A Unix stream socket accepting JSON lines
``{"card": "points", "pin": "123456", "action": "pay", "hesitate_s": 0}``
(every key optional, as in :class:`~simulators.pinpad.customer.Customer`); each line enqueues one
customer and is answered with ``{"ok": true}`` or ``{"ok": false, "error": "..."}``.

``"step"`` picks the queue: ``"card"`` (the default, above), ``"code"`` for the next READ_CODE
(``{"step": "code", "code": "2801...", "source": "qr", "action": "give", "hesitate_s": 0}``, as in
:class:`~simulators.pinpad.customer.ScriptedCode`) or ``"choice"`` for the next CHOOSE
(``{"step": "choice", "option": 2, "action": "choose"}``, as in
:class:`~simulators.pinpad.customer.ScriptedChoice`). ``{"step": "unplug", "replug_after_s": 1}``
is the technician instead: the cable is pulled now and plugged back after that many seconds
(0 < s <= 60), the same link path on a new pty (the conformance kit's unplug check).
``{"step": "keys", "keys": "stale"}`` is the key-injection tool: the pad's keys are replaced now
(:data:`KEY_SETUPS`; the crash harness starts a sign-in or a provisioning from them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any

from simulators.crypto import TEST_MASTER_KEY_HEX, with_odd_parity
from simulators.pinpad.customer import Customer, ScriptedChoice, ScriptedCode
from simulators.pinpad.device import SimulatedPinPad

_LOGGER = logging.getLogger(__name__)

_FIELDS = frozenset({"card", "pin", "action", "hesitate_s"})
_CODE_FIELDS = frozenset({"code", "source", "action", "hesitate_s"})
_CHOICE_FIELDS = frozenset({"option", "action", "hesitate_s"})
MAX_LINE = 4096
#: ``{"step": "keys", "keys": NAME}``: (master key, slot 1's working key) the pad gets, "" for none,
#: None for a fresh random key (one no backend ever issued). The store's master key is the
#: backend simulator's; the transport key (the rootKey) always stays.
KEY_SETUPS: dict[str, tuple[str | None, str | None]] = {
    "provisioned": (TEST_MASTER_KEY_HEX, ""),  # the store's master key, no working key yet
    "stale": (TEST_MASTER_KEY_HEX, None),  # the store's master key, a working key nobody issued
    "foreign": (None, None),  # another store's master key and working key (a replaced pad)
    "unprovisioned": ("", ""),  # the transport key only
}


def parse_line(line: bytes) -> Customer | ScriptedCode | ScriptedChoice:
    """Build the customer of one JSON line, for the queue its ``"step"`` names.

    Raises:
        ValueError: not a JSON object, an unknown step or keys, or invalid values.
    """
    fields = _json_object(line)
    step = fields.pop("step", "card")
    if step == "card":
        return _customer(fields)
    if step not in ("code", "choice"):
        raise ValueError(f"unknown step {step!r} (known: card, code, choice)")
    unknown = set(fields) - (_CODE_FIELDS if step == "code" else _CHOICE_FIELDS)
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    hesitate = _hesitation(fields.pop("hesitate_s", 0.0))
    try:
        return (ScriptedCode if step == "code" else ScriptedChoice)(**fields, hesitate_s=hesitate)
    except TypeError as err:  # a value of the wrong JSON type
        raise ValueError(str(err)) from err


def parse_customer(line: bytes) -> Customer:
    """Build a card customer from one JSON line (no ``"step"`` key).

    Raises:
        ValueError: not a JSON object, unknown keys, or an invalid card/PIN/action.
    """
    return _customer(_json_object(line))


def _json_object(line: bytes) -> dict[str, Any]:
    try:
        fields: Any = json.loads(line)
    except json.JSONDecodeError as err:
        raise ValueError(f"not JSON: {err}") from err
    if not isinstance(fields, dict):
        raise ValueError("expected a JSON object")
    return fields


def _hesitation(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("hesitate_s is a number of seconds")
    return float(value)


def _customer(fields: dict[str, Any]) -> Customer:
    unknown = set(fields) - _FIELDS
    if unknown:
        raise ValueError(f"unknown keys: {', '.join(sorted(unknown))}")
    hesitate = _hesitation(fields.pop("hesitate_s", 0.0))
    if not all(isinstance(value, str) or (key == "pin" and value is None) for key, value in fields.items()):
        raise ValueError("card, pin and action are strings")
    return Customer(**fields, hesitate_s=hesitate)


MAX_REPLUG_S = 60.0


def _unplug(pad: SimulatedPinPad, fields: dict[str, Any]) -> None:
    delay = fields.pop("replug_after_s", 1.0)
    if fields:
        raise ValueError(f"unknown keys: {', '.join(sorted(fields))}")
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 < delay <= MAX_REPLUG_S:
        raise ValueError(f"replug_after_s is a number of seconds, 0 < s <= {MAX_REPLUG_S:g}")
    pad.unplug()
    loop = asyncio.get_running_loop()
    loop.call_later(float(delay), lambda: loop.create_task(pad.start()))


def _random_key_hex() -> str:
    return with_odd_parity(os.urandom(16)).hex().upper()


def _replace_keys(pad: SimulatedPinPad, fields: dict[str, Any]) -> None:
    name = fields.pop("keys", None)
    if fields:
        raise ValueError(f"unknown keys: {', '.join(sorted(fields))}")
    if not isinstance(name, str) or name not in KEY_SETUPS:
        raise ValueError(f"keys is one of {', '.join(sorted(KEY_SETUPS))}")
    master, working = KEY_SETUPS[name]
    pad.replace_keys(_random_key_hex() if master is None else master, _random_key_hex() if working is None else working)


def reply_for(pad: SimulatedPinPad, line: bytes) -> dict[str, Any]:
    """Enqueue the customer in ``line`` on ``pad`` (or unplug it, or replace its keys) and return the reply object."""
    try:
        fields = _json_object(line)
        if fields.get("step") in ("unplug", "keys"):
            step = fields.pop("step")
            (_unplug if step == "unplug" else _replace_keys)(pad, fields)
            return {"ok": True}
        script = parse_line(line)
        if isinstance(script, Customer):
            pad.enqueue_customer(script)
        else:
            pad.prompts.enqueue(script)
    except ValueError as err:
        return {"ok": False, "error": str(err)}
    return {"ok": True}


class ControlServer:
    """Serves the control socket at ``path`` for ``pad``."""

    def __init__(self, pad: SimulatedPinPad, path: str | os.PathLike[str]) -> None:
        self._pad = pad
        self._path = Path(path)
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    @property
    def path(self) -> str:
        """The socket path."""
        return str(self._path)

    async def start(self) -> None:
        """Bind the socket (replacing a stale one) and start accepting clients."""
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()
        self._server = await asyncio.start_unix_server(self._serve_client, path=self._path, limit=MAX_LINE)

    async def stop(self) -> None:
        """Stop accepting, close clients and remove the socket file."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._clients):
                writer.close()  # ends the client's readline(); its handler then returns
            await self._server.wait_closed()
            self._server = None
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()

    async def _serve_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while line := await reader.readline():
                if not line.strip():
                    continue
                writer.write(json.dumps(reply_for(self._pad, line)).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError) as err:  # ValueError: line over MAX_LINE
            _LOGGER.debug("control client dropped: %s", err)
        finally:
            self._clients.discard(writer)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def enqueue_remote(path: str | os.PathLike[str], **fields: str | int | float | None) -> None:
    """Enqueue one customer on the simulator listening at ``path`` (async client).

    Raises:
        ValueError: the simulator refused the customer.
        OSError: no simulator listens at ``path``.
    """
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps(fields).encode() + b"\n")
        await writer.drain()
        _check_reply(await reader.readline())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


def enqueue_remote_sync(path: str | os.PathLike[str], timeout: float = 5.0, **fields: str | int | float | None) -> None:
    """Blocking variant of :func:`enqueue_remote`, for synchronous test code."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(os.fspath(path))
        sock.sendall(json.dumps(fields).encode() + b"\n")
        with sock.makefile("rb") as stream:
            _check_reply(stream.readline())


def _check_reply(line: bytes) -> None:
    reply = json.loads(line) if line else {"ok": False, "error": "no reply"}
    if not reply.get("ok"):
        raise ValueError(f"simulator refused the customer: {reply.get('error')}")
