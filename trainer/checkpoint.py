"""A trained run on disk and in memory.

RUN_DIR holds ``config.json`` (the resolved TrainConfig), ``model.pt`` (the anonymiser's
weights with everything needed to use them: channel mode, window, hop, rate, standardiser,
data set, split), ``history.json`` (losses and validation figures per round), the resumable
``checkpoint.pt`` while training, and ``metrics.json`` once the evaluator has run.
``model.pt`` is a plain dict of tensors and numbers read with ``weights_only=True``, so
loading a run never executes pickled code.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edge_runtime.layout import to_model_channels
from trainer.config import TrainConfig
from trainer.data.standardise import Standardiser
from trainer.errors import ConfigError, DatasetError, RunError
from trainer.models import build_anonymiser

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
CONFIG_FILE = "config.json"
HISTORY_FILE = "history.json"
CHECKPOINT_FILE = "checkpoint.pt"
METRICS_FILE = "metrics.json"
MODEL_FORMAT = 1
BATCH = 512


@dataclass
class TrainedRun:
    model: nn.Module  # eval mode
    config: TrainConfig
    standardiser: Standardiser
    channel_mode: str
    window: int
    hop: int
    rate_hz: float
    dataset: str
    setting: str
    split: str
    arch: str
    metrics: dict | None = None
    run_dir: Path | None = None
    class_names: tuple[str, ...] = ()
    train_users: tuple[int, ...] = ()
    history: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return self.standardiser.channels

    @property
    def model_path(self) -> Path | None:
        return self.run_dir / MODEL_FILE if self.run_dir else None

    def _check(self, raw: np.ndarray) -> None:
        if raw.ndim != 3 or raw.shape[1] != 6 or raw.shape[2] != self.window:
            raise DatasetError(f"anonymise expects raw windows [N, 6, {self.window}], got shape {raw.shape}")

    def standardised(self, raw: np.ndarray) -> np.ndarray:
        """Raw windows [N, 6, W] -> the model's standardised input [N, C, W]."""
        self._check(raw)
        return self.standardiser.apply(to_model_channels(raw.astype(np.float32, copy=False), self.channel_mode))

    def anonymise(self, raw: np.ndarray) -> np.ndarray:
        """Raw windows [N, 6, W] (acc g, gyro rad/s) -> anonymised [N, C, W] in physical units."""
        x = self.standardised(raw)
        out = np.empty_like(x)
        self.model.eval()
        with torch.no_grad():
            for i in range(0, x.shape[0], BATCH):
                out[i:i + BATCH] = self.model(torch.from_numpy(x[i:i + BATCH])).numpy()
        return self.standardiser.invert(out)

    def encode(self, raw: np.ndarray) -> np.ndarray:
        """The latent [N, C * k, W/4] of raw windows (what EncReg sees)."""
        x = self.standardised(raw)
        self.model.eval()
        with torch.no_grad():
            parts = [self.model.encode(torch.from_numpy(x[i:i + BATCH])).numpy()
                     for i in range(0, x.shape[0], BATCH)]
        return np.concatenate(parts) if parts else np.zeros((0, *self.model.latent_shape), np.float32)


def split_name(test_users) -> str:
    return "subject:test=[" + ",".join(str(int(u)) for u in test_users) + "]"


def write_json(path: Path, data: Any) -> None:
    """Write through a temporary file so an interrupted run never leaves half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def save_torch(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(data, tmp)
    os.replace(tmp, path)


def model_record(model: nn.Module, config: TrainConfig, standardiser: Standardiser, *, rate_hz: float,
                 split: str, class_names, train_users) -> dict:
    """What ``model.pt`` holds: weights plus everything needed to feed them."""
    return {
        "format": MODEL_FORMAT,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "arch": config.arch,
        "channels": standardiser.channels,
        "channel_mode": config.channel_mode,
        "window": config.window,
        "hop": config.hop,
        "rate_hz": float(rate_hz),
        "dataset": config.dataset,
        "setting": config.setting,
        "split": split,
        "standardiser": standardiser.to_dict(),
        "config": config.to_dict(),
        "class_names": list(class_names),
        "train_users": [int(u) for u in train_users],
    }


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: unreadable ({exc}); re-run the step that writes it") from None


def load_run(run_dir: str | Path) -> TrainedRun:
    """Load a finished run; a missing or corrupt run is a RunError that says what to do."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir}: no such run directory; train one with "
                       f"'imu-anon train --dataset hapt --out {run_dir}'")
    model_path = run_dir / MODEL_FILE
    if not model_path.is_file():
        hint = (" an interrupted run can be continued with 'imu-anon train ... --resume'"
                if (run_dir / CHECKPOINT_FILE).is_file() else " train it with 'imu-anon train'")
        raise RunError(f"{run_dir}: no {MODEL_FILE}, so training did not finish;{hint}")
    try:
        record = torch.load(model_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a truncated or foreign file
        raise RunError(f"{model_path}: corrupt or not an imu-anon model ({type(exc).__name__}: {exc}); "
                       "re-train the run") from None
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise RunError(f"{model_path}: not an imu-anon model of format {MODEL_FORMAT}; re-train the run")
    try:
        config = TrainConfig.from_dict(record["config"])
        standardiser = Standardiser.from_dict(record["standardiser"])
        model = build_anonymiser(record["arch"], int(record["channels"]), int(record["window"]))
        model.load_state_dict(record["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError, ConfigError, DatasetError) as exc:
        raise RunError(f"{model_path}: inconsistent model record ({exc}); re-train the run") from None
    model.eval()
    metrics = _read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else None
    history = _read_json(run_dir / HISTORY_FILE) if (run_dir / HISTORY_FILE).is_file() else {}
    return TrainedRun(
        model=model, config=config, standardiser=standardiser, channel_mode=record["channel_mode"],
        window=int(record["window"]), hop=int(record["hop"]), rate_hz=float(record["rate_hz"]),
        dataset=record["dataset"], setting=record["setting"], split=record["split"], arch=record["arch"],
        metrics=metrics, run_dir=run_dir, class_names=tuple(record.get("class_names", ())),
        train_users=tuple(record.get("train_users", ())), history=history,
    )
