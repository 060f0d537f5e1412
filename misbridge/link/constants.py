"""Constants of the mispos-v1 link, named exactly as in ``docs/device-protocol.md``.

Every value carries the section of the protocol document that defines it, so a reader can
check the code against the specification line by line.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "ACK_TIMEOUT_MIN_S",
    "ACK_TIMEOUT_S",
    "ACK_TIMER_MARGIN_S",
    "ACK_TURNAROUND_S",
    "BITS_PER_BYTE",
    "CARD_KEY_INDEX",
    "DEFAULT_BAUDRATE",
    "FRAME_OVERHEAD",
    "INTER_BYTE_TIMEOUT_S",
    "KCV_HEX_LEN",
    "LEN_FIELD_SIZE",
    "MASTER_KEY_HEX_LEN",
    "MAX_CODE_LEN",
    "MAX_DATA_LEN",
    "MAX_FRAME_LEN",
    "MAX_OPTIONS",
    "MAX_OPTION_LEN",
    "MAX_PAYLOAD_LEN",
    "MAX_PROMPT_LEN",
    "MAX_REFERENCE_LEN",
    "MAX_RETRANSMITS",
    "MIN_DATA_LEN",
    "NAK_HOLDOFF_S",
    "NO_REQUEST_ID",
    "SEQ_MAX",
    "SEQ_MIN",
    "SEQ_SESSION",
    "SESSION_NONCE_LEN",
    "SESSION_REPLY_MAX_S",
    "TEXT_ENCODING",
    "WORKING_KEY_HEX_LEN",
    "ControlByte",
]


class ControlByte(IntEnum):
    """Control bytes of the line (§2 Frames)."""

    STX = 0x02  # start of a data frame
    ETX = 0x03  # end of a data frame
    ACK = 0x06  # positive acknowledgement; always followed by one SEQ byte
    NAK = 0x15  # negative acknowledgement; a single byte


# §1 Physical layer: 115200 baud, 8N1, no flow control.
DEFAULT_BAUDRATE = 115200
# §1 Physical layer: 8N1 puts 10 bits on the line per byte (start, 8 data, stop).
BITS_PER_BYTE = 10
# §1 Physical layer: UTF-8 for every text field; all other fields are ASCII.
TEXT_ENCODING = "utf-8"

# §2 Frames: LEN is 2 bytes of packed BCD.
LEN_FIELD_SIZE = 2
# §2 Frames: STX + LEN + ETX + LRC around DATA.
FRAME_OVERHEAD = 1 + LEN_FIELD_SIZE + 1 + 1
# §2 Frames: largest DATA; with STX, LEN, ETX, LRC a frame is at most 1024 bytes.
MAX_DATA_LEN = 1019
# §2 Frames / §3 table: the receive buffer never holds more than this.
MAX_FRAME_LEN = 1024
# §3 Receiving rule 3: DATA shorter than SEQ + TYPE is a bad frame.
MIN_DATA_LEN = 2
# §2 Frames: DATA is SEQ + TYPE + TLVs, so a message (TYPE + TLVs) has one byte less.
MAX_PAYLOAD_LEN = MAX_DATA_LEN - 1

# §2 Frames: SEQ is 1..255 and after 255 comes 1; 0 is never used.
SEQ_MIN = 1
SEQ_MAX = 255

# §3.1 Session start: link-control frames (LINK_RESET and its reply) carry SEQ 0, which data
# frames never use, so a session start is never mistaken for a data frame or a duplicate.
SEQ_SESSION = 0
# §3.1 Session start: the host's random nonce, 4 bytes, travelling as 8 uppercase hex characters.
SESSION_NONCE_LEN = 4
# §3.1 Session start: the pad answers LINK_RESET within this time (half the host's ACK_TIMEOUT_S).
SESSION_REPLY_MAX_S = 0.5

# §3 Sending rule 2: the pad's ACK timer, and the ceiling of the host's (the host waits less
# when the frame is short and the line fast, misbridge/link/timing.py).
ACK_TIMEOUT_S = 1.0
# §12 Timing: a receiver answers a frame with ACK or NAK within this long of its last byte,
# so the sender's ACK timer covers a whole frame on the wire plus the answer with room to spare.
ACK_TURNAROUND_S = 0.2
# §12 Timing: the host's ACK timer adds this to wire times and turnaround (scheduling, USB latency).
ACK_TIMER_MARGIN_S = 0.05
# §12 Timing: the host's ACK timer is never shorter than this (default of device.ack_timeout_min_s):
# the pad's turnaround allowance plus the margin, whatever the baud rate says.
ACK_TIMEOUT_MIN_S = ACK_TURNAROUND_S + ACK_TIMER_MARGIN_S
# §3 Receiving rule 5: a started frame with no new byte for this long is discarded and NAKed.
INTER_BYTE_TIMEOUT_S = 0.5
# §3 Sending rule 5: retransmissions before the link fails (four sends in all).
MAX_RETRANSMITS = 3
# §3 refinements: after a NAK, hold back further NAKs for bad frames inside the same wreckage
# this long unless a good frame arrives. One (pad) ACK timeout: by then the sender has retransmitted.
NAK_HOLDOFF_S = ACK_TIMEOUT_S

# §5.1 READ_CODE: the longest CODE_TEXT, in printable ASCII characters (a payment code is 18-24
# digits, a coupon or order QR code a short URL at most).
MAX_CODE_LEN = 512
# §5.2 CHOOSE: at most nine options, one per key 1..9, each label 1..32 characters.
MAX_OPTIONS = 9
MAX_OPTION_LEN = 32
# §4 REFERENCE: at most 40 characters, the length of an e-Buy traceNo.
MAX_REFERENCE_LEN = 40
# §4 PROMPT: at most 64 characters; a pad shows what fits on its screen (§10).
MAX_PROMPT_LEN = 64
# §5.4: the REQUEST_ID of a RESULT 07 answering a command whose own REQUEST_ID was missing or invalid.
NO_REQUEST_ID = 0
# §5 Card data / §11 Keys: READ_CARD carries no KEY_INDEX; PAN and tracks use the working key in slot 1.
CARD_KEY_INDEX = 1
# §11 Keys: ENC_WORKING_KEY is a double-length (2-key) TDES key, 16 bytes, 32 hex characters.
WORKING_KEY_HEX_LEN = 32
# §11 Keys: ENC_MASTER_KEY is the master key, double-length TDES too, under the pad's transport key.
MASTER_KEY_HEX_LEN = 32
# §11 Keys: a key check value is the first 3 bytes of TDES-ECB(key, 8 zero bytes), 6 hex characters.
KCV_HEX_LEN = 6
