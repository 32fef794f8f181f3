"""The trainer's in-memory data set and the named evaluation settings.

An :class:`ImuDataset` is every sample of a data set concatenated in time order: raw
signals in the project's layout (acc x, y, z in g with gravity; gyro x, y, z in rad/s) and,
per sample, the user, the session (one contiguous recording) and the data set's own
activity label (-1 where unlabelled). Loaders for each on-disk layout produce one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from trainer.errors import DatasetError


@dataclass(frozen=True)
class ImuDataset:
    name: str
    signals: np.ndarray  # float32 [T, 6]
    user: np.ndarray  # int [T]
    session: np.ndarray  # int [T]
    activity: np.ndarray  # int [T], the data set's label, -1 none
    rate_hz: float
    activity_names: dict[int, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        t = self.signals.shape[0] if self.signals.ndim == 2 else -1
        if self.signals.ndim != 2 or self.signals.shape[1] != 6:
            raise DatasetError(f"{self.name}: signals must be [T, 6], got shape {self.signals.shape}")
        for label in ("user", "session", "activity"):
            arr = getattr(self, label)
            if arr.shape != (t,):
                raise DatasetError(f"{self.name}: {label} has shape {arr.shape} for {t} samples")
        if not np.all(np.isfinite(self.signals)):
            raise DatasetError(f"{self.name}: signals hold NaN or infinite values; clean the source files")
        if not self.rate_hz > 0:
            raise DatasetError(f"{self.name}: sample rate must be positive, got {self.rate_hz}")

    def __len__(self) -> int:
        return int(self.signals.shape[0])

    @property
    def users(self) -> tuple[int, ...]:
        return tuple(int(u) for u in np.unique(self.user))


@dataclass(frozen=True)
class Setting:
    """A named evaluation setting: which labels form which class, who is held out."""

    name: str
    dataset: str
    classes: tuple[tuple[int, ...], ...]  # data set labels mapped to class i
    class_names: tuple[str, ...]
    test_users: tuple[int, ...]
    # MotionSense's Trial split: these trial (session) numbers test identity; empty
    # means the per-segment time split (HAPT has one recording per user and session).
    test_trials: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.classes) != len(self.class_names):
            raise DatasetError(f"setting {self.name}: {len(self.classes)} classes but "
                               f"{len(self.class_names)} class names")
        labels = [lab for group in self.classes for lab in group]
        if len(labels) != len(set(labels)):
            raise DatasetError(f"setting {self.name}: a data set label is mapped to two classes")

    def label_to_class(self) -> dict[int, int]:
        return {lab: i for i, group in enumerate(self.classes) for lab in group}


HAPT_TEST_USERS = (2, 4, 9, 10, 12, 13)

SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(name="hapt-walk3", dataset="hapt", classes=((1,), (2,), (3,)),
                class_names=("walking", "upstairs", "downstairs"), test_users=HAPT_TEST_USERS),
        Setting(name="hapt-6", dataset="hapt", classes=((1,), (2,), (3,), (4,), (5,), (6,)),
                class_names=("walking", "upstairs", "downstairs", "sitting", "standing", "laying"),
                test_users=HAPT_TEST_USERS),
        Setting(name="motionsense-4", dataset="motionsense", classes=((1,), (2,), (3,), (4,)),
                class_names=("downstairs", "upstairs", "walking", "jogging"),
                test_users=(4, 9, 11, 21), test_trials=(11, 12, 13, 14, 15, 16)),
    )
}

DATASETS = ("hapt", "uci-hapt-raw", "motionsense")


def get_setting(name: str) -> Setting:
    try:
        return SETTINGS[name]
    except KeyError:
        raise DatasetError(f"unknown setting {name!r}; known: {', '.join(SETTINGS)}") from None


def setting_matches(setting: Setting, dataset: str) -> bool:
    """Whether a setting defined for one data set family applies to a loader's data."""
    family = "hapt" if dataset in ("hapt", "uci-hapt-raw") else dataset
    return setting.dataset == family


def load_dataset(name: str, path: str | Path | None = None) -> ImuDataset:
    """Load ``hapt`` (the bundled npz unless ``path``), ``uci-hapt-raw`` (a RawData folder)
    or ``motionsense`` (an A_DeviceMotion_data folder)."""
    from trainer.data import hapt, motionsense  # the loaders import this module

    if name == "hapt":
        return hapt.load_npz(path)
    if name == "uci-hapt-raw":
        if path is None:
            raise DatasetError("uci-hapt-raw needs --data-path pointing at UCI HAPT's RawData folder")
        return hapt.load_raw(path)
    if name == "motionsense":
        if path is None:
            raise DatasetError("motionsense needs --data-path pointing at the A_DeviceMotion_data folder")
        return motionsense.load(path)
    raise DatasetError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
