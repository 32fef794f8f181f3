"""Sample layout shared by the trainer, the exported graph and the runtime (numpy only).

A raw sample is six floats in this order and these units; the model's own channels are
either the six axes or the two magnitudes of the paper (|acc| with gravity, |gyro|).
"""

from __future__ import annotations

import numpy as np

RAW_CHANNELS: tuple[str, ...] = ("acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z")
RAW_UNITS: tuple[str, ...] = ("g", "g", "g", "rad/s", "rad/s", "rad/s")
STANDARD_GRAVITY = 9.80665  # m/s^2 per g
ACC_UNITS = {"g": 1.0, "m/s^2": 1.0 / STANDARD_GRAVITY}  # multiply by this to get g

CHANNEL_MODES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "mag": (("acc_mag", "gyro_mag"), ("g", "rad/s")),
    "axes": (RAW_CHANNELS, RAW_UNITS),
}


def model_channels(mode: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Names and units of the channels a model of this mode sees and outputs."""
    try:
        return CHANNEL_MODES[mode]
    except KeyError:
        raise ValueError(f"unknown channel mode {mode!r}; known: {', '.join(CHANNEL_MODES)}") from None


def to_model_channels(raw: np.ndarray, mode: str) -> np.ndarray:
    """Map raw windows [..., 6, W] (acc in g, gyro in rad/s) to the model's channels [..., C, W].

    This is the reference arithmetic; the exported ONNX graph does the same inside.
    """
    if raw.shape[-2] != len(RAW_CHANNELS):
        raise ValueError(f"expected {len(RAW_CHANNELS)} raw channels on axis -2, got shape {raw.shape}")
    if mode == "axes":
        return raw.astype(np.float32, copy=False)
    if mode == "mag":
        acc = np.sqrt(np.sum(np.square(raw[..., 0:3, :], dtype=np.float32), axis=-2))
        gyro = np.sqrt(np.sum(np.square(raw[..., 3:6, :], dtype=np.float32), axis=-2))
        return np.stack([acc, gyro], axis=-2).astype(np.float32, copy=False)
    model_channels(mode)  # raises the helpful error
    raise AssertionError("unreachable")
