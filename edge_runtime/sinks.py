"""Where anonymised windows go, chosen by URL; the only type a sink accepts is AnonymisedWindow.

    mqtt://host:1883/imu/anon/{stream}?qos=1&format=json&buffer=1000&status=imu/gateway/{gateway}/status
    mqtts://host:8883/...                      TLS (see mqtt_link, mqtt_sink)
    file:out.jsonl   file:out.csv?mode=w       one JSON object per window / one row per sample (appends
                                               unless mode=w)
    stdout:                                    JSON Lines on standard output
    null:                                      discards (counts only): timing a replay
    serial:///dev/ttyAMA0?baud=115200&format=json|binary

Every sink is a context manager; leaving it flushes. ``write`` refuses anything that is not
an :class:`AnonymisedWindow` with a :class:`SinkError`: there is no other path to the outside.
"""

from __future__ import annotations

import csv
import io
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO
from urllib.parse import parse_qsl

from edge_runtime import payload
from edge_runtime.errors import ConfigError, SinkError
from edge_runtime.metrics import Metrics
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.signals import AnonymisedWindow

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class PublishSettings:
    format: str = "json"  # payload of MQTT and serial messages: json or binary
    topic: str = "imu/anon/{stream}"  # used when an mqtt:// sink URL names no topic
    qos: int = 1
    status_topic: str = "imu/gateway/{gateway}/status"
    gateway: str = "gateway"  # this runtime's name in the status topic (not a wearer's id)
    buffer_max: int = 1000  # windows held per MQTT sink while the broker is away (oldest dropped)
    stitch: str = "off"  # off | tail | mean, see edge_runtime.stitching

    def __post_init__(self) -> None:
        if self.format not in payload.FORMATS:
            raise ConfigError(f"publish.format must be one of {', '.join(payload.FORMATS)}, got {self.format!r}")
        if self.qos not in (0, 1, 2):
            raise ConfigError(f"publish.qos must be 0, 1 or 2, got {self.qos!r}")
        if not (isinstance(self.buffer_max, int) and self.buffer_max > 0):
            raise ConfigError(f"publish.buffer_max must be a positive integer, got {self.buffer_max!r}")
        if not self.gateway or any(c in self.gateway for c in "/+#"):
            raise ConfigError(f"publish.gateway must be a non-empty name without / + #, got {self.gateway!r}")


class Sink:
    """Base of every sink: the type check, and no-op housekeeping."""

    name = "sink"

    def check(self, window: object) -> None:
        if not isinstance(window, AnonymisedWindow):
            raise SinkError(f"{self.name}: refusing a {type(window).__name__}: only AnonymisedWindow "
                            "(the anonymiser's output) may leave the gateway")

    def write(self, window: AnonymisedWindow) -> None:
        raise NotImplementedError

    def write_many(self, windows: Sequence[AnonymisedWindow]) -> None:
        """The windows of one pipeline pass, in order; sinks that can amortise per-message work
        (one encoding pass, one socket write) override it."""
        for window in windows:
            self.write(window)

    def poll(self) -> None:
        """Housekeeping between windows (draining a backlog); cheap when idle."""

    def flush(self, timeout: float = 5.0) -> None:
        pass

    def __enter__(self) -> "Sink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.flush()


class StreamSink(Sink):
    """JSON Lines or CSV on a text stream (a file or standard output)."""

    def __init__(self, name: str, fmt: str, opener: Callable[[], TextIO], close: bool) -> None:
        if fmt not in ("jsonl", "csv"):
            raise ConfigError(f"{name}: file format must be jsonl or csv, got {fmt!r}")
        self.name, self.fmt, self._opener, self._close = name, fmt, opener, close
        self._fh: TextIO | None = None
        self._csv_header_for: tuple[str, ...] | None = None

    def __enter__(self) -> "StreamSink":
        try:
            self._fh = self._opener()
        except OSError as exc:
            raise SinkError(f"{self.name}: cannot open for writing ({exc})") from None
        return self

    def write(self, window: AnonymisedWindow) -> None:
        self.check(window)
        fh = self._fh
        if fh is None:
            raise SinkError(f"{self.name}: write before open")
        if self.fmt == "jsonl":
            fh.write(payload.encode(window, "json").decode("utf-8") + "\n")
            return
        if self._csv_header_for != window.channels:
            fh.write(",".join(("stream", "segment", "index", "t") + window.channels) + "\n")
            self._csv_header_for = window.channels
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for i in range(window.samples):
            t = window.t0 + i / window.rate_hz
            writer.writerow([window.stream, window.segment, window.index, f"{t:.6f}",
                             *(f"{v:.6g}" for v in window.values[:, i])])
        fh.write(buf.getvalue())

    def write_many(self, windows: Sequence[AnonymisedWindow]) -> None:
        """JSON Lines of a batch encoded in one pass and written in one call."""
        if self.fmt != "jsonl" or self._fh is None:
            super().write_many(windows)
            return
        for window in windows:
            self.check(window)
        if windows:
            self._fh.write(b"\n".join([*payload.encode_many(windows, "json"), b""]).decode("utf-8"))

    def flush(self, timeout: float = 5.0) -> None:
        if self._fh is not None:
            self._fh.flush()

    def __exit__(self, *exc: Any) -> None:
        self.flush()
        if self._fh is not None and self._close:
            self._fh.close()
        self._fh = None


class SerialSink(Sink):
    """Windows out of a UART: JSON Lines, or binary payloads framed like the wire protocol
    (COBS + 0x00), so a microcontroller downstream can reuse the bridge's deframer. While the
    port is gone, up to 100 windows wait and the oldest are dropped (counted)."""

    def __init__(self, port: str, baud: int, fmt: str, metrics: Metrics) -> None:
        from edge_runtime.serial_port import Port

        if fmt not in payload.FORMATS:
            raise ConfigError(f"serial sink format must be one of {', '.join(payload.FORMATS)}, got {fmt!r}")
        self.name, self.fmt, self.metrics = f"serial:{port}", fmt, metrics
        self._port = Port(port, baud, role="serial-out", on_event=metrics.inc)
        self._backlog: deque[bytes] = deque(maxlen=100)

    def _wire(self, data: bytes) -> bytes:
        if self.fmt == "json":
            return data + b"\n"
        from firmware_bridge.framing import cobs_encode

        return cobs_encode(data) + b"\x00"

    def write(self, window: AnonymisedWindow) -> None:
        self.write_many([window])

    def write_many(self, windows: Sequence[AnonymisedWindow]) -> None:
        """Each window joins the backlog as before (one encoding pass for the batch); the port
        is offered the backlog after the batch, or sooner where the backlog is full, so a batch
        larger than the backlog is not dropped while the port takes data."""
        for window in windows:
            self.check(window)
        for data in payload.encode_many(windows, self.fmt):
            if len(self._backlog) == self._backlog.maxlen:
                self.poll()
                if len(self._backlog) == self._backlog.maxlen:
                    self.metrics.inc("serial_out_dropped")
            self._backlog.append(self._wire(data))
        self.poll()

    def poll(self) -> None:
        while self._backlog:
            if not self._port.write(self._backlog[0]):
                return
            self._backlog.popleft()

    def flush(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while self._backlog and time.monotonic() < deadline:
            self.poll()
            if self._backlog:
                time.sleep(0.05)

    def __exit__(self, *exc: Any) -> None:
        self.flush(timeout=1.0)  # the pipeline flushed already; this is the last try
        if self._backlog:
            self.metrics.inc("serial_out_dropped", len(self._backlog))
            log.warning("%s: %d window(s) could not be written before shutdown", self.name, len(self._backlog))
        self._port.close()


class NullSink(Sink):
    """Discards what it is given: ``null:`` as is, ``null:?format=json|binary`` after encoding it
    as the MQTT sink would (the bench's stand-in for a free network: every cost but sending)."""

    name = "null"

    def __init__(self, fmt: str | None = None) -> None:
        if fmt is not None and fmt not in payload.FORMATS:
            raise ConfigError(f"null: format must be one of {', '.join(payload.FORMATS)}, got {fmt!r}")
        self.fmt = fmt
        self.bytes_discarded = 0

    def write(self, window: AnonymisedWindow) -> None:
        self.write_many([window])

    def write_many(self, windows: Sequence[AnonymisedWindow]) -> None:
        for window in windows:
            self.check(window)
        if self.fmt is not None:
            self.bytes_discarded += sum(map(len, payload.encode_many(windows, self.fmt)))


def _file_sink(target: str, params: dict[str, str]) -> Sink:
    path = Path(target).expanduser()
    fmt = params.pop("format", "csv" if path.suffix.lower() == ".csv" else "jsonl")
    # Append by default: a daemon restarted by systemd must not wipe what it wrote before.
    mode = params.pop("mode", "a")
    if params or mode not in ("a", "w"):
        raise ConfigError(f"file:{target}: known parameters are format=jsonl|csv and mode=a|w (append, overwrite)")
    if not path.parent.is_dir():
        raise SinkError(f"file:{target}: folder {path.parent} does not exist")
    return StreamSink(f"file:{path}", fmt, lambda: open(path, mode, encoding="utf-8", buffering=1 << 16), close=True)


def open_sink(url: str, *, publish: PublishSettings, mqtt: MqttSettings, metrics: Metrics,
              status: Callable[[str, str, str], bytes]) -> Sink:
    """A sink for ``url``; an unknown scheme lists the known ones."""
    scheme, sep, rest = url.partition(":")
    if scheme in ("mqtt", "mqtts"):
        from edge_runtime import mqtt_link
        from edge_runtime.mqtt_sink import sink_class

        settings, topic, extra = mqtt_link.parse_url(url, mqtt, {"qos", "format", "buffer", "status", "client"})
        try:
            qos = int(extra.get("qos", publish.qos))
            buffer_max = int(extra.get("buffer", publish.buffer_max))
        except ValueError:
            raise ConfigError(f"{url!r}: qos and buffer must be integers") from None
        mqtt_sink = sink_class(extra.get("client", "lean"), qos)  # lean: our own client; paho: QoS 2
        return mqtt_sink(settings, topic or publish.topic, qos=qos, fmt=extra.get("format", publish.format),
                         buffer_max=buffer_max, status_topic=extra.get("status", publish.status_topic), status=status,
                         gateway=publish.gateway, metrics=metrics)
    target, _, query = rest.partition("?")
    params = dict(parse_qsl(query, keep_blank_values=True))
    if scheme == "file" and sep:
        if target.startswith("//"):
            target = target[2:]
        return _file_sink(target, params)
    if scheme == "stdout":
        fmt = params.pop("format", "jsonl")
        if params or target:
            raise ConfigError(f"{url!r}: stdout takes only ?format=jsonl|csv")
        return StreamSink("stdout", fmt, lambda: sys.stdout, close=False)
    if scheme == "null" and sep and not target:
        fmt = params.pop("format", None)
        if params:
            raise ConfigError(f"{url!r}: null takes only ?format=json|binary (encode, then discard)")
        return NullSink(fmt)
    if scheme == "serial" and sep:
        port = target[2:] if target.startswith("//") else target
        unknown = set(params) - {"baud", "format"}
        if unknown or not port:
            raise ConfigError(f"{url!r}: a serial sink looks like serial:///dev/ttyAMA0?baud=115200&format=json")
        try:
            baud = int(params.get("baud", "115200"))
        except ValueError:
            raise ConfigError(f"{url!r}: baud must be an integer") from None
        return SerialSink(port, baud, params.get("format", publish.format), metrics)
    raise ConfigError(f"unknown sink {url!r}; known: mqtt://HOST:PORT/TOPIC, mqtts://..., file:PATH, stdout:, "
                      "serial:///dev/PORT?baud=N, null:")
