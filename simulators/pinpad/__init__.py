"""The virtual MIS-POS PIN pad: misbridge.link in the DEVICE role on a pty, with scripted customers."""

from simulators.pinpad.customer import Action, Customer
from simulators.pinpad.device import SimulatedPinPad

__all__ = ["Action", "Customer", "SimulatedPinPad"]
