"""Day-one compatibility: one line of separated numbers per sample over a serial port.

Hobby sketches and data forwarders (Edge Impulse's ``data forwarder`` format, Arduino
``Serial.println`` loops) print one sample per line, values separated by commas, tabs or
spaces, at a fixed rate. Such a line carries no device id, sequence number, timestamp or
scale, so the user states the rate and units; the gateway counts lines instead of trusting a
clock. Six numbers per line, in this order: acc x, y, z, then gyro x, y, z (after
``skip_columns`` leading columns, e.g. a millisecond counter).

A malformed line is dropped and counted; the next block's ``seq`` then skips one number so
the runtime sees the gap and never cuts a window across it. ``t0`` is the line index over
the declared rate: the gateway's own count, since the line has no timestamp.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass

import numpy as np

from firmware_bridge.blocks import SampleBlock
from firmware_bridge.errors import ProtocolError

log = logging.getLogger(__name__)

ACC_UNITS = {"g": 1.0, "mg": 1e-3, "m/s^2": 1.0 / 9.80665}  # multiply by this to get g
GYRO_UNITS = {"rad/s": 1.0, "deg/s": math.pi / 180.0, "mdps": math.pi / 180.0 / 1000.0}  # -> rad/s
COUNTERS = ("lines_ok", "lines_bad", "lines_text", "lines_oversized", "bytes_skipped", "bad_input")
_SPLIT = re.compile(r"[,\t ;]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class LineCsvConfig:
    device_id: str
    rate_hz: float
    acc_unit: str = "g"
    gyro_unit: str = "rad/s"
    skip_columns: int = 0
    max_line: int = 256

    def __post_init__(self) -> None:
        problems = []
        if not self.device_id or len(self.device_id) > 64:
            problems.append("device_id must be 1 to 64 characters")
        if not (isinstance(self.rate_hz, (int, float)) and math.isfinite(self.rate_hz) and 0 < self.rate_hz <= 10_000):
            problems.append(f"rate_hz must be in (0, 10000], got {self.rate_hz!r}; the lines carry no timestamps")
        if self.acc_unit not in ACC_UNITS:
            problems.append(f"acc_unit {self.acc_unit!r} is not one of {', '.join(ACC_UNITS)}")
        if self.gyro_unit not in GYRO_UNITS:
            problems.append(f"gyro_unit {self.gyro_unit!r} is not one of {', '.join(GYRO_UNITS)}")
        if not 0 <= self.skip_columns <= 16:
            problems.append(f"skip_columns must be 0..16, got {self.skip_columns}")
        if not 16 <= self.max_line <= 4096:
            problems.append(f"max_line must be 16..4096 bytes, got {self.max_line}")
        if problems:
            raise ProtocolError("invalid line-CSV settings: " + "; ".join(problems))


class LineCsvDecoder:
    """``feed(chunk)`` -> sample blocks, like :class:`~firmware_bridge.decoder.FrameDecoder`."""

    def __init__(self, device_id: str, rate_hz: float, acc_unit: str = "g", gyro_unit: str = "rad/s",
                 skip_columns: int = 0, max_line: int = 256) -> None:
        self.config = LineCsvConfig(device_id=device_id, rate_hz=rate_hz, acc_unit=acc_unit,
                                    gyro_unit=gyro_unit, skip_columns=skip_columns, max_line=max_line)
        self.counters: Counter[str] = Counter({name: 0 for name in COUNTERS})
        self._gain = np.array([ACC_UNITS[acc_unit]] * 3 + [GYRO_UNITS[gyro_unit]] * 3)
        self._buf = bytearray()
        self._skipping = False
        self._index = 0  # lines that should have been samples so far (bad ones included)
        self._seq = 0
        self._gap = False

    @property
    def buffered(self) -> int:
        """Bytes of an unfinished line held now (never more than ``max_line``)."""
        return len(self._buf)

    def feed(self, chunk: bytes | bytearray | memoryview) -> list[SampleBlock]:
        if not isinstance(chunk, (bytes, bytearray, memoryview)):
            self.counters["bad_input"] += 1
            return []
        data = bytes(chunk)
        rows: list[list[float]] = []
        first = self._index
        blocks: list[SampleBlock] = []
        start = 0
        while start < len(data):
            end = data.find(b"\n", start)
            piece = data[start:] if end < 0 else data[start:end]
            if self._skipping:
                self.counters["bytes_skipped"] += len(piece)
            elif len(self._buf) + len(piece) > self.config.max_line:
                self.counters["lines_oversized"] += 1
                self.counters["bytes_skipped"] += len(self._buf) + len(piece)
                self._buf.clear()
                self._skipping = True
            else:
                self._buf += piece
            if end < 0:
                break
            if self._skipping:
                self._skipping = False
                self._mark_gap(blocks, rows, first)
                rows, first = [], self._index
            else:
                row = self._line(bytes(self._buf))
                if row is False:
                    self._mark_gap(blocks, rows, first)
                    rows, first = [], self._index
                elif row is not None:
                    if not rows:
                        first = self._index
                    rows.append(row)
                    self._index += 1
            self._buf.clear()
            start = end + 1
        self._emit(blocks, rows, first)
        return blocks

    def _line(self, raw: bytes) -> list[float] | None | bool:
        """Values of one line; None for a line to ignore (blank, comment, header), False if bad."""
        try:
            text = raw.decode("ascii").strip()
        except UnicodeDecodeError:
            self.counters["lines_bad"] += 1
            return False
        if not text or text.startswith("#"):
            return None
        fields = [f for f in _SPLIT.split(text) if f]
        try:
            values = [float(f) for f in fields]
        except ValueError:
            if not any(_is_number(f) for f in fields):
                self.counters["lines_text"] += 1  # a header or a log message between samples
                return None
            self.counters["lines_bad"] += 1
            return False
        values = values[self.config.skip_columns:]
        if len(values) != 6 or not all(math.isfinite(v) for v in values):
            self.counters["lines_bad"] += 1
            return False
        self.counters["lines_ok"] += 1
        return values

    def _mark_gap(self, blocks: list[SampleBlock], rows: list[list[float]], first: int) -> None:
        self._emit(blocks, rows, first)
        self._index += 1  # the lost line took a sample period
        self._gap = True

    def _emit(self, blocks: list[SampleBlock], rows: list[list[float]], first: int) -> None:
        if not rows:
            return
        if self._gap:
            self._seq += 1
            self._gap = False
        samples = (np.asarray(rows, dtype=np.float64) * self._gain).astype(np.float32)
        blocks.append(SampleBlock(device_id=self.config.device_id, seq=self._seq, epoch=0,
                                  t0=first / self.config.rate_hz, rate_hz=float(self.config.rate_hz),
                                  samples=samples))
        self._seq += 1


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
