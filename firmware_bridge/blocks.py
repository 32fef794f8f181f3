"""What every decoder hands the gateway: a block of consecutive samples from one device.

Frame decoder, line-CSV decoder and MQTT JSON decoder all produce :class:`SampleBlock`s in
physical units, so the runtime never sees raw counts, byte orders or chip presets.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, slots=True)
class SampleBlock:
    device_id: str  # the device's own id, as sent (the runtime pseudonymises it)
    seq: int | None  # frame sequence number, unwrapped to a monotonic int; None when the source has none
    epoch: int  # increments when the device announces a reboot (new HELLO with a reset counter)
    t0: float  # device timestamp of the first sample, seconds; NaN when the source has none
    rate_hz: float  # sample rate the device declared
    samples: np.ndarray  # float32 [n, 6]: acc x, y, z in g; gyro x, y, z in rad/s

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[1] != 6:
            raise ValueError(f"samples must be [n, 6], got {self.samples.shape}")

    def __len__(self) -> int:
        return len(self.samples)

    @classmethod
    def _trusted(cls, device_id: str, seq: int | None, epoch: int, t0: float, rate_hz: float,
                 samples: np.ndarray) -> SampleBlock:
        """The frame decoder's constructor, for ``samples`` it shaped [n, 6] itself: the shape
        check has nothing to find there, and the generated ``__init__`` (a ``setattr`` through
        ``object`` per field, then ``__post_init__``) costs twice what the slots' own setters do,
        once for every frame of every wearable."""
        block = object.__new__(cls)
        s_device, s_seq, s_epoch, s_t0, s_rate, s_samples = _SLOT_SETTERS
        s_device(block, device_id)
        s_seq(block, seq)
        s_epoch(block, epoch)
        s_t0(block, t0)
        s_rate(block, rate_hz)
        s_samples(block, samples)
        return block


# Each slot's own setter, in _trusted's order (a test checks that it sets every field).
_SLOT_SETTERS = tuple(SampleBlock.__dict__[name].__set__
                      for name in ("device_id", "seq", "epoch", "t0", "rate_hz", "samples"))
