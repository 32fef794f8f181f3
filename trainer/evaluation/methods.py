"""The rows of the evaluation: raw data, the anonymiser, and the baselines, each a function
from raw windows to standardised model channels.

Standardised units are what the classifiers see and what the MSE is measured in; the
:class:`~trainer.data.Standardiser` is fitted on the training users' raw windows of the
setting, so every method is scored on the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge_runtime.layout import to_model_channels
from trainer.data import Standardiser
from trainer.errors import ConfigError, RunError
from trainer.evaluation.baselines import BASELINES, apply_in_chunks
from trainer.evaluation.subjects import Subject

METHODS = ("raw", "aae", "resample_10hz", "resample_5hz", "ssa_1", "ssa_12", "rep")
LABELS = {"raw": "raw", "aae": "AAE", "rep": "REP"} | {name: b.label for name, b in BASELINES.items()}
MODEL_METHODS = ("aae", "rep")  # trained anonymisers, as opposed to fixed signal transforms


@dataclass(frozen=True, slots=True)
class Method:
    name: str
    label: str
    standardised: Callable[[np.ndarray], np.ndarray]  # raw [N, 6, W] -> standardised [N, C, W]


def check_methods(names) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(names))  # keep the order, drop repeats
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown}; known: {', '.join(METHODS)}")
    return names if "raw" in names else ("raw",) + names  # raw is every other row's reference


def build_methods(names: tuple[str, ...], *, subject: Subject, rep: Subject | None,
                  standardiser: Standardiser, rate_hz: float) -> dict[str, Method]:
    mode = subject.channel_mode

    def raw(x: np.ndarray) -> np.ndarray:
        return standardiser.apply(to_model_channels(x, mode))

    def model(s: Subject) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: standardiser.apply(s.anonymise(x))

    def baseline(name: str) -> Callable[[np.ndarray], np.ndarray]:
        fn = BASELINES[name].apply
        return lambda x: apply_in_chunks(lambda z: fn(z, rate_hz), raw(x))

    out: dict[str, Method] = {}
    for name in names:
        if name == "raw":
            fn = raw
        elif name == "aae":
            fn = model(subject)
        elif name == "rep":
            if rep is None:
                raise ConfigError("the rep method needs a REP model: pass --rep RUN_DIR_OR_ONNX, let the "
                                  "evaluation train one, or leave rep out of --methods")
            if (rep.channel_mode, rep.window) != (subject.channel_mode, subject.window):
                raise RunError(f"REP model {rep.path} sees {rep.channel_mode} windows of {rep.window}, the "
                               f"evaluated model {subject.channel_mode} windows of {subject.window}; "
                               "train REP with the same preset")
            fn = model(rep)
        else:
            fn = baseline(name)
        out[name] = Method(name=name, label=LABELS[name], standardised=fn)
    return out
