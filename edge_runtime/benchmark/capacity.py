"""How many 50 Hz wearables one core anonymises end to end, within a latency budget, losing nothing.

Each step builds the gateway exactly as ``imu-anon run`` does (``open_gateway``: model,
streams, decoders, stitcher, sinks, publish format) and runs the real :class:`Pipeline` over
frames from :class:`FleetSource`; only the source is the benchmark's. The pipeline's parts are
passed in through thin wrappers that add up each stage's CPU time in the pipeline thread, so
the split (decode, window, infer, encode, publish) comes from the run itself. The search steps
the fleet up from a fraction of the inference ceiling and bisects between the largest passing
and the smallest failing size, within a time limit.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from edge_runtime import config as gateway_config
from edge_runtime import payload
from edge_runtime.anonymiser import InferenceSettings
from edge_runtime.benchmark.fleet import FEEDER_PREFIX, Fleet, FleetSource, expected_windows
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.gateway import open_gateway
from edge_runtime.pipeline import Pipeline

log = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 10  # the simulator's int16 frames: 0.2 s at 50 Hz
ENCODE_SAMPLE = 256  # windows re-encoded after a step to price the encode stage
NETWORK_THREADS = ("paho", "mqtt-")  # the MQTT clients' network threads: their CPU is the publish stage
# Counters that mean a sample, frame or window was lost on the way (any of them fails a step).
LOSS_COUNTERS = (
    "inbox_dropped", "publish_dropped", "publish_unflushed", "sink_errors", "windows_nonfinite",
    "frames_corrupt", "frames_missing", "seq_gaps", "awaiting_config", "samples_refused_devices",
    "samples_refused_rate", "samples_refused_layout", "blocks_out_of_order", "blocks_device_mismatch", "gaps",
)


class CapacityError(EdgeRuntimeError):
    """The capacity search could not run."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CapacitySettings:
    budget_ms: float = 100.0  # p99 sample-to-publish latency a step must stay under
    step_s: float = 12.0  # device seconds each simulated wearable streams per step
    time_limit_s: float = 150.0  # the whole search
    max_wearables: int = 4000
    min_wearables: int = 1
    tolerance: float = 0.05  # stop bisecting when the bracket is this narrow (relative)
    payload_format: str = "json"

    def __post_init__(self) -> None:
        if not self.budget_ms > 0:
            raise CapacityError(f"the latency budget must be positive, got {self.budget_ms} ms")
        if not self.step_s >= 4.0:
            raise CapacityError(f"a capacity step needs at least 4 s (a window is 2.56 s of signal), got {self.step_s}")
        if not (1 <= self.min_wearables <= self.max_wearables):
            raise CapacityError(f"need 1 <= min_wearables <= max_wearables, got {self.min_wearables}..{self.max_wearables}")
        if self.payload_format not in payload.FORMATS:
            raise CapacityError(f"payload format must be one of {payload.FORMATS}, got {self.payload_format!r}")

    @classmethod
    def quick(cls, **over: Any) -> "CapacitySettings":
        base = dict(step_s=5.0, time_limit_s=30.0, tolerance=0.1)
        base.update(over)
        return cls(**base)


class StageClock:
    """CPU seconds of the pipeline thread per stage (``time.thread_time``: a stage pre-empted by
    another thread of the process is not charged for that thread's work).

    The split is taken from the first published window on: before it (a window's worth of
    signal) the fleet only says HELLO and fills rings, which would make every per-window figure
    look worse than the steady state a gateway lives in."""

    def __init__(self) -> None:
        self.seconds = {"decode": 0.0, "window": 0.0, "infer": 0.0, "sink": 0.0}
        self.calls = {"infer": 0, "sink": 0}
        self.sample: list[Any] = []  # anonymised windows kept to price the encoding afterwards
        self.batches: list[int] = []  # windows per write_many call, to price the encoding as the sink does it
        self.steady: dict | None = None

    def add(self, stage: str, seconds: float) -> None:
        self.seconds[stage] += seconds

    def snapshot(self) -> dict:
        return {"seconds": dict(self.seconds), "calls": dict(self.calls), "cpu": time.process_time(),
                "paho": _thread_cpu(NETWORK_THREADS), "feeder": _thread_cpu((FEEDER_PREFIX,)), "wall": time.monotonic()}

    def mark_steady(self) -> None:
        if self.steady is None:
            self.steady = self.snapshot()


class _Wrapper:
    def __init__(self, inner: Any, clock: StageClock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedDecoders(_Wrapper):
    def decode_many(self, items: Any) -> list:
        t = time.thread_time()
        out = self._inner.decode_many(items)
        self._clock.add("decode", time.thread_time() - t)
        return out


class TimedStreams(_Wrapper):
    def __len__(self) -> int:
        return len(self._inner)

    def push(self, block: Any, at: float | None = None) -> list:
        t = time.thread_time()
        out = self._inner.push(block, at=at)
        self._clock.add("window", time.thread_time() - t)
        return out


class TimedAnonymiser(_Wrapper):
    def anonymise_windows(self, windows: Any) -> tuple[list, float]:
        t, wall = time.thread_time(), time.perf_counter()
        out, seconds = self._inner.anonymise_windows(windows)
        cpu, wall = time.thread_time() - t, time.perf_counter() - wall
        # The model call's share of this call, by wall clock; the rest (stacking the batch,
        # wrapping the outputs) is window handling.
        infer = cpu * min(1.0, seconds / wall) if wall > 0 else 0.0
        self._clock.add("infer", infer)
        self._clock.add("window", cpu - infer)
        self._clock.calls["infer"] += 1
        return out, seconds


class TimedSink(_Wrapper):
    def write_many(self, windows: Any) -> None:
        self._clock.mark_steady()
        t = time.thread_time()
        self._inner.write_many(windows)
        self._clock.add("sink", time.thread_time() - t)
        self._clock.calls["sink"] += len(windows)
        self._clock.batches.append(len(windows))
        room = ENCODE_SAMPLE - len(self._clock.sample)
        if room > 0:
            self._clock.sample.extend(windows[:room])

    def poll(self) -> None:
        t = time.thread_time()
        self._inner.poll()
        self._clock.add("sink", time.thread_time() - t)

    def flush(self, timeout: float = 5.0) -> None:
        self._inner.flush(timeout)


def _thread_cpu(prefixes: tuple[str, ...]) -> float:
    """CPU seconds so far of this process's live threads whose name starts with ``prefixes``."""
    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith(prefixes) and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except (OSError, AttributeError):
                pass
    return total


def _encode_seconds(sample: list, fmt: str, batch: int) -> float:
    """Mean seconds to encode one window, in batches of the size the sink was handed them
    (it encodes inside ``write_many``)."""
    if not sample:
        return 0.0
    batch = max(1, batch)
    t = time.thread_time()
    for i in range(0, len(sample), batch):
        payload.encode_many(sample[i:i + batch], fmt)
    return (time.thread_time() - t) / len(sample)


@contextmanager
def _quiet() -> Iterator[None]:
    """A step opens a model and greets hundreds of new devices; keep that out of the bench log."""
    previous = logging.root.manager.disable
    logging.disable(logging.INFO)
    try:
        yield
    finally:
        logging.disable(previous)


def run_step(model: str | Path, n: int, fleet: Fleet, *, sink_url: str, settings: CapacitySettings,
             inference: InferenceSettings, secret_file: str) -> dict:
    """``n`` wearables through the full pipeline for ``settings.step_s``; the step's figures."""
    fmt = settings.payload_format
    overrides = {
        "model": {"path": str(model)},
        "inference": {"intra_op_threads": inference.intra_op_threads, "inter_op_threads": inference.inter_op_threads,
                      "spinning": inference.spinning, "graph_optimisation": inference.graph_optimisation},
        "pipeline": {"sources": ("loop:bench",), "sinks": (sink_url,)},
        "streams": {"max_devices": max(64, n)},
        "publish": {"format": fmt, "gateway": "imu-anon-bench", "topic": "imu-anon-bench/{stream}"},
        "privacy": {"secret_file": secret_file},
        "metrics": {"interval_s": 0.0},
    }
    cfg = gateway_config.build({}, overrides)
    wearables = fleet.wearables(n)
    clock = StageClock()
    with _quiet(), open_gateway(cfg) as gw:
        card = gw.anonymiser.card
        source = FleetSource(wearables, SAMPLES_PER_FRAME / card.sample_rate_hz)
        pipeline = Pipeline(
            anonymiser=TimedAnonymiser(gw.anonymiser, clock), sources=[source],
            sinks=[TimedSink(s, clock) for s in gw.sinks], streams=TimedStreams(gw.streams, clock),
            decoders=TimedDecoders(gw.decoders, clock), stitcher=gw.stitcher, metrics=gw.metrics,
            settings=gw.settings,
        )
        # A fleet far beyond the core's capacity would take minutes to drain; once the pipeline
        # is this far behind the schedule the step has failed anyway, so it is cut short.
        overrun_s = max(5.0, 20 * settings.budget_ms / 1000.0)
        watchdog = threading.Timer(source.schedule_s + 0.5 + overrun_s, pipeline.stop)
        watchdog.daemon = True
        start = clock.snapshot()
        with source:
            watchdog.start()
            summary = pipeline.run()
            watchdog.cancel()
        end = clock.snapshot()
        end["feeder"] = source.cpu_s  # the feeding thread has ended: its own final reading
    wall = end["wall"] - start["wall"]
    base = clock.steady or start
    cpu, steady_wall = end["cpu"] - base["cpu"], end["wall"] - base["wall"]
    counters = summary.counters
    expected = sum(expected_windows(w.samples, card.window, card.hop) for w in wearables)
    published = counters.get("windows_published", 0) if sink_url.startswith("mqtt") else counters.get("messages_out", 0)
    losses = {name: counters[name] for name in LOSS_COUNTERS if counters.get(name, 0)}
    drops = max(0, expected - published)  # windows the fleet sent samples for that never left
    sec = {k: v - base["seconds"][k] for k, v in clock.seconds.items()}
    written = clock.calls["sink"] - base["calls"]["sink"]
    typical_batch = round(sum(clock.batches) / len(clock.batches)) if clock.batches else 1
    encode = min(_encode_seconds(clock.sample, fmt, typical_batch) * written, sec["sink"])
    stages = {
        "decode": sec["decode"], "window": sec["window"], "infer": sec["infer"], "encode": encode,
        "publish": sec["sink"] - encode + end["paho"] - base["paho"], "source": end["feeder"] - base["feeder"],
    }
    stages["other"] = max(0.0, cpu - sum(stages.values()))
    p99 = summary.latency_ms[1]
    why = []
    if wall > source.schedule_s + 0.5 + overrun_s:
        why.append(f"still {wall - source.schedule_s:.1f} s behind when the signal ended: stopped")
    if drops or losses:
        why.append(f"lost {drops} window(s)" + (f", counters {losses}" if losses else ""))
    if not (p99 <= settings.budget_ms):
        why.append(f"p99 {p99:.1f} ms over the {settings.budget_ms:g} ms budget")
    return {
        "wearables": n, "ok": not why, "why": "; ".join(why), "expected_windows": expected,
        "published_windows": published, "drops": drops, "loss_counters": losses,
        "offered_windows_per_s": round(n * card.sample_rate_hz / card.hop, 1),
        "p50_latency_ms": round(summary.latency_ms[0], 3), "p99_latency_ms": round(p99, 3),
        "inference_calls": clock.calls["infer"], "wall_s": round(wall, 3),
        "mean_batch": round(clock.calls["sink"] / max(clock.calls["infer"], 1), 2),
        "feeder_max_lateness_ms": round(source.max_lateness_s * 1e3, 2),
        # From the first window out to the end: the steady state the shares describe.
        "steady_s": round(steady_wall, 3), "cpu_s": round(cpu, 3), "cpu_share": round(cpu / max(steady_wall, 1e-9), 3),
        "stage_s": {k: round(v, 4) for k, v in stages.items()},
        "stage_us_per_window": {k: round(1e6 * v / max(written, 1), 1) for k, v in stages.items()},
        # publish = the sink's own work in the pipeline thread + the MQTT client's network thread
        "network_us_per_window": round(1e6 * (end["paho"] - base["paho"]) / max(written, 1), 1),
    }


def stage_shares(step: dict) -> tuple[dict[str, float], float]:
    """Each stage's share of the step's CPU time, and the pipeline overhead (all but inference)."""
    stages = step["stage_s"]
    total = sum(stages.values())
    if total <= 0:
        return {}, math.nan
    shares = {k: round(v / total, 4) for k, v in stages.items()}
    return shares, round(1.0 - stages["infer"] / total, 4)


def next_fleet_size(lo: int, hi: int | None, n: int, settings: CapacitySettings) -> int | None:
    """Grow by 30 % until a step fails, halve until one passes, then bisect; None: done."""
    if hi is None:
        return None if lo >= settings.max_wearables else min(settings.max_wearables, max(lo + 1, math.ceil(lo * 1.3)))
    if lo == 0:
        return None if n <= settings.min_wearables else max(settings.min_wearables, n // 2)
    if hi - lo <= max(1, int(settings.tolerance * lo)):
        return None
    return (lo + hi) // 2


def find_capacity(model: str | Path, *, ceiling_wps: float, rate_hz: float, hop: int, sink_url: str, sink: str,
                  settings: CapacitySettings, inference: InferenceSettings) -> dict:
    """The largest fleet that passed, with its figures and every step tried.

    The first step is 60 % of the inference ceiling (``ceiling_wps`` windows/s over the
    windows/s of one wearable), since the rest of the pipeline always costs something.
    """
    per_wearable = rate_hz / hop
    ceiling = max(1, int(ceiling_wps / per_wearable))
    deadline = time.monotonic() + settings.time_limit_s
    fleet = Fleet(settings.step_s, rate_hz)
    steps: list[dict] = []
    lo, hi, best = 0, None, None
    n: int | None = min(settings.max_wearables, max(settings.min_wearables, int(0.6 * ceiling)))
    with tempfile.TemporaryDirectory(prefix="imu-anon-bench-") as tmp:
        secret = str(Path(tmp) / "pseudonym.key")
        while n is not None:
            step = run_step(model, n, fleet, sink_url=sink_url, settings=settings, inference=inference,
                            secret_file=secret)
            steps.append(step)
            log.info("capacity: %d wearables -> %s", n, "ok" if step["ok"] else step["why"])
            if step["ok"]:
                lo, best = n, step
            else:
                hi = n if hi is None else min(hi, n)
            n = next_fleet_size(lo, hi, n, settings)
            if n is not None and time.monotonic() + 1.2 * step["wall_s"] > deadline:
                log.info("capacity: stopping at the %.0f s time limit", settings.time_limit_s)
                limited = "time_limit"
                break
        else:
            limited = "max_wearables" if hi is None else "budget"
    shares, overhead = stage_shares(best) if best else ({}, math.nan)
    return {
        "wearables_per_core": lo,
        "p99_latency_ms": best["p99_latency_ms"] if best else math.nan,
        "p50_latency_ms": best["p50_latency_ms"] if best else math.nan,
        "drops": best["drops"] if best else (steps[-1]["drops"] if steps else 0),
        "budget_ms": settings.budget_ms,
        "limited_by": limited,
        "first_failing": hi,
        "inference_ceiling_wearables": ceiling,
        "sink": sink,
        "payload_format": settings.payload_format,
        "step_s": settings.step_s,
        "windows_per_wearable_s": per_wearable,
        "stage_share": shares,
        "overhead_share": overhead,
        "steps": steps,
    }
