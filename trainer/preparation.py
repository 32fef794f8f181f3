"""From a config to training tensors: load, window, split by subject, hold out validation
segments, standardise on the training windows only."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch

from edge_runtime.layout import to_model_channels
from trainer.checkpoint import split_name
from trainer.config import TrainConfig
from trainer.data import Standardiser, WindowSet, get_setting, load_dataset, make_windows, subject_split
from trainer.errors import DatasetError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One side (train or validation) as tensors: standardised model channels and labels."""

    x: torch.Tensor  # float32 [N, C, W]
    user: torch.Tensor  # int64 [N], index into Prepared.users
    activity: torch.Tensor  # int64 [N]

    def __len__(self) -> int:
        return int(self.x.shape[0])


@dataclass(frozen=True)
class Prepared:
    train: Part
    val: Part
    standardiser: Standardiser
    users: tuple[int, ...]  # original ids of the training users; index i is class i
    class_names: tuple[str, ...]
    rate_hz: float
    split: str

    @property
    def channels(self) -> int:
        return self.standardiser.channels


def validation_segments(ws: WindowSet, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """A mask of whole segments held out per user, about ``fraction`` of each user's windows;
    whole segments so no validation window overlaps a training one, per user so every user
    stays identifiable on both sides. A user with a single segment keeps it for training."""
    val = np.zeros(len(ws), dtype=bool)
    for user in ws.users:
        mine = np.flatnonzero(ws.user == user)
        segments = np.unique(ws.segment[mine])
        if segments.size < 2:
            continue
        budget = fraction * mine.size
        taken = 0
        for seg in rng.permutation(segments)[:-1]:  # always leave one segment to train on
            if taken >= budget:
                break
            hit = mine[ws.segment[mine] == seg]
            val[hit] = True
            taken += hit.size
    return val


def _part(ws: WindowSet, mode: str, standardiser: Standardiser, user_index: dict[int, int]) -> Part:
    x = standardiser.apply(to_model_channels(ws.x, mode))
    users = np.array([user_index[int(u)] for u in ws.user], dtype=np.int64)
    return Part(x=torch.from_numpy(np.ascontiguousarray(x)), user=torch.from_numpy(users),
                activity=torch.from_numpy(ws.activity.astype(np.int64)))


def prepare(config: TrainConfig) -> Prepared:
    setting = get_setting(config.setting)
    ds = load_dataset(config.dataset, config.data_path)
    ws = make_windows(ds, setting, window=config.window, hop=config.hop)
    train_idx, _ = subject_split(ws, [u for u in setting.test_users if u in ws.users])
    ws = ws.subset(train_idx)
    rng = np.random.default_rng(config.seed)
    if config.max_windows is not None and len(ws) > config.max_windows:
        ws = ws.subset(np.sort(rng.choice(len(ws), size=config.max_windows, replace=False)))
    val_mask = validation_segments(ws, config.val_fraction, rng)
    if not val_mask.any():
        raise DatasetError("no validation segment could be held out: every training user has a single "
                           "activity segment; use more data or a longer recording")
    train_ws, val_ws = ws.subset(np.flatnonzero(~val_mask)), ws.subset(np.flatnonzero(val_mask))
    if len(train_ws.users) < 2:
        raise DatasetError(f"only {len(train_ws.users)} training user(s); identity regularisers need two or more")
    standardiser = Standardiser.fit(to_model_channels(train_ws.x, config.channel_mode))
    users = train_ws.users
    index = {u: i for i, u in enumerate(users)}
    log.info("%s/%s: %d training and %d validation windows from %d users; held-out users %s",
             config.dataset, config.setting, len(train_ws), len(val_ws), len(users), list(setting.test_users))
    return Prepared(
        train=_part(train_ws, config.channel_mode, standardiser, index),
        val=_part(val_ws, config.channel_mode, standardiser, index),
        standardiser=standardiser, users=users, class_names=ws.class_names, rate_hz=ws.rate_hz,
        split=split_name(setting.test_users),
    )
