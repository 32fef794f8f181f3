"""The evaluation metrics of an exported file, for its card.

The card must carry the metrics of that very file -- the int8 file's own, not the fp32
run's -- so export evaluates each file through the evaluator's protocol (which loads it with
the runtime's loader), or takes a ``metrics.json`` written by ``imu-anon evaluate FILE.onnx``.
Only a summary goes into the card: the evaluated model's row, the chance levels, and where
the figures were measured; the full table stays in the evaluation's own report.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from export.errors import ExportError

log = logging.getLogger(__name__)

# int8 must stay within this many points of fp32 on these figures, or export says which.
INT8_POINTS = 1.0
COMPARED = ("activity_f1", "identity_acc_raw_attacker", "identity_acc_adaptive",
            "identity_acc_raw_attacker_cross_session", "identity_acc_adaptive_cross_session",
            "identity_acc_adaptive_unseen")
_CONTEXT = ("dataset", "setting", "chance_activity", "chance_identity", "chance_identity_unseen", "n_users",
            "created", "code_version")


def summarise(metrics: Mapping[str, Any], *, row: str = "aae") -> dict[str, Any]:
    """The card's summary of an evaluator ``metrics.json`` (its ``methods[row]`` plus context);
    a flat dict without ``methods`` is taken as it is."""
    if "methods" not in metrics:
        return dict(metrics)
    methods = metrics["methods"]
    if not isinstance(methods, Mapping) or row not in methods:
        rows = sorted(methods) if isinstance(methods, Mapping) else methods
        raise ExportError(f"the evaluation has no {row!r} row (rows: {rows}); "
                          "evaluate the exported file with 'imu-anon evaluate FILE.onnx'")
    out: dict[str, Any] = dict(methods[row])
    if "raw" in methods:
        out["raw"] = {k: methods["raw"][k] for k in COMPARED if k in methods["raw"]}
    out.update({k: metrics[k] for k in _CONTEXT if k in metrics})
    subject = metrics.get("subject")
    if isinstance(subject, Mapping):
        out["measured_on"] = {k: subject[k] for k in ("kind", "precision") if k in subject}
        if "path" in subject:  # the name only: a card should not carry the workstation's folders
            out["measured_on"]["file"] = Path(str(subject["path"])).name
    protocol = metrics.get("protocol")
    if isinstance(protocol, Mapping):
        out["protocol"] = {k: protocol[k] for k in ("classifier_epochs", "max_train_windows", "max_windows", "seed")
                           if k in protocol}
    return out


def load_metrics_file(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: cannot read the metrics ({exc}); pass the metrics.json written by "
                          "'imu-anon evaluate'") from None
    if not isinstance(data, dict):
        raise ExportError(f"{path}: metrics must be a JSON object, got {type(data).__name__}")
    return summarise(data)


def check_measured_on(summary: Mapping[str, Any], path: Path, precision: str) -> list[str]:
    """Warnings when a metrics file was measured on something other than this file."""
    measured = summary.get("measured_on")
    if not isinstance(measured, Mapping):
        return [f"the metrics given for {path.name} do not say what they were measured on"]
    notes = []
    if measured.get("kind") != "onnx":
        notes.append(f"the metrics given for {path.name} were measured on a {measured.get('kind')}, not on the file")
    elif measured.get("precision") not in (None, precision):
        notes.append(f"the metrics given for {path.name} ({precision}) were measured on the "
                     f"{measured.get('precision')} model")
    return notes


def evaluate_file(path: str | Path, *, quick: bool = False, max_windows: int | None = None) -> dict[str, Any]:
    """Run the evaluator's protocol on the exported file (raw and the file itself, no baselines)."""
    from dataclasses import replace

    from trainer.evaluation.protocol import QUICK, EvalConfig, evaluate
    from trainer.evaluation.subjects import load_subject

    config = QUICK if quick else EvalConfig()
    config = replace(config, methods=("raw", "aae"), max_windows=max_windows)
    subject = load_subject(Path(path))
    log.info("evaluating %s (%s protocol)", path, "quick" if quick else "full")
    return summarise(evaluate(subject, config).metrics)


def int8_gaps(fp32: Mapping[str, Any], int8: Mapping[str, Any]) -> dict[str, float]:
    """int8 minus fp32, in points, for the compared figures both summaries have."""
    return {k: round(float(int8[k]) - float(fp32[k]), 2) for k in COMPARED
            if isinstance(fp32.get(k), (int, float)) and isinstance(int8.get(k), (int, float))}


def beyond(gaps: Mapping[str, float], points: float = INT8_POINTS) -> dict[str, float]:
    """The gaps larger than ``points`` either way."""
    return {k: v for k, v in gaps.items() if abs(v) > points}
