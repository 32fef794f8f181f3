"""From a trained run to checked ONNX files: fp32 (parity-checked) and, optionally, int8.

Every file gets a card built from its own graph (weights fingerprint, FLOP count,
precision) and metrics measured on the file itself: fp32 parity against PyTorch on held-out
windows, and for int8 its distance from the fp32 file on the same windows. The evaluation
metrics (activity F1, identity accuracies) are attached afterwards with :func:`attach_metrics`,
which rewrites the card but never the weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from edge_runtime.card import ModelCard
from edge_runtime.layout import ACC_UNITS, RAW_CHANNELS, model_channels
from export.errors import ExportError
from export.flops import count_flops
from export.dense import densify
from export.graph import DeployedAnonymiser
from export.parity import FP32_TOLERANCE, MIN_PARITY_WINDOWS, Difference, check_parity, compare, from_g, run_file
from export.quantise import CALIBRATIONS, default_reduce_range, quantise_int8
from export.weights import weights_sha256
from export.windows import ExportWindows, windows_for_run
from export.writer import (
    CONFIG_KEY, OPSET, code_version, export_graph, load_model, read_card, rewrite_card, save_model,
    set_metadata, utc_now,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportOptions:
    acc_unit: str = "g"  # the unit the device sends acceleration in ("g" or "m/s^2")
    opset: int = OPSET
    int8: bool = False
    reduce_range: bool | None = None  # None: decided from this CPU (x86 without VNNI -> True)
    calibration: str = "minmax"  # see export.quantise.CALIBRATIONS
    parity_windows: int = 2000
    calibration_windows: int = 300
    seed: int = 0
    tolerance: float = FP32_TOLERANCE

    def __post_init__(self) -> None:
        problems = []
        if self.acc_unit not in ACC_UNITS:
            problems.append(f"input units must be one of {sorted(ACC_UNITS)}, got {self.acc_unit!r}")
        if not 17 <= self.opset <= 23:
            problems.append(f"opset must be 17..23, got {self.opset}")
        if self.parity_windows < MIN_PARITY_WINDOWS:
            problems.append(f"parity needs at least {MIN_PARITY_WINDOWS} windows, got {self.parity_windows}")
        if self.calibration not in CALIBRATIONS:
            problems.append(f"int8 calibration must be one of {list(CALIBRATIONS)}, got {self.calibration!r}")
        if self.calibration_windows < 16:
            problems.append(f"int8 calibration needs at least 16 windows, got {self.calibration_windows}")
        if not self.tolerance > 0:
            problems.append(f"parity tolerance must be positive, got {self.tolerance}")
        if problems:
            raise ExportError("invalid export options: " + "; ".join(problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportedFile:
    path: Path
    card: ModelCard

    @property
    def size_bytes(self) -> int:
        return self.path.stat().st_size


@dataclass(frozen=True, slots=True, kw_only=True)
class ExportReport:
    fp32: ExportedFile
    parity: Difference
    windows: str
    int8: ExportedFile | None = None
    int8_vs_fp32: Difference | None = None
    reduce_range: bool | None = None


def int8_path(fp32_path: str | Path) -> Path:
    """``models/NAME.onnx`` -> ``models/NAME.int8.onnx``."""
    path = Path(fp32_path)
    stem = path.name[:-len(".onnx")] if path.name.endswith(".onnx") else path.name
    return path.with_name(stem + ".int8.onnx")


def make_card(run, model, *, precision: str, acc_unit: str, opset: int, flops_per_window: int,
              metrics: Mapping[str, Any] | None = None) -> ModelCard:
    """The card of ``model`` (an ONNX proto exported from ``run``); ``flops_per_window`` is counted
    on the graph as exported, before :func:`export.dense.densify`."""
    names, units = model_channels(run.channel_mode)
    return ModelCard(
        window=int(run.window), hop=int(run.hop), sample_rate_hz=float(run.rate_hz), channel_mode=run.channel_mode,
        input_channels=RAW_CHANNELS, input_units=(acc_unit,) * 3 + ("rad/s",) * 3,
        output_channels=names, output_units=units,
        mean=tuple(float(v) for v in run.standardiser.mean), std=tuple(float(v) for v in run.standardiser.std),
        arch=run.arch, flops_per_window=flops_per_window, precision=precision, opset=opset,
        dataset=run.dataset, split=run.split, metrics=dict(metrics or {}), created=utc_now(),
        code_version=code_version(), weights_sha256=weights_sha256(model),
    )


def _config_entry(run) -> dict[str, str]:
    config = run.config.to_dict() if hasattr(run.config, "to_dict") else dict(run.config)
    return {CONFIG_KEY: json.dumps(config, sort_keys=True)}


def write_fp32(run, out: str | Path, options: ExportOptions) -> ExportedFile:
    """Export the run's network with its preprocessing as an fp32 file (and sidecar) at ``out``."""
    deployed = DeployedAnonymiser(run.model, mean=run.standardiser.mean.tolist(), std=run.standardiser.std.tolist(),
                                  channel_mode=run.channel_mode, acc_unit=options.acc_unit)
    model = export_graph(deployed, run.window, opset=options.opset)
    flops = count_flops(model).total
    model = densify(model)
    card = make_card(run, model, precision="fp32", acc_unit=options.acc_unit, opset=options.opset,
                     flops_per_window=flops)
    set_metadata(model, card, _config_entry(run))
    return ExportedFile(path=save_model(model, out), card=card)


def write_int8(run, fp32: ExportedFile, out: str | Path, calibration_g: np.ndarray,
               options: ExportOptions) -> tuple[ExportedFile, dict[str, Any]]:
    """Quantise ``fp32`` (QDQ, calibrated on training windows in g) to ``out`` with its own card;
    also returns how it was quantised."""
    reduce_range = default_reduce_range() if options.reduce_range is None else options.reduce_range
    out = Path(out)
    kept = quantise_int8(fp32.path, out, from_g(calibration_g, options.acc_unit), reduce_range=reduce_range,
                         calibration_method=options.calibration)
    model = load_model(out)
    card = make_card(run, model, precision="int8", acc_unit=options.acc_unit, opset=options.opset,
                     flops_per_window=fp32.card.flops_per_window)
    set_metadata(model, card, _config_entry(run))
    how = {"reduce_range": reduce_range, "calibration_windows": int(len(calibration_g)), "kept_fp32": kept,
           "format": f"QDQ, per-channel int8 weights, uint8 activations, {options.calibration} calibration"}
    return ExportedFile(path=save_model(model, out), card=card), how


def attach_metrics(exported: ExportedFile, metrics: Mapping[str, Any], *, replace: bool = False) -> ExportedFile:
    """Add ``metrics`` to the card of the file (``replace``: instead of its current ones); the weights,
    and so the weights fingerprint, stay as they are; the sidecar is rewritten."""
    current = read_card(exported.path)
    merged = dict(metrics) if replace else {**current.metrics, **metrics}
    card = rewrite_card(exported.path, current.replace(metrics=merged))
    return ExportedFile(path=exported.path, card=card)


def export_run(run, out: str | Path, options: ExportOptions = ExportOptions(),
               windows: ExportWindows | None = None) -> ExportReport:
    """Export ``run`` (a :class:`trainer.checkpoint.TrainedRun`) to ``out`` and, with ``options.int8``,
    to ``NAME.int8.onnx``; parity is checked on real held-out windows and raises ParityError."""
    out = Path(out)
    if not out.name.endswith(".onnx"):
        raise ExportError(f"{out}: the output file name must end in .onnx")
    if windows is None:
        windows = windows_for_run(run, parity=options.parity_windows, calibration=options.calibration_windows,
                                  seed=options.seed)
    fp32 = write_fp32(run, out, options)
    reference = run.anonymise(windows.parity)  # PyTorch on the raw windows in g
    file_input = from_g(windows.parity, options.acc_unit)
    parity = check_parity(fp32.path, file_input, reference, tolerance=options.tolerance)
    log.info("fp32 parity: %s", parity)
    fp32 = attach_metrics(fp32, {"export": {"parity_vs_pytorch": parity.as_dict(), "windows": windows.description}})
    report = ExportReport(fp32=fp32, parity=parity, windows=windows.description)
    if not options.int8:
        return report
    int8, how = write_int8(run, fp32, int8_path(out), windows.calibration, options)
    int8_out = run_file(int8.path, file_input)
    gap = compare(int8_out, run_file(fp32.path, file_input))
    log.info("int8 vs fp32: %s", gap)
    int8 = attach_metrics(int8, {"export": {
        "int8_vs_fp32": gap.as_dict(), "vs_pytorch": compare(int8_out, reference).as_dict(),
        "windows": windows.description, **how,
    }})
    return ExportReport(fp32=fp32, parity=parity, windows=windows.description, int8=int8, int8_vs_fp32=gap,
                        reduce_range=how["reduce_range"])
