"""Train/test splits of a :class:`WindowSet`; each returns ``(train_idx, test_idx)``.

- subject: the setting's test users are unseen in training (activity recognition);
- time: inside every segment the first part trains and the last part tests, with no
  overlap, so identity is measured on other seconds of the same recordings;
- cross-session: each user's first session trains, later sessions test (harder: the phone
  was put on again in between);
- trial: MotionSense's Trial split, given trial numbers test.
"""

from __future__ import annotations

import numpy as np

from trainer.data.windows import WindowSet
from trainer.errors import DatasetError


def _pair(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.flatnonzero(train).astype(np.int64), np.flatnonzero(test).astype(np.int64)


def subject_split(ws: WindowSet, test_users) -> tuple[np.ndarray, np.ndarray]:
    test_users = [int(u) for u in test_users]
    unknown = sorted(set(test_users) - set(ws.users))
    if unknown:
        raise DatasetError(f"test users {unknown} have no windows; users present: {list(ws.users)}")
    test = np.isin(ws.user, test_users)
    if test.all():
        raise DatasetError("every user is a test user; leave some users for training")
    return _pair(~test, test)


def time_split(ws: WindowSet, train_fraction: float = 2 / 3) -> tuple[np.ndarray, np.ndarray]:
    """Windows wholly inside the first ``train_fraction`` of their segment train; windows
    wholly inside the rest test, starting at least one window after the last training
    window starts, so no test window shares a sample with a training one."""
    if not 0.0 < train_fraction < 1.0:
        raise DatasetError(f"train_fraction must be in (0, 1), got {train_fraction}")
    train = np.zeros(len(ws), dtype=bool)
    test = np.zeros(len(ws), dtype=bool)
    order = np.argsort(ws.segment, kind="stable")
    seg_sorted = ws.segment[order]
    bounds = np.flatnonzero(np.diff(seg_sorted)) + 1
    for group in np.split(order, bounds):
        starts = ws.start[group]
        first, end = starts.min(), starts.max() + ws.window
        cut = first + int(np.floor(train_fraction * (end - first)))
        is_train = starts + ws.window <= cut
        train[group[is_train]] = True
        boundary = cut
        if is_train.any():
            boundary = max(cut, int(starts[is_train].max()) + ws.window)
        test[group[starts >= boundary]] = True
    return _pair(train, test)


def cross_session_split(ws: WindowSet) -> tuple[np.ndarray, np.ndarray]:
    """Each user's first (lowest-numbered) session trains; the later ones test."""
    train = np.zeros(len(ws), dtype=bool)
    for user in ws.users:
        mine = ws.user == user
        train |= mine & (ws.session == ws.session[mine].min())
    single = [u for u in ws.users if np.unique(ws.session[ws.user == u]).size < 2]
    if len(single) == len(ws.users):
        raise DatasetError("no user has a second session; use the time split instead")
    return _pair(train, ~train)


def trial_split(ws: WindowSet, test_trials) -> tuple[np.ndarray, np.ndarray]:
    """The given trial (session) numbers test; every other trial trains."""
    test = np.isin(ws.session, [int(t) for t in test_trials])
    if not test.any() or test.all():
        raise DatasetError(f"test trials {list(test_trials)} leave one side empty; "
                           f"trials present: {sorted(set(ws.session.tolist()))}")
    return _pair(~test, test)
