"""The lane router (misbridge.core.lanes) and the [[lanes]] settings, with recording services in place of lanes."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from loguru import logger

import misbridge
from misbridge.config.settings import DEFAULT_LANE, Lane, Settings, load_settings
from misbridge.core.health import needs_manual_alert
from misbridge.core.lanes import LaneRouter, lane_log_context
from misbridge.errors import ConfigError
from misbridge.telemetry.logs import configure_logging


class Recorder:
    """A lane's service that records what it ran and reports a chosen health."""

    def __init__(self, name: str, *, reasons: tuple[str, ...] = (), needs_manual: int = 0) -> None:
        self.name = name
        self.ran: list[str] = []
        self.busy_with: set[str] = set()
        self.reasons = list(reasons)
        self.needs_manual = needs_manual

    async def handle(
        self, action: str, body: Mapping[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        self.ran.append(str(body.get("traceNo")))
        return {"traceNo": body.get("traceNo"), "returnCode": "00", "returnDesc": self.name}

    async def transaction(self, trace_no: str) -> dict[str, Any] | None:
        return {"traceNo": trace_no, "seenBy": self.name}

    async def health(self) -> tuple[bool, dict[str, Any]]:
        alerts = [needs_manual_alert(self.needs_manual)] if self.needs_manual else []
        alerts.append("end of day 2026-05-01: 1 mismatch")
        detail = {
            "status": "not ready" if self.reasons else "ready",
            "reasons": self.reasons,
            "accepting": True,
            "recovering": False,
            "pad": {"connected": True},
            "inFlight": len(self.busy_with),
            "reversals": {"pending": 1, "needsManual": self.needs_manual},
            "alerts": alerts,
            "reconcile": {"date": "2026-05-01", "mismatches": 1, "report": "r.json"},
        }
        return not self.reasons, detail

    def running(self, trace_no: str) -> bool:
        return trace_no in self.busy_with


def lanes(count: int) -> list[Lane]:
    settings = Settings(
        lanes=[
            {"name": f"lane{n}", "device_url": f"/dev/mispos-{n}", "device_no": f"POS0{n}"} for n in range(1, count + 1)
        ]
    )
    return settings.lane_list()


def router_of(*services: Recorder) -> LaneRouter:
    if len(services) == 1:
        return LaneRouter([(Settings().lane_list()[0], services[0])])
    return LaneRouter(list(zip(lanes(len(services)), services, strict=True)))


async def test_requests_go_to_the_lane_they_name() -> None:
    one, two = Recorder("one"), Recorder("two")
    router = router_of(one, two)
    assert (router.names, router.default) == (["lane1", "lane2"], "lane1")
    assert (await router.handle("lane2", "cardRedemption", {"traceNo": "T1"}))["returnDesc"] == "two"
    door = router.by_device_no("POS01")
    assert door is not None
    assert (await door.handle("cardRedemption", {"traceNo": "T2"}))["returnDesc"] == "one"
    assert (one.ran, two.ran) == (["T2"], ["T1"])


async def test_a_lane_or_device_no_that_does_not_exist_is_mb19_and_runs_nothing() -> None:
    one, two = Recorder("one"), Recorder("two")
    router = router_of(one, two)
    answer = await router.handle("lane9", "cardRedemption", {"traceNo": "T1"})
    assert (answer["returnCode"], answer["traceNo"]) == ("MB19", "T1")
    assert "lane9" in answer["returnDesc"]
    assert "lane1, lane2" in answer["returnDesc"]
    assert router.by_device_no("POS99") is None
    assert router.door("lane9") is None
    assert (one.ran, two.ran) == ([], [])


async def test_one_lane_takes_every_device_no() -> None:
    only = Recorder("only")
    router = router_of(only)
    assert router.names == [DEFAULT_LANE]
    door = router.by_device_no("whatever the POS sends")
    assert door is not None
    assert (await door.handle("cardRedemption", {"traceNo": "T1"}))["returnDesc"] == "only"


async def test_a_trace_no_running_on_a_lane_stays_there_whatever_lane_is_named() -> None:
    one, two = Recorder("one"), Recorder("two")
    one.busy_with.add("T1")
    router = router_of(one, two)
    assert (await router.handle("lane2", "cardRedemption", {"traceNo": "T1"}))["returnDesc"] == "one"
    assert (await router.handle("lane2", "cardRedemption", {"traceNo": "T2"}))["returnDesc"] == "two"


async def test_the_daemons_health_is_every_lanes() -> None:
    one = Recorder("one", needs_manual=1)
    two = Recorder("two", reasons=("the PIN pad is not connected",), needs_manual=2)
    router = router_of(one, two)
    ready, detail = await router.health()
    assert not ready
    assert detail["status"] == "not ready"
    assert detail["version"] == misbridge.__version__
    assert detail["reasons"] == ["lane lane2: the PIN pad is not connected"]
    assert detail["reversals"] == {"pending": 2, "needsManual": 3}
    assert detail["alerts"] == [needs_manual_alert(3), "end of day 2026-05-01: 1 mismatch"]
    assert detail["lanes"]["lane2"]["deviceNo"] == "POS02"
    assert detail["lanes"]["lane1"]["status"] == "ready"
    assert (await router.health("lane1"))[0] is True
    assert (await router.front().health())[1]["lanes"].keys() == {"lane1", "lane2"}
    lane_door = router.door("lane1")
    assert lane_door is not None
    assert "lanes" not in (await lane_door.health())[1]
    assert (await router_of(Recorder("only")).health())[1]["pad"] == {"connected": True}  # one lane: as ever
    with pytest.raises(ValueError, match="at least one lane"):
        LaneRouter([])


def test_lanes_take_what_they_leave_out_from_device_and_identity() -> None:
    settings = Settings(
        identity={"device_no": "POS01", "shop_no": "SHOP1"},
        device={"key_index": 3, "card_timeout_s": 30},
        lanes=[
            {"name": "front", "device_url": "/dev/mispos-A", "device_no": "POS11"},
            {"name": "desk", "device_url": "usb://1209:0001/X", "device_no": "POS12", "shop_no": "SHOP2",
             "socket_port": 9110, "key_index": 2},
        ],
    )  # fmt: skip
    front, desk = settings.lane_list()
    assert (front.name, front.default, desk.default) == ("front", True, False)
    assert (front.device.url, front.device.key_index, front.device.card_timeout_s) == ("/dev/mispos-A", 3, 30)
    assert (front.identity.device_no, front.identity.shop_no) == ("POS11", "SHOP1")
    assert (desk.identity.shop_no, desk.device.key_index, desk.socket_port) == ("SHOP2", 2, 9110)
    lane_settings = settings.for_lane(desk)
    assert (lane_settings.device.url, lane_settings.identity.device_no) == ("usb://1209:0001/X", "POS12")
    classic = Settings().lane_list()
    assert [(lane.name, lane.default, lane.device.url) for lane in classic] == [(DEFAULT_LANE, True, "/dev/mispos")]


def lane(name: str, device_url: str, device_no: str, **more: Any) -> dict[str, Any]:
    return {"name": name, "device_url": device_url, "device_no": device_no, **more}


@pytest.mark.parametrize(
    ("lanes_given", "message"),
    [
        ([lane("a", "/dev/x", "P1"), lane("a", "/dev/y", "P2")],
         "lanes[1].name 'a' is already another lane's"),
        ([lane("a", "/dev/x", "P1"), lane("b", "/dev/x", "P2")],
         "lanes[1].device_url '/dev/x' is already another lane's"),
        ([lane("a", "/dev/x", "P1"), lane("b", "/dev/y", "P1")],
         "lanes[1].device_no 'P1' is already another lane's"),
        ([{"name": "a", "device_url": "/dev/x", "device_no": "P1", "socket_port": 9100}],
         "lanes[0].socket_port 9100 is already api.socket_port"),
        ([{"name": "a", "device_url": "/dev/x", "device_no": "P1", "socket_port": 9110},
          {"name": "b", "device_url": "/dev/y", "device_no": "P2", "socket_port": 9110}],
         "lanes[1].socket_port 9110 is already lanes[0].socket_port"),
        ([{"name": "Lane 1", "device_url": "/dev/x", "device_no": "P1"}], "lanes.0.name"),
        ([{"name": "a", "device_no": "P1"}], "lanes.0.device_url"),
    ],
)  # fmt: skip
def test_lanes_that_would_collide_are_refused_naming_the_field(lanes_given: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        load_settings(lanes=lanes_given)


class Talker(Recorder):
    """A lane's service that logs a line itself and one from a task it starts (as a transaction runs in its own)."""

    async def handle(
        self, action: str, body: Mapping[str, Any], *, caller_gone: asyncio.Event | None = None
    ) -> dict[str, Any]:
        trace_no = body.get("traceNo")
        logger.bind(traceNo=trace_no).info("{} handles", self.name)
        await asyncio.create_task(_talk_later(f"{self.name}'s task", trace_no))
        return await super().handle(action, body, caller_gone=caller_gone)


async def _talk_later(who: str, trace_no: object) -> None:
    await asyncio.sleep(0)
    logger.bind(traceNo=trace_no).info("{} runs", who)


@pytest.fixture
def log() -> Iterator[io.StringIO]:
    sink = io.StringIO()
    configure_logging("INFO", stream=sink)
    try:
        yield sink
    finally:
        configure_logging("WARNING")


async def test_with_several_lanes_a_requests_lines_name_the_lane_it_runs_on(log: io.StringIO) -> None:
    one, two = Talker("one"), Talker("two")
    router = router_of(one, two)
    await router.handle("lane2", "cardRedemption", {"traceNo": "T1"})
    one.busy_with.add("T2")
    await router.handle("lane2", "cardRedemption", {"traceNo": "T2"})  # joins T2 where it runs: lane1
    logger.info("the daemon itself")
    lines = log.getvalue().splitlines()
    assert [line.split(": ", 1)[1] for line in lines] == [
        "two handles lane=lane2 traceNo=T1",
        "two's task runs lane=lane2 traceNo=T1",
        "one handles lane=lane1 traceNo=T2",
        "one's task runs lane=lane1 traceNo=T2",
        "the daemon itself",  # outside a request: no lane
    ]


async def test_with_one_lane_the_lines_are_as_before_lanes(log: io.StringIO) -> None:
    router = router_of(Talker("only"))
    await router.handle(DEFAULT_LANE, "cardRedemption", {"traceNo": "T1"})
    assert [line.split(": ", 1)[1] for line in log.getvalue().splitlines()] == [
        "only handles traceNo=T1",
        "only's task runs traceNo=T1",
    ]


def test_the_lane_context_adds_the_field_only_for_several_lanes(log: io.StringIO) -> None:
    with lane_log_context("lane3", several=True):
        logger.info("inside")
    with lane_log_context("lane3", several=False):
        logger.info("alone")
    logger.info("after")
    assert [line.split(": ", 1)[1] for line in log.getvalue().splitlines()] == ["inside lane=lane3", "alone", "after"]
