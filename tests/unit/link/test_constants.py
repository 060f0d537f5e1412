"""Every constant named in docs/device-protocol.md exists under that name, with its value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from misbridge.link import constants, messages
from misbridge.link.codes import LinkControl
from misbridge.link.constants import ControlByte

DOC = Path(__file__).resolve().parents[3] / "docs" / "device-protocol.md"
# Backticked words of the document that name frame fields or a padding character, not constants.
NOT_CONSTANTS = {"LEN", "LRC", "SEQ", "TYPE", "DATA", "F"}
NAMESPACES = (
    constants,
    ControlByte,
    LinkControl,
    messages.MessageType,
    messages.Tag,
    messages.ResultCode,
)


def documented_names() -> list[str]:
    names = set(re.findall(r"`([A-Z][A-Z0-9_]*)`", DOC.read_text(encoding="utf-8")))
    return sorted(names - NOT_CONSTANTS)


def test_the_document_names_constants() -> None:
    assert len(documented_names()) > 50


@pytest.mark.parametrize("name", documented_names())
def test_documented_name_exists(name: str) -> None:
    assert any(hasattr(ns, name) for ns in NAMESPACES), f"{name} from {DOC.name} is not defined"


def test_control_bytes() -> None:
    assert (ControlByte.STX, ControlByte.ETX, ControlByte.ACK, ControlByte.NAK) == (0x02, 0x03, 0x06, 0x15)


def test_values_from_the_document() -> None:
    assert constants.DEFAULT_BAUDRATE == 115200
    assert constants.TEXT_ENCODING == "utf-8"
    assert (constants.MAX_DATA_LEN, constants.MAX_FRAME_LEN) == (1019, 1024)
    assert (constants.SEQ_MIN, constants.SEQ_MAX) == (1, 255)
    assert constants.ACK_TIMEOUT_S == 1.0
    assert constants.INTER_BYTE_TIMEOUT_S == 0.5
    assert constants.MAX_RETRANSMITS == 3
    # §3.1 session start
    assert (constants.SEQ_SESSION, constants.SESSION_NONCE_LEN, constants.SESSION_REPLY_MAX_S) == (0, 4, 0.5)
    assert (LinkControl.LINK_RESET, LinkControl.LINK_RESET_REPLY) == (0x00, 0x80)


def test_frame_sizes_agree() -> None:
    # §2: "with STX, LEN, ETX, LRC a frame is at most 1024 bytes".
    assert constants.FRAME_OVERHEAD + constants.MAX_DATA_LEN == constants.MAX_FRAME_LEN
    assert constants.MAX_PAYLOAD_LEN == constants.MAX_DATA_LEN - 1
