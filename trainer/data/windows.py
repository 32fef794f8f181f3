"""Cutting a data set into labelled windows with the runtime's own windowing arithmetic.

A window never crosses a boundary between users, sessions or activity segments: every
sample carries a segment id (a contiguous run of one user, session and label) and windows
are taken every ``hop`` samples inside each run, restarting at its first sample.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edge_runtime.windowing import gather_windows, window_starts
from trainer.data.dataset import ImuDataset, Setting, setting_matches
from trainer.errors import DatasetError


@dataclass(frozen=True)
class WindowSet:
    x: np.ndarray  # float32 [N, 6, W], raw units
    activity: np.ndarray  # int64 [N], class index 0..K-1
    user: np.ndarray  # int64 [N], original user id
    session: np.ndarray  # int64 [N]
    segment: np.ndarray  # int64 [N], the contiguous (user, session, activity) run
    start: np.ndarray  # int64 [N], sample index of the window start in the data set
    class_names: tuple[str, ...]
    rate_hz: float
    window: int
    hop: int

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, idx) -> "WindowSet":
        idx = np.asarray(idx)
        return replace(
            self, x=self.x[idx], activity=self.activity[idx], user=self.user[idx],
            session=self.session[idx], segment=self.segment[idx], start=self.start[idx],
        )

    @property
    def users(self) -> tuple[int, ...]:
        return tuple(int(u) for u in np.unique(self.user))

    @property
    def n_classes(self) -> int:
        return len(self.class_names)


def segment_ids(ds: ImuDataset) -> np.ndarray:
    """Per sample, the index of its contiguous run of equal (user, session, activity)."""
    if len(ds) == 0:
        return np.zeros(0, dtype=np.int64)
    change = (
        (ds.user[1:] != ds.user[:-1]) | (ds.session[1:] != ds.session[:-1])
        | (ds.activity[1:] != ds.activity[:-1])
    )
    return np.concatenate([[0], np.cumsum(change)]).astype(np.int64)


def make_windows(ds: ImuDataset, setting: Setting, window: int = 128, hop: int = 10) -> WindowSet:
    """Windows of the setting's classes only; other labels and unlabelled samples are skipped."""
    if window <= 0 or hop <= 0:
        raise DatasetError(f"window and hop must be positive, got {window} and {hop}")
    if not setting_matches(setting, ds.name):
        raise DatasetError(f"setting {setting.name!r} is for the {setting.dataset!r} data, "
                           f"not {ds.name!r}; choose a {ds.name} setting")
    segments = segment_ids(ds)
    starts = window_starts(segments, window, hop)
    lookup = setting.label_to_class()
    labels = ds.activity[starts] if starts.size else np.zeros(0, dtype=np.int64)
    keep = np.isin(labels, list(lookup))
    starts = starts[keep]
    if starts.size == 0:
        raise DatasetError(f"{ds.name}: no window of {window} samples lies inside one segment of the "
                           f"classes {list(setting.class_names)}; check the labels or shorten the window")
    to_class = np.vectorize(lookup.__getitem__, otypes=[np.int64])
    return WindowSet(
        x=gather_windows(ds.signals, starts, window).astype(np.float32, copy=False),
        activity=to_class(ds.activity[starts]),
        user=ds.user[starts].astype(np.int64),
        session=ds.session[starts].astype(np.int64),
        segment=segments[starts],
        start=starts.astype(np.int64),
        class_names=tuple(setting.class_names),
        rate_hz=float(ds.rate_hz),
        window=int(window),
        hop=int(hop),
    )
