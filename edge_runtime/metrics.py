"""Counters, latency histograms, a periodic summary line and an optional Prometheus endpoint.

Everything that goes wrong per frame or per window ends up here as a number (never as an
exception out of the data path): frames ok/corrupt, gaps, windows, drops, latencies. The
Prometheus endpoint serves the text exposition format on a plain HTTP socket, bound to
127.0.0.1 unless configured otherwise, so no client library is needed on the Pi.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import defaultdict, deque
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:  # http.server loads only when the Prometheus endpoint is switched on
    from http.server import ThreadingHTTPServer

log = logging.getLogger(__name__)

MAX_GAUGES = 512
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class Histogram:
    """Cumulative buckets for Prometheus plus the most recent values for exact percentiles."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS_S, recent: int = 20_000) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one is +Inf
        self.count = 0
        self.sum = 0.0
        self._recent: deque[float] = deque(maxlen=recent)
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.counts[bisect.bisect_left(self.buckets, value)] += 1
            self.count += 1
            self.sum += value
            self._recent.append(value)

    def observe_many(self, values: Sequence[float]) -> None:
        """``observe`` of each value, under one lock: the latencies of a batch at once."""
        buckets, counts = self.buckets, self.counts
        with self._lock:
            total = self.sum
            for value in values:
                counts[bisect.bisect_left(buckets, value)] += 1
                total += value
            self.sum = total
            self.count += len(values)
            self._recent.extend(values)

    def percentile(self, q: float) -> float:
        """The q-th percentile (0-100) of the recent values; NaN when there are none."""
        with self._lock:
            values = list(self._recent)
        return float(np.percentile(values, q)) if values else float("nan")


class Metrics:
    """The runtime's numbers. Thread-safe: source threads count their drops here too."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = defaultdict(int)
        self._gauges: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._collectors: list[Callable[[], Mapping[str, int]]] = []
        self.histograms = {"inference_seconds": Histogram(), "window_latency_seconds": Histogram()}

    def inc(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def gauge(self, name: str, value: float, stream: str = "") -> None:
        with self._lock:
            self._gauges.pop((name, stream), None)
            self._gauges[(name, stream)] = float(value)
            while len(self._gauges) > MAX_GAUGES:  # rotated pseudonyms must not grow this for months
                del self._gauges[next(iter(self._gauges))]

    def forget_stream(self, stream: str) -> None:
        with self._lock:
            for key in [k for k in self._gauges if k[1] == stream]:
                del self._gauges[key]

    def add_collector(self, collect: Callable[[], Mapping[str, int]]) -> None:
        """A callable whose counters (e.g. the decoders') are merged into every snapshot."""
        self._collectors.append(collect)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            out = dict(self._counts)
        for collect in self._collectors:
            for name, value in collect().items():
                out[name] = out.get(name, 0) + int(value)
        return out

    def get(self, name: str) -> int:
        return self.snapshot().get(name, 0)

    def observe(self, histogram: str, value: float) -> None:
        self.histograms[histogram].observe(value)

    def observe_many(self, histogram: str, values: Sequence[float]) -> None:
        self.histograms[histogram].observe_many(values)

    def summary(self, previous: Mapping[str, int] | None = None) -> str:
        """One line: every non-zero counter (with the change since ``previous``) and latency percentiles."""
        now = {k: v for k, v in self.snapshot().items() if v}  # the decoders list every counter, even at 0
        parts = []
        for name in sorted(now):
            delta = now[name] - (previous or {}).get(name, 0)
            parts.append(f"{name}={now[name]}" + (f"(+{delta})" if previous is not None and delta else ""))
        inf = self.histograms["inference_seconds"]
        lat = self.histograms["window_latency_seconds"]
        if inf.count:
            parts.append(f"inference_ms p50={inf.percentile(50) * 1e3:.2f} p99={inf.percentile(99) * 1e3:.2f}")
        if lat.count:
            parts.append(f"latency_ms p50={lat.percentile(50) * 1e3:.1f} p99={lat.percentile(99) * 1e3:.1f}")
        return " ".join(parts)

    def prometheus(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        lines: list[str] = []
        for name, value in sorted(self.snapshot().items()):
            metric = f"imu_anon_{name}_total"
            lines += [f"# TYPE {metric} counter", f"{metric} {value}"]
        with self._lock:
            gauges = dict(self._gauges)
        seen: set[str] = set()
        for (name, stream), value in sorted(gauges.items()):
            metric = f"imu_anon_{name}"
            if metric not in seen:
                lines.append(f"# TYPE {metric} gauge")
                seen.add(metric)
            label = f'{{stream="{stream}"}}' if stream else ""
            lines.append(f"{metric}{label} {value:.6g}")
        for name, hist in self.histograms.items():
            metric = f"imu_anon_{name}"
            lines.append(f"# TYPE {metric} histogram")
            with hist._lock:
                counts, total, count = list(hist.counts), hist.sum, hist.count
            running = 0
            for bound, c in zip(hist.buckets, counts):
                running += c
                lines.append(f'{metric}_bucket{{le="{bound:g}"}} {running}')
            lines.append(f'{metric}_bucket{{le="+Inf"}} {count}')
            lines += [f"{metric}_sum {total:.6f}", f"{metric}_count {count}"]
        return "\n".join(lines) + "\n"


class PeriodicLog:
    """Logs ``Metrics.summary`` every ``interval_s`` seconds when ``tick`` is called."""

    def __init__(self, metrics: Metrics, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.metrics = metrics
        self.interval_s = interval_s
        self._clock = clock
        self._next = clock() + interval_s
        self._previous: dict[str, int] = {}

    def tick(self) -> None:
        if self.interval_s <= 0 or self._clock() < self._next:
            return
        self._next = self._clock() + self.interval_s
        log.info("stats: %s", self.metrics.summary(self._previous))
        self._previous = self.metrics.snapshot()


class MetricsServer:
    """``GET /metrics`` in the Prometheus text format, served by a daemon thread."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1") -> None:
        self.metrics, self.host, self.port = metrics, host, port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "MetricsServer":
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        metrics = self.metrics

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path.split("?")[0] not in ("/metrics", "/"):
                    self.send_error(404, "only /metrics is served here")
                    return
                body = metrics.prometheus().encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, fmt: str, *args: object) -> None:  # scrapes every 15 s would flood the log
                log.debug("metrics http: " + fmt, *args)

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)
        self._thread.start()
        log.info("Prometheus metrics on http://%s:%d/metrics", self.host, self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)
