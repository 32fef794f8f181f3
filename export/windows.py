"""The real windows export measures itself on: held-out users for parity, training users for int8
calibration -- cut with the trainer's own windowing from the run's own data set and setting."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from export.errors import ExportError
from trainer.errors import TrainerError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportWindows:
    parity: np.ndarray  # raw [N, 6, W] of users the run never trained on
    calibration: np.ndarray  # raw [M, 6, W] of the run's training users
    description: str

    def __post_init__(self) -> None:
        for name in ("parity", "calibration"):
            value = getattr(self, name)
            if value.ndim != 3 or value.shape[1] != 6:
                raise ExportError(f"{name} windows must be raw [N, 6, W], got shape {value.shape}")


def _sample(idx: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    if len(idx) <= n:
        return idx
    return np.sort(rng.choice(idx, size=n, replace=False))


def windows_for_run(run, *, parity: int = 2000, calibration: int = 300, seed: int = 0) -> ExportWindows:
    """Deterministic (``seed``) samples of ``parity`` held-out and ``calibration`` training windows
    of the run's data set, with the run's window and hop."""
    from trainer.data import get_setting, load_dataset, make_windows, subject_split

    data_path = getattr(run.config, "data_path", None)
    try:
        ds = load_dataset(run.dataset, data_path)
        setting = get_setting(run.setting)
        ws = make_windows(ds, setting, window=run.window, hop=run.hop)
        train_idx, test_idx = subject_split(ws, setting.test_users)
    except TrainerError as exc:
        raise ExportError(f"cannot cut the run's windows for parity and calibration: {exc}") from None
    if run.train_users:  # the run's own record beats re-deriving the split
        train_idx = np.flatnonzero(np.isin(ws.user, list(run.train_users)))
    rng = np.random.default_rng(seed)
    test_pick = _sample(test_idx, parity, rng)
    train_pick = _sample(train_idx, calibration, rng)
    if len(train_pick) == 0:
        raise ExportError(f"no training windows of {run.dataset}/{run.setting} to calibrate int8 on")
    held_out = sorted(set(ws.user[test_pick].tolist()))
    description = (f"{len(test_pick)} windows of held-out users {held_out} and {len(train_pick)} training "
                   f"windows from {run.dataset}/{run.setting} (window {run.window}, hop {run.hop}, seed {seed})")
    log.info("export windows: %s", description)
    return ExportWindows(parity=ws.x[test_pick], calibration=ws.x[train_pick], description=description)
