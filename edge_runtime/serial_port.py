"""A serial port that survives the cable going away: opened exclusive, found again, reopened.

A port is named by one of:

* a device path, ideally a stable udev link such as ``/dev/serial/by-id/usb-FTDI_..._A10K-if00-port0``
  (udev moves the link to the new ``ttyUSBn`` when the adapter re-enumerates);
* ``usb:VID:PID[:SERIAL]`` (hex ids), looked up among the connected USB serial adapters at
  every (re)open, so ``ttyUSB0`` becoming ``ttyUSB1`` does not matter;
* any pyserial URL (``rfc2217://``, ``socket://``, ``loop://``).

The name is resolved again at every reopen. Reads and writes never raise: a lost port is
logged once, counted, and reopened with capped, jittered backoff while the caller carries on.
Ports are opened exclusive (``flock``), so a second runtime or a stray ``screen`` cannot
silently steal half the bytes.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

import serial
from serial.tools import list_ports

from edge_runtime.mqtt_link import Backoff

log = logging.getLogger(__name__)

# A reader that stops reading (flow control, a full pty) must not stall the pipeline: a write
# gives up after this long, and the port is left alone for WRITE_PAUSE_S before the next try.
WRITE_TIMEOUT_S = 0.5
WRITE_PAUSE_S = 1.0


def resolve(spec: str) -> str | None:
    """The device path or URL ``spec`` names right now (None: not connected)."""
    if spec.startswith("usb:"):
        parts = spec[4:].split(":")
        try:
            vid, pid = int(parts[0], 16), int(parts[1], 16)
        except (IndexError, ValueError):
            return None
        wanted_serial = parts[2] if len(parts) > 2 else None
        for info in list_ports.comports():
            if info.vid == vid and info.pid == pid and (wanted_serial is None or info.serial_number == wanted_serial):
                return info.device
        return None
    return spec


class Port:
    def __init__(self, spec: str, baud: int, role: str, clock: Callable[[], float] = time.monotonic,
                 on_event: Callable[[str], None] | None = None) -> None:
        self.spec, self.baud, self.role = spec, baud, role
        self._clock = clock
        self._on_event = on_event or (lambda name: None)
        self._serial: serial.SerialBase | None = None
        self._backoff = Backoff(0.2, 10.0)
        self._next_try = 0.0
        self._was_open = False
        self._warned = False
        self._write_blocked_until = 0.0

    @property
    def is_open(self) -> bool:
        return self._serial is not None

    def _open(self) -> bool:
        if self._clock() < self._next_try:
            return False
        path = resolve(self.spec)
        try:
            if path is None:
                raise serial.SerialException(f"no USB serial adapter matches {self.spec}")
            if "://" in path:
                port = serial.serial_for_url(path, baudrate=self.baud, timeout=0.05, write_timeout=WRITE_TIMEOUT_S)
            else:
                port = serial.Serial(baudrate=self.baud, timeout=0.05, write_timeout=WRITE_TIMEOUT_S, exclusive=True)
                port.port = path
                port.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            delay = self._backoff.next()
            self._next_try = self._clock() + delay
            if not self._warned:
                log.warning("%s: cannot open %s (%s); retrying every few seconds", self.role, self.spec, exc)
                self._warned = True
            return False
        self._serial = port
        self._backoff.reset()
        self._warned = False
        log.info("%s: %s %s at %d baud", self.role, "reopened" if self._was_open else "opened", path, self.baud)
        if self._was_open:
            self._on_event("serial_reconnects")
        self._was_open = True
        return True

    def _lost(self, exc: BaseException) -> None:
        log.warning("%s: lost %s (%s); will reopen it when it is back", self.role, self.spec, exc)
        self._on_event("serial_lost")
        self.close()
        self._next_try = self._clock() + self._backoff.next()

    def read(self, timeout: float = 0.05) -> bytes:
        """Whatever bytes arrived (b"" after ``timeout`` or while the port is away)."""
        if self._serial is None and not self._open():
            time.sleep(min(timeout, max(0.0, self._next_try - self._clock())))
            return b""
        port = self._serial
        try:
            port.timeout = timeout
            first = port.read(1)
            if not first:
                return b""
            waiting = port.in_waiting
            return first + (port.read(waiting) if waiting else b"")
        except (serial.SerialException, OSError, TypeError) as exc:  # TypeError: pyserial on a vanished fd
            self._lost(exc)
            return b""

    def write(self, data: bytes) -> bool:
        """True when written; False while the port is away or not taking data (the caller keeps
        the data; after a timed-out write the far end may see one torn line or frame)."""
        if self._clock() < self._write_blocked_until:
            return False
        if self._serial is None and not self._open():
            return False
        try:
            self._serial.write(data)
            return True
        except serial.SerialTimeoutException:
            self._on_event("serial_write_timeouts")
            self._write_blocked_until = self._clock() + WRITE_PAUSE_S
            return False
        except (serial.SerialException, OSError) as exc:
            self._lost(exc)
            return False

    def close(self) -> None:
        if self._serial is not None:
            try:
                self._serial.close()
            except (serial.SerialException, OSError):
                pass
            self._serial = None
