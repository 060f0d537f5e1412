"""Front door 1: the e-Buy message structure on a TCP socket (default 127.0.0.1:9100).

Each message is a 2-byte big-endian length and the JSON envelope ``{action, deviceNo, shopNo,
brand, body}`` (book §6); the answer has the same form, with the envelope fields echoed and
``body`` the Base64 of the response JSON. A connection may carry many requests one after the
other. When the stream itself cannot be trusted any more (a length prefix that lies, bytes that
are not JSON) misbridge answers with an error and closes the connection, because the next
message boundary is unknown.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from misbridge.config import ApiSettings, IdentitySettings
from misbridge.crashpoints import crash_point
from misbridge.ebuy.envelope import (
    LENGTH_PREFIX_LEN,
    Envelope,
    encode_envelope,
    frame_message,
    parse_envelope,
    read_length_prefix,
)
from misbridge.ebuy.requests import error_response
from misbridge.errors import RequestError, ReturnCode

Handler = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]
#: Errors after which the byte stream has no trustworthy message boundary.
_STREAM_BROKEN = (ReturnCode.BAD_LENGTH_PREFIX, ReturnCode.NOT_JSON)
#: Bytes a JSON document may start with (whitespace, then a value).
_JSON_FIRST_BYTES = frozenset(b' \t\r\n{["-0123456789tfn')
#: The first three bytes of an HTTP request line: an upper-case method.
_HTTP_METHOD_START = re.compile(rb"[A-Z]{3}")


class PosSocketServer:
    """Serves the e-Buy framed protocol to the cashier POS."""

    def __init__(self, handler: Handler, api: ApiSettings, identity: IdentitySettings) -> None:
        self._handler = handler
        self._api = api
        self._identity = identity
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        """Listen; returns the bound port (useful when the configured port is 0)."""
        self._server = await asyncio.start_server(self._on_connection, self._api.host, self._api.socket_port)
        port = int(self._server.sockets[0].getsockname()[1])
        logger.info("e-Buy socket front door listening on {}:{}", self._api.host, port)
        return port

    async def stop(self) -> None:
        """Stop listening and close open connections (running transactions go on in the service)."""
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        try:
            while await self._serve_one(reader, writer):
                pass
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()
            logger.debug("POS connection {} closed", peer)

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Read one message, answer it; False when the connection should close."""
        try:
            prefix = await reader.readexactly(LENGTH_PREFIX_LEN)
        except asyncio.IncompleteReadError as err:
            if err.partial:
                await self._send_error(writer, self._framing_error("1 byte of a 2-byte length prefix, then EOF"))
            return False
        expected = read_length_prefix(prefix)
        try:
            payload = await self._read_payload(reader, prefix, expected)
            envelope = parse_envelope(payload)
        except RequestError as err:
            await self._send_error(writer, err)
            return err.return_code not in _STREAM_BROKEN
        body = await self._handler(envelope.action, envelope.body)
        await self._send(writer, envelope, body)
        crash_point("pos.after_reply")
        return True

    async def _read_payload(self, reader: asyncio.StreamReader, prefix: bytes, expected: int) -> bytes:
        """The ``expected`` message bytes; refused at its first byte if that cannot start JSON.

        A browser (or any HTTP client) pointed at this port sends ``POST /... HTTP/1.1``: its
        first two bytes become the length prefix and the next byte is a letter, which no JSON
        document starts with. Refusing there answers at once instead of after the read timeout.
        Either way the request never reaches the service (docs/pos-api.md, "Browsers").
        """
        if expected == 0:
            return b""
        first = await self._read_exactly(reader, 1, announced=expected)
        if first[0] not in _JSON_FIRST_BYTES:
            if _HTTP_METHOD_START.fullmatch(prefix + first):
                logger.warning("an HTTP request arrived on the e-Buy socket door (a browser or HTTP client?)")
            raise RequestError(
                f"message is not JSON: no JSON document starts with byte {first!r}", return_code=ReturnCode.NOT_JSON
            )
        return first + await self._read_exactly(reader, expected - 1, announced=expected, already=1)

    async def _read_exactly(
        self, reader: asyncio.StreamReader, count: int, *, announced: int, already: int = 0
    ) -> bytes:
        """``count`` more bytes of a message of ``announced`` bytes of which ``already`` arrived."""
        timeout = self._api.socket_read_timeout_s
        try:
            return await asyncio.wait_for(reader.readexactly(count), timeout)
        except asyncio.IncompleteReadError as err:
            raise self._framing_error(
                f"length prefix announced {announced} bytes but the connection closed after "
                f"{already + len(err.partial)}"
            ) from err
        except TimeoutError as err:
            raise self._framing_error(
                f"length prefix announced {announced} bytes but they did not arrive within {timeout:g} s"
            ) from err

    @staticmethod
    def _framing_error(message: str) -> RequestError:
        return RequestError(message, return_code=ReturnCode.BAD_LENGTH_PREFIX)

    async def _send_error(self, writer: asyncio.StreamWriter, err: RequestError) -> None:
        logger.warning("refused POS message: {} {}", err.return_code.code, err)
        envelope = Envelope(
            action="",
            device_no=self._identity.device_no,
            shop_no=self._identity.shop_no,
            brand=self._identity.brand,
            body={},
        )
        with contextlib.suppress(ConnectionError):
            await self._send(writer, envelope, error_response("", err, err.return_code))

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, request: Envelope, body: dict[str, Any]) -> None:
        reply = Envelope(request.action, request.device_no, request.shop_no, request.brand, body)
        writer.write(frame_message(encode_envelope(reply)))
        await writer.drain()
