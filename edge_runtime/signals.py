"""The two kinds of window in the runtime, kept apart by type so raw samples cannot reach a sink.

A :class:`RawWindow` holds a wearer's samples and never leaves the process: only the
anonymiser takes it. An :class:`AnonymisedWindow` is the only thing a sink accepts, and only
the anonymiser makes one: its constructor (and ``_batch``, the same for a whole batch) wants
a token that lives in this module and is handed to ``edge_runtime.anonymiser`` alone, so a
raw array cannot be wrapped by mistake elsewhere (``dataclasses.replace`` of an existing
anonymised window, as the stitcher does, keeps the token). Neither type prints its samples
or the real device id in its ``repr``, so logging a window leaks nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

_ANONYMISER_TOKEN = object()  # imported by edge_runtime.anonymiser only; see the module docstring


@dataclass(frozen=True, slots=True, kw_only=True)
class RawWindow:
    device_id: str = field(repr=False)  # the real id: used to key state, never published or logged
    stream: str  # the pseudonym the outputs of this window will carry
    segment: int  # increments at every gap, reboot or reset of the device's stream
    index: int  # window number inside the segment
    t0: float  # time of the first sample, seconds (device clock when it has one)
    rate_hz: float
    samples: np.ndarray = field(repr=False)  # float32 [6, W], acc in g, gyro in rad/s
    ready_at: float = field(repr=False)  # time.monotonic() when the last sample arrived

    def __post_init__(self) -> None:
        if self.samples.ndim != 2 or self.samples.shape[0] != 6:
            raise ValueError(f"raw window samples must be [6, W], got {self.samples.shape}")

    @classmethod
    def _run(cls, samples: Sequence[np.ndarray], t0: Sequence[float], *, device_id: str, stream: str, segment: int,
             index: int, rate_hz: float, ready_at: float) -> list[RawWindow]:
        """Consecutive windows of one device's segment, numbered from ``index``: window i shows
        ``samples[i]`` and starts at ``t0[i]``. The streams' constructor: it cuts them from one
        ring, one window long each, so the shape is checked once for the run (the first window,
        and the last, which reaches furthest into the ring) instead of once per window by the
        generated keyword ``__init__`` and ``__post_init__``, which cost more than the cut itself."""
        if samples and (samples[0].ndim != 2 or samples[0].shape[0] != 6 or samples[-1].shape != samples[0].shape):
            raise ValueError(f"raw window samples must be [6, W] alike, got {[s.shape for s in samples]}")
        s_device, s_stream, s_segment, s_index, s_t0, s_rate, s_samples, s_ready = _RAW_SLOT_SETTERS
        new = object.__new__
        out = []
        for i, (view, start) in enumerate(zip(samples, t0)):
            window = new(cls)
            s_device(window, device_id)
            s_stream(window, stream)
            s_segment(window, segment)
            s_index(window, index + i)
            s_t0(window, start)
            s_rate(window, rate_hz)
            s_samples(window, view)
            s_ready(window, ready_at)
            out.append(window)
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class AnonymisedWindow:
    stream: str  # pseudonymous stream id
    segment: int
    index: int
    t0: float  # time of values[:, 0]
    rate_hz: float
    channels: tuple[str, ...]
    units: tuple[str, ...]
    values: np.ndarray = field(repr=False)  # float32 [C, n]: model output, or a stitched stretch of it
    model: str  # first 12 hex digits of the model file's sha256, so a consumer knows which anonymiser
    ready_at: float = field(repr=False)
    token: object = field(repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.token is not _ANONYMISER_TOKEN:
            raise TypeError("an AnonymisedWindow is made only by edge_runtime.anonymiser from a RawWindow")
        if self.values.ndim != 2 or self.values.shape[0] != len(self.channels):
            raise ValueError(f"values must be [{len(self.channels)}, n], got {self.values.shape}")

    @property
    def samples(self) -> int:
        return int(self.values.shape[1])

    @classmethod
    def _batch(cls, token: object, raw: Sequence[RawWindow], values: np.ndarray, *, channels: tuple[str, ...],
               units: tuple[str, ...], model: str) -> list[AnonymisedWindow]:
        """The anonymiser's constructor for a whole batch: window i of ``raw`` gets ``values[i]``.

        The same guarantees as ``__init__`` (the token, values [C, n]), checked once for the
        batch instead of once per window: at thousands of windows a second the generated
        ``__init__`` and ``__post_init__`` cost more than everything else done to a window
        between the model and the payload."""
        if token is not _ANONYMISER_TOKEN:
            raise TypeError("an AnonymisedWindow is made only by edge_runtime.anonymiser from a RawWindow")
        if values.ndim != 3 or values.shape[:2] != (len(raw), len(channels)):
            raise ValueError(f"values must be [{len(raw)}, {len(channels)}, n], got {values.shape}")
        (s_stream, s_segment, s_index, s_t0, s_rate, s_channels, s_units, s_values, s_model, s_ready,
         s_token) = _SLOT_SETTERS
        new = object.__new__
        out = []
        for w, v in zip(raw, values):
            window = new(cls)
            s_stream(window, w.stream)
            s_segment(window, w.segment)
            s_index(window, w.index)
            s_t0(window, w.t0)
            s_rate(window, w.rate_hz)
            s_channels(window, channels)
            s_units(window, units)
            s_values(window, v)
            s_model(window, model)
            s_ready(window, w.ready_at)
            s_token(window, token)
            out.append(window)
        return out


# Each slot's own setter, in _run's order (a test checks _run sets every field).
_RAW_SLOT_SETTERS = tuple(RawWindow.__dict__[name].__set__ for name in (
    "device_id", "stream", "segment", "index", "t0", "rate_hz", "samples", "ready_at"))

# Each slot's own setter, in _batch's order: a frozen dataclass refuses setattr, and these are
# what its generated __init__ ends up calling (a test checks _batch sets every field).
_SLOT_SETTERS = tuple(AnonymisedWindow.__dict__[name].__set__ for name in (
    "stream", "segment", "index", "t0", "rate_hz", "channels", "units", "values", "model", "ready_at", "token"))
