"""Line faults the simulated pad injects, and the readable frame trace.

The pad's link session produces correct bytes; :class:`Faults` says how to spoil the next ones
on their way to the host (:class:`~simulators.pinpad.line.FaultyLine` applies them). The
vocabulary of line faults is that of ``misbridge.link.testing`` (its module docstring): the same
names where the fault is the same (``duplicate``, like ``duplicate_writes``; ``bad_lrc`` is
``corrupt_write`` at the LRC), counted from 1. The pad sees its own output, so it counts units
(an ACK, a NAK, a whole frame) rather than writes: a counter *n* spoils the next *n* units of
its kind (units 1 to *n* from when it was armed) and counts down:

- ``nak``: answer the next n host frames with NAK instead of ACK (the host retransmits; the pad
  already has the command and suppresses the duplicate);
- ``withhold_ack``: send nothing for the next n ACKs (the host retransmits after its ACK timeout);
- ``bad_lrc``: flip the LRC of the next n data frames sent (the host NAKs; the pad resends);
- ``garbage``: put a burst of garbage bytes before each of the next n data frames;
- ``duplicate``: send each of the next n data frames twice;
- ``silence_s``: from the next command received, send nothing for this long (armed once);
- ``slow_ms``: send every byte this many milliseconds after the previous one (stays on);
- ``unplug_after``: unplug once the host acknowledged the frame of this event (see
  :data:`EVENTS`), or at once after receiving the next command for ``"command"``;
- ``cut_frame``: send half of the next data frame, then unplug (the host sees a torn frame).

Rates spoil units at random instead of the next n, for as long as the pad runs:

- ``nak_rate``: probability (0 <= p < 1) that each ACK the pad owes a host data frame goes out
  as NAK instead (the host retransmits, the pad suppresses the duplicate and acknowledges it
  again, and that ACK is rolled for again);
- ``bad_lrc_rate``: probability that each data frame the pad sends, a resend included, goes out
  with its LRC flipped (the host NAKs; the pad resends);
- ``seed``: seeds the draws, so a run is reproducible: ``nak_rate`` and ``bad_lrc_rate`` each
  have their own :class:`random.Random` (seeded from ``seed`` and the fault's name), drawn once
  per ACK / per data frame while the rate is above 0, so the k-th ACK and the k-th data frame of
  a run get the same fate whatever the timing and whatever the other rate.

A rate and its counter go through the same step (:meth:`Faults.take`): the counter is used up
first, the rate decides for every unit after that. Each send of a frame is decided on its own,
so a resend can be spoiled again, but the host link's budget is finite: ``MAX_RETRANSMITS`` (3,
misbridge/link/constants.py) retransmissions, four sends in all, then the link fails. A frame
is lost that way only if all four of its sends are spoiled: p**4, at 5 % 0.05**4 = 6.25e-6
(about one frame in 160 000; a card redemption is about a dozen frames, 2 commands from the
host and ~10 replies from the pad, so about 1 redemption in 13 000 would see the link fail).
A bad-LRC frame leaves its end known (only the LRC is wrong), so the host reads an ACK or NAK
right behind it and NAKs a second spoiled copy of the same frame at once (docs/device-protocol.md
§3 *refinements*, misbridge.link.frames.FrameDecoder): each spoiled unit costs one round trip,
and no timer runs unless an ACK is withheld (``withhold_ack``; the host resends after its ACK
timer, about 0.25 s at 115200 baud, §12).

The trace (:func:`describe_unit`) is one line per unit on the line: hex and decoded. PANs are
masked by the pad itself; encrypted fields (tracks, PAN, IC data, PIN block, working key) are
elided from both the hex and the decoded text.
"""

from __future__ import annotations

import collections
import random
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from misbridge.errors import MessageError
from misbridge.link import ControlByte, Message, decode_bcd_length, decode_message, parse_link_reset
from misbridge.link.messages import (
    CardData,
    CodeData,
    LoadMasterKey,
    LoadWorkingKey,
    PinBlock,
    Progress,
    ProgressStage,
)
from simulators.pinpad.customer import Customer, ScriptedChoice, ScriptedCode

#: Events ``unplug_after`` accepts: the pad unplugs once the host acknowledged that frame.
EVENTS = (
    "command",
    "device-info",
    "waiting-card",
    "card-data",
    "waiting-pin",
    "pin-block",
    "result",
    "waiting-code",
    "code-data",
    "waiting-choice",
    "choice",
)

#: The garbage burst: line noise with the control bytes in it, as a real line makes it: an
#: ``ACK 0`` (never an acknowledgement, §2), a stray NAK and an STX whose LEN is not BCD (a bad
#: frame, NAKed and rescanned). The receiver must discard all of it and still find the frame after
#: it. No ``06 xx`` with a usable SEQ: an ACK carries no check of its own (§3 Known limits).
GARBAGE = b"#GARBAGE\x06\x00~\x15~LINE\x02\xab~NOISE#"

#: The rate faults: a probability per unit, drawn from a seeded generator (see the module docstring).
RATES = ("nak_rate", "bad_lrc_rate")

#: Fields that may appear in a trace line; nothing encrypted is among them.
TRACE_FIELDS = (
    "amount_minor",
    "timeout_s",
    "masked_pan",
    "card_type",
    "stage",
    "digits_entered",
    "code",
    "state",
    "key_index",
    "model",
    "firmware",
    "serial_no",
    "trans_type",
    "reference",
    "code_input",
    "source",
    "index",
)
#: Messages whose TLVs carry encrypted data or a (payment) code: their hex is shown without the TLV part.
_SECRET_TYPES = (CardData, PinBlock, LoadWorkingKey, LoadMasterKey, CodeData)


@dataclass
class Faults:
    """Faults still to inject; the pad counts them down as it applies them.

    Raises:
        ValueError: a negative count or delay, a rate outside ``0 <= p < 1``, a seed that is
            not an integer, or an unknown ``unplug_after`` event; the message names the field.
    """

    nak: int = 0
    withhold_ack: int = 0
    bad_lrc: int = 0
    garbage: int = 0
    duplicate: int = 0
    silence_s: float = 0.0
    slow_ms: float = 0.0
    unplug_after: str | None = None
    cut_frame: bool = False
    nak_rate: float = 0.0
    bad_lrc_rate: float = 0.0
    seed: int = 0
    #: Faults applied so far, by kind (``nak``, ``bad_lrc``, ...), counters and rates alike.
    injected: collections.Counter[str] = field(default_factory=collections.Counter, init=False, compare=False)
    #: Units a kind was considered for (every ACK for ``nak``, every data frame for ``bad_lrc``).
    seen: collections.Counter[str] = field(default_factory=collections.Counter, init=False, compare=False)
    _rngs: dict[str, random.Random] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("nak", "withhold_ack", "bad_lrc", "garbage", "duplicate", "silence_s", "slow_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        for name in RATES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
                why = ""
                if isinstance(value, int | float) and value >= 1:
                    why = " (at 1 every frame is spoiled and nothing gets through; 5 % is 0.05)"
                raise ValueError(f"{name} must be a probability with 0 <= {name} < 1, not {value!r}{why}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, not {self.seed!r}")
        if self.unplug_after is not None and self.unplug_after not in EVENTS:
            raise ValueError(f"unknown unplug_after event {self.unplug_after!r} (known: {', '.join(EVENTS)})")
        self._rngs = {name: random.Random(f"{name}:{self.seed}") for name in RATES}

    def settings(self) -> dict[str, Any]:
        """The constructor arguments (what a scenario file or the flags set), without the tallies."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.init}

    def take(self, kind: str) -> bool:
        """Whether to spoil the current unit with fault ``kind``; uses up one of its count.

        The counter goes first; once it is 0, ``<kind>_rate`` (if there is one) decides. While
        the rate is above 0 every call draws, used or not, so the k-th unit's fate depends on k
        only. What was applied is tallied in :attr:`injected`, the units seen in :attr:`seen`.
        """
        self.seen[kind] += 1
        rate = getattr(self, f"{kind}_rate", 0.0)
        rolled = rate > 0 and self._rngs[f"{kind}_rate"].random() < rate
        if getattr(self, kind) > 0:
            setattr(self, kind, getattr(self, kind) - 1)
        elif not rolled:
            return False
        self.injected[kind] += 1
        return True

    def summary(self) -> str:
        """The faults applied so far, e.g. ``nak 7/152, bad_lrc 9/160`` (applied/units seen)."""
        return ", ".join(f"{kind} {count}/{self.seen[kind]}" for kind, count in sorted(self.injected.items()))


def event_of(msg: Message) -> str | None:
    """The :data:`EVENTS` name of a message the pad sends, if it has one."""
    if isinstance(msg, Progress):
        stages: dict[str, str] = {
            ProgressStage.WAITING_FOR_CARD: "waiting-card",
            ProgressStage.WAITING_FOR_PIN: "waiting-pin",
            ProgressStage.WAITING_FOR_CODE: "waiting-code",
            ProgressStage.WAITING_FOR_CHOICE: "waiting-choice",
        }
        return stages.get(msg.stage)
    names = {
        "DeviceInfo": "device-info",
        "CardData": "card-data",
        "PinBlock": "pin-block",
        "Result": "result",
        "CodeData": "code-data",
        "Choice": "choice",
    }
    return names.get(type(msg).__name__)


def split_units(data: bytes) -> list[bytes]:
    """Split well-formed session output into ``ACK SEQ``, ``NAK`` and whole data frames."""
    units: list[bytes] = []
    i = 0
    while i < len(data):
        byte = data[i]
        if byte == ControlByte.ACK:
            size = 2
        elif byte == ControlByte.STX and i + 3 <= len(data):
            size = 5 + decode_bcd_length(data[i + 1 : i + 3])
        else:
            size = 1
        units.append(data[i : i + size])
        i += size
    return units


def is_data_frame(unit: bytes) -> bool:
    """True for ``STX ... LRC``."""
    return len(unit) > 5 and unit[0] == ControlByte.STX


def describe_unit(unit: bytes) -> str:
    """One trace line body for a unit on the line: decoded text, then ``|`` and the hex."""
    if unit[:1] == bytes([ControlByte.ACK]) and len(unit) == 2:
        return f"ACK seq={unit[1]} | {unit.hex(' ')}"
    if unit == bytes([ControlByte.NAK]):
        return f"NAK | {unit.hex(' ')}"
    if not is_data_frame(unit):
        return f"garbage ({len(unit)} bytes) | {unit[:32].hex(' ')}{' ...' if len(unit) > 32 else ''}"
    seq, payload = unit[3], unit[4:-2]
    reset = parse_link_reset(unit[3:-2]) if seq == 0 else None
    if reset is not None:
        name = "LINK_RESET_REPLY" if reset.reply else "LINK_RESET"
        return f"frame seq=0 {name} nonce={reset.nonce.hex().upper()} | {unit.hex(' ')}"
    try:
        msg = decode_message(payload)
    except MessageError as err:
        return f"frame seq={seq} undecodable ({err}) | {unit[:5].hex(' ')} ... ({len(unit)} bytes)"
    shown = " ".join(f"{name}={getattr(msg, name)}" for name in TRACE_FIELDS if hasattr(msg, name))
    text = f"frame seq={seq} {type(msg).__name__} id={msg.request_id} {shown}".rstrip()
    if isinstance(msg, _SECRET_TYPES):
        hexed = f"{unit[:5].hex(' ')} ..({len(unit) - 7} bytes elided).. {unit[-2:].hex(' ')}"
    else:
        hexed = unit.hex(" ")
    return f"{text} | {hexed}"


@dataclass
class Scenario:
    """A TOML scenario: pad settings, faults and the queues of customers (cards, codes, choices)."""

    pad: dict[str, Any] = field(default_factory=dict)
    faults: Faults = field(default_factory=Faults)
    customers: list[Customer] = field(default_factory=list)
    codes: list[ScriptedCode] = field(default_factory=list)
    choices: list[ScriptedChoice] = field(default_factory=list)


_PAD_KEYS = frozenset(
    {
        "card",
        "pin",
        "timeout_cap",
        "card_delay",
        "pin_delay",
        "scanner",
        "legacy",
        "reset_on_open",
        "session_start",
        "keys",
        "serial_no",
    }
)
_SECTIONS = frozenset({"pad", "faults", "customers", "codes", "choices"})


def load_scenario(path: str | Path) -> Scenario:
    """Read a scenario file::

        [pad]                    # card, pin, timeout_cap, card_delay, pin_delay, scanner, legacy,
                                 # reset_on_open, session_start, keys, serial_no
        card = "points"
        [faults]                 # any field of Faults
        nak = 1
        unplug_after = "card-data"
        bad_lrc_rate = 0.05      # rates: 0 <= p < 1, drawn from a generator seeded with seed
        seed = 7
        [[customers]]            # queued in order; then the default customer
        card = "member"
        action = "cancel-pin"
        [[codes]]                # READ_CODE customers in order; then the book's example code
        code = "280123121234567890"
        source = "barcode"       # qr, barcode or keypad; action give, cancel or none
        [[choices]]              # CHOOSE customers in order; then the first option
        option = 2               # the key pressed; action choose, cancel or none

    Raises:
        ValueError: not TOML, unknown sections or keys, or invalid values.
    """
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"scenario {path}: {err}") from err
    unknown = set(data) - _SECTIONS
    if unknown:
        raise ValueError(f"scenario {path}: unknown sections {', '.join(sorted(unknown))}")
    pad = dict(data.get("pad", {}))
    if set(pad) - _PAD_KEYS:
        raise ValueError(f"scenario {path}: unknown [pad] keys {', '.join(sorted(set(pad) - _PAD_KEYS))}")
    fault_data = dict(data.get("faults", {}))
    known = set(Faults().settings())
    if set(fault_data) - known:
        raise ValueError(f"scenario {path}: unknown [faults] keys {', '.join(sorted(set(fault_data) - known))}")
    try:
        faults = Faults(**fault_data)
        customers = [Customer(**c) for c in data.get("customers", [])]
        codes = [ScriptedCode(**c) for c in data.get("codes", [])]
        choices = [ScriptedChoice(**c) for c in data.get("choices", [])]
    except TypeError as err:
        raise ValueError(f"scenario {path}: {err}") from err
    return Scenario(pad, faults, customers, codes, choices)
