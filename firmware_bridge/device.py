"""A device's frame schedule: when it sends HELLO, SAMPLES and HEARTBEAT (pure, no I/O).

:class:`DeviceStream` is the Python twin of ``imuf_stream_t`` in ``c/imu_frame.c``: the
firmware pushes one sample at a time with its timestamp and drains whatever frames are due.
The order is fixed, so the C and Python schedules are checked against the same vectors:

1. HELLO, right after start-up and again once ``hello_period_ms`` has passed since the last;
2. SAMPLES, when ``samples_per_frame`` samples are buffered (or on :meth:`flush`);
3. HEARTBEAT, once ``heartbeat_period_ms`` has passed since the last.

Time differences use modulo-2**32 arithmetic, so the schedule survives the u32 clock wrapping.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_bridge.errors import ProtocolError
from firmware_bridge.framing import frame
from firmware_bridge.protocol import (
    HEARTBEAT, HELLO, MAX_SAMPLE_BYTES, SAMPLE_WIDTH, SAMPLES, Heartbeat, Hello, Samples, pack,
)

U32 = 1 << 32


@dataclass(frozen=True, slots=True)
class Outgoing:
    kind: int  # HELLO, SAMPLES or HEARTBEAT
    data: bytes  # complete wire bytes, delimiter included
    count: int = 0  # samples carried (SAMPLES only)
    seq: int = 0  # the SAMPLES seq (SAMPLES only)


class DeviceStream:
    def __init__(self, hello: Hello, *, fmt: int, samples_per_frame: int, heartbeat_period_ms: int,
                 now_us: int, seq: int = 0) -> None:
        if fmt not in SAMPLE_WIDTH:
            raise ProtocolError(f"unknown sample format {fmt}; use 0 (int16) or 1 (float32)")
        self.hello = hello
        self.fmt = fmt
        self.sample_bytes = hello.sample_bytes(fmt)
        most = MAX_SAMPLE_BYTES // self.sample_bytes
        if not 1 <= samples_per_frame <= most:
            raise ProtocolError(
                f"samples_per_frame must be 1..{most} for {len(hello.channels)} channels in this format, "
                f"got {samples_per_frame}"
            )
        if not 0 <= heartbeat_period_ms <= 0xFFFF:
            raise ProtocolError(f"heartbeat_period_ms must be 0..65535, got {heartbeat_period_ms}")
        self.samples_per_frame = samples_per_frame
        self.heartbeat_period_ms = heartbeat_period_ms
        self.seq = seq & 0xFFFF
        self.tx_dropped = 0
        self.status = 0
        self._now = now_us % U32
        self._last_hello = self._now
        self._last_heartbeat = self._now
        self._hello_due = True
        self._heartbeat_due = False
        self._flush = False
        self._t_first = 0
        self._buffer = bytearray()
        self._count = 0

    def push(self, sample: bytes, t_us: int) -> None:
        """Buffer one sample (``sample_bytes`` bytes in wire order) taken at device time ``t_us``."""
        if self._count >= self.samples_per_frame:
            raise ProtocolError("frame buffer full: drain next_frame() after every push")
        if len(sample) != self.sample_bytes:
            raise ProtocolError(f"a sample is {self.sample_bytes} bytes here, got {len(sample)}")
        self._now = t_us % U32
        if self._count == 0:
            self._t_first = self._now
        self._buffer += sample
        self._count += 1
        period = self.hello.hello_period_ms
        if period and (self._now - self._last_hello) % U32 >= period * 1000:
            self._hello_due = True
        beat = self.heartbeat_period_ms
        if beat and (self._now - self._last_heartbeat) % U32 >= beat * 1000:
            self._heartbeat_due = True

    def flush(self) -> None:
        """Send the buffered samples in a short frame at the next :meth:`next_frame`."""
        self._flush = self._count > 0

    def note_tx_drop(self) -> None:
        """The port would not take a frame; reported (saturating) in the next HEARTBEAT."""
        self.tx_dropped = min(self.tx_dropped + 1, 0xFFFF)

    def next_frame(self) -> Outgoing | None:
        """The next frame that is due, or None."""
        h = self.hello
        if self._hello_due:
            self._hello_due = False
            self._last_hello = self._now
            return Outgoing(HELLO, frame(pack(h)))
        if self._count and (self._count == self.samples_per_frame or self._flush):
            msg = Samples(device_id=h.device_id, boot_id=h.boot_id, seq=self.seq, t_us=self._t_first,
                          fmt=self.fmt, count=self._count, payload=bytes(self._buffer))
            out = Outgoing(SAMPLES, frame(pack(msg)), self._count, self.seq)
            self.seq = (self.seq + 1) & 0xFFFF
            self._buffer.clear()
            self._count = 0
            self._flush = False
            return out
        if self._heartbeat_due:
            self._heartbeat_due = False
            self._last_heartbeat = self._now
            beat = Heartbeat(device_id=h.device_id, boot_id=h.boot_id, seq=self.seq, t_us=self._now,
                             tx_dropped=self.tx_dropped, status=self.status)
            self.status = 0
            return Outgoing(HEARTBEAT, frame(pack(beat)))
        return None

    def drain(self) -> list[Outgoing]:
        out = []
        while (item := self.next_frame()) is not None:
            out.append(item)
        return out
