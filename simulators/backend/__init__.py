"""The e-Buy backend simulator (``misbridge-sim backend``): docs/backend.md, "The backend simulator".

Serves every action of the book (§12: the card and QR sales, accumulating, inquiry, the voids
and refunds, ecouponInquiry, summary, batchUpload) as signed e-Buy envelopes over HTTP, keeps a
ledger of every submission and its effect on the test cards, QR codes, e-coupons and members
(optionally in a file that survives a restart), and breaks requests on purpose before or after
their commit, scripted per request in-process or over HTTP (simulators.backend.faults).
Connect-level faults (refused, SYN dropped) are in simulators.backend.netfaults.
"""

from simulators.backend.app import DEFAULT_PREFIX, TEST_SIGNING_KEY, BackendSimulator
from simulators.backend.codes import SimCode
from simulators.backend.faults import Fault, FaultAction, FaultScript, ScriptedFault
from simulators.backend.ledger import Ledger, TraceRecord, TraceState
from simulators.backend.netfaults import blackhole_listener, refusing_port

__all__ = [
    "DEFAULT_PREFIX",
    "TEST_SIGNING_KEY",
    "BackendSimulator",
    "Fault",
    "FaultAction",
    "FaultScript",
    "Ledger",
    "ScriptedFault",
    "SimCode",
    "TraceRecord",
    "TraceState",
    "blackhole_listener",
    "refusing_port",
]
