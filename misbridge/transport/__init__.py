"""Byte pipes to the PIN pad (serial, pyserial URLs, USB bulk). They know nothing of frames."""

from misbridge.transport.base import TRANSPORTS, ByteTransport, TransportOpener, open_transport, url_scheme

__all__ = ["TRANSPORTS", "ByteTransport", "TransportOpener", "open_transport", "url_scheme"]
