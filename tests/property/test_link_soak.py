"""1 000 seeded runs: every PIN-pad event is delivered exactly once, in order (issue #5, R13).

Run by ``make soak``. Each seed plays one card transaction's worth of traffic (the host's
commands one way, the pad's progress, card data, PIN block and results the other) over a line
that drops and duplicates writes, within the fault budget the protocol promises to survive.
"""

from __future__ import annotations

import random

import pytest

from misbridge.link import Role
from misbridge.link.constants import MAX_RETRANSMITS
from misbridge.link.events import LinkFailed
from misbridge.link.messages import (
    CardData,
    Message,
    PinBlock,
    Progress,
    ReadCard,
    ReadPin,
    Result,
    StatusRequest,
    encode_message,
)
from misbridge.link.testing import LinkPair, lossy

SEEDS = 1000


def _traffic(rng: random.Random) -> tuple[list[bytes], list[bytes]]:
    request_id = rng.randint(1, 9990)
    commands: list[Message] = [
        ReadCard(request_id, rng.randint(1, 10**6), 60),
        ReadPin(request_id + 1, 4080, 60),
        StatusRequest(request_id + 2),
    ]
    events: list[Message] = [
        Progress(request_id, "01"),
        CardData(request_id, "00", "622562******8888", "AB" * 8, "CD" * 16, "2812"),
        Progress(request_id + 1, "03"),
        *(Progress(request_id + 1, "04", digits) for digits in range(1, rng.randint(4, 7))),
        PinBlock(request_id + 1, "0F" * 8, 1),
        Result(request_id + 2, "00"),
    ]
    return [encode_message(m) for m in commands], [encode_message(m) for m in events]


@pytest.mark.soak
def test_every_event_is_delivered_exactly_once_over_1000_seeded_lossy_runs() -> None:
    failures = []
    for seed in range(SEEDS):
        rng = random.Random(seed)
        commands, events = _traffic(rng)
        budget = rng.randint(0, MAX_RETRANSMITS)
        pair = LinkPair(
            host_to_device=lossy(seed, drop=0.2, duplicate=0.15, max_faults=budget),
            device_to_host=lossy(seed + 10**6, drop=0.2, duplicate=0.15, max_faults=MAX_RETRANSMITS - budget),
        )
        for payload in commands:
            pair.host.send(payload, pair.now)
        for payload in events:
            pair.device.send(payload, pair.now)
        pair.run()
        failed = any(isinstance(e, LinkFailed) for e in pair.host_events + pair.device_events)
        if failed or pair.received_by(Role.HOST) != events or pair.received_by(Role.DEVICE) != commands:
            failures.append(seed)
    print(f"\nlink soak: {SEEDS} seeded runs, {len(failures)} failures {failures[:10]}")  # noqa: T201 - soak summary
    assert failures == []
