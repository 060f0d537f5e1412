"""Test-only crash points: kill the process at a named durable step.

``MISBRIDGE_CRASH_AT=<point>[:<nth>]`` makes the *nth* (default first) pass through ``<point>``
call ``os._exit(137)``, the way a power cut or ``kill -9`` ends a process: no cleanup, no
flush beyond what was already committed. The hook is **inert** unless ``MISBRIDGE_TEST_HOOKS=1``
is also set, so a stray variable on a store machine does nothing. The harness in
``tests/crash`` kills the daemon at every point of :data:`DAEMON_POINTS`, and
tests/crash/test_reconcile_crash.py the end-of-day command at every point of
:data:`RECONCILE_POINTS` (docs/reliability.md lists them all).
"""

from __future__ import annotations

import os

ENV_POINT = "MISBRIDGE_CRASH_AT"
ENV_ENABLE = "MISBRIDGE_TEST_HOOKS"
EXIT_CODE = 137

#: The end of day's (``misbridge reconcile``, app/reconcile.py), in the order a run meets them. Each
#: batchUpload call and then the summary pass the first four (the *nth* pass is a later call), and
#: each of the three files (the report's JSON, its CSV, latest.json) passes the fifth. A command of
#: its own, not the daemon: tests/crash/test_reconcile_crash.py kills it, not the daemon harness (a
#: POS's batchUpload or summary through the daemon meets the backend.* two as well; the harness
#: sends none).
RECONCILE_POINTS: tuple[str, ...] = (
    "reconcile.after_alloc",  # a batchUpload's or the summary's traceNo committed, nothing sent
    "backend.batchUpload.after_write",  # a batchUpload written, reply headers arrived, body not read
    "backend.summary.after_write",  # the summary written, reply headers arrived, body not read
    "reconcile.after_reply",  # a call answered, its result not yet recorded
    "reconcile.file.before_name",  # a file whole and synced under its temporary name, not yet named
    "reconcile.after_report",  # the report's JSON and CSV named, latest.json not yet replaced
)

#: Every named durable step: a transaction's in the order it meets them, then the keys', then the
#: end of day's (:data:`RECONCILE_POINTS`).
POINTS: tuple[str, ...] = (
    "intake.before_intent",  # request validated, intent not yet committed
    "intake.after_intent",  # intent committed, pad not yet asked
    "card.before_commit",  # card data arrived, not yet committed
    "card.after_commit",  # card committed, PIN not yet asked
    "pin.before_commit",  # PIN block arrived, submitting not yet committed
    "submit.after_commit",  # submitting committed, no byte sent to the backend yet
    "backend.cardRedemption.after_write",  # sale written, reply headers arrived, body not read
    "submit.after_reply",  # reply parsed, outcome not yet committed
    "outcome.after_commit",  # outcome committed, POS not yet told
    "pos.after_reply",  # POS told
    "inquiry.after_alloc",  # inquiry traceNo committed, inquiry not yet sent
    "backend.inquiry.after_write",  # inquiry written, reply not read
    "inquiry.after_reply",  # inquiry answered, verdict not yet committed
    "inquiry.after_commit",  # verdict committed
    "void.after_enqueue",  # void queued (state voiding) and not yet sent
    "void.after_alloc",  # void traceNo committed, not yet sent
    "backend.voidCardSale.after_write",  # void written, reply not read
    "void.after_reply",  # void answered, not yet committed
    "void.after_commit",  # void done and committed
    "recovery.start",  # start-up recovery begun, nothing recovered yet
    "recovery.after_first",  # first interrupted transaction recovered
    "shutdown.drain",  # SIGTERM received, running transactions draining
    # qrcodeSale (code in the body): the first round, options, the second round
    "qr.submit.after_commit",  # first round's submitting committed, no byte sent yet
    "backend.qrcodeSale.after_write",  # a round written, reply headers arrived, body not read
    "qr.after_reply",  # a round's reply parsed, its outcome (or the offer) not yet committed
    "qr.offer.after_commit",  # options offered (choosing) committed, the customer not yet asked
    "qr.option.after_alloc",  # second round's traceNo allocated, option_chosen not yet committed
    "qr.option.after_commit",  # option_chosen (submitting) committed, the second round not yet sent
    # voidQrcodeSale and refundQrcodeSale from the POS
    "followup.after_intent",  # checked against the original and intent committed, submit not yet
    "followup.submit.after_commit",  # submitting committed, no byte sent yet
    "backend.voidQrcodeSale.after_write",  # the void (or its resend) written, reply not read
    "backend.refundQrcodeSale.after_write",  # the refund written, reply not read
    "followup.after_reply",  # reply parsed, outcome not yet committed
    "followup.outcome.after_commit",  # outcome committed, POS not yet told
    "void.resend.after_commit",  # a POS void sent again by the reversal queue confirmed and committed
    # voidCardSale and refundCardSale from the POS pass the card sale's points (card and PIN on the
    # pad); a card void's write is backend.voidCardSale.after_write, a card refund's this one
    "backend.refundCardSale.after_write",  # the card refund written, reply not read
    # the keys (core/keys.py): the sign-in at start-up, and provisioning a pad with the store's master key
    "keys.after_sign_in",  # sign-in answered and journaled (its KCV), the key not yet loaded into the pad
    "keys.after_working_load",  # LOAD_WORKING_KEY answered, the pad's KCV not yet read back (DEVICE_INFO)
    "keys.after_master_load",  # LOAD_MASTER_KEY answered (working keys gone), not yet verified nor signed in
    *RECONCILE_POINTS,
)

#: The daemon's (``misbridge serve``): the points the crash harness (tests/crash/harness.py) kills it at.
DAEMON_POINTS: tuple[str, ...] = tuple(point for point in POINTS if point not in RECONCILE_POINTS)


def _parse(value: str) -> tuple[str, int] | None:
    if not value:
        return None
    point, _, nth = value.partition(":")
    return point, int(nth) if nth else 1


_TARGET = _parse(os.environ.get(ENV_POINT, "")) if os.environ.get(ENV_ENABLE) == "1" else None
_passes: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Die here if the test hook names this point; otherwise do nothing (one dict lookup)."""
    if _TARGET is None or _TARGET[0] != name:
        return
    _passes[name] = _passes.get(name, 0) + 1
    if _passes[name] == _TARGET[1]:
        os._exit(EXIT_CODE)
