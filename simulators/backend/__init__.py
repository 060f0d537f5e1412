"""The e-Buy backend simulator (``misbridge-sim backend``): docs/backend.md, "Simulator".

Serves ``cardRedemption``, ``inquiry`` and ``voidCardSale`` as signed e-Buy envelopes over
HTTP, keeps a ledger of every submission and its effect on the test cards, and can break its
replies on purpose (simulators.backend.faults).
"""

from simulators.backend.app import DEFAULT_PREFIX, TEST_SIGNING_KEY, BackendSimulator
from simulators.backend.codes import SimCode
from simulators.backend.faults import Fault, FaultScript
from simulators.backend.ledger import Ledger, TraceRecord, TraceState

__all__ = [
    "DEFAULT_PREFIX",
    "TEST_SIGNING_KEY",
    "BackendSimulator",
    "Fault",
    "FaultScript",
    "Ledger",
    "SimCode",
    "TraceRecord",
    "TraceState",
]
