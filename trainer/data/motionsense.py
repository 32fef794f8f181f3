"""MotionSense (Malekzadeh et al.): the ``A_DeviceMotion_data`` CSV layout.

``A_DeviceMotion_data/<act>_<trial>/sub_<n>.csv``, one file per subject and trial, 50 Hz,
iOS Core Motion columns: attitude.roll/pitch/yaw, gravity.x/y/z (g), rotationRate.x/y/z
(rad/s), userAcceleration.x/y/z (g). The paper's preprocessing adds gravity back to the user
acceleration, so acc here is the total acceleration in g like every other source; the
magnitudes are taken later by the channel mode. The trial number is the session.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from trainer.data.dataset import ImuDataset
from trainer.errors import DatasetError

log = logging.getLogger(__name__)

RATE_HZ = 50.0
ACTIVITY_CODES: dict[str, int] = {"dws": 1, "ups": 2, "wlk": 3, "jog": 4, "sit": 5, "std": 6}
ACTIVITY_NAMES: dict[int, str] = {
    1: "downstairs", 2: "upstairs", 3: "walking", 4: "jogging", 5: "sitting", 6: "standing",
}
GRAVITY = ("gravity.x", "gravity.y", "gravity.z")
USER_ACC = ("userAcceleration.x", "userAcceleration.y", "userAcceleration.z")
ROTATION = ("rotationRate.x", "rotationRate.y", "rotationRate.z")
_TRIAL_DIR = re.compile(r"^([a-z]+)_(\d+)$")
_SUBJECT_FILE = re.compile(r"^sub_(\d+)\.csv$")


def _read_csv(path: Path) -> np.ndarray:
    """[T, 6] total acc (g) and rotation rate (rad/s) of one file."""
    try:
        with path.open(encoding="utf-8") as fh:
            header = [h.strip().strip('"') for h in fh.readline().split(",")]
            table = np.loadtxt(fh, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise DatasetError(f"{path}: cannot read as a MotionSense CSV ({exc})") from None
    missing = [c for c in GRAVITY + USER_ACC + ROTATION if c not in header]
    if missing:
        raise DatasetError(f"{path}: missing columns {missing}; expected MotionSense's DeviceMotion header")
    if table.shape[0] and table.shape[1] != len(header):
        raise DatasetError(f"{path}: rows have {table.shape[1]} values for {len(header)} header columns")
    col = {name: i for i, name in enumerate(header)}
    grav = table[:, [col[c] for c in GRAVITY]]
    user_acc = table[:, [col[c] for c in USER_ACC]]
    gyro = table[:, [col[c] for c in ROTATION]]
    return np.hstack([grav + user_acc, gyro]).astype(np.float32)


def load(folder: str | Path) -> ImuDataset:
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: not a folder; point --data-path at A_DeviceMotion_data")
    files: list[tuple[int, int, int, Path]] = []  # user, trial, activity, path
    skipped: list[str] = []
    for trial_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        m = _TRIAL_DIR.match(trial_dir.name)
        if not m or m.group(1) not in ACTIVITY_CODES:
            skipped.append(trial_dir.name)
            continue
        activity, trial = ACTIVITY_CODES[m.group(1)], int(m.group(2))
        for csv in sorted(trial_dir.glob("*.csv")):
            s = _SUBJECT_FILE.match(csv.name)
            if s:
                files.append((int(s.group(1)), trial, activity, csv))
            else:
                skipped.append(f"{trial_dir.name}/{csv.name}")
    if skipped:
        log.warning("skipped %d entries that are not <act>_<trial>/sub_<n>.csv: %s",
                    len(skipped), ", ".join(skipped[:5]))
    if not files:
        raise DatasetError(f"{folder}: no <act>_<trial>/sub_<n>.csv files; is this A_DeviceMotion_data?")
    seen: dict[tuple[int, int], Path] = {}
    signals, users, sessions, activities = [], [], [], []
    for user, trial, activity, path in sorted(files):
        if (user, trial) in seen:
            raise DatasetError(f"{path}: trial {trial} of subject {user} also in {seen[user, trial]}")
        seen[user, trial] = path
        x = _read_csv(path)
        if x.shape[0] == 0:
            log.warning("%s: no samples; skipped", path)
            continue
        n = x.shape[0]
        signals.append(x)
        users.append(np.full(n, user, dtype=np.int64))
        sessions.append(np.full(n, trial, dtype=np.int64))
        activities.append(np.full(n, activity, dtype=np.int64))
    if not signals:
        raise DatasetError(f"{folder}: every CSV file was empty")
    return ImuDataset(
        name="motionsense",
        signals=np.concatenate(signals),
        user=np.concatenate(users),
        session=np.concatenate(sessions),
        activity=np.concatenate(activities),
        rate_hz=RATE_HZ,
        activity_names=dict(ACTIVITY_NAMES),
    )
