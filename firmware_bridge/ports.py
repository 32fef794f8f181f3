"""Where a simulated device sends its frames: a pty, a serial port, an MQTT topic, a file.

Each output is a context manager with ``send(frame) -> bool``: False means the port would not
take the frame in time and it was not sent at all (a UART with a full transmit buffer drops
whole frames; a half-written frame would spoil its neighbour too).
"""

from __future__ import annotations

import fcntl
import logging
import os
import select
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Callable
from urllib.parse import unquote, urlsplit

from firmware_bridge.errors import DeviceError

log = logging.getLogger(__name__)

RAW_TOPIC = "imu/{device_id}/raw"  # one MQTT message per frame; device_id as 16 hex digits


class FdOutput:
    """Frames into a file descriptor (a pty master), waiting at most ``timeout_s`` to start."""

    def __init__(self, fd: int, timeout_s: float = 1.0) -> None:
        self.fd = fd
        self.timeout_s = timeout_s

    def send(self, frame: bytes) -> bool:
        view = memoryview(frame)
        _, writable, _ = select.select([], [self.fd], [], self.timeout_s)
        if not writable:
            return False
        # Once started, try hard to finish the frame: a torn frame also spoils the next one.
        deadline = time.monotonic() + 5 * self.timeout_s
        while view:
            try:
                written = os.write(self.fd, view)
            except BlockingIOError:
                written = 0
            except OSError as exc:
                raise DeviceError(f"cannot write to the port: {exc}") from None
            view = view[written:]
            if view:
                if time.monotonic() > deadline:
                    return False
                select.select([], [self.fd], [], 0.05)
        return True

    def __enter__(self) -> FdOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


class PtyOutput(FdOutput):
    """A fresh pseudo-terminal pair: frames go into the master; readers open :attr:`path`.

    The slave side stays open here so bytes written before a reader attaches are kept in the
    pty (note that pyserial discards them when it opens the port, as a UART would never have
    delivered them either)."""

    def __init__(self, timeout_s: float = 1.0) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no newline translation: frames are binary
        os.set_blocking(master, False)
        super().__init__(master, timeout_s)
        self.slave = slave
        self.path = os.ttyname(slave)

    def pending(self) -> int:
        """Bytes written but not yet read on the slave side."""
        try:
            buf = fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0")
        except OSError:
            return 0
        return int.from_bytes(buf, "little")

    def linger(self, seconds: float, stopping: Callable[[], bool] = lambda: False) -> None:
        """Keep the pty open until a reader has taken everything, or ``seconds`` pass."""
        deadline = time.monotonic() + seconds
        while self.pending() and time.monotonic() < deadline and not stopping():
            time.sleep(0.05)

    def __exit__(self, *exc: object) -> None:
        for fd in (self.fd, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class SerialOutput:
    """Frames into a serial port or any pyserial URL (``/dev/ttyUSB0``, ``socket://host:port``)."""

    def __init__(self, url: str, baudrate: int = 115200, timeout_s: float = 1.0) -> None:
        import serial  # only this output needs pyserial

        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, write_timeout=timeout_s)
        except (serial.SerialException, ValueError) as exc:
            raise DeviceError(f"cannot open serial port {url}: {exc}; check the path and permissions "
                              "(e.g. membership of the 'dialout' group)") from None
        self._timeout_error = serial.SerialTimeoutException
        self._serial_error = serial.SerialException

    def send(self, frame: bytes) -> bool:
        try:
            self.port.write(frame)
        except self._timeout_error:
            return False
        except self._serial_error as exc:
            raise DeviceError(f"serial port failed: {exc}") from None
        return True

    def __enter__(self) -> SerialOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.port.flush()
        finally:
            self.port.close()


class MqttOutput:
    """One MQTT v5 message per frame on ``mqtt://[user:password@]host:port/topic``.

    Without a topic in the URL the convention ``imu/<device_id>/raw`` applies."""

    def __init__(self, url: str, device_id: int, qos: int = 0, timeout_s: float = 10.0) -> None:
        import paho.mqtt.client as mqtt

        parts = urlsplit(url)
        if parts.scheme != "mqtt":
            raise DeviceError(f"{url}: the simulator publishes to mqtt://host:port/topic only")
        if not parts.hostname:
            raise DeviceError(f"{url}: no broker host; write mqtt://host:port/topic")
        try:
            port = parts.port or 1883
        except ValueError:
            raise DeviceError(f"{url}: the port is not a number") from None
        topic = unquote(parts.path.lstrip("/")) or RAW_TOPIC.format(device_id=f"{device_id:016x}")
        if "+" in topic or "#" in topic:
            raise DeviceError(f"{url}: cannot publish to a wildcard topic {topic!r}")
        if qos not in (0, 1, 2):
            raise DeviceError(f"qos must be 0, 1 or 2, got {qos}")
        self.topic, self.qos, self.timeout_s = topic, qos, timeout_s
        self._answered = threading.Event()
        self._connected = False
        self._reason: str = "no answer"
        self._client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                   client_id=f"imu-anon-sim-{os.getpid()}-{device_id & 0xFFFF:04x}",
                                   protocol=mqtt.MQTTv5)
        # At most 1000 frames wait in paho's queue: a slow broker slows the device down for up
        # to timeout_s, then frames are refused (and counted as transmit drops).
        self._room = threading.Semaphore(1000)
        self._client.on_publish = lambda *_: self._room.release()
        if parts.username:
            self._client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        self._client.on_connect = self._on_connect
        self._ok = mqtt.MQTT_ERR_SUCCESS
        self._last = None
        try:
            self._client.connect(parts.hostname, port, keepalive=30)
        except OSError as exc:
            raise DeviceError(f"cannot reach the MQTT broker at {parts.hostname}:{port}: {exc}; is it running?") from None
        self._client.loop_start()
        if not self._answered.wait(timeout_s) or not self._connected:
            self._client.loop_stop()
            raise DeviceError(f"MQTT broker {parts.hostname}:{port} refused or did not answer ({self._reason}); "
                              "check the address and credentials")
        log.info("publishing frames to %s", topic)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        self._reason = str(reason_code)
        self._connected = not reason_code.is_failure
        self._answered.set()

    def send(self, frame: bytes) -> bool:
        if not self._room.acquire(timeout=self.timeout_s):
            return False
        info = self._client.publish(self.topic, frame, qos=self.qos)
        if info.rc != self._ok:
            self._room.release()
            return False
        self._last = info
        return True

    def __enter__(self) -> MqttOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._last is not None:
                self._last.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError):
            pass  # the connection went away; what was lost is lost
        finally:
            self._client.disconnect()
            self._client.loop_stop()


class FileOutput:
    """Frames appended to a capture file (``.imuf``: the raw bytes as they were on the wire)."""

    def __init__(self, path: str | Path) -> None:
        try:
            self._fh = open(path, "wb")  # noqa: SIM115 - closed in __exit__
        except OSError as exc:
            raise DeviceError(f"cannot write {path}: {exc}") from None

    def send(self, frame: bytes) -> bool:
        self._fh.write(frame)
        return True

    def __enter__(self) -> FileOutput:
        return self

    def __exit__(self, *exc: object) -> None:
        self._fh.close()
