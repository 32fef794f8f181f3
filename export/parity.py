"""Does the exported file compute what PyTorch computes? Measured on real windows.

The reference is deliberately not the wrapper that was exported: it is the numpy channel
mapping of :mod:`edge_runtime.layout`, the training standardisation and the PyTorch network,
so a mistake in the in-graph preprocessing (a forgotten unit scale, swapped mean/std) shows
up as a parity failure rather than being exported twice. The candidate is run through the
runtime's own loader (:class:`edge_runtime.anonymiser.Anonymiser`), sidecar check included.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_runtime.layout import ACC_UNITS, to_model_channels
from export.errors import ParityError

FP32_TOLERANCE = 1e-4  # max |onnxruntime - PyTorch| in output units (g, rad/s)
MIN_PARITY_WINDOWS = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class Difference:
    """How far ``candidate`` is from ``reference`` over ``windows`` windows, in output units."""

    windows: int
    max_abs: float
    mean_abs: float
    # RMS of the difference over the RMS of the reference's variation around its channel means:
    # a scale-free "how much of the signal is error" that is not fooled by the gravity offset.
    relative: float

    def __str__(self) -> str:
        return (f"max |diff| {self.max_abs:.3g}, mean |diff| {self.mean_abs:.3g}, "
                f"relative {100 * self.relative:.2f} % over {self.windows} windows")

    def as_dict(self) -> dict[str, float | int]:
        return {"windows": self.windows, "max_abs": self.max_abs, "mean_abs": self.mean_abs,
                "relative": self.relative}


def compare(candidate: np.ndarray, reference: np.ndarray) -> Difference:
    candidate = np.asarray(candidate, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if candidate.shape != reference.shape:
        raise ParityError(f"the exported graph returns {list(candidate.shape)} where PyTorch returns "
                          f"{list(reference.shape)}", max_abs=float("inf"), tolerance=0.0)
    diff = np.abs(candidate - reference)
    if not np.all(np.isfinite(candidate)):
        return Difference(windows=len(reference), max_abs=float("inf"), mean_abs=float("inf"), relative=float("inf"))
    spread = reference - reference.mean(axis=(0, 2), keepdims=True)
    scale = float(np.sqrt(np.mean(spread ** 2))) or 1.0
    return Difference(windows=len(reference), max_abs=float(diff.max(initial=0.0)), mean_abs=float(diff.mean()),
                      relative=float(np.sqrt(np.mean(diff ** 2)) / scale))


def torch_reference(
    network: nn.Module, *, mean: Sequence[float], std: Sequence[float], channel_mode: str, acc_unit: str = "g",
) -> Callable[[np.ndarray], np.ndarray]:
    """raw [N, 6, W] -> anonymised [N, C, W] by numpy preprocessing around the PyTorch network."""
    mean_ = np.asarray(mean, dtype=np.float32)[:, None]
    std_ = np.asarray(std, dtype=np.float32)[:, None]
    scale = np.array([ACC_UNITS[acc_unit]] * 3 + [1.0] * 3, dtype=np.float32)[:, None]
    network = network.eval()

    def anonymise(raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype=np.float32)
        if acc_unit != "g":
            raw = raw * scale
        z = (to_model_channels(raw, channel_mode) - mean_) / std_
        with torch.no_grad():
            y = network(torch.from_numpy(np.ascontiguousarray(z))).numpy()
        return (y * std_ + mean_).astype(np.float32)

    return anonymise


def in_batches(fn: Callable[[np.ndarray], np.ndarray], raw: np.ndarray, batch: int = 256) -> np.ndarray:
    parts = [fn(raw[i:i + batch]) for i in range(0, len(raw), batch)]
    return np.concatenate(parts) if parts else np.zeros((0,) + raw.shape[1:], dtype=np.float32)


def run_file(path: str | Path, raw: np.ndarray, batch: int = 256) -> np.ndarray:
    """Anonymise ``raw`` with the file at ``path`` through the runtime's loader (verifies the sidecar)."""
    from edge_runtime.anonymiser import Anonymiser

    model = Anonymiser.open(path, verify=True)
    return in_batches(model.anonymise, np.asarray(raw, dtype=np.float32), batch)


def from_g(raw_g: np.ndarray, acc_unit: str) -> np.ndarray:
    """Raw windows with acc in g -> the same windows with acc in ``acc_unit`` (a file's input units)."""
    raw_g = np.asarray(raw_g, dtype=np.float32)
    if acc_unit == "g":
        return raw_g
    scale = np.array([1.0 / ACC_UNITS[acc_unit]] * 3 + [1.0] * 3, dtype=np.float32)[:, None]
    return (raw_g * scale).astype(np.float32)


def check_parity(
    path: str | Path,
    raw: np.ndarray,
    reference: np.ndarray,
    *,
    tolerance: float = FP32_TOLERANCE,
    min_windows: int = MIN_PARITY_WINDOWS,
) -> Difference:
    """Run the file at ``path`` on ``raw`` (in its input units) and compare with ``reference``
    (PyTorch's output for the same windows); raise ParityError beyond ``tolerance``."""
    if len(raw) < min_windows:
        raise ParityError(f"parity needs at least {min_windows} real windows, got {len(raw)}; "
                          "the run's held-out users have too little data", max_abs=float("nan"), tolerance=tolerance)
    diff = compare(run_file(path, raw), reference)
    if not diff.max_abs <= tolerance:
        raise ParityError(
            f"{path}: onnxruntime differs from PyTorch by up to {diff.max_abs:.3g} (> {tolerance:g}) on "
            f"{diff.windows} windows; the graph does not compute what was trained -- report this with the run",
            max_abs=diff.max_abs, tolerance=tolerance,
        )
    return diff
