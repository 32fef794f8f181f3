"""Per-channel standardisation of model-channel windows, fitted on training data only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trainer.errors import DatasetError

# A channel whose training std is below this is constant; dividing by it would blow up noise.
MIN_STD = 1e-6


@dataclass(frozen=True)
class Standardiser:
    mean: np.ndarray  # float32 [C]
    std: np.ndarray  # float32 [C]

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or self.mean.ndim != 1:
            raise DatasetError(f"mean {self.mean.shape} and std {self.std.shape} must be equal 1-D shapes")
        if not (np.all(np.isfinite(self.mean)) and np.all(np.isfinite(self.std)) and np.all(self.std > 0)):
            raise DatasetError(f"standardiser needs finite mean and positive std, got {self.mean}, {self.std}")

    @classmethod
    def fit(cls, x_model: np.ndarray) -> "Standardiser":
        """Mean and std per channel over windows and time of ``x_model`` [N, C, W]."""
        if x_model.ndim != 3 or x_model.shape[0] == 0:
            raise DatasetError(f"fit needs non-empty windows [N, C, W], got shape {x_model.shape}")
        x = x_model.astype(np.float64, copy=False)
        mean = x.mean(axis=(0, 2))
        std = x.std(axis=(0, 2))
        flat = np.flatnonzero(std < MIN_STD)
        if flat.size:
            raise DatasetError(f"channels {flat.tolist()} are constant in the training data; "
                               "check the data set or use another channel mode")
        return cls(mean=mean.astype(np.float32), std=std.astype(np.float32))

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])

    def apply(self, x: np.ndarray) -> np.ndarray:
        return ((x - self.mean[:, None]) / self.std[:, None]).astype(np.float32, copy=False)

    def invert(self, y: np.ndarray) -> np.ndarray:
        return (y * self.std[:, None] + self.mean[:, None]).astype(np.float32, copy=False)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: dict) -> "Standardiser":
        try:
            return cls(mean=np.asarray(data["mean"], dtype=np.float32),
                       std=np.asarray(data["std"], dtype=np.float32))
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"standardiser record is malformed ({exc})") from None
