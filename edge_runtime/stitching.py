"""Optional stitching of overlapping window outputs into one continuous stream per device.

With hop < window every sample is anonymised ceil(window / hop) times. Consumers that want
one value per sample choose a mode:

* ``off`` (default): every window is published whole; consumers see the overlap.
* ``tail``: the first window of a segment is published whole, every later one publishes only
  its newest ``hop`` samples (those no earlier window covered). Cheapest; each sample comes
  from exactly one window, at the window's end where the model saw the most past context.
* ``mean``: overlap-add: each sample is the mean of every window output that covers it. A
  sample is final once the next window starts after it, so each window publishes the ``hop``
  samples that just became final, and the remaining ``window - hop`` samples of a segment are
  published when the segment ends (gap, silence or shutdown). Smoothest; adds no latency
  beyond the window itself.

Either way a message is still one window's worth of work, never one sample, and a segment
boundary (gap, reboot) is never bridged. Stitched messages are AnonymisedWindows made with
``dataclasses.replace`` from the model's own output, so no raw value can slip in.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from edge_runtime.errors import ConfigError
from edge_runtime.signals import AnonymisedWindow

MODES = ("off", "tail", "mean")


class _MeanState:
    def __init__(self, w: AnonymisedWindow, window: int, hop: int) -> None:
        self.segment, self.window, self.hop = w.segment, window, hop
        self.origin = self.emitted = self.base = w.index * hop  # absolute sample positions in the segment
        self.t_base = w.t0  # time of position ``base``
        self.sum = np.zeros((len(w.channels), 2 * window), dtype=np.float64)
        self.count = np.zeros(2 * window, dtype=np.int32)
        self.last: AnonymisedWindow = w

    def add(self, w: AnonymisedWindow) -> AnonymisedWindow | None:
        start = w.index * self.hop
        if start + self.window - self.origin > self.sum.shape[1]:
            k = self.emitted - self.origin  # > 0: windows arrive in order, one hop apart
            self.sum = np.concatenate([self.sum[:, k:], np.zeros((self.sum.shape[0], k))], axis=1)
            self.count = np.concatenate([self.count[k:], np.zeros(k, dtype=np.int32)])
            self.origin = self.emitted
        off = start - self.origin
        self.sum[:, off:off + self.window] += w.values
        self.count[off:off + self.window] += 1
        self.last = w
        return self._emit(start + self.hop)

    def _emit(self, until: int) -> AnonymisedWindow | None:
        a, b = self.emitted - self.origin, until - self.origin
        if b <= a:
            return None
        values = (self.sum[:, a:b] / self.count[a:b]).astype(np.float32)
        t0 = self.t_base + (self.emitted - self.base) / self.last.rate_hz
        self.emitted = until
        return dataclasses.replace(self.last, values=values, t0=t0)

    def finish(self) -> AnonymisedWindow | None:
        return self._emit(self.last.index * self.hop + self.window)


class Stitcher:
    """Turns the anonymiser's windows into the messages of the chosen stitching mode."""

    def __init__(self, mode: str, window: int, hop: int) -> None:
        if mode not in MODES:
            raise ConfigError(f"publish.stitch must be one of {', '.join(MODES)}, got {mode!r}")
        self.mode, self.window, self.hop = mode, window, hop
        self._last: dict[str, AnonymisedWindow] = {}  # tail: the previous window per stream
        self._mean: dict[str, _MeanState] = {}

    def push(self, w: AnonymisedWindow) -> list[AnonymisedWindow]:
        if self.mode == "off":
            return [w]
        if self.mode == "tail":
            prev = self._last.get(w.stream)
            self._last[w.stream] = w
            if prev is None or prev.segment != w.segment or w.index <= prev.index:
                return [w]
            new = min(self.window, (w.index - prev.index) * self.hop)
            return [dataclasses.replace(w, values=w.values[:, -new:].copy(),
                                        t0=w.t0 + (self.window - new) / w.rate_hz)]
        out: list[AnonymisedWindow] = []
        state = self._mean.get(w.stream)
        if state is not None and (state.segment != w.segment or w.index != state.last.index + 1):
            out += self._finish(w.stream)  # a new segment, or a window missing: never bridge it
            state = None
        if state is None:
            state = self._mean[w.stream] = _MeanState(w, self.window, self.hop)
        piece = state.add(w)
        return out + ([piece] if piece is not None else [])

    def push_many(self, windows: Sequence[AnonymisedWindow]) -> list[AnonymisedWindow]:
        """The messages of a batch of windows, in order: ``push`` of each. With stitching off
        (the default) that is the batch itself, at no cost per window."""
        if self.mode == "off":
            return list(windows)
        push = self.push
        return [message for w in windows for message in push(w)]

    def _finish(self, stream: str) -> list[AnonymisedWindow]:
        state = self._mean.pop(stream, None)
        piece = state.finish() if state is not None else None
        return [piece] if piece is not None else []

    def expire(self, older_than: float) -> list[AnonymisedWindow]:
        """Publish the pending tails of streams whose last window arrived before ``older_than``
        (``time.monotonic`` seconds), so a wearer who walked away still gets a complete stream."""
        self._last = {s: w for s, w in self._last.items() if w.ready_at >= older_than}
        out: list[AnonymisedWindow] = []
        for stream in [s for s, st in self._mean.items() if st.last.ready_at < older_than]:
            out += self._finish(stream)
        return out

    def flush(self) -> list[AnonymisedWindow]:
        out: list[AnonymisedWindow] = []
        for stream in list(self._mean):
            out += self._finish(stream)
        self._last.clear()
        return out
