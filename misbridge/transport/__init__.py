"""Byte pipes to the PIN pad (serial, pyserial URLs, USB bulk). They know nothing of frames."""

from misbridge.transport.base import ByteTransport, TransportOpener, url_scheme
from misbridge.transport.registry import TRANSPORTS, open_transport

__all__ = ["TRANSPORTS", "ByteTransport", "TransportOpener", "open_transport", "url_scheme"]
