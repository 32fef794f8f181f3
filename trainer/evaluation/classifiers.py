"""Training and applying the evaluation classifiers: the activity recogniser and the attackers.

They are the paper's regulariser CNN (:func:`trainer.models.build_classifier`) trained from
scratch for a fixed number of epochs with Adam, seeded, on standardised model channels, with
the trainer's own fitting loop (:mod:`trainer.fitting`).
A fixed budget rather than early stopping keeps every method's attacker equally strong and
the whole evaluation's cost predictable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from trainer.errors import ConfigError
from trainer.fitting import fit_classifier, new_classifier
from trainer.fitting import predict as fit_predict

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassifierConfig:
    epochs: int = 6
    batch_size: int = 128
    lr: float = 1e-3
    # Windows at hop 10 overlap by 92 %; a random subset of this many trains each classifier
    # (stratified by label), which keeps a full evaluation within minutes on two cores.
    max_train_windows: int = 12_000
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ConfigError(f"classifier epochs must be an integer >= 1, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"classifier batch_size must be an integer >= 1, got {self.batch_size!r}")
        if not self.lr > 0:
            raise ConfigError(f"classifier lr must be positive, got {self.lr!r}")
        if not (isinstance(self.max_train_windows, int) and self.max_train_windows >= 100):
            raise ConfigError(f"max_train_windows must be an integer >= 100, got {self.max_train_windows!r}")


@dataclass(frozen=True, slots=True)
class LabelCodec:
    """Maps a task's labels (activity indices or original user ids) to classifier outputs 0..K-1."""

    labels: np.ndarray  # sorted original labels

    @classmethod
    def of(cls, *arrays: np.ndarray) -> "LabelCodec":
        return cls(np.unique(np.concatenate([np.asarray(a).ravel() for a in arrays])))

    def __len__(self) -> int:
        return int(self.labels.size)

    def encode(self, y: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self.labels, y)
        if np.any(idx >= self.labels.size) or np.any(self.labels[np.minimum(idx, self.labels.size - 1)] != y):
            raise ValueError("labels outside the codec's classes")
        return idx.astype(np.int64)

    def decode(self, idx: np.ndarray) -> np.ndarray:
        return self.labels[np.asarray(idx, dtype=np.int64)]


def stratified_subset(y: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most ``limit`` items, each label keeping its share (at least one each)."""
    n = len(y)
    if n <= limit:
        return np.arange(n)
    picked = []
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        take = max(1, int(round(limit * members.size / n)))
        picked.append(rng.choice(members, size=min(take, members.size), replace=False))
    return np.sort(np.concatenate(picked))


def train_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, *, config: ClassifierConfig,
                     seed: int) -> nn.Module:
    """A classifier trained on standardised windows ``x`` [N, C, W] with class indices ``y``
    (at most ``config.max_train_windows`` of them, a stratified random subset)."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need matching, non-empty windows and labels, got {len(x)} and {len(y)}")
    keep = stratified_subset(y, config.max_train_windows, np.random.default_rng(seed))
    gen = torch.Generator().manual_seed(seed)
    net = new_classifier((x.shape[1], x.shape[2]), max(2, n_classes), gen).to(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        loss = fit_classifier(
            net, torch.from_numpy(np.ascontiguousarray(x[keep], dtype=np.float32)),
            torch.from_numpy(np.asarray(y[keep], dtype=np.int64)), epochs=config.epochs,
            batch_size=config.batch_size, lr=config.lr, gen=gen, device=torch.device(config.device),
        )
    log.debug("classifier: %d windows, %d classes, last epoch loss %.4f", keep.size, n_classes, loss)
    return net


def predict(net: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Predicted class indices for standardised windows ``x`` [N, C, W]."""
    return fit_predict(net, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.device(device))
