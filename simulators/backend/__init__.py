"""The e-Buy backend simulator (``misbridge-sim backend``): docs/backend.md, "The backend simulator".

Serves ``cardRedemption`` / ``cardPayment``, ``inquiry`` and ``voidCardSale`` as signed e-Buy
envelopes over HTTP, keeps a ledger of every submission and its effect on the test cards
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
