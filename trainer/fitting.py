"""Fitting and scoring the regulariser networks; batching with a seeded generator."""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.models import build_classifier

EVAL_BATCH = 1024


@contextlib.contextmanager
def single_thread():
    """The regulariser CNN's ops are small: on a shared two-core machine a second thread
    made fitting 2-10x slower (thread hand-offs dominate), so they run on one."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def batches(n: int, batch_size: int, gen: torch.Generator, fraction: float = 1.0) -> Iterator[torch.Tensor]:
    """Shuffled index batches over ``fraction`` of ``n`` items; the last short batch is kept
    unless it has a single item (batch norm cannot train on one)."""
    order = torch.randperm(n, generator=gen)[: max(1, int(round(fraction * n)))]
    for i in range(0, order.numel(), batch_size):
        idx = order[i:i + batch_size]
        if idx.numel() > 1 or order.numel() == 1:
            yield idx


def new_classifier(in_shape: tuple[int, int], n_classes: int, gen: torch.Generator) -> nn.Module:
    """A regulariser with weights drawn from ``gen``, so runs are reproducible."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_classifier(in_shape, n_classes)


def fit_classifier(net: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, batch_size: int,
                   lr: float, gen: torch.Generator, device: torch.device, progress: Callable | None = None,
                   opt: torch.optim.Optimizer | None = None) -> float:
    """Train ``net`` on (x, y) with cross-entropy; returns the last epoch's mean loss."""
    opt = opt or torch.optim.Adam(net.parameters(), lr=lr)
    with single_thread():
        return _fit(net, opt, x, y, epochs, batch_size, gen, device, progress)


def _fit(net, opt, x, y, epochs, batch_size, gen, device, progress) -> float:
    net.train()
    loss_sum, count = 0.0, 0
    for _ in range(epochs):
        loss_sum, count = 0.0, 0
        for idx in batches(len(x), batch_size, gen):
            xb, yb = x[idx].to(device), y[idx].to(device)
            loss = F.cross_entropy(net(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.item() * idx.numel()
            count += idx.numel()
            if progress:
                progress(1)
    net.eval()
    return loss_sum / max(count, 1)


def predict(net: nn.Module, x: torch.Tensor, device: torch.device) -> np.ndarray:
    net.eval()
    with torch.no_grad(), single_thread():
        out = [net(x[i:i + EVAL_BATCH].to(device)).argmax(-1).cpu() for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def transform(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Apply an anonymiser stage to every window without gradients, in batches, on CPU out."""
    with torch.no_grad():
        out = [fn(x[i:i + EVAL_BATCH].to(device)).cpu() for i in range(0, len(x), EVAL_BATCH)]
    return torch.cat(out)


def accuracy(pred: np.ndarray, y: torch.Tensor) -> float:
    return float(np.mean(pred == y.numpy())) if len(pred) else 0.0


def macro_f1(pred: np.ndarray, y: torch.Tensor, n_classes: int) -> float:
    truth = y.numpy()
    scores = []
    for k in range(n_classes):
        tp = np.sum((pred == k) & (truth == k))
        fp = np.sum((pred == k) & (truth != k))
        fn = np.sum((pred != k) & (truth == k))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0
