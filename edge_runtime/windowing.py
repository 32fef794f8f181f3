"""Cutting windows: the same arithmetic for training and streaming (numpy only).

Windows are ``[C, W]`` (channels first, as the ONNX input ``[N, 6, W]``). A window never
crosses a segment boundary: a session, an activity segment, or a gap in a live stream.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def window_starts(segment_ids: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Start indices of every window of ``window`` samples, taken every ``hop`` samples
    inside each run of equal ``segment_ids``; a window never spans two runs.

    Hops restart at the beginning of each run, so a run of length L gives
    ``max(0, (L - window) // hop + 1)`` windows.
    """
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got {window} and {hop}")
    ids = np.asarray(segment_ids)
    if ids.ndim != 1:
        raise ValueError(f"segment_ids must be 1-D, got shape {ids.shape}")
    if ids.size == 0:
        return np.zeros(0, dtype=np.int64)
    change = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    run_starts = np.concatenate([[0], change])
    run_ends = np.concatenate([change, [ids.size]])
    starts = [
        np.arange(s, e - window + 1, hop, dtype=np.int64)
        for s, e in zip(run_starts, run_ends)
        if e - s >= window
    ]
    return np.concatenate(starts) if starts else np.zeros(0, dtype=np.int64)


def sliding_windows(samples: np.ndarray, window: int, hop: int) -> np.ndarray:
    """Every ``hop``-th window of ``samples`` [T, C] as a zero-copy view [N, C, window]."""
    if samples.ndim != 2:
        raise ValueError(f"samples must be [T, C], got shape {samples.shape}")
    if samples.shape[0] < window:
        return np.zeros((0, samples.shape[1], window), dtype=samples.dtype)
    return sliding_window_view(samples, window, axis=0)[::hop]


def window_views(samples: np.ndarray, start: int, window: int, hop: int, count: int) -> list[np.ndarray]:
    """``count`` windows of ``samples`` [T, C] from ``start`` on, every ``hop`` samples, as [C, window]
    views: ``sliding_windows(samples[start:], window, hop)[:count]`` without its per-call cost
    (the streaming path cuts one or two windows at a time)."""
    return [samples[s:s + window].T for s in range(start, start + count * hop, hop)]


def gather_windows(samples: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Copy the windows beginning at ``starts`` out of ``samples`` [T, C] into [N, C, window]."""
    view = sliding_window_view(samples, window, axis=0)  # [T - window + 1, C, window]
    return np.ascontiguousarray(view[np.asarray(starts, dtype=np.int64)])
