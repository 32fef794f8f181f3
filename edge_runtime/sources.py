"""Where samples come from, chosen by URL. Each source runs one thread that only moves data
into the pipeline's bounded inbox; decoding happens in the pipeline (``edge_runtime.decode``).

    serial:///dev/ttyUSB0?baud=115200&format=frames        wire-protocol frames (default)
    serial:///dev/ttyUSB0?format=csv&rate=50&device=w1     CSV lines, for quick prototypes
    serial://usb:0403:6001:A10K?baud=921600                a USB adapter, found again after re-enumeration
    mqtt://127.0.0.1:1883/imu/+/raw                        one topic level is the device id (see mqtt_source)
    file:rec.csv?speed=4      npz:data/hapt.npz?user=9     recordings (speed: a factor or "max")
    frames:capture.imuf?speed=max                          captured wire bytes (also file:X.imuf)
    loop:NAME                                              in-process, fed by Python code (tests, embedding)

Live sources (serial, MQTT) never block: when the inbox is full the chunk is dropped and
counted. Recordings wait for room instead, so ``speed=max`` runs as fast as inference allows
without losing a sample.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence
from urllib.parse import parse_qsl

from edge_runtime.decode import Received
from edge_runtime.errors import ConfigError, SourceError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from firmware_bridge.blocks import SampleBlock
from firmware_bridge.errors import RecordingError

log = logging.getLogger(__name__)

Item = Received | SampleBlock
CAPTURE_SUFFIXES = (".imuf", ".bin", ".frames", ".cap")


class Inbox:
    """The bounded queue between source threads and the pipeline: a deque under one lock.

    ``queue.Queue`` notifies a Condition on every put and every get. Here a source wakes the
    pipeline only when it is waiting in :meth:`get`, and the pipeline wakes a source only when
    one waits for room in :meth:`put`: a busy pipeline takes items without a thread switch per
    item, and a reader with several frames from one read hands them over in one call
    (:meth:`offer_many`)."""

    def __init__(self, maxsize: int, metrics: Metrics) -> None:
        if maxsize < 1:
            raise ConfigError(f"the inbox needs room for at least one item, got {maxsize}")
        self.maxsize, self.metrics = maxsize, metrics
        self._items: deque[Item] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # the pipeline waits here when the inbox is empty
        self._room = threading.Condition(self._lock)  # recordings wait here when it is full
        self._getters = 0  # threads waiting in get()
        self._putters = 0  # threads waiting in put()

    def qsize(self) -> int:
        return len(self._items)

    def offer(self, item: Item) -> bool:
        """For live sources: never blocks; a full inbox drops the item and counts it."""
        with self._lock:
            if len(self._items) < self.maxsize:
                self._items.append(item)
                if self._getters:
                    self._arrived.notify()
                return True
        self.metrics.inc("inbox_dropped")
        return False

    def offer_many(self, items: Sequence[Item]) -> int:
        """:meth:`offer` for several items at once (a reader that got several frames in one
        read): one lock and at most one wake-up. Items that do not fit, the last ones, are
        dropped and counted; returns how many were taken."""
        with self._lock:
            taken = max(0, min(len(items), self.maxsize - len(self._items)))
            if taken:
                self._items.extend(items if taken == len(items) else items[:taken])
                if self._getters:
                    self._arrived.notify()
        if taken < len(items):
            self.metrics.inc("inbox_dropped", len(items) - taken)
        return taken

    def put(self, item: Item, stop: threading.Event) -> bool:
        """For recordings: waits for room (False once ``stop`` is set)."""
        with self._lock:
            while not stop.is_set():
                if len(self._items) < self.maxsize:
                    self._items.append(item)
                    if self._getters:
                        self._arrived.notify()
                    return True
                self._putters += 1
                try:
                    self._room.wait(0.1)
                finally:
                    self._putters -= 1
        return False

    def get(self, timeout: float) -> Item | None:
        """The oldest item, waiting up to ``timeout`` seconds for one (0: not at all); None if none came."""
        with self._lock:
            if not self._items:
                if not timeout > 0:
                    return None
                deadline = time.monotonic() + timeout
                self._getters += 1
                try:
                    while not self._items:
                        remaining = deadline - time.monotonic()
                        if remaining <= 0:
                            return None
                        self._arrived.wait(remaining)
                finally:
                    self._getters -= 1
            item = self._items.popleft()
            if self._putters:
                self._room.notify()
            return item

    def drain(self, max_items: int) -> list[Item]:
        """Up to ``max_items`` of the waiting items, oldest first, in one call (a loop that fell
        behind takes its backlog without a lock round trip per item)."""
        with self._lock:
            items = self._items
            if len(items) <= max_items:
                out = list(items)
                items.clear()
            else:
                out = [items.popleft() for _ in range(max(0, max_items))]
            if out and self._putters:
                self._room.notify_all()
            return out

    def empty(self) -> bool:
        return not self._items


@dataclass(frozen=True, slots=True, kw_only=True)
class SourceContext:
    """What a source may need from the rest of the configuration."""

    model_rate_hz: float
    speed: str = "1"  # default pace of recordings: a factor or "max"
    mqtt: MqttSettings = MqttSettings()
    metrics: Metrics


class Source:
    """Base: a context manager whose ``start`` launches one named thread."""

    name = "source"
    live = True

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.done = False  # True when a recording has been read to its end

    def start(self, inbox: Inbox) -> None:
        self._thread = threading.Thread(target=self._guarded, args=(inbox,), name=self.name, daemon=True)
        self._thread.start()

    def _guarded(self, inbox: Inbox) -> None:
        try:
            self._run(inbox)
        except Exception:  # a source thread must not die silently: log it; the pipeline sees done
            log.exception("%s: stopped by an unexpected error", self.name)
        finally:
            self.done = True

    def _run(self, inbox: Inbox) -> None:
        raise NotImplementedError

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def parse_speed(value: str) -> float:
    """A pace factor; ``max`` is infinity (no waiting)."""
    if value == "max":
        return math.inf
    try:
        speed = float(value)
    except ValueError:
        raise ConfigError(f"speed must be a positive number or 'max', got {value!r}") from None
    if not speed > 0:
        raise ConfigError(f"speed must be a positive number or 'max', got {value!r}")
    return speed


class RecordingSource(Source):
    """A CSV or HAPT npz recording, cut into blocks the size of a device frame and paced."""

    live = False

    def __init__(self, recording: Any, device: str, speed: float, block: int) -> None:
        super().__init__()
        self.name = f"file-in:{recording.name}"
        self.recording, self.device, self.speed, self.block = recording, device, speed, block

    def blocks(self) -> Iterator[SampleBlock]:
        rec = self.recording
        for seq, start in enumerate(range(0, len(rec), self.block)):
            yield SampleBlock(device_id=self.device, seq=seq, epoch=0, t0=float(rec.t[start]), rate_hz=rec.rate_hz,
                              samples=rec.samples[start:start + self.block])

    def _run(self, inbox: Inbox) -> None:
        began = time.monotonic()
        t_first = float(self.recording.t[0]) if len(self.recording) else 0.0
        for block in self.blocks():
            if math.isfinite(self.speed):
                # Pace by the block's last sample: a device sends a frame once its samples exist.
                due = began + (block.t0 - t_first + len(block) / block.rate_hz) / self.speed
                while not self._stop.is_set() and time.monotonic() < due:
                    time.sleep(min(0.05, due - time.monotonic()))
            if not inbox.put(block, self._stop):
                return


class CaptureSource(Source):
    """Wire bytes captured from a port or by ``imu-anon device simulate --capture`` (``.imuf``),
    decoded by the bridge's frame decoder (its counters join the metrics) and paced like a
    recording: each device's blocks at its own sample rate, in file order."""

    live = False

    def __init__(self, path: Path, speed: float, metrics: Metrics) -> None:
        from firmware_bridge.recordings import read_frame_file

        super().__init__()
        self.name, self.path, self.speed = f"frames-in:{path.name}", path, speed
        try:
            self.decoded, counters = read_frame_file(path)
        except RecordingError as exc:
            raise SourceError(str(exc)) from None
        for counter, value in counters.items():
            if value:
                metrics.inc(counter, value)

    def _run(self, inbox: Inbox) -> None:
        began = time.monotonic()
        sent: dict[str, int] = {}
        for block in self.decoded:
            sent[block.device_id] = sent.get(block.device_id, 0) + len(block)
            if math.isfinite(self.speed):
                due = began + sent[block.device_id] / block.rate_hz / self.speed
                while not self._stop.is_set() and time.monotonic() < due:
                    time.sleep(min(0.05, due - time.monotonic()))
            if not inbox.put(block, self._stop):
                return


class SerialSource(Source):
    def __init__(self, port: str, baud: int, fmt: str, device: str | None, rate_hz: float | None, metrics: Metrics,
                 options: tuple[tuple[str, str], ...] = ()) -> None:
        from edge_runtime.serial_port import Port

        super().__init__()
        self.name = f"serial-in:{port}"
        self.origin, self.fmt, self.device, self.rate_hz = f"serial:{port}", fmt, device, rate_hz
        self.options = options
        self.port = Port(port, baud, role=self.name, on_event=metrics.inc)

    def _run(self, inbox: Inbox) -> None:
        try:
            while not self._stop.is_set():
                data = self.port.read(0.1)
                if data:
                    inbox.offer(Received(self.origin, data, self.fmt, self.device, self.rate_hz, self.options))
        finally:
            self.port.close()


class LoopSource(Source):
    """An in-process source: Python code calls ``feed`` and finally ``end``."""

    live = False

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = f"loop:{name}"
        self._items: queue.Queue[Item | None] = queue.Queue()

    def feed(self, item: Item | bytes, fmt: str = "frames", device: str | None = None) -> None:
        if isinstance(item, (bytes, bytearray)):
            item = Received(self.name, bytes(item), fmt, device)
        self._items.put(item)

    def end(self) -> None:
        self._items.put(None)

    def _run(self, inbox: Inbox) -> None:
        while not self._stop.is_set():
            try:
                item = self._items.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is None or not inbox.put(item, self._stop):
                return


def _params(url: str, query: str, known: set[str]) -> dict[str, str]:
    params = dict(parse_qsl(query, keep_blank_values=True))
    unknown = set(params) - known
    if unknown:
        raise ConfigError(f"{url!r}: unknown parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    return params


def _int(url: str, params: dict[str, str], key: str, default: int) -> int:
    try:
        value = int(params.get(key, default))
    except ValueError:
        raise ConfigError(f"{url!r}: {key} must be an integer, got {params[key]!r}") from None
    if value <= 0:
        raise ConfigError(f"{url!r}: {key} must be positive, got {value}")
    return value


def _recording(url: str, scheme: str, target: str, query: str, ctx: SourceContext) -> Source:
    from firmware_bridge.recordings import load_csv, load_hapt_user

    path = Path(target).expanduser()
    suffix = path.suffix.lower()
    if scheme == "frames" or (scheme == "file" and suffix in CAPTURE_SUFFIXES):
        params = _params(url, query, {"speed"})
        if not path.is_file():
            raise SourceError(f"{url!r}: no such capture file {path}")
        return CaptureSource(path, parse_speed(params.get("speed", ctx.speed)), ctx.metrics)
    params = _params(url, query, {"speed", "block", "device", "rate", "user", "session"})
    speed = parse_speed(params.get("speed", ctx.speed))
    block = _int(url, params, "block", 25)
    try:
        if scheme == "npz" or suffix == ".npz":
            user = _int(url, params, "user", 9)
            session = int(params["session"]) if "session" in params else None
            rec = load_hapt_user(user, session, path)
        elif suffix == ".csv":
            rec = load_csv(path, float(params["rate"]) if "rate" in params else None)
        else:
            raise SourceError(f"{url!r}: a recording must be .csv, .npz, or a frame capture "
                              f"({', '.join(CAPTURE_SUFFIXES)}); got {path.name}")
    except RecordingError as exc:
        raise SourceError(str(exc)) from None
    except ValueError as exc:
        raise ConfigError(f"{url!r}: {exc}") from None
    return RecordingSource(rec, params.get("device", rec.name), speed, block)


def _check_csv_options(url: str, params: dict[str, str]) -> None:
    """Fail at start-up, not at the first line, on units or columns the line decoder refuses."""
    from firmware_bridge.errors import ProtocolError
    from firmware_bridge.linecsv import LineCsvConfig

    try:
        LineCsvConfig(device_id=params.get("device", "x"), rate_hz=float(params.get("rate", 50.0)),
                      acc_unit=params.get("acc", "g"), gyro_unit=params.get("gyro", "rad/s"),
                      skip_columns=int(params.get("skip", 0)))
    except (ProtocolError, ValueError) as exc:
        raise ConfigError(f"{url!r}: {exc}") from None


def open_source(url: str, ctx: SourceContext) -> Source:
    """A source for ``url``; an unknown scheme lists the known ones."""
    scheme, sep, rest = url.partition(":")
    if scheme in ("mqtt", "mqtts"):
        from edge_runtime.mqtt_source import MqttSource

        return MqttSource.from_url(url, ctx)
    target, _, query = rest.partition("?")
    if target.startswith("//"):
        target = target[2:]
    if sep and scheme in ("file", "npz", "frames") and target:
        return _recording(url, scheme, target, query, ctx)
    if sep and scheme == "serial" and target:
        params = _params(url, query, {"baud", "format", "device", "rate", "acc", "gyro", "skip"})
        fmt = params.get("format", "frames")
        if fmt not in ("frames", "csv"):
            raise ConfigError(f"{url!r}: format must be frames or csv, got {fmt!r}")
        rate = None
        if fmt == "csv":
            try:
                rate = float(params.get("rate", ctx.model_rate_hz))
            except ValueError:
                raise ConfigError(f"{url!r}: rate must be a number") from None
            if "rate" not in params:
                log.info("%s: CSV lines carry no rate; assuming the model's %g Hz (add ?rate=)", url, rate)
            _check_csv_options(url, params)
        options = tuple((k, params[k]) for k in ("acc", "gyro", "skip") if k in params)
        return SerialSource(target, _int(url, params, "baud", 115200), fmt,
                            params.get("device", Path(target).name) if fmt == "csv" else None, rate, ctx.metrics,
                            options)
    if sep and scheme == "loop":
        return LoopSource(target or "default")
    raise ConfigError(f"unknown source {url!r}; known: serial:///dev/PORT?baud=N&format=frames|csv, "
                      "mqtt://HOST:PORT/imu/+/raw, mqtts://..., file:REC.csv|.npz|.imuf?speed=N|max, "
                      "npz:PATH?user=N, frames:CAPTURE.imuf, loop:NAME")
