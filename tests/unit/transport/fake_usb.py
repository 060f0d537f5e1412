"""A fake pyusb backend: enumerable devices with one bulk IN/OUT pair, pluggable and unpluggable.

Pass :class:`FakeBackend` as ``backend=`` to ``usb.core.find`` (python-ecosystem-notes.md §3).
A device's bulk IN blocks up to the USB timeout for data, as the real one does, then raises
``USBTimeoutError``; an unplugged device raises ``USBError`` with ``errno`` ENODEV (19).
"""

from __future__ import annotations

import array
import errno
import threading
from collections import deque
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import usb.backend
import usb.core

EP_IN, EP_OUT = 0x81, 0x01
SERIAL_INDEX = 3


class FakeUsbDevice:
    """One device on the fake bus; ``on_write`` answers what the host writes (returns bytes to send)."""

    def __init__(self, vid: int, pid: int, serial: str = "", *, address: int = 2) -> None:
        self.vid, self.pid, self.serial, self.address = vid, pid, serial, address
        self.present = True
        self.from_host = bytearray()
        self.write_timeouts = 0
        self.on_write: Callable[[bytes], bytes] | None = None
        self._to_host: deque[bytes] = deque()
        self._ready = threading.Condition()

    def feed(self, data: bytes) -> None:
        """Make ``data`` available to the host's next bulk read."""
        if data:
            with self._ready:
                self._to_host.append(data)
                self._ready.notify_all()

    def unplug(self) -> None:
        with self._ready:
            self.present = False
            self._ready.notify_all()

    def replug(self) -> None:
        self.present, self._to_host = True, deque()

    def _check(self) -> None:
        if not self.present:
            raise usb.core.USBError("No such device (it may have been disconnected)", errno=errno.ENODEV)

    def _read(self, buff: Any, timeout_ms: int) -> int:
        with self._ready:
            self._ready.wait_for(lambda: self._to_host or not self.present, timeout_ms / 1000)
            self._check()
            if not self._to_host:
                raise usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT)
            chunk = self._to_host.popleft()
            if len(chunk) > len(buff):
                self._to_host.appendleft(chunk[len(buff) :])
                chunk = chunk[: len(buff)]
            buff[: len(chunk)] = array.array("B", chunk)
            return len(chunk)

    def _write(self, data: Any) -> int:
        self._check()
        if self.write_timeouts:
            self.write_timeouts -= 1
            raise usb.core.USBTimeoutError("Operation timed out", errno=errno.ETIMEDOUT)
        payload = bytes(data)
        self.from_host += payload
        if self.on_write is not None:
            self.feed(self.on_write(payload))
        return len(payload)


class FakeBackend(usb.backend.IBackend):  # type: ignore[misc]
    """The pyusb backend interface over :class:`FakeUsbDevice` objects."""

    def __init__(self, *devices: FakeUsbDevice) -> None:
        self.devices = list(devices)

    def enumerate_devices(self) -> list[FakeUsbDevice]:
        return [d for d in self.devices if d.present]

    def get_device_descriptor(self, dev: FakeUsbDevice) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=18, bDescriptorType=1, bcdUSB=0x0200, bDeviceClass=0, bDeviceSubClass=0, bDeviceProtocol=0,
            bMaxPacketSize0=64, idVendor=dev.vid, idProduct=dev.pid, bcdDevice=0x0100, iManufacturer=0,
            iProduct=0, iSerialNumber=SERIAL_INDEX if dev.serial else 0, bNumConfigurations=1,
            address=dev.address, bus=1, port_number=dev.address, port_numbers=(dev.address,), speed=3,
        )  # fmt: skip

    def get_configuration_descriptor(self, dev: FakeUsbDevice, config: int) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=9,
            bDescriptorType=2,
            wTotalLength=32,
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0x80,
            bMaxPower=50,
            extra_descriptors=[],
        )

    def get_interface_descriptor(self, dev: FakeUsbDevice, intf: int, alt: int, config: int) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=9,
            bDescriptorType=4,
            bInterfaceNumber=0,
            bAlternateSetting=0,
            bNumEndpoints=2,
            bInterfaceClass=0xFF,
            bInterfaceSubClass=0,
            bInterfaceProtocol=0,
            iInterface=0,
            extra_descriptors=[],
        )

    def get_endpoint_descriptor(self, dev: FakeUsbDevice, ep: int, intf: int, alt: int, config: int) -> SimpleNamespace:
        return SimpleNamespace(
            bLength=7,
            bDescriptorType=5,
            bEndpointAddress=(EP_IN, EP_OUT)[ep],
            bmAttributes=2,
            wMaxPacketSize=64,
            bInterval=0,
            bRefresh=0,
            bSynchAddress=0,
            extra_descriptors=[],
        )

    def open_device(self, dev: FakeUsbDevice) -> FakeUsbDevice:
        dev._check()
        return dev

    def close_device(self, dev_handle: FakeUsbDevice) -> None:
        pass

    def set_configuration(self, dev_handle: FakeUsbDevice, config_value: int) -> None:
        dev_handle._check()

    def get_configuration(self, dev_handle: FakeUsbDevice) -> int:
        return 1

    def claim_interface(self, dev_handle: FakeUsbDevice, intf: int) -> None:
        dev_handle._check()

    def release_interface(self, dev_handle: FakeUsbDevice, intf: int) -> None:
        pass

    def is_kernel_driver_active(self, dev_handle: FakeUsbDevice, intf: int) -> bool:
        return False

    def bulk_write(self, dev_handle: FakeUsbDevice, ep: int, intf: int, data: Any, timeout: int) -> int:
        return dev_handle._write(data)

    def bulk_read(self, dev_handle: FakeUsbDevice, ep: int, intf: int, buff: Any, timeout: int) -> int:
        return dev_handle._read(buff, timeout)

    def ctrl_transfer(
        self,
        dev_handle: FakeUsbDevice,
        bm_request_type: int,
        b_request: int,
        w_value: int,
        w_index: int,
        data: Any,
        timeout: int,
    ) -> int:
        dev_handle._check()
        index = w_value & 0xFF
        if index == 0:
            desc = bytes([4, 3, 0x09, 0x04])  # LANGID en-US
        else:
            text = dev_handle.serial.encode("utf-16-le")
            desc = bytes([2 + len(text), 3]) + text
        data[: len(desc)] = array.array("B", desc)
        return len(desc)
