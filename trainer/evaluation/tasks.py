"""The evaluation's tasks: which windows train and which test each classifier.

- ``activity``: the setting's Subject split -- the held-out users are unseen in training;
- ``identity_time``: every user; inside each recording and activity segment the first 2/3
  train and the rest test, one window apart (the analogue of the paper's Trial split;
  MotionSense uses its own Trial split instead);
- ``identity_cross_session``: every user; the first session trains, the later ones test
  (the phone was put on again in between), a harder setting;
- ``..._unseen``: the same two identity splits restricted to the held-out users, whom the
  anonymiser never saw in training (chance 1 in 6 on HAPT).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from trainer.data import Setting, WindowSet, cross_session_split, subject_split, time_split, trial_split
from trainer.errors import DatasetError
from trainer.evaluation.classifiers import LabelCodec
from trainer.evaluation.metrics import chance

log = logging.getLogger(__name__)

IDENTITY_TASKS = ("identity_time", "identity_time_unseen", "identity_cross_session", "identity_cross_session_unseen")
TASKS = ("activity",) + IDENTITY_TASKS
# The metrics.json suffix of each identity task (the time split over all users has none).
SUFFIX = {"identity_time": "", "identity_time_unseen": "_unseen", "identity_cross_session": "_cross_session",
          "identity_cross_session_unseen": "_cross_session_unseen"}


@dataclass(frozen=True, slots=True, kw_only=True)
class Task:
    name: str
    train: np.ndarray  # window indices
    test: np.ndarray
    codec: LabelCodec  # labels of this task's classes
    seed: int  # the same for every method, so methods differ only in their data

    @property
    def n_classes(self) -> int:
        return len(self.codec)

    @property
    def chance(self) -> float:
        return chance(len(self.codec))

    def describe(self) -> dict:
        return {"train_windows": int(self.train.size), "test_windows": int(self.test.size),
                "classes": int(len(self.codec)), "chance": round(self.chance, 2)}


def labels_of(task: str, ws: WindowSet) -> np.ndarray:
    return ws.activity if task == "activity" else ws.user


def build_tasks(ws: WindowSet, setting: Setting, seed: int) -> dict[str, Task]:
    """Every task whose split exists for this setting (MotionSense has no cross-session)."""
    unseen = np.isin(ws.user, setting.test_users)
    splits: dict[str, tuple[np.ndarray, np.ndarray]] = {"activity": subject_split(ws, setting.test_users)}
    splits["identity_time"] = trial_split(ws, setting.test_trials) if setting.test_trials else time_split(ws)
    if not setting.test_trials:
        try:
            splits["identity_cross_session"] = cross_session_split(ws)
        except DatasetError as exc:
            log.warning("no cross-session split: %s", exc)
    for name in ("identity_time", "identity_cross_session"):
        if name in splits:
            train, test = splits[name]
            splits[name + "_unseen"] = (train[unseen[train]], test[unseen[test]])
    tasks: dict[str, Task] = {}
    for offset, name in enumerate(TASKS):
        if name not in splits:
            continue
        train, test = splits[name]
        if train.size == 0 or test.size == 0:
            log.warning("task %s has %d training and %d test windows; skipped", name, train.size, test.size)
            continue
        labels = labels_of(name, ws)
        codec = LabelCodec.of(labels[train], labels[test])
        missing = np.setdiff1d(labels[test], labels[train])
        if missing.size:
            log.warning("task %s: %d class(es) %s have test windows but none to train on; their windows "
                        "count as misclassified", name, missing.size, missing.tolist())
        tasks[name] = Task(name=name, train=train, test=test, codec=codec, seed=seed + 1000 * (offset + 1))
    if "activity" not in tasks or "identity_time" not in tasks:
        raise DatasetError("the data has too few windows for the activity or the identity split; "
                           "use a smaller --hop or the full data set")
    return tasks


def dtw_sample(ws: WindowSet, task: Task, queries_per_user: int, refs_per_user: int,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A bounded random subsample for the DTW k-NN rank: per user, ``queries_per_user`` test
    windows and ``refs_per_user`` training windows of the identity time split."""
    rng = np.random.default_rng(seed)
    queries, refs = [], []
    for user in np.unique(ws.user[np.concatenate([task.train, task.test])]):
        test_mine = task.test[ws.user[task.test] == user]
        train_mine = task.train[ws.user[task.train] == user]
        if train_mine.size == 0:
            continue  # a user without references cannot be ranked
        refs.append(rng.choice(train_mine, size=min(refs_per_user, train_mine.size), replace=False))
        queries.append(rng.choice(test_mine, size=min(queries_per_user, test_mine.size), replace=False))
    return np.sort(np.concatenate(queries)), np.sort(np.concatenate(refs))
