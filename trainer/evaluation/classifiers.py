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
from trainer.models import build_classifier

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClassifierConfig:
    epochs: int = 6
    # Batch 256 at lr 2e-3 identifies users as well as batch 64-128 at 1e-3 (37.8 vs 38.2-40.8 %
    # on raw HAPT walk3 magnitudes, time split) in a third to a sixth of the CPU time.
    batch_size: int = 256
    lr: float = 2e-3
    # A stratified random subset of at most this many windows trains each classifier. On
    # HAPT walk3 at hop 10 that is every identity training window (~17k) and most activity
    # ones (~23k); capping at 12k cost the raw attacker a quarter of its accuracy.
    max_train_windows: int = 20_000
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


def _fit(x: np.ndarray, y: np.ndarray, n_classes: int, config: ClassifierConfig, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    net = new_classifier((x.shape[1], x.shape[2]), max(2, n_classes), gen).to(config.device)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # dropout masks
        loss = fit_classifier(
            net, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
            torch.from_numpy(np.asarray(y, dtype=np.int64)), epochs=config.epochs,
            batch_size=config.batch_size, lr=config.lr, gen=gen, device=torch.device(config.device),
        )
    log.debug("classifier: %d windows, %d classes, last epoch loss %.4f", len(x), n_classes, loss)
    return net


def _subset(x: np.ndarray, y: np.ndarray, config: ClassifierConfig, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"need matching, non-empty windows and labels, got {len(x)} and {len(y)}")
    keep = stratified_subset(y, config.max_train_windows, np.random.default_rng(seed))
    return x[keep], y[keep]


def train_classifier(x: np.ndarray, y: np.ndarray, n_classes: int, *, config: ClassifierConfig,
                     seed: int) -> nn.Module:
    """A classifier trained on standardised windows ``x`` [N, C, W] with class indices ``y``
    (at most ``config.max_train_windows`` of them, a stratified random subset)."""
    return _fit(*_subset(x, y, config, seed), n_classes, config, seed)


@dataclass(frozen=True, slots=True)
class FitJob:
    x: np.ndarray  # standardised windows [N, C, W]
    y: np.ndarray  # class indices
    n_classes: int
    seed: int


def _fit_in_worker(x: np.ndarray, y: np.ndarray, n_classes: int, config: ClassifierConfig,
                   seed: int) -> dict[str, np.ndarray]:
    net = _fit(x, y, n_classes, config, seed)
    return {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}


class Fitter:
    """Trains many classifiers, ``workers`` at a time in separate processes.

    The CNN is small, so one training keeps one core busy and no more (the trainer's fitting
    loop runs single-threaded); independent trainings in parallel processes are what uses a
    second core. Each job is seeded on its own, so the results do not depend on ``workers``.
    """

    def __init__(self, config: ClassifierConfig, workers: int = 1) -> None:
        self.config = config
        self.workers = workers if config.device == "cpu" else 1
        self._pool = None

    def __enter__(self) -> "Fitter":
        if self.workers > 1:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # spawn, not fork: a forked child inherits torch's thread pools in whatever state
            self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def fit_many(self, jobs: list[FitJob]) -> list[nn.Module]:
        subsets = [_subset(j.x, j.y, self.config, j.seed) for j in jobs]
        if self._pool is None:
            return [_fit(x, y, j.n_classes, self.config, j.seed) for (x, y), j in zip(subsets, jobs)]
        # biggest first, so the last job to finish is a small one
        order = sorted(range(len(jobs)), key=lambda i: -len(subsets[i][0]))
        futures = {i: self._pool.submit(_fit_in_worker, *subsets[i], jobs[i].n_classes, self.config, jobs[i].seed)
                   for i in order}
        nets = []
        for i, job in enumerate(jobs):
            x = subsets[i][0]
            net = build_classifier((x.shape[1], x.shape[2]), max(2, job.n_classes))
            net.load_state_dict({k: torch.from_numpy(v) for k, v in futures[i].result().items()})
            nets.append(net.eval())
        return nets


def predict(net: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    """Predicted class indices for standardised windows ``x`` [N, C, W]."""
    return fit_predict(net, torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.device(device))
