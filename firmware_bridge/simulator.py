"""A wearable in software: plays a :class:`Recording` out as protocol frames, with faults.

The simulated device converts each sample to its chip's raw counts (or float32), pushes it
into a :class:`~firmware_bridge.device.DeviceStream` - the same schedule as the C encoder -
and hands every due frame to ``send`` at real rate x ``speed``. Between the device and
``send`` sits a faulty link that can drop, corrupt, duplicate or reorder SAMPLES frames, and
the device can reboot. HELLO and HEARTBEAT frames are never faulted, so the
:class:`SimulatorSummary` states exactly how many samples a correct gateway must receive:
``samples_sent - samples_lost``.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from dataclasses import dataclass, field, fields
from typing import Callable

import numpy as np

from firmware_bridge.device import DeviceStream, Outgoing
from firmware_bridge.encoder import hello_for
from firmware_bridge.errors import DeviceError, ProtocolError
from firmware_bridge.protocol import FORMAT_FLOAT32, FORMAT_INT16, HEARTBEAT, HELLO, SAMPLES
from firmware_bridge.recordings import Recording
from firmware_bridge.scaling import chip_preset, counts_dtype, to_counts, to_float_payload

log = logging.getLogger(__name__)

FORMATS = {"int16": FORMAT_INT16, "float32": FORMAT_FLOAT32}
DEFAULT_SAMPLES_PER_FRAME = {"int16": 10, "float32": 5}  # 0.2 s and 0.1 s at 50 Hz
HAPT_DEVICE_PREFIX = int.from_bytes(b"IMUANON\0", "big")
U32 = 1 << 32


def hapt_device_id(user: int) -> int:
    """A 64-bit serial for HAPT user ``user``: the bytes "IMUANON" then the user number."""
    return HAPT_DEVICE_PREFIX | (user & 0xFF)


def name_device_id(name: str) -> int:
    """A stable 64-bit serial for any other recording, from its name."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big")


@dataclass(frozen=True, slots=True, kw_only=True)
class FaultRule:
    """Fires with ``probability`` per SAMPLES frame, and on every ``every``-th one."""

    probability: float = 0.0
    every: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise DeviceError(f"a fault probability must be in [0, 1], got {self.probability}")
        if self.every < 0:
            raise DeviceError(f"'every' must be positive, got {self.every}")

    @classmethod
    def parse(cls, text: str) -> FaultRule:
        """``0.05`` (probability per frame) or ``1/20`` (every 20th frame)."""
        text = text.strip()
        try:
            if text.startswith("1/"):
                return cls(every=int(text[2:]))
            return cls(probability=float(text))
        except ValueError:
            raise DeviceError(f"fault rate {text!r}: write a probability like 0.05 or a period like 1/20") from None

    def fires(self, index: int, rng: random.Random) -> bool:
        draw = rng.random()  # always drawn, so one rule's setting never shifts another's stream
        return bool(self.every and index % self.every == 0) or draw < self.probability

    def __str__(self) -> str:
        return f"1/{self.every}" if self.every else f"{self.probability:g}"


NO_FAULT = FaultRule()


@dataclass(frozen=True, slots=True, kw_only=True)
class Faults:
    drop: FaultRule = NO_FAULT
    corrupt: FaultRule = NO_FAULT
    duplicate: FaultRule = NO_FAULT
    reorder: FaultRule = NO_FAULT  # hold a frame back behind the next one; the gateway drops it as late
    reboot: FaultRule = NO_FAULT  # reboot after the frame: new boot_id, seq and clock restart
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimulatorConfig:
    device_id: int
    chip: str = "lsm6ds3"
    acc_range_g: int = 4  # wide enough for HAPT's phone data (up to 2 g, 10 rad/s) not to clip
    gyro_range_dps: int = 1000
    fmt: str = "int16"
    samples_per_frame: int | None = None  # default: 10 for int16, 5 for float32
    hello_period_ms: int = 2000
    heartbeat_period_ms: int = 1000
    firmware: tuple[int, int, int] = (0, 1, 0)
    speed: float = 1.0  # 1 real time, 4 four times faster, 0 as fast as the port takes it
    loop: bool = False
    duration_s: float | None = None  # device seconds to stream (None: the whole recording, or forever with loop)
    seq_start: int = 0
    clock_start_us: int = 0
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        if self.fmt not in FORMATS:
            raise DeviceError(f"format {self.fmt!r} is not one of {', '.join(FORMATS)}")
        if not (self.speed >= 0 and np.isfinite(self.speed)):
            raise DeviceError(f"speed must be 0 (as fast as possible) or positive, got {self.speed}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise DeviceError(f"duration must be positive seconds, got {self.duration_s}")
        if not 0 <= self.seq_start <= 0xFFFF or not 0 <= self.clock_start_us < U32:
            raise DeviceError("seq_start must fit 16 bits and clock_start_us 32 bits")
        try:
            chip_preset(self.chip, self.acc_range_g, self.gyro_range_dps)
        except ProtocolError as exc:
            raise DeviceError(str(exc)) from None


@dataclass(slots=True)
class SimulatorSummary:
    frames: int = 0  # frames put on the wire (duplicates included)
    hellos: int = 0
    heartbeats: int = 0
    samples_frames: int = 0  # SAMPLES frames the device produced
    samples_sent: int = 0  # samples in them
    samples_lost: int = 0  # samples in frames the link dropped, corrupted, reordered or could not send
    bytes: int = 0
    dropped: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0
    reboots: int = 0
    tx_dropped: int = 0
    clipped: int = 0  # sample values beyond the chip's range, sent saturated
    device_seconds: float = 0.0

    @property
    def samples_expected(self) -> int:
        """What a correct gateway receives: everything sent, less what the link lost."""
        return self.samples_sent - self.samples_lost

    def line(self) -> str:
        return " ".join(f"{f.name}={getattr(self, f.name):.3f}" if f.name == "device_seconds"
                        else f"{f.name}={getattr(self, f.name)}" for f in fields(self))


class Simulator:
    """Stream ``recording`` as frames into ``send(frame) -> bool`` (False: the port refused it)."""

    def __init__(self, recording: Recording, config: SimulatorConfig, send: Callable[[bytes], bool], *,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], object] | None = None) -> None:
        self.recording = recording
        self.config = config
        self._send = send
        self._clock = clock
        self._stop = False  # a plain flag: safe to set from a signal handler or another thread
        self._sleep = sleep or self._nap
        if len(recording) == 0:
            raise DeviceError(f"{recording.name}: nothing to stream")
        self._rng = random.Random(config.faults.seed)
        self.summary = SimulatorSummary()
        self.preset = chip_preset(config.chip, config.acc_range_g, config.gyro_range_dps)
        self._rows, self.summary.clipped = self._wire_samples()
        self._held: Outgoing | None = None
        self._clean_next = False
        self._reboot_due = False

    def stop(self) -> None:
        """Ask :meth:`run` to finish after the current sample (safe from a signal handler)."""
        self._stop = True

    def stopping(self) -> bool:
        return self._stop

    def _nap(self, seconds: float) -> None:
        # Short slices, so a stop request is honoured within 50 ms.
        deadline = time.monotonic() + seconds
        while not self._stop and (left := deadline - time.monotonic()) > 0:
            time.sleep(min(left, 0.05))

    def _wire_samples(self) -> tuple[np.ndarray, int]:
        """Every recorded sample as the bytes the device would push: [T, sample_bytes] uint8."""
        channels = self.preset.channels
        if self.config.fmt == "int16":
            counts, clipped = to_counts(self.recording.samples, self.preset)
            wire = counts.astype(counts_dtype(self.preset.big_endian))
        else:
            wire, clipped = to_float_payload(self.recording.samples, channels), 0
        if clipped:
            log.warning("%d sample values exceed the %s's ±%d g / ±%d dps range and are sent saturated",
                        clipped, self.preset.name, self.preset.acc_range_g, self.preset.gyro_range_dps)
        return np.ascontiguousarray(wire).view(np.uint8).reshape(len(self.recording), -1), clipped

    def _boot(self, boot_time: float, seq: int, clock_us: int) -> None:
        boot_id = self._rng.getrandbits(32) or 1
        cfg = self.config
        hello = hello_for(self.preset, device_id=cfg.device_id, boot_id=boot_id, rate_hz=self.recording.rate_hz,
                          firmware=cfg.firmware, hello_period_ms=cfg.hello_period_ms)
        spf = cfg.samples_per_frame or DEFAULT_SAMPLES_PER_FRAME[cfg.fmt]
        try:
            self._stream = DeviceStream(hello, fmt=FORMATS[cfg.fmt], samples_per_frame=spf,
                                        heartbeat_period_ms=cfg.heartbeat_period_ms, now_us=clock_us, seq=seq)
        except ProtocolError as exc:
            raise DeviceError(str(exc)) from None
        self._boot_time, self._clock_base = boot_time, clock_us

    def run(self) -> SimulatorSummary:
        """Stream until the recording (or ``duration_s``) ends or :meth:`stop` is called."""
        cfg, rec = self.config, self.recording
        t = rec.t - rec.t[0]
        period = float(rec.duration_s)
        self._boot(0.0, cfg.seq_start, cfg.clock_start_us)
        self._wall0 = self._clock()
        lap = 0
        done = False
        while not done:
            for j in range(len(rec)):
                t_dev = lap * period + float(t[j])
                if self._stop or (cfg.duration_s is not None and t_dev >= cfg.duration_s):
                    done = True
                    break
                clock_us = (self._clock_base + round((t_dev - self._boot_time) * 1e6)) % U32
                self._stream.push(self._rows[j].tobytes(), clock_us)
                self.summary.device_seconds = t_dev
                for out in self._stream.drain():
                    self._emit(out, t_dev)
                if self._reboot_due:
                    self._reboot_due = False
                    self.summary.reboots += 1
                    log.info("simulated reboot at device time %.2f s", t_dev)
                    self._boot(t_dev, 0, 0)
            lap += 1
            done = done or not cfg.loop
        self._stream.flush()
        for out in self._stream.drain():
            self._emit(out, self.summary.device_seconds)
        if self._held is not None:  # nothing came after it, so it is merely late, not reordered
            self._put(self._held)
            self._held = None
        return self.summary

    def _pace(self, t_dev: float) -> None:
        if self.config.speed == 0:
            return
        delay = self._wall0 + t_dev / self.config.speed - self._clock()
        if delay > 0:
            self._sleep(delay)

    def _emit(self, out: Outgoing, t_dev: float) -> None:
        self._pace(t_dev)
        s = self.summary
        if out.kind != SAMPLES:
            s.hellos += out.kind == HELLO
            s.heartbeats += out.kind == HEARTBEAT
            self._put(out)
            return
        s.samples_frames += 1
        s.samples_sent += out.count
        f, index = self.config.faults, s.samples_frames
        fired = [f.drop.fires(index, self._rng), f.corrupt.fires(index, self._rng),
                 f.duplicate.fires(index, self._rng), f.reorder.fires(index, self._rng)]
        reboot = f.reboot.fires(index, self._rng)
        if self._clean_next:  # the frame that overtakes a held one goes through untouched
            fired = [False] * 4
            reboot = False
        drop, corrupt, duplicate, reorder = fired
        if drop:
            s.dropped += 1
            s.samples_lost += out.count
        elif corrupt:
            s.corrupted += 1
            s.samples_lost += out.count
            self._put(Outgoing(out.kind, self._corrupt(out.data), out.count, out.seq), count_loss=False)
        elif duplicate:
            s.duplicated += 1
            self._put(out)
            self._put(out, count_loss=False)
        elif reorder:
            self._held = out
            self._clean_next = True
            return
        else:
            self._put(out)
        if self._clean_next:
            self._clean_next = False
            if self._held is not None:
                s.reordered += 1
                s.samples_lost += self._held.count
                self._put(self._held, count_loss=False)
                self._held = None
        # The device reboots once this drain is over (frames already due still go out).
        self._reboot_due = self._reboot_due or reboot

    def _corrupt(self, data: bytes) -> bytes:
        """Flip bits of one byte (never the delimiter), as line noise would."""
        pos = self._rng.randrange(len(data) - 1)
        bad = bytearray(data)
        bad[pos] ^= self._rng.randrange(1, 256)
        return bytes(bad)

    def _put(self, out: Outgoing, count_loss: bool = True) -> None:
        if self._send(out.data):
            self.summary.frames += 1
            self.summary.bytes += len(out.data)
            return
        self.summary.tx_dropped += 1
        self._stream.note_tx_drop()
        if count_loss and out.kind == SAMPLES:
            self.summary.samples_lost += out.count
