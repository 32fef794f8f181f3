"""Per-device streams: a ring buffer per wearer, gap detection, rate checks, window cutting.

Each device id has its own :class:`DeviceStream`, so one device's samples never enter
another's window. A stream is reset (a new *segment*, the partial window discarded and
counted) when the device skips frame sequence numbers, announces a reboot, jumps in time, or
falls silent; a window never spans a reset, as in training. A device whose declared sample
rate differs from the model's is refused with one log line (its samples are counted, not used).
Windows are cut with the training arithmetic (``edge_runtime.windowing.window_views``: window
``i`` starts ``i * hop`` samples after the first) as zero-copy views of the ring, which the
anonymiser gathers straight into its batch. The samples a view shows are never written again:
the ring only appends, and compacting or resetting a ring that has views out moves to a fresh
array (the old one lives as long as its windows wait).
"""

from __future__ import annotations

import logging
import math
import time
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.signals import RawWindow
from edge_runtime.windowing import window_views
from firmware_bridge.blocks import SampleBlock

log = logging.getLogger(__name__)

LATE_WINDOW = 64  # a block at most this many sequence numbers behind is late or a duplicate: dropped
GAUGE_REFRESH_S = 1.0  # the measured-rate gauges are rewritten at most this often (the meter's clock)


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamSettings:
    gap_tolerance_samples: float = 2.0  # a timestamp this many sample periods off the expected one is a gap
    silence_s: float = 2.0  # a device silent this long (gateway clock) starts a new segment
    rate_tolerance: float = 0.02  # relative: a declared rate further from the model's is refused
    drift_warn: float = 0.01  # relative: a measured rate further from the model's is logged
    drift_min_s: float = 20.0  # measure the rate over at least this much signal before judging it
    max_devices: int = 64
    idle_forget_s: float = 600.0  # forget a device's state after this long without samples
    shard: str = ""  # "k/n": keep only devices with crc32(id) % n == k (several runtimes on one broker)

    def __post_init__(self) -> None:
        for name in ("gap_tolerance_samples", "silence_s", "rate_tolerance", "drift_warn", "drift_min_s",
                     "idle_forget_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(f"streams.{name} must be a positive number, got {value!r}")
        if not (isinstance(self.max_devices, int) and self.max_devices > 0):
            raise ConfigError(f"streams.max_devices must be a positive integer, got {self.max_devices!r}")
        if self.shard:
            self.shard_of()

    def shard_of(self) -> tuple[int, int] | None:
        if not self.shard:
            return None
        try:
            k, n = (int(x) for x in self.shard.split("/"))
        except ValueError:
            raise ConfigError(f"streams.shard must be 'k/n' (e.g. '0/3'), got {self.shard!r}") from None
        if not (n > 0 and 0 <= k < n):
            raise ConfigError(f"streams.shard {self.shard!r}: need 0 <= k < n")
        return k, n


def in_shard(device_id: str, shard: tuple[int, int] | None) -> bool:
    """Stable across runtimes and restarts (crc32, not Python's salted hash)."""
    return shard is None or zlib.crc32(device_id.encode("utf-8")) % shard[1] == shard[0]


class DeviceStream:
    """One device's samples: bounded ring, segment bookkeeping and the measured rate."""

    def __init__(self, device_id: str, window: int, hop: int, rate_hz: float, settings: StreamSettings,
                 metrics: Metrics, clock: Callable[[], float]) -> None:
        self.device_id, self.window, self.hop, self.rate_hz = device_id, window, hop, rate_hz
        self.settings, self.metrics, self._clock = settings, metrics, clock
        self._silence_s = settings.silence_s
        self._gap_s = settings.gap_tolerance_samples / rate_hz  # device seconds off the expected start that make a gap
        self._capacity = 2 * window  # hop <= window, so one window + one hop fit
        self._ring = np.zeros((self._capacity, 6), dtype=np.float32)
        self._lent = False  # windows cut from this ring may still be waiting: never overwrite it
        self.segment = -1
        self._reset_state()
        self.last_seen = clock()
        self.last_seq: int | None = None
        self.epoch: int | None = None
        self.refused_rate: float | None = None
        self._accepted_rate: float | None = None  # the declared rate last found acceptable
        self._drift_logged: set[str] = set()

    def _reset_state(self) -> None:
        self.segment += 1
        self._fresh_ring()
        self._fill = 0  # samples in the ring
        self._start = 0  # ring index where the next window starts
        self._covered = 0  # ring index up to which samples are inside an emitted window
        self._t_ring = math.nan  # time of ring[0]
        self._next_t = math.nan  # device time the next block should start at
        self._index = 0
        self._device_meter = _RateMeter(self.settings.drift_min_s, marks_end=False)
        self._arrival_meter = _RateMeter(self.settings.drift_min_s, marks_end=True)

    def reset(self, reason: str) -> None:
        """Start a new segment; samples not yet inside any window are counted as lost."""
        self.metrics.inc("gaps")
        self.metrics.inc(f"gaps_{reason}")
        self.finish()

    def finish(self) -> None:
        lost = self._fill - self._covered
        if lost > 0:
            self.metrics.inc("samples_unwindowed", lost)
        self._reset_state()

    def _check_continuity(self, block: SampleBlock, now: float) -> bool:
        """False when the block must be dropped (a duplicate or out-of-order frame)."""
        seq = block.seq
        # The usual block first: the same epoch, the next sequence number, on time (a NaN t0 or
        # _next_t compares as on time, as the checks below skip them), the device not silent.
        # Of everything below, it changes only the last sequence number.
        if (block.epoch == self.epoch and seq is not None and seq - 1 == self.last_seq
                and now - self.last_seen <= self._silence_s and not abs(block.t0 - self._next_t) > self._gap_s):
            self.last_seq = seq
            return True
        if self.epoch is not None and block.epoch != self.epoch:
            self.last_seq = None  # a new epoch restarts the device's sequence numbers
            if self._fill:
                self.reset("reboot")
        self.epoch = block.epoch
        if block.seq is not None and self.last_seq is not None:
            if self.last_seq - LATE_WINDOW <= block.seq <= self.last_seq:
                self.metrics.inc("blocks_out_of_order")
                return False
            if block.seq < self.last_seq:
                # Far behind: the device restarted its counter without announcing a reboot (a JSON
                # sender without "boot"). Dropping everything from now on would lose it for good.
                if self._fill:
                    self.reset("seq_restart")
            elif block.seq > self.last_seq + 1:
                self.metrics.inc("blocks_missing", block.seq - self.last_seq - 1)
                if self._fill:
                    self.reset("seq")
        if block.seq is not None:
            self.last_seq = block.seq
        if self._fill and now - self.last_seen > self.settings.silence_s:
            self.reset("silence")
        # Compared with the previous block, not with the segment's start: a device clock a few
        # hundred ppm off its declared rate must not look like a gap after a minute.
        if self._fill and math.isfinite(block.t0) and math.isfinite(self._next_t):
            if abs(block.t0 - self._next_t) > self._gap_s:
                self.reset("time")
        return True

    def _rate_ok(self, block: SampleBlock, stream: str) -> bool:
        declared = float(block.rate_hz)
        if math.isfinite(declared) and abs(declared / self.rate_hz - 1.0) <= self.settings.rate_tolerance:
            if self.refused_rate is not None:
                log.info("stream %s: now declares %g Hz, which the model takes; accepting its samples again",
                         stream, declared)
                self.refused_rate = None
                self.last_seq = None  # the refused frames are not a gap to report
            self._accepted_rate = declared
            return True
        self._accepted_rate = None
        if self.refused_rate != declared:
            log.warning("stream %s: declares %g Hz but the model needs %g Hz; refusing its samples "
                        "(configure the wearable for %g Hz or export a model for its rate)",
                        stream, declared, self.rate_hz, self.rate_hz)
            self.refused_rate = declared
            if self._fill:
                self.reset("rate")
        self.metrics.inc("samples_refused_rate", len(block))
        return False

    def push(self, block: SampleBlock, stream: str, at: float | None = None) -> list[RawWindow]:
        now = self._clock() if at is None else at
        t0 = block.t0
        # The same declared rate as the last accepted block needs no second look (nor a call).
        if block.rate_hz != self._accepted_rate and not self._rate_ok(block, stream):
            self.last_seen = now
            return []
        if not self._check_continuity(block, now):
            self.last_seen = now
            return []
        self.last_seen = now
        samples = block.samples
        n = len(samples)
        fill = self._fill
        if math.isfinite(t0):
            self._t_ring = t0 - fill / self.rate_hz  # re-anchored on the device clock every block
            self._next_t = t0 + n / self.rate_hz
        elif fill == 0:
            self._t_ring = time.time() - n / self.rate_hz
        self._measure_rate(t0, stream, n, at)
        if fill + n <= self._capacity:  # the usual block: it fits behind what the ring holds
            self._ring[fill:fill + n] = samples
            self._fill = fill + n
            return self._cut(stream, now)
        out: list[RawWindow] = []
        pos = 0
        while pos < n:
            if self._fill == self._capacity:
                self._compact()
            take = min(n - pos, self._capacity - self._fill)
            self._ring[self._fill:self._fill + take] = samples[pos:pos + take]
            self._fill += take
            pos += take
            out.extend(self._cut(stream, now))
        return out

    def _fresh_ring(self) -> None:
        if self._lent:
            self._ring, self._lent = np.empty_like(self._ring), False

    def _compact(self) -> None:
        keep = self._fill - self._start
        old = self._ring
        self._fresh_ring()
        self._ring[:keep] = old[self._start:self._fill]
        self._t_ring += self._start / self.rate_hz
        self._covered = max(0, self._covered - self._start)
        self._fill, self._start = keep, 0

    def _cut(self, stream: str, now: float) -> list[RawWindow]:
        start, window, hop = self._start, self.window, self.hop
        ready = self._fill - start
        if ready < window:
            return []
        count = (ready - window) // hop + 1
        views = window_views(self._ring, start, window, hop, count)
        self._lent = True
        t_ring, rate, index = self._t_ring, self.rate_hz, self._index
        out = RawWindow._run(views, [t_ring + s / rate for s in range(start, start + count * hop, hop)],
                             device_id=self.device_id, stream=stream, segment=self.segment, index=index,
                             rate_hz=rate, ready_at=now)
        self._index = index + count
        self._covered = start + (count - 1) * hop + window
        self._start = start + count * hop
        return out

    def _measure_rate(self, t0: float, stream: str, n: int, at: float | None) -> None:
        """Samples per second by the device's clock (its timestamps) and by the gateway's (arrival
        times of live bytes; also when the device sends no timestamps, as CSV lines do not)."""
        if math.isfinite(t0):
            measured = self._device_meter.add(t0, n)
            if measured is not None:
                self._judge(measured, t0, self._device_meter, stream, "stream", "by its own clock")
            if at is None:
                return
            arrival = at
        else:
            arrival = self._clock() if at is None else at
        measured = self._arrival_meter.add(arrival, n)
        if measured is not None:
            self._judge(measured, arrival, self._arrival_meter, stream, "stream_arrival", "arriving at the gateway")

    def _judge(self, measured: float, t: float, meter: "_RateMeter", stream: str, gauge: str, how: str) -> None:
        drift = measured / self.rate_hz - 1.0
        if t >= meter.gauge_due:  # a gauge is read every few seconds: rewriting it every block buys nothing
            meter.gauge_due = t + GAUGE_REFRESH_S
            self.metrics.gauge(f"{gauge}_rate_hz", measured, stream)
            self.metrics.gauge(f"{gauge}_drift_ppm", drift * 1e6, stream)
        if abs(drift) > self.settings.drift_warn and gauge not in self._drift_logged:
            log.warning("stream %s: measured %.3f Hz %s, %.2f%% off the model's %g Hz; check the wearable's "
                        "clock and rate setting", stream, measured, how, drift * 100, self.rate_hz)
            self._drift_logged.add(gauge)


class _RateMeter:
    """Samples per second since the segment began, once ``min_s`` of it has passed. A device
    timestamp marks a block's first sample; an arrival time marks its end."""

    def __init__(self, min_s: float, marks_end: bool) -> None:
        self.min_s, self.marks_end = min_s, marks_end
        self._t0: float | None = None
        self._samples = 0
        self.gauge_due = -math.inf  # the meter's time from which the gauges want its rate again

    def add(self, t: float, n: int) -> float | None:
        if self._t0 is None:
            self._t0, self._samples = t, (0 if self.marks_end else n)
            return None
        if self.marks_end:
            self._samples += n
        span = t - self._t0
        rate = self._samples / span if span >= self.min_s else None
        if not self.marks_end:
            self._samples += n
        return rate


class StreamTable:
    """Every device's stream, keyed by its real id (never shown: logs use the pseudonym)."""

    def __init__(self, window: int, hop: int, rate_hz: float, settings: StreamSettings, metrics: Metrics,
                 pseudonym: Callable[[str], str], clock: Callable[[], float] = time.monotonic) -> None:
        self.window, self.hop, self.rate_hz = window, hop, rate_hz
        self.settings, self.metrics, self.pseudonym, self._clock = settings, metrics, pseudonym, clock
        self._shard = settings.shard_of()
        self._streams: dict[str, DeviceStream] = {}
        self._full_logged = False
        # Counted for every block: plain ints merged into each snapshot, not a lock per increment.
        self._counts = {"blocks_in": 0, "samples_in": 0, "windows_cut": 0}
        metrics.add_collector(lambda: dict(self._counts))

    def __len__(self) -> int:
        return len(self._streams)

    def push(self, block: SampleBlock, at: float | None = None) -> list[RawWindow]:
        """The windows this block completes; ``at`` is when its bytes arrived (``time.monotonic``)."""
        n = len(block.samples)
        counts = self._counts
        counts["blocks_in"] += 1
        counts["samples_in"] += n
        device_id = block.device_id
        if self._shard is not None and not in_shard(device_id, self._shard):
            self.metrics.inc("samples_other_shard", n)
            return []
        stream = self._streams.get(device_id)
        if stream is None:
            self.expire()
            if len(self._streams) >= self.settings.max_devices:
                self.metrics.inc("samples_refused_devices", n)
                if not self._full_logged:
                    log.warning("%d devices already: refusing new ones (raise streams.max_devices)",
                                self.settings.max_devices)
                    self._full_logged = True
                return []
            stream = self._streams[device_id] = DeviceStream(
                device_id, self.window, self.hop, self.rate_hz, self.settings, self.metrics, self._clock)
            log.info("stream %s: new device", self.pseudonym(device_id))
        windows = stream.push(block, self.pseudonym(device_id), at)
        if windows:
            counts["windows_cut"] += len(windows)
        return windows

    def finish(self) -> None:
        """At shutdown: count the samples of every stream that no window covered."""
        for stream in self._streams.values():
            stream.finish()

    def expire(self) -> None:
        """Forget devices silent for longer than ``idle_forget_s`` (bounded state on a long run)."""
        now = self._clock()
        for device_id in [d for d, s in self._streams.items() if now - s.last_seen > self.settings.idle_forget_s]:
            self.metrics.forget_stream(self.pseudonym(device_id))
            del self._streams[device_id]
