"""Simulated wearables for the capacity run: real wire frames, played at real time.

Every wearable is the firmware bridge's own :class:`~firmware_bridge.simulator.Simulator`
(HELLO, SAMPLES of int16 counts, HEARTBEAT; 10 samples a frame at 50 Hz), run ahead of time
on an injected clock so the frames and their device times are known before the measurement
starts: encoding must not eat into the core being measured. :class:`FleetSource` then hands
the frames to the pipeline's inbox as they fall due, as a serial or MQTT reader thread would:
every ``read_tick_s`` it takes all frames due by then, as one ``read()`` returns every frame
that arrived since the last, with ``Received.at`` set to the moment each frame was due, so a
pipeline that falls behind (and the tick itself) shows in its sample-to-publish latency
instead of hiding in a queue.
"""

from __future__ import annotations

import bisect
import functools
import logging
import time
from dataclasses import dataclass

import numpy as np

from edge_runtime.benchmark.workload import synthetic_samples
from edge_runtime.decode import Received
from edge_runtime.sources import Inbox, Source
from firmware_bridge.recordings import DEFAULT_HAPT, HAPT_RATE_HZ, Recording
from firmware_bridge.simulator import Simulator, SimulatorConfig

log = logging.getLogger(__name__)

FIRST_DEVICE_ID = 0x494D5542454E0000  # "IMUBEN" + index: obviously not a hardware serial
# Wearables share decoders in groups, as devices behind one radio dongle or serial link do;
# it also keeps the number of origins under the decoder table's bound for any fleet size.
ORIGINS = 256
FEEDER_PREFIX = "bench-fleet"  # the feeding thread's name, so its CPU time can be read
SOURCE_USERS = 8  # distinct HAPT users whose signals the fleet replays (at different offsets)
# How often the feeder reads, like a serial reader's read() that returns every frame that came
# in meanwhile (USB full speed delivers in 1 ms frames; an FTDI adapter holds data up to its
# 16 ms latency timer). One wake-up per frame would price thread switches, not a reader.
READ_TICK_S = 0.002


@functools.lru_cache(maxsize=1)
def _base_signals() -> tuple[np.ndarray, ...]:
    """A few long real recordings (loaded once: the npz is read whole each time)."""
    try:
        with np.load(DEFAULT_HAPT) as data:
            signals, users, sessions = data["signals"], data["user"], data["session"]
        out = []
        for user in sorted(set(users.tolist()))[:SOURCE_USERS]:
            mine = np.flatnonzero(users == user)
            first = mine[sessions[mine] == sessions[mine][0]]
            out.append(np.ascontiguousarray(signals[first], dtype=np.float32))
        return tuple(out)
    except (OSError, KeyError, ValueError) as exc:
        log.info("bundled HAPT data not usable (%s); the fleet plays a synthetic walk", exc)
        return (synthetic_samples(int(600 * HAPT_RATE_HZ)),)


@dataclass(frozen=True, slots=True)
class WearableFrames:
    device_id: int
    t_dev: np.ndarray  # float64 [F]: device time at which each frame leaves the wearable
    frames: tuple[bytes, ...]
    samples: int  # SAMPLES values sent


class Fleet:
    """Pre-encoded frames of wearables 0..n-1 for ``duration_s`` device seconds each (cached)."""

    def __init__(self, duration_s: float, rate_hz: float = HAPT_RATE_HZ) -> None:
        self.duration_s, self.rate_hz = duration_s, rate_hz
        self._wearables: list[WearableFrames] = []

    def __len__(self) -> int:
        return len(self._wearables)

    def wearables(self, n: int) -> list[WearableFrames]:
        while len(self._wearables) < n:
            self._wearables.append(self._simulate(len(self._wearables)))
        return self._wearables[:n]

    def _simulate(self, index: int) -> WearableFrames:
        bases = _base_signals()
        base = bases[index % len(bases)]
        n = int(round(self.duration_s * self.rate_hz))
        span = max(1, base.shape[0] - n)
        offset = (index // len(bases)) * 997 % span  # a different stretch of the signal per wearable
        samples = base[offset:offset + n]
        if samples.shape[0] < n:
            samples = np.resize(samples, (n, 6))
        rec = Recording(name=f"bench-{index}", t=np.arange(n, dtype=np.float64) / self.rate_hz,
                        samples=samples, rate_hz=self.rate_hz)
        clock = [0.0]
        sent: list[tuple[float, bytes]] = []

        def send(frame: bytes) -> bool:
            sent.append((clock[0], frame))
            return True

        def advance(seconds: float) -> None:
            clock[0] += seconds

        device_id = FIRST_DEVICE_ID + index
        summary = Simulator(rec, SimulatorConfig(device_id=device_id, clock_start_us=(index * 7919) % 1_000_000),
                            send, clock=lambda: clock[0], sleep=advance).run()
        return WearableFrames(device_id=device_id, t_dev=np.array([t for t, _ in sent]),
                              frames=tuple(f for _, f in sent), samples=summary.samples_sent)


def expected_windows(samples: int, window: int, hop: int) -> int:
    return 0 if samples < window else (samples - window) // hop + 1


@dataclass(frozen=True, slots=True)
class Schedule:
    """Every frame of a fleet in the order it falls due, as Python lists (indexing numpy
    scalars one by one costs more than the work being measured)."""

    due: list[float]  # seconds after the start
    owner: list[int]  # index of the wearable that sends it
    frames: list[bytes]


def schedule(wearables: list[WearableFrames], frame_period_s: float) -> Schedule:
    """The fleet's frames merged by due time, the wearables' phases spread evenly over one
    frame period (n wearables do not all send at the same instant)."""
    if not wearables:
        return Schedule([], [], [])
    n = len(wearables)
    due = np.concatenate([w.t_dev + i * (frame_period_s / n) for i, w in enumerate(wearables)])
    owner = np.concatenate([np.full(len(w.frames), i) for i, w in enumerate(wearables)])
    index = np.concatenate([np.arange(len(w.frames)) for w in wearables])
    order = np.argsort(due, kind="stable")
    owners = owner[order].tolist()
    return Schedule(due=due[order].tolist(), owner=owners,
                    frames=[wearables[w].frames[k] for w, k in zip(owners, index[order].tolist())])


class FleetSource(Source):
    """Plays ``wearables`` into the inbox at real time, spread evenly over one frame period.

    ``Inbox.offer_many`` as a live reader that got several frames in one read: a full inbox
    drops the frames and counts them.
    """

    live = False  # finite: the pipeline drains and returns once every frame has been handed over

    def __init__(self, wearables: list[WearableFrames], frame_period_s: float, lead_s: float = 0.2,
                 read_tick_s: float = READ_TICK_S) -> None:
        super().__init__()
        self.name = f"{FEEDER_PREFIX}-{len(wearables)}"
        plan = schedule(wearables, frame_period_s)
        self._due = plan.due
        origins = [f"bench:{k}" for k in range(ORIGINS)]
        self._plan = [(origins[w % ORIGINS], frame) for w, frame in zip(plan.owner, plan.frames)]
        self._lead_s = lead_s
        self._tick_s = read_tick_s
        self.offered = 0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.max_lateness_s = 0.0  # how far behind schedule a frame was handed over (the tick included)
        self.cpu_s = 0.0  # this thread's CPU time: what a reader thread would cost

    @property
    def schedule_s(self) -> float:
        return self._due[-1] if self._due else 0.0

    def _run(self, inbox: Inbox) -> None:
        t0 = time.monotonic() + self._lead_s
        self.started_at = t0
        due, plan = self._due, self._plan
        total, i = len(plan), 0
        while i < total and not self._stop.is_set():
            now = time.monotonic()
            j = bisect.bisect_right(due, now - t0, lo=i)  # every frame due by now, in one read
            if j > i:
                inbox.offer_many([Received(origin, data, "frames", None, None, (), t0 + d)
                                  for (origin, data), d in zip(plan[i:j], due[i:j])])
                self.max_lateness_s = max(self.max_lateness_s, now - (t0 + due[i]))
                i = j
            if i < total:
                time.sleep(max(self._tick_s, min(0.005, t0 + due[i] - time.monotonic())))
        self.offered = i
        self.finished_at = time.monotonic()
        self.cpu_s = time.thread_time()
