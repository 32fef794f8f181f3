"""Scores of a classifier's predictions, in percent (0-100) as the reports print them."""

from __future__ import annotations

import numpy as np


def _check(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if t.shape != p.shape:
        raise ValueError(f"{t.size} true labels for {p.size} predictions")
    if t.size == 0:
        raise ValueError("no predictions to score")
    return t, p


def accuracy(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Share of correct predictions, in percent."""
    t, p = _check(y_true, y_pred)
    return float(np.mean(t == p) * 100.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Unweighted mean of the per-class F1 over every class that occurs in the truth or the
    predictions (the convention of scikit-learn's ``average="macro"``), in percent.

    A class predicted but never true scores 0 and pulls the mean down, as it should: an
    attacker that names users who are not there is wrong.
    """
    t, p = _check(y_true, y_pred)
    scores = []
    for c in np.union1d(t, p):
        tp = np.sum((t == c) & (p == c))
        fp = np.sum((t != c) & (p == c))
        fn = np.sum((t == c) & (p != c))
        denom = 2 * tp + fp + fn
        scores.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(scores) * 100.0)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts [true, predicted] of class indices 0..n_classes-1."""
    t, p = _check(y_true, y_pred)
    if t.min() < 0 or p.min() < 0 or max(t.max(), p.max()) >= n_classes:
        raise ValueError(f"labels must be class indices in 0..{n_classes - 1}")
    out = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(out, (t.astype(np.int64), p.astype(np.int64)), 1)
    return out


def chance(n_classes: int) -> float:
    """Accuracy of a uniform guess among ``n_classes``, in percent."""
    if n_classes <= 0:
        raise ValueError(f"n_classes must be positive, got {n_classes}")
    return 100.0 / n_classes
