"""What one crash run does for each crash point: backend faults, which pass crashes, how it is reached.

Every point in :data:`misbridge.host.crashpoints.DAEMON_POINTS` has a scenario here (a unit test checks
it), so a new point without one fails the suite instead of being silently skipped. (The end of day's,
``RECONCILE_POINTS``, are a command's: tests/crash/test_reconcile_crash.py has a case for each.) A scenario is a
:class:`Plan`, drawn with the run's own ``random.Random`` so that a seed reproduces the run:

* **sale points** (intake, card, PIN, submit, outcome, POS reply): the customer pays; for the
  points the request passes after the backend answered, the backend sometimes declines (scripted
  ``decline``) or, for outcome and POS reply, loses its reply so the outcome is resolved by
  inquiry first (and sometimes voided);
* **inquiry points**: the sale's reply is lost or spoiled after (or before) the backend commits,
  so the outcome is unknown; sometimes the first inquiry fails too and the *second* pass crashes;
* **void points**: the sale's outcome is unknown and every inquiry fails until the inquiry bound
  passes, so a void is queued; sometimes the first void attempt fails before or after the
  backend applies it, and the retry is the pass that crashes;
* **recovery points**: a first daemon crashes at a *prep* point to leave a non-final transaction,
  a second one crashes inside start-up recovery, then the clean daemon finishes the job;
* ``shutdown.drain``: the backend holds the sale, and SIGTERM arrives while the transaction is
  ``submitting``;
* **card voids and refunds**: some runs of the card sale's points (and of
  ``backend.voidCardSale.after_write``, every run of ``backend.refundCardSale.after_write``) are
  a POS ``voidCardSale`` or ``refundCardSale`` of an approved card sale (:func:`card_follow_up_plan`);
* **QR sale, follow-up and void-resend points**: tests/crash/flows.py;
* **key points** (:func:`key_plan`): the pad's keys are replaced on the pad simulator's control
  socket before the crashing daemon starts, so that its start-up must sign in (a stale working
  key, or none) or provision the pad (another store's keys, or none: the daemons then hold the
  rootKey, ``keys.replaced_pad = "provision"``); it dies in that start-up, before any request.
  The clean daemon must sign in again, or take over the journaled sign-in when the pad reports
  its KCV, and the POS's sale, sent to it alone, must be approved.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from misbridge.host.crashpoints import DAEMON_POINTS
from tests.crash import flows
from tests.crash.flows import Flow

#: Where a sale's POS request first meets each point, in order (the hook counts passes).
SALE_POINTS: tuple[str, ...] = (
    "intake.before_intent",
    "intake.after_intent",
    "card.before_commit",
    "card.after_commit",
    "pin.before_commit",
    "submit.after_commit",
    "backend.cardRedemption.after_write",
    "submit.after_reply",
    "outcome.after_commit",
    "pos.after_reply",
)
INQUIRY_POINTS: tuple[str, ...] = (
    "inquiry.after_alloc",
    "backend.inquiry.after_write",
    "inquiry.after_reply",
    "inquiry.after_commit",
)
VOID_POINTS: tuple[str, ...] = (
    "void.after_enqueue",
    "void.after_alloc",
    "backend.voidCardSale.after_write",
    "void.after_reply",
    "void.after_commit",
)
RECOVERY_POINTS: tuple[str, ...] = ("recovery.start", "recovery.after_first")
SHUTDOWN_POINTS: tuple[str, ...] = ("shutdown.drain",)
KEY_POINTS: tuple[str, ...] = ("keys.after_sign_in", "keys.after_working_load", "keys.after_master_load")
#: The points a run of a plain ``cardRedemption`` reaches (:func:`card_sale_plan`), in DAEMON_POINTS' order.
CARD_SALE_RUN_POINTS: tuple[str, ...] = tuple(
    point
    for point in DAEMON_POINTS
    if point in {*SALE_POINTS, *INQUIRY_POINTS, *VOID_POINTS, *RECOVERY_POINTS, *SHUTDOWN_POINTS}
)

#: Sale points a request passes only after the backend answered (a scripted decline matters there).
BACKEND_REACHED: tuple[str, ...] = (
    "backend.cardRedemption.after_write",
    "submit.after_reply",
    "outcome.after_commit",
    "pos.after_reply",
)
#: Points whose crash leaves a transaction in a pre-submit state (what recovery.after_first needs).
PRE_SUBMIT_PREP: tuple[str, ...] = (
    "intake.after_intent",
    "card.before_commit",
    "card.after_commit",
    "pin.before_commit",
)
#: Points that leave some non-final transaction for recovery.start to find.
NON_FINAL_PREP: tuple[str, ...] = (
    *PRE_SUBMIT_PREP,
    "submit.after_commit",
    "backend.cardRedemption.after_write",
    "inquiry.after_alloc",
    "backend.inquiry.after_write",
    "void.after_enqueue",
    "void.after_alloc",
    "backend.voidCardSale.after_write",
)

#: Inquiries scripted to fail in the void scenarios: more than fit in the inquiry bound.
FAILING_INQUIRIES = 200
#: How long ``delay-*`` faults hold a request (shutdown.drain: SIGTERM lands meanwhile).
HOLD_S = 0.3
#: A reply held past the client's read timeout (the harness's READ_TIMEOUT_S is 1 s).
LATE_S = 1.5

#: Inquiry bound of the daemons in the inquiry scenarios: they crash at the 1st or 2nd inquiry, so a
#: long bound costs nothing and keeps a loaded machine from voiding before the 2nd inquiry.
LONG_INQUIRY_BOUND_S = 3.0

#: Sale faults after which the outcome is unknown to misbridge; the value says whether money moved.
UNKNOWN_SALE_FAULTS: dict[str, bool] = {
    "drop-after-commit": True,
    "http-500-after-commit": True,
    "bad-sign-after-commit": True,
    "delay-after-commit": True,
    "drop-before-commit": False,
}


@dataclass(frozen=True)
class FaultSpec:
    """One ``POST /_sim/faults`` entry; the run's traceNo is filled in when it is sent."""

    action: str
    fault: str
    times: int = 1
    delay_s: float = 0.0
    code: str | None = None
    reset: bool = False

    def request(self, trace_no: str) -> dict[str, Any]:
        """The JSON object for the simulator, limited to requests about ``trace_no``."""
        body: dict[str, Any] = {"action": self.action, "fault": self.fault, "times": self.times, "trace_no": trace_no}
        if self.delay_s:
            body["delay_s"] = self.delay_s
        if self.code is not None:
            body["code"] = self.code
        if self.reset:
            body["reset"] = True
        return body


@dataclass(frozen=True)
class Stage:
    """One daemon that is expected to die at ``crash_at`` (``point`` or ``point:nth``)."""

    crash_at: str
    faults: tuple[FaultSpec, ...] = ()
    #: Send the POS request to this daemon (False: the daemon only starts and recovers).
    sends_request: bool = True
    #: Journal state of the run's transaction at which the harness sends SIGTERM.
    sigterm_at_state: str | None = None
    #: Run this daemon with :data:`LONG_INQUIRY_BOUND_S` instead of the short inquiry bound.
    long_inquiry_bound: bool = False
    #: The pad's keys, replaced before this daemon starts (``{"step": "keys"}`` on the pad simulator).
    pad_keys: str | None = None


@dataclass(frozen=True)
class Plan:
    """The daemons one run starts before the clean one, and a word on the variant drawn."""

    point: str
    #: Daemons started one after the other; the *last* one's exit 137 means the point was reached.
    stages: tuple[Stage, ...]
    variant: str
    #: What a QR or follow-up run sends (None: the card sale of :func:`~tests.crash.harness.pos_body`).
    flow: Flow | None = None
    #: Every daemon of the run holds the rootKey and provisions a replaced pad itself.
    provision: bool = False
    #: The run's sale must end approved: nothing but the crash stood in its way (the key runs).
    approves: bool = False


def _nth(point: str, nth: int) -> str:
    return point if nth == 1 else f"{point}:{nth}"


def _unknown_sale(rng: random.Random) -> tuple[FaultSpec, str]:
    name = rng.choice(sorted(UNKNOWN_SALE_FAULTS))
    if name == "delay-after-commit":
        return FaultSpec("sale", name, delay_s=LATE_S), name
    if name.startswith("drop-"):
        reset = rng.random() < 0.5
        return FaultSpec("sale", name, reset=reset), f"{name}{' (RST)' if reset else ''}"
    return FaultSpec("sale", name), name


def sale_stage(point: str, rng: random.Random) -> tuple[Stage, str]:
    """A crash at one of :data:`SALE_POINTS`."""
    roll = rng.random()
    after_backend = point in ("outcome.after_commit", "pos.after_reply")
    if point == "backend.cardRedemption.after_write" and roll < 0.3:
        # Any HTTP response passes the hook: a 500 after the commit crashes with money moved.
        return Stage(point, (FaultSpec("sale", "http-500-after-commit"),)), "http-500-after-commit"
    if after_backend and roll < 0.25:
        fault, name = _unknown_sale(rng)
        return Stage(point, (fault,)), f"sale {name}, resolved by inquiry"
    if after_backend and roll < 0.4:
        fault, name = _unknown_sale(rng)
        inquiries = FaultSpec("inquiry", "http-500-after-commit", times=FAILING_INQUIRIES)
        return Stage(point, (fault, inquiries)), f"sale {name}, inquiries fail, void queued"
    if point in BACKEND_REACHED and rng.random() < 0.25:
        return Stage(point, (FaultSpec("sale", "decline", code="51"),)), "backend declines (51)"
    return Stage(point), "approved path"


def inquiry_stage(point: str, rng: random.Random) -> tuple[Stage, str]:
    """A crash at one of :data:`INQUIRY_POINTS`: the sale's outcome is unknown first."""
    sale, name = _unknown_sale(rng)
    faults = [sale]
    first_fails = rng.random() < 0.4
    nth = 1
    if first_fails:
        faults.append(FaultSpec("inquiry", "http-500-after-commit"))
        # The failed inquiry passes the allocation and the response hook, not the reply commit.
        nth = 2 if point in ("inquiry.after_alloc", "backend.inquiry.after_write") else 1
    variant = f"sale {name}" + (", first inquiry HTTP 500" if first_fails else "")
    return Stage(_nth(point, nth), tuple(faults), long_inquiry_bound=True), variant


def void_stage(point: str, rng: random.Random) -> tuple[Stage, str]:
    """A crash at one of :data:`VOID_POINTS`: unknown sale, every inquiry fails, a void is queued."""
    sale, name = _unknown_sale(rng)
    inquiry_fault = rng.choice(("http-500-after-commit", "http-500-before-commit", "drop-after-commit"))
    faults = [sale, FaultSpec("inquiry", inquiry_fault, times=FAILING_INQUIRIES)]
    first_void = rng.choice(("", "", "http-500-before-commit", "drop-after-commit"))
    nth = 1
    if first_void:
        faults.append(FaultSpec("void", first_void))
        if point == "void.after_alloc":
            nth = 2
        elif point == "backend.voidCardSale.after_write" and first_void.startswith("http-500"):
            nth = 2  # the 500 was a response too; a dropped connection never reaches the hook
    variant = f"sale {name}, inquiries {inquiry_fault}" + (f", first void {first_void}" if first_void else "")
    return Stage(_nth(point, nth), tuple(faults)), variant


def prep_stage(point: str, rng: random.Random) -> tuple[Stage, str]:
    """The stage that crashes at ``point`` (any sale, inquiry or void point)."""
    if point in SALE_POINTS:
        return sale_stage(point, rng)
    if point in INQUIRY_POINTS:
        return inquiry_stage(point, rng)
    if point in VOID_POINTS:
        return void_stage(point, rng)
    raise ValueError(f"{point} is not a transaction point")


def card_follow_up_plan(point: str, rng: random.Random, trace_no: str) -> Plan:
    """A POS card void or refund of an approved card sale, crashing at one of the card sale's points or its write.

    The original passes each of :data:`flows.CARD_SALE_POINTS` once, so the void or refund crashes at
    the second pass. After the backend answered, it sometimes declines (51) or, at the outcome and
    the POS reply, the reply is lost and resolved by inquiry; its write sometimes answers HTTP 500
    after the backend's commit (any HTTP response passes the hook).
    """
    writes = {write: kind for kind, write in flows.CARD_WRITES.items()}
    flow, variant = flows.card_follow_up_flow(trace_no, rng, writes.get(point))
    kind = flow.kind
    faults: tuple[FaultSpec, ...] = ()
    roll = rng.random()
    if point in ("outcome.after_commit", "pos.after_reply") and roll < 0.3:
        fault, name = flows.lost_reply(kind, rng)
        faults, variant = (FaultSpec(fault["action"], fault["fault"]),), f"{variant}, {name}"
    elif point in (*BACKEND_REACHED, *writes) and roll < 0.45:
        faults, variant = (FaultSpec(kind, "decline", code="51"),), f"{variant}, backend declines (51)"
    elif point in writes and roll < 0.7:
        faults, variant = (FaultSpec(kind, "http-500-after-commit"),), f"{variant}, HTTP 500 after its commit"
    nth = 2 if point in flows.CARD_SALE_POINTS else 1
    return Plan(point, (Stage(_nth(point, nth), faults),), variant, flow)


def resend_flow(trace_no: str, rng: random.Random) -> tuple[Flow, str]:
    """The POS void of ``void.resend.after_commit``: of a QR sale, or (card and PIN) of a card sale."""
    if rng.random() < 0.4:
        return flows.card_follow_up_flow(trace_no, rng, "void")
    return flows.follow_up_flow("void.resend.after_commit", trace_no, rng)


def flow_plan(point: str, rng: random.Random, trace_no: str) -> Plan:
    """A run of tests/crash/flows.py: a QR sale, or a POS void or refund of an approved QR or card sale."""
    if point in flows.QR_POINTS:
        flow, variant, nth = flows.qr_flow(point, trace_no, rng)
        return Plan(point, (Stage(_nth(point, nth)),), variant, flow)
    if point in flows.CARD_REFUND_POINTS:
        return card_follow_up_plan(point, rng, trace_no)
    if point in flows.RESEND_POINTS:
        flow, variant = resend_flow(trace_no, rng)
    else:
        flow, variant = flows.follow_up_flow(point, trace_no, rng)
    faults: tuple[FaultSpec, ...] = ()
    if point in flows.RESEND_POINTS:
        lost = rng.choice(("drop-after-commit", "drop-before-commit"))
        faults = (FaultSpec("void", lost), FaultSpec("inquiry", "http-500-after-commit", times=FAILING_INQUIRIES))
        variant += f", void {lost}, inquiries fail, sent again by the queue"
    elif point == "followup.outcome.after_commit" and rng.random() < 0.4:
        fault, name = flows.lost_reply(flow.kind, rng)
        faults = (FaultSpec(fault["action"], fault["fault"]),)
        variant += f", {name}"
    elif point == "backend.voidQrcodeSale.after_write" and rng.random() < 0.3:
        faults = (FaultSpec("void", "http-500-after-commit"),)
        variant += ", HTTP 500 after the void's commit"
    return Plan(point, (Stage(point, faults),), variant, flow)


#: The pads a sign-in crash starts from: a stale working key (the pad's KCV is not the journaled
#: sign-in's), no working key, or another store's keys (the daemons then provision it).
SIGN_IN_PADS: tuple[str, ...] = ("stale", "stale", "provisioned", "foreign")
#: The pads a provisioning crash starts from: another store's keys, or the transport key only.
PROVISION_PADS: tuple[str, ...] = ("foreign", "unprovisioned")


def key_plan(point: str, rng: random.Random) -> Plan:
    """A crash in the crashing daemon's start-up: in its sign-in, or in provisioning the pad.

    A ``foreign`` pad refuses the working key (KCV mismatch), so the daemon provisions it first:
    ``keys.after_working_load`` is then met by the sign-in that follows the master key's load.
    """
    pads = PROVISION_PADS if point == "keys.after_master_load" else SIGN_IN_PADS
    pad = rng.choice(pads)
    provision = pad in PROVISION_PADS
    variant = {
        "stale": "the pad holds a working key nobody issued",
        "provisioned": "the pad holds no working key",
        "foreign": "the pad holds another store's keys: the daemons provision it",
        "unprovisioned": "the pad holds the transport key only: the daemons provision it",
    }[pad]
    stage = Stage(point, sends_request=False, pad_keys=pad)
    return Plan(point, (stage,), variant, provision=provision, approves=True)


def plan_for(point: str, rng: random.Random, trace_no: str = "C0") -> Plan:
    """The scenario of one run that crashes at ``point`` (``trace_no``: the run's, for QR and follow-up runs).

    Raises:
        ValueError: no scenario for ``point`` (a crash point without a plan is a harness bug).
    """
    if point in flows.POINTS:
        return flow_plan(point, rng, trace_no)
    # A POS card void or refund passes the card sale's points too; a card void writes voidCardSale.
    card_share = {"backend.voidCardSale.after_write": 0.35}.get(point, 0.3 if point in flows.CARD_SALE_POINTS else 0)
    if card_share and rng.random() < card_share:
        return card_follow_up_plan(point, rng, trace_no)
    if point in KEY_POINTS:
        return key_plan(point, rng)
    return card_sale_plan(point, rng)


def card_sale_plan(point: str, rng: random.Random) -> Plan:
    """A run whose POS request is a plain ``cardRedemption``: one of :data:`CARD_SALE_RUN_POINTS`.

    The two-POS-lane runs (tests/crash/pos_lanes.py) draw their plans here, one for both lanes.

    Raises:
        ValueError: ``point`` is not one of them.
    """
    if point in SALE_POINTS or point in INQUIRY_POINTS or point in VOID_POINTS:
        stage, variant = prep_stage(point, rng)
        return Plan(point, (stage,), variant)
    if point in RECOVERY_POINTS:
        choices = PRE_SUBMIT_PREP if point == "recovery.after_first" else NON_FINAL_PREP
        prep_point = rng.choice(choices)
        prep, prep_variant = prep_stage(prep_point, rng)
        recovery = Stage(point, sends_request=False)
        return Plan(point, (prep, recovery), f"first crash at {prep.crash_at} ({prep_variant})")
    if point in SHUTDOWN_POINTS:
        held = rng.choice(("delay-before-commit", "delay-after-commit"))
        stage = Stage(point, (FaultSpec("sale", held, delay_s=HOLD_S),), sigterm_at_state="submitting")
        return Plan(point, (stage,), f"SIGTERM while the backend holds the sale ({held})")
    raise ValueError(f"no crash scenario for point {point!r} in a plain card sale")


def uncovered_points() -> list[str]:
    """Points of :data:`misbridge.host.crashpoints.DAEMON_POINTS` this module has no scenario for."""
    known = {*SALE_POINTS, *INQUIRY_POINTS, *VOID_POINTS, *RECOVERY_POINTS, *SHUTDOWN_POINTS, *KEY_POINTS}
    known |= set(flows.POINTS)
    return [point for point in DAEMON_POINTS if point not in known]
