"""A small HAPT-shaped npz for training tests: each user has a recognisable style (per-axis
amplitudes and a gyro offset), each activity its own stride frequency, so identity and
activity are both learnable in seconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_synthetic_hapt(path: Path, users=(1, 2, 3, 5, 6, 7), seconds: int = 12, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    t = np.arange(seconds * 50) / 50.0
    signals, user_col, session_col, activity_col = [], [], [], []
    session = 0
    for user in users:
        style = rng.uniform(0.5, 1.5, size=3)
        for _ in range(2):
            for activity in (1, 2, 3):
                f = 1.0 + 0.6 * activity
                wave = 2 * np.pi * f * t
                acc = np.stack([0.3 * style[0] * np.sin(wave), 0.1 * style[1] * np.cos(wave),
                                1 + 0.2 * style[2] * np.sin(2 * wave)], axis=1)
                gyro = np.stack([0.5 * style[1] * np.sin(wave + style[2]), 0.2 * np.cos(wave),
                                 0.1 * style[0] * np.ones_like(t)], axis=1)
                signals.append(np.hstack([acc, gyro]) + rng.normal(scale=0.05, size=(t.size, 6)))
                user_col.append(np.full(t.size, user))
                session_col.append(np.full(t.size, session))
                activity_col.append(np.full(t.size, activity))
            session += 1
    np.savez(path, signals=np.concatenate(signals).astype(np.float32),
             user=np.concatenate(user_col).astype(np.int8), session=np.concatenate(session_col).astype(np.int16),
             activity=np.concatenate(activity_col).astype(np.int8))
    return path
