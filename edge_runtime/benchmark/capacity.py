"""How many 50 Hz wearables one core anonymises end to end, within a latency budget, losing nothing.

Each step builds the gateway exactly as ``imu-anon run`` does (``open_gateway``: model,
streams, decoders, stitcher, sinks, publish format) and runs the real :class:`Pipeline` over
frames from :class:`FleetSource`; only the source is the benchmark's. The pipeline's parts are
passed in through thin wrappers that add up each stage's CPU time in the pipeline thread, so
the split (decode, window, infer, encode, publish) comes from the run itself. This module runs
one step at a fixed fleet size; :mod:`edge_runtime.benchmark.search` chooses the sizes.
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
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from edge_runtime import config as gateway_config
from edge_runtime import payload
from edge_runtime.anonymiser import InferenceSettings
from edge_runtime.benchmark import mqtt_fleet
from edge_runtime.benchmark.fleet import FEEDER_PREFIX, Fleet, FleetSource, Schedule, expected_windows, schedule
from edge_runtime.errors import EdgeRuntimeError
from edge_runtime.gateway import open_gateway
from edge_runtime.pipeline import Pipeline

log = logging.getLogger(__name__)

SAMPLES_PER_FRAME = 10  # the simulator's int16 frames: 0.2 s at 50 Hz
ENCODE_SAMPLE = 256  # windows re-encoded after a step to price the encode stage
NETWORK_THREADS = ("paho", "mqtt-")  # the MQTT clients' network threads: their CPU is the publish stage...
READER_MARK = "mqtt-in"  # ... except the MQTT source's reader (lean or paho): its CPU is the source stage
SOURCES = ("feeder", "mqtt")
# Counters that mean a sample, frame or window was lost on the way (any of them fails a step).
LOSS_COUNTERS = (
    "inbox_dropped", "publish_dropped", "publish_unflushed", "sink_errors", "windows_nonfinite",
    "frames_corrupt", "frames_missing", "seq_gaps", "awaiting_config", "samples_refused_devices",
    "samples_refused_rate", "samples_refused_layout", "blocks_out_of_order", "blocks_device_mismatch", "gaps",
)
# Why a step failed, as ``run_step`` reports it in ``causes``. Load on the core explains these
# three; "publisher" (the fleet's publisher broke) and "sink" (a sink refused writes) it does not.
LOAD_CAUSES = frozenset({"overrun", "loss", "latency"})


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
    source: str = "feeder"  # frames handed to the inbox in-process, or published to the broker and subscribed to
    confirm_failures: int = 1  # re-runs of a size that failed under load before it counts as failed; 0: none

    def __post_init__(self) -> None:
        if not self.budget_ms > 0:
            raise CapacityError(f"the latency budget must be positive, got {self.budget_ms} ms")
        if not self.step_s >= 4.0:
            raise CapacityError(f"a capacity step needs at least 4 s (a window is 2.56 s of signal), got {self.step_s}")
        if not (1 <= self.min_wearables <= self.max_wearables):
            raise CapacityError(f"need 1 <= min_wearables <= max_wearables, got {self.min_wearables}..{self.max_wearables}")
        if self.payload_format not in payload.FORMATS:
            raise CapacityError(f"payload format must be one of {payload.FORMATS}, got {self.payload_format!r}")
        if self.source not in SOURCES:
            raise CapacityError(f"the fleet's source must be one of {SOURCES}, got {self.source!r}")
        if type(self.confirm_failures) is not int or self.confirm_failures < 0:  # bool is an int: refused too
            raise CapacityError(f"confirm_failures (--confirm-failures) must be a whole number >= 0 (0: believe the "
                                f"first failure), got {self.confirm_failures!r}")

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
                "paho": _thread_cpu(lambda name: name.startswith(NETWORK_THREADS) and READER_MARK not in name),
                "feeder": _thread_cpu(lambda name: name.startswith(FEEDER_PREFIX) or READER_MARK in name),
                "wall": time.monotonic()}

    def mark_steady(self) -> None:
        if self.steady is None:
            self.steady = self.snapshot()


class _Wrapper:
    def __init__(self, inner: Any, clock: StageClock) -> None:
        self._inner, self._clock = inner, clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class TimedDecoders(_Wrapper):
    def __init__(self, inner: Any, clock: StageClock, due: dict[tuple[str, bytes], float] | None = None) -> None:
        super().__init__(inner, clock)
        self._due, self.t0 = due, 0.0

    def decode_many(self, items: Any) -> list:
        if self._due is not None:  # frames read from the broker: latency counts from when each was due
            due, t0 = self._due, self.t0
            for item in items:
                offset = due.get((item.device, item.data))
                if offset is not None:
                    item.at = t0 + offset
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


def _thread_cpu(chosen: Callable[[str], bool]) -> float:
    """CPU seconds so far of this process's live threads whose name is ``chosen``."""
    total = 0.0
    for thread in threading.enumerate():
        if chosen(thread.name) and thread.ident is not None:
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
             inference: InferenceSettings, secret_file: str, broker_url: str | None = None,
             publisher_cpus: tuple[int, ...] = ()) -> dict:
    """``n`` wearables through the full pipeline for ``settings.step_s``; the step's figures.

    ``settings.source == "mqtt"``: the fleet publishes to ``broker_url`` from a process on
    ``publisher_cpus`` and the gateway subscribes with its own MQTT source."""
    fmt = settings.payload_format
    over_mqtt = settings.source == "mqtt"
    if over_mqtt and not broker_url:
        raise CapacityError("a fleet over MQTT needs a broker")
    source_url = f"{broker_url.rstrip('/')}/{mqtt_fleet.PATTERN}?format=frames&qos=1" if over_mqtt else "loop:bench"
    overrides = {
        "model": {"path": str(model)},
        "inference": {"intra_op_threads": inference.intra_op_threads, "inter_op_threads": inference.inter_op_threads,
                      "spinning": inference.spinning, "graph_optimisation": inference.graph_optimisation},
        "pipeline": {"sources": (source_url,), "sinks": (sink_url,)},
        "streams": {"max_devices": max(64, n)},
        "publish": {"format": fmt, "gateway": "imu-anon-bench", "topic": "imu-anon-bench/{stream}"},
        "privacy": {"secret_file": secret_file},
        "metrics": {"interval_s": 0.0},
    }
    cfg = gateway_config.build({}, overrides)
    wearables = fleet.wearables(n)
    clock = StageClock()
    # A fleet far beyond the core's capacity would take minutes to drain; once the pipeline
    # is this far behind the schedule the step has failed anyway, so it is cut short.
    overrun_s = max(5.0, 20 * settings.budget_ms / 1000.0)
    with _quiet(), open_gateway(cfg) as gw:
        card = gw.anonymiser.card
        frame_period_s = SAMPLES_PER_FRAME / card.sample_rate_hz
        if over_mqtt:
            plan = schedule(wearables, frame_period_s)
            due = {(f"{wearables[w].device_id:016x}", frame): d for w, frame, d in zip(plan.owner, plan.frames, plan.due)}
            decoders = TimedDecoders(gw.decoders, clock, due=due)
        else:
            source = FleetSource(wearables, frame_period_s)
            decoders = TimedDecoders(gw.decoders, clock)
        pipeline = Pipeline(
            anonymiser=TimedAnonymiser(gw.anonymiser, clock), sources=gw.sources if over_mqtt else [source],
            sinks=[TimedSink(s, clock) for s in gw.sinks], streams=TimedStreams(gw.streams, clock),
            decoders=decoders, stitcher=gw.stitcher, metrics=gw.metrics, settings=gw.settings,
        )
        start = clock.snapshot()
        if over_mqtt:
            schedule_s = plan.due[-1] if plan.due else 0.0
            publisher = _publish_fleet(plan, wearables, broker_url, publisher_cpus, decoders, pipeline,
                                       schedule_s + overrun_s)
            summary = pipeline.run()
            publisher.join()
            end = clock.snapshot()
        else:
            schedule_s = source.schedule_s
            watchdog = threading.Timer(schedule_s + 0.5 + overrun_s, pipeline.stop)
            watchdog.daemon = True
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
    why: dict[str, str] = {}  # cause -> what the user reads
    if wall > schedule_s + 0.5 + overrun_s:
        why["overrun"] = f"still {wall - schedule_s:.1f} s behind when the signal ended: stopped"
    if over_mqtt and "error" in publisher.result:
        why["publisher"] = f"the fleet publisher failed: {publisher.result['error']}"
    if drops or losses:
        why["sink" if losses.get("sink_errors") else "loss"] = (
            f"lost {drops} window(s)" + (f", counters {losses}" if losses else ""))
    if not (p99 <= settings.budget_ms):
        why["latency"] = f"p99 {p99:.1f} ms over the {settings.budget_ms:g} ms budget"
    return {
        "wearables": n, "ok": not why, "why": "; ".join(why.values()), "causes": list(why),
        "expected_windows": expected, "published_windows": published, "drops": drops, "loss_counters": losses,
        "offered_windows_per_s": round(n * card.sample_rate_hz / card.hop, 1),
        "p50_latency_ms": round(summary.latency_ms[0], 3), "p99_latency_ms": round(p99, 3),
        "inference_calls": clock.calls["infer"], "wall_s": round(wall, 3),
        "mean_batch": round(clock.calls["sink"] / max(clock.calls["infer"], 1), 2),
        "feeder_max_lateness_ms": (publisher.result.get("max_lateness_ms", math.nan) if over_mqtt
                                   else round(source.max_lateness_s * 1e3, 2)),
        "source": settings.source,
        # From the first window out to the end: the steady state the shares describe.
        "steady_s": round(steady_wall, 3), "cpu_s": round(cpu, 3), "cpu_share": round(cpu / max(steady_wall, 1e-9), 3),
        "stage_s": {k: round(v, 4) for k, v in stages.items()},
        "stage_us_per_window": {k: round(1e6 * v / max(written, 1), 1) for k, v in stages.items()},
        # publish = the sink's own work in the pipeline thread + the MQTT client's network thread
        "network_us_per_window": round(1e6 * (end["paho"] - base["paho"]) / max(written, 1), 1),
    }


class _FleetPublishing(threading.Thread):
    """Runs the fleet's publishing process for one step and stops the pipeline after it: the
    MQTT source is live, so the pipeline would otherwise wait for more."""

    def __init__(self, plan_file: Path, broker_url: str, cpus: tuple[int, ...], decoders: "TimedDecoders",
                 pipeline: Pipeline, limit_s: float, grace_s: float) -> None:
        super().__init__(name="bench-publishing", daemon=True)
        parts = urlsplit(broker_url)
        self._publisher = mqtt_fleet.FleetPublisher(plan_file, parts.hostname or "127.0.0.1", parts.port or 1883,
                                                    list(cpus))
        self._plan_file, self._decoders, self._pipeline = plan_file, decoders, pipeline
        self._limit_s, self._grace_s = limit_s, grace_s
        self.result: dict = {}

    def run(self) -> None:
        try:
            with self._publisher as publisher:
                # The reader subscribes when the pipeline starts; the publisher's interpreter
                # starts meanwhile, so the first frame is due a little later.
                t0 = time.monotonic() + mqtt_fleet.LEAD_S
                self._decoders.t0 = t0
                publisher.start(t0)
                self.result = publisher.wait(mqtt_fleet.LEAD_S + self._limit_s + 5.0)
            time.sleep(self._grace_s)  # what the broker still holds reaches the gateway
        except mqtt_fleet.PublisherError as exc:
            log.error("capacity: %s", exc)
            self.result = {"error": str(exc)}
        finally:
            self._plan_file.unlink(missing_ok=True)
            self._pipeline.stop()


def _publish_fleet(plan: Schedule, wearables: list, broker_url: str, cpus: tuple[int, ...], decoders: "TimedDecoders",
                   pipeline: Pipeline, limit_s: float) -> _FleetPublishing:
    with tempfile.NamedTemporaryFile(prefix="imu-anon-bench-fleet-", suffix=".npz", delete=False) as f:
        plan_file = Path(f.name)
    mqtt_fleet.write_plan(plan_file, plan, wearables)
    thread = _FleetPublishing(plan_file, broker_url, cpus, decoders, pipeline, limit_s, grace_s=1.0)
    thread.start()
    return thread
