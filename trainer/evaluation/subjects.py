"""What gets evaluated: a trained run directory or an exported ONNX file, behind one face.

The protocol only sees a :class:`Subject`: a function from raw windows [N, 6, W] (acc in g,
gyro in rad/s) to anonymised model channels [N, C, W] in physical units, plus what is needed
to rebuild the data it was trained for (data set, setting, channel mode, window, hop). An
ONNX file is run through the runtime's own loader, so the deployed artefact -- int8 or fp32,
with its in-graph preprocessing -- is what gets measured.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from trainer.data import SETTINGS, get_setting
from trainer.errors import RunError

log = logging.getLogger(__name__)

TRAIN_CONFIG_KEY = "imu_anon.train_config"  # written by the exporter beside the card
EVAL_BATCH = 1024


@dataclass(frozen=True, slots=True, kw_only=True)
class Subject:
    name: str  # how tables and plots call it
    kind: str  # "run" or "onnx"
    path: Path
    anonymise: Callable[[np.ndarray], np.ndarray]  # raw [N, 6, W] -> physical [N, C, W]
    channel_mode: str
    dataset: str
    data_path: str | None
    setting: str
    window: int
    hop: int
    rate_hz: float
    arch: str
    precision: str = "fp32"
    train_config: dict[str, Any] | None = None  # the trainer's resolved config when known
    notes: tuple[str, ...] = field(default_factory=tuple)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": str(self.path), "arch": self.arch, "precision": self.precision,
                "channel_mode": self.channel_mode, "window": self.window, "hop": self.hop,
                "rate_hz": self.rate_hz}


def _batched(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    def run(raw: np.ndarray) -> np.ndarray:
        if len(raw) == 0:
            return fn(raw)
        return np.concatenate([fn(raw[i:i + EVAL_BATCH]) for i in range(0, len(raw), EVAL_BATCH)])
    return run


def from_run(run_dir: str | Path, name: str = "aae", data_path: str | None = None) -> Subject:
    from trainer.checkpoint import load_run

    run = load_run(run_dir)
    return Subject(
        name=name, kind="run", path=Path(run_dir), anonymise=_batched(run.anonymise),
        channel_mode=run.channel_mode, dataset=run.dataset, data_path=data_path or run.config.data_path,
        setting=run.setting, window=run.window, hop=run.hop, rate_hz=run.rate_hz, arch=run.arch,
        train_config=run.config.to_dict(),
    )


def _onnx_train_config(path: Path) -> dict[str, Any] | None:
    import onnx

    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception:  # the runtime loader has already accepted the file; this is best effort
        return None
    props = {p.key: p.value for p in model.metadata_props}
    if TRAIN_CONFIG_KEY not in props:
        return None
    try:
        data = json.loads(props[TRAIN_CONFIG_KEY])
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def _setting_for(dataset: str, split: str, explicit: str | None, config: dict | None) -> tuple[str, tuple[str, ...]]:
    """The setting an ONNX file was trained for: the flag, else its training config, else
    the first setting of its data set whose held-out users match the card's split."""
    if explicit:
        return get_setting(explicit).name, ()
    if config and config.get("setting") in SETTINGS:
        return config["setting"], ()
    family = "hapt" if dataset in ("hapt", "uci-hapt-raw") else dataset
    for s in SETTINGS.values():
        users = ",".join(str(u) for u in s.test_users)
        if s.dataset == family and f"test=[{users}]" in split.replace(" ", ""):
            note = (f"the model carries no training config; assumed setting {s.name!r} from its split "
                    f"{split!r} (pass --setting to choose another)")
            log.warning(note)
            return s.name, (note,)
    raise RunError(f"cannot tell which setting the model was trained for (data set {dataset!r}, split "
                   f"{split!r}); pass --setting, one of: {', '.join(SETTINGS)}")


def from_onnx(path: str | Path, name: str = "aae", setting: str | None = None,
              data_path: str | None = None) -> Subject:
    from edge_runtime.anonymiser import Anonymiser, InferenceSettings

    path = Path(path)
    # intra_op_threads 0: let onnxruntime use every core; evaluation is a batch job, not a gateway.
    model = Anonymiser.open(path, InferenceSettings(intra_op_threads=0))
    card = model.card
    config = _onnx_train_config(path)
    chosen, notes = _setting_for(card.dataset, card.split, setting, config)
    # The evaluator's windows are in g; the graph takes the card's declared input units.
    to_input = np.array([1.0 / card.acc_scale_to_g] * 3 + [1.0] * 3, dtype=np.float32)[:, None]

    def anonymise(raw: np.ndarray) -> np.ndarray:
        return model.anonymise(np.asarray(raw, dtype=np.float32) * to_input)

    return Subject(
        name=name, kind="onnx", path=path, anonymise=_batched(anonymise), channel_mode=card.channel_mode,
        dataset=card.dataset, data_path=data_path or (config or {}).get("data_path"), setting=chosen,
        window=card.window, hop=card.hop, rate_hz=float(card.sample_rate_hz), arch=card.arch,
        precision=card.precision, train_config=config, notes=notes,
    )


def load_subject(path: str | Path, name: str = "aae", setting: str | None = None,
                 data_path: str | None = None) -> Subject:
    """A run directory or an ``.onnx`` file; anything else is a RunError saying which to pass."""
    path = Path(path)
    if path.is_dir():
        subject = from_run(path, name, data_path)
        if setting and setting != subject.setting:
            raise RunError(f"{path} was trained for setting {subject.setting!r}, not {setting!r}; "
                           "drop --setting or evaluate another run")
        return subject
    if path.suffix == ".onnx":
        return from_onnx(path, name, setting, data_path)
    if path.exists():
        raise RunError(f"{path}: neither a run directory nor an .onnx file; pass a directory written by "
                       "'imu-anon train' or a file written by 'imu-anon export'")
    raise RunError(f"{path}: no such run directory or model file")
