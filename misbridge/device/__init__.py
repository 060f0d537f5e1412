"""The PIN pad as a device: the driver contract, the driver registry and the mispos-v1 driver.

``ensure_port_free`` (from the transports) is here for the tools of the app layer that open the pad
themselves: the app reaches the transports only through this layer.
"""

from misbridge.device.base import (
    DRIVERS,
    CardRead,
    CodeEntry,
    CodeOrigin,
    CodeRead,
    EncryptedPin,
    PadInfo,
    PinPadDriver,
    ProgressCallback,
    ProgressStep,
    TransKind,
    create_driver,
    register_driver,
)
from misbridge.device.mispos import MisPosV1Driver
from misbridge.transport.registry import ensure_port_free

__all__ = [
    "DRIVERS",
    "CardRead",
    "CodeEntry",
    "CodeOrigin",
    "CodeRead",
    "EncryptedPin",
    "MisPosV1Driver",
    "PadInfo",
    "PinPadDriver",
    "ProgressCallback",
    "ProgressStep",
    "TransKind",
    "create_driver",
    "ensure_port_free",
    "register_driver",
]
