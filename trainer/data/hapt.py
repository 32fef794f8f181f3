"""UCI HAPT: the bundled npz copy and the original download's RawData layout.

RawData holds ``acc_expXX_userYY.txt`` and ``gyro_expXX_userYY.txt`` (three space-separated
columns each; acc in g with gravity, gyro in rad/s, 50 Hz) and ``labels.txt`` with rows
``experiment user activity start end``. Experiment XX becomes session XX - 1 and label rows
cover samples ``start..end`` inclusive, as in the bundled copy, so both routes give the same
arrays for the same recordings.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from firmware_bridge.recordings import DEFAULT_HAPT, HAPT_RATE_HZ
from trainer.data.dataset import ImuDataset
from trainer.errors import DatasetError

log = logging.getLogger(__name__)

ACTIVITY_NAMES: dict[int, str] = {
    1: "walking", 2: "upstairs", 3: "downstairs", 4: "sitting", 5: "standing", 6: "laying",
    7: "stand_to_sit", 8: "sit_to_stand", 9: "sit_to_lie", 10: "lie_to_sit",
    11: "stand_to_lie", 12: "lie_to_stand",
}
_RAW_NAME = re.compile(r"acc_exp(\d+)_user(\d+)\.txt$")


def load_npz(path: str | Path | None = None) -> ImuDataset:
    path = Path(path) if path is not None else DEFAULT_HAPT
    try:
        with np.load(path) as data:
            arrays = {k: data[k] for k in ("signals", "user", "session", "activity")}
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such file; pass --data-path or restore data/hapt.npz") from None
    except (OSError, KeyError, ValueError) as exc:
        raise DatasetError(f"{path}: not a HAPT npz ({exc}); expected arrays signals, user, "
                           "session, activity") from None
    return ImuDataset(
        name="hapt",
        signals=np.ascontiguousarray(arrays["signals"], dtype=np.float32),
        user=arrays["user"].astype(np.int64),
        session=arrays["session"].astype(np.int64),
        activity=arrays["activity"].astype(np.int64),
        rate_hz=HAPT_RATE_HZ,
        activity_names=dict(ACTIVITY_NAMES),
    )


def _read_table(path: Path, columns: int, dtype) -> np.ndarray:
    try:
        table = np.loadtxt(path, dtype=dtype, ndmin=2)
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read as {columns} numeric columns ({exc})") from None
    if table.shape[1] != columns:
        raise DatasetError(f"{path}: expected {columns} columns, got {table.shape[1]}")
    return table


def load_raw(folder: str | Path) -> ImuDataset:
    """Every experiment of a UCI HAPT RawData folder, in experiment order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; point --data-path at UCI HAPT's RawData")
    experiments: list[tuple[int, int, Path]] = []
    for acc in sorted(folder.glob("acc_exp*_user*.txt")):
        m = _RAW_NAME.search(acc.name)
        if m:
            experiments.append((int(m.group(1)), int(m.group(2)), acc))
    if not experiments:
        raise DatasetError(f"{folder}: no acc_expXX_userYY.txt files; is this UCI HAPT's RawData folder?")
    labels_path = folder / "labels.txt"
    if not labels_path.is_file():
        raise DatasetError(f"{folder}: labels.txt is missing; copy it from the HAPT download")
    labels = _read_table(labels_path, 5, np.int64)

    signals, users, sessions, activities = [], [], [], []
    known = {exp for exp, _, _ in experiments}
    orphan = sorted({int(e) for e in labels[:, 0]} - known)
    if orphan:
        log.warning("labels.txt names experiments %s that have no signal files; their labels are ignored", orphan)
    for exp, user, acc_path in sorted(experiments):
        gyro_path = folder / f"gyro_exp{exp:02d}_user{user:02d}.txt"
        if not gyro_path.is_file():
            raise DatasetError(f"{gyro_path}: missing; every acc file needs its gyro file")
        acc = _read_table(acc_path, 3, np.float64)
        gyro = _read_table(gyro_path, 3, np.float64)
        if acc.shape[0] != gyro.shape[0]:
            raise DatasetError(f"{acc_path.name} has {acc.shape[0]} rows but {gyro_path.name} has "
                               f"{gyro.shape[0]}; the pair must be sample-aligned")
        n = acc.shape[0]
        act = np.full(n, -1, dtype=np.int64)
        dropped = 0
        for _, luser, activity, start, end in labels[labels[:, 0] == exp]:
            if luser != user or start < 0 or end < start or end >= n:
                dropped += 1
                continue
            act[start:end + 1] = activity
        if dropped:
            log.warning("experiment %d: dropped %d label rows with a wrong user or out-of-range samples",
                        exp, dropped)
        signals.append(np.hstack([acc, gyro]).astype(np.float32))
        users.append(np.full(n, user, dtype=np.int64))
        sessions.append(np.full(n, exp - 1, dtype=np.int64))
        activities.append(act)
    return ImuDataset(
        name="uci-hapt-raw",
        signals=np.concatenate(signals),
        user=np.concatenate(users),
        session=np.concatenate(sessions),
        activity=np.concatenate(activities),
        rate_hz=HAPT_RATE_HZ,
        activity_names=dict(ACTIVITY_NAMES),
    )
