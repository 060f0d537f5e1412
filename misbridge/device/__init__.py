"""The PIN pad as a device: the driver contract, the driver registry and the mispos-v1 driver."""

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
    "register_driver",
]
