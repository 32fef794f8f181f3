"""The paper's baselines: FFT resampling and Singular Spectrum Analysis (SSA).

Every baseline maps windows [N, C, W] of the model's channels to windows of the same shape.
They are applied in *standardised* units (the training users' per-channel mean and std,
the same Standardiser the classifiers see): resampling is linear and keeps the mean, so the
units do not change its result, but SSA is not: on physical units the acceleration
magnitude sits near 1 g and its leading component would be little more than that offset;
after standardisation the leading components are the gait oscillation itself, which is what
the paper's SSA (1) keeps.

REP, the third baseline, is a trained model (the AAE with the EncReg term alone); it is
loaded like the AAE itself, see :mod:`trainer.evaluation.subjects`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# Trajectory-matrix rows (the SSA "window length" L) for a 128-sample window: 0.64 s at
# 50 Hz, a little more than one step. L = W/2 resolves slightly finer components but its
# 64x64 eigenproblems cost ~7x more, minutes for a full evaluation on two cores.
SSA_LAG = 32


def resample_down_up(x: np.ndarray, rate_hz: float, target_hz: float) -> np.ndarray:
    """Resample windows [..., W] to ``target_hz`` and back to W samples with
    ``scipy.signal.resample`` (FFT): everything above target_hz / 2 is removed."""
    from scipy.signal import resample

    if not 0 < target_hz < rate_hz:
        raise ValueError(f"target rate must be between 0 and {rate_hz} Hz, got {target_hz}")
    w = x.shape[-1]
    low = max(2, int(round(w * target_hz / rate_hz)))
    down = resample(x, low, axis=-1)
    return resample(down, w, axis=-1).astype(np.float32)


def _hankel(x: np.ndarray, lag: int) -> np.ndarray:
    """Trajectory matrices [..., L, K] of series [..., W] (K = W - L + 1), as a view."""
    from numpy.lib.stride_tricks import sliding_window_view

    return sliding_window_view(x, x.shape[-1] - lag + 1, axis=-1)  # traj[i, j] = x[i + j]


def _diagonal_average(a: np.ndarray) -> np.ndarray:
    """Series [..., W] whose sample t is the mean of a[..., i, j] over i + j = t (Hankelisation)."""
    lag, k = a.shape[-2], a.shape[-1]
    w = lag + k - 1
    total = np.zeros(a.shape[:-2] + (w,), dtype=np.float64)
    for i in range(lag):  # L iterations, each vectorised over every series
        total[..., i:i + k] += a[..., i, :]
    counts = np.minimum.reduce([np.arange(1, w + 1), np.full(w, lag), np.full(w, k), np.arange(w, 0, -1)])
    return total / counts


def ssa(x: np.ndarray, components: tuple[int, ...], lag: int = SSA_LAG) -> np.ndarray:
    """Reconstruct each series [..., W] from its SSA ``components`` (1 = the largest
    singular value) with a trajectory matrix of ``lag`` rows, by diagonal averaging."""
    if not components or min(components) < 1 or max(components) > lag:
        raise ValueError(f"components must be 1-based indices up to lag {lag}, got {components}")
    w = x.shape[-1]
    if not 2 <= lag <= w - 1:
        raise ValueError(f"lag must be between 2 and {w - 1} for windows of {w} samples, got {lag}")
    from threadpoolctl import threadpool_limits

    series = np.asarray(x, dtype=np.float64)
    traj = _hankel(series, lag)  # [..., L, K]
    gram = traj @ np.swapaxes(traj, -1, -2)  # [..., L, L]; its eigenvectors are the left singular vectors
    # Thousands of 32x32 eigenproblems: OpenBLAS's threads only hand them to each other, and
    # on a busy two-core machine that made this step over 100x slower (72 s instead of 0.5 s).
    with threadpool_limits(limits=1, user_api="blas"):
        _, vectors = np.linalg.eigh(gram)  # ascending eigenvalues
    picked = vectors[..., [lag - c for c in components]]  # [..., L, r]
    projected = picked @ (np.swapaxes(picked, -1, -2) @ traj)  # sum of the chosen elementary matrices
    return _diagonal_average(projected).astype(np.float32)


@dataclass(frozen=True, slots=True, kw_only=True)
class Baseline:
    name: str
    label: str  # as printed in tables and plots
    apply: Callable[[np.ndarray, float], np.ndarray]  # (standardised [N, C, W], rate_hz) -> same shape


BASELINES: dict[str, Baseline] = {
    b.name: b
    for b in (
        Baseline(name="resample_10hz", label="resample 10 Hz",
                 apply=lambda x, rate: resample_down_up(x, rate, 10.0)),
        Baseline(name="resample_5hz", label="resample 5 Hz",
                 apply=lambda x, rate: resample_down_up(x, rate, 5.0)),
        Baseline(name="ssa_1", label="SSA (1)", apply=lambda x, rate: ssa(x, (1,))),
        Baseline(name="ssa_12", label="SSA (1, 2)", apply=lambda x, rate: ssa(x, (1, 2))),
    )
}


def apply_in_chunks(fn: Callable[[np.ndarray], np.ndarray], x: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """``fn`` over the first axis of ``x`` in chunks, bounding the memory of SSA's
    per-window eigenproblems."""
    if x.shape[0] == 0:
        return x.astype(np.float32)
    return np.concatenate([fn(x[i:i + chunk]) for i in range(0, x.shape[0], chunk)], axis=0)
