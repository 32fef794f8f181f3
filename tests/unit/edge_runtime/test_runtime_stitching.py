"""Stitching overlapping windows into one stream: tail and overlap-mean, never across a gap."""

from __future__ import annotations

import numpy as np
import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow
from edge_runtime.stitching import Stitcher

W, HOP, RATE = 8, 2, 10.0


def windows_over(signal: np.ndarray, segment: int = 0, stream: str = "s-a",
                 noise: float = 0.0) -> list[AnonymisedWindow]:
    rng = np.random.default_rng(segment)
    out = []
    for k, start in enumerate(range(0, signal.shape[1] - W + 1, HOP)):
        values = signal[:, start:start + W] + rng.normal(0, noise, (signal.shape[0], W)).astype(np.float32)
        out.append(AnonymisedWindow(stream=stream, segment=segment, index=k, t0=start / RATE, rate_hz=RATE,
                                    channels=("a", "b"), units=("g", "rad/s"), values=values, model="m" * 12,
                                    ready_at=0.0, token=_ANONYMISER_TOKEN))
    return out


SIGNAL = np.vstack([np.arange(30, dtype=np.float32), -np.arange(30, dtype=np.float32)])


def run(stitcher: Stitcher, windows: list[AnonymisedWindow]) -> list[AnonymisedWindow]:
    out = [m for w in windows for m in stitcher.push(w)]
    return out + stitcher.flush()


def test_off_passes_every_window_through() -> None:
    windows = windows_over(SIGNAL)
    assert run(Stitcher("off", W, HOP), windows) == windows


def test_tail_rebuilds_the_continuous_stream_once_per_sample() -> None:
    out = run(Stitcher("tail", W, HOP), windows_over(SIGNAL))
    stream = np.concatenate([m.values for m in out], axis=1)
    np.testing.assert_array_equal(stream, SIGNAL[:, :stream.shape[1]])
    assert stream.shape[1] == 30 and [m.samples for m in out] == [W] + [HOP] * 11
    times = [m.t0 for m in out]
    assert times == pytest.approx([0.0] + [(W + HOP * i) / RATE for i in range(11)])


def test_mean_averages_every_window_that_covers_a_sample() -> None:
    windows = windows_over(SIGNAL, noise=0.5)
    out = run(Stitcher("mean", W, HOP), windows)
    stream = np.concatenate([m.values for m in out], axis=1)
    total, count = np.zeros((2, 30)), np.zeros(30)
    for w in windows:
        start = w.index * HOP
        total[:, start:start + W] += w.values
        count[start:start + W] += 1
    np.testing.assert_allclose(stream, total / count, rtol=1e-6)
    assert [m.samples for m in out][:-1] == [HOP] * len(windows)
    assert out[-1].samples == W - HOP  # the segment's tail, published when the segment ends
    assert [m.t0 for m in out] == pytest.approx([i * HOP / RATE for i in range(len(out))])


def test_mean_never_bridges_two_segments() -> None:
    stitcher = Stitcher("mean", W, HOP)
    first, second = windows_over(SIGNAL[:, :12], segment=0), windows_over(SIGNAL[:, :12] + 100, segment=1)
    out = run(stitcher, first + second)
    by_segment = {s: np.concatenate([m.values for m in out if m.segment == s], axis=1) for s in (0, 1)}
    np.testing.assert_allclose(by_segment[0], SIGNAL[:, :12])
    np.testing.assert_allclose(by_segment[1], SIGNAL[:, :12] + 100)


def test_streams_are_stitched_separately() -> None:
    stitcher = Stitcher("tail", W, HOP)
    a, b = windows_over(SIGNAL, stream="s-a"), windows_over(SIGNAL + 1000, stream="s-b")
    out = [m for pair in zip(a, b) for w in pair for m in stitcher.push(w)]
    for stream, offset in (("s-a", 0), ("s-b", 1000)):
        values = np.concatenate([m.values for m in out if m.stream == stream], axis=1)
        np.testing.assert_array_equal(values, SIGNAL[:, :30] + offset)


def test_an_unknown_mode_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="off, tail, mean"):
        Stitcher("overlap", W, HOP)
