"""What the benchmark feeds the models: real IMU windows where the bundled data is present.

Convolution time does not depend on the values, but SELU and the magnitude's square root
touch every one, and a capacity run should publish a signal that looks like a wearable's, so
the bundled HAPT recording is used when it is there and a synthetic walk otherwise.
"""

from __future__ import annotations

import logging

import numpy as np

from edge_runtime.card import ModelCard
from firmware_bridge.errors import RecordingError
from firmware_bridge.recordings import load_hapt_user

log = logging.getLogger(__name__)

SYNTHETIC_RATE_HZ = 50.0


def synthetic_samples(n: int, *, rate_hz: float = SYNTHETIC_RATE_HZ, seed: int = 0) -> np.ndarray:
    """A walking-like [n, 6] stream: gravity on z, a 2 Hz gait on acc and gyro, sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=np.float64) / rate_hz
    gait = np.sin(2 * np.pi * 2.0 * t)[:, None]
    out = np.empty((n, 6), dtype=np.float64)
    out[:, 0:3] = np.array([0.05, 0.02, 1.0]) + 0.3 * gait * np.array([1.0, 0.4, 0.8])
    out[:, 3:6] = 0.8 * gait * np.array([0.3, 1.0, 0.5])
    out += rng.normal(0.0, 0.02, size=out.shape)
    return out.astype(np.float32)


def stream_samples(n: int, *, user: int = 1, seed: int = 0) -> np.ndarray:
    """``n`` consecutive raw samples [n, 6] (acc in g, gyro in rad/s), repeated if too short."""
    try:
        rec = load_hapt_user(user)
        base = rec.samples
    except RecordingError as exc:
        log.debug("bundled recording not usable (%s); using a synthetic walk", exc)
        return synthetic_samples(n, seed=seed)
    reps = -(-n // base.shape[0])
    return np.ascontiguousarray(np.tile(base, (reps, 1))[:n], dtype=np.float32)


def raw_windows(card: ModelCard, batch: int, *, seed: int = 0) -> np.ndarray:
    """``batch`` contiguous raw windows [batch, 6, W] in the card's input units."""
    samples = stream_samples(batch * card.hop + card.window, seed=seed)
    starts = np.arange(batch) * card.hop
    windows = np.stack([samples[s:s + card.window].T for s in starts])
    windows[:, 0:3, :] /= card.acc_scale_to_g  # g -> the model's declared acc units
    return np.ascontiguousarray(windows, dtype=np.float32)
