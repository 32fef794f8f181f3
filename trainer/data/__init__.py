"""Data sets, settings, windows, splits and standardisation for the trainer."""

from trainer.data.dataset import DATASETS, SETTINGS, ImuDataset, Setting, get_setting, load_dataset
from trainer.data.splits import cross_session_split, subject_split, time_split, trial_split
from trainer.data.standardise import Standardiser
from trainer.data.windows import WindowSet, make_windows

__all__ = [
    "DATASETS", "SETTINGS", "ImuDataset", "Setting", "Standardiser", "WindowSet", "cross_session_split",
    "get_setting", "load_dataset", "make_windows", "subject_split", "time_split", "trial_split",
]
