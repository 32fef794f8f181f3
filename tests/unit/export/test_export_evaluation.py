"""What of an evaluation goes into a card, and how int8 is held against fp32."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export.errors import ExportError, ParityError
from export.evaluation import beyond, check_measured_on, int8_gaps, load_metrics_file, summarise
from export.parity import compare

EVALUATION = {
    "dataset": "hapt", "setting": "hapt-walk3", "chance_identity": 3.33, "chance_activity": 33.33,
    "methods": {
        "raw": {"activity_f1": 97.4, "identity_acc_raw_attacker": 50.8, "identity_acc_adaptive": 50.8},
        "aae": {"activity_f1": 93.1, "identity_acc_raw_attacker": 6.2, "identity_acc_adaptive": 21.5, "mse": 0.4},
    },
    "subject": {"kind": "onnx", "precision": "int8", "path": "/home/me/models/m.int8.onnx"},
    "protocol": {"classifier_epochs": 6, "seed": 0, "dtw_band": 16},
}


def test_the_card_gets_the_models_row_with_its_context_and_not_the_workstation_path() -> None:
    summary = summarise(EVALUATION)
    assert summary["activity_f1"] == 93.1 and summary["identity_acc_adaptive"] == 21.5
    assert summary["raw"]["activity_f1"] == 97.4
    assert summary["setting"] == "hapt-walk3" and summary["chance_identity"] == 3.33
    assert summary["measured_on"] == {"kind": "onnx", "precision": "int8", "file": "m.int8.onnx"}
    assert "/home/me" not in json.dumps(summary)


def test_a_metrics_file_measured_on_something_else_is_flagged(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(EVALUATION))
    summary = load_metrics_file(path)
    assert check_measured_on(summary, Path("m.int8.onnx"), "int8") == []
    assert check_measured_on(summary, Path("m.onnx"), "fp32") == [
        "the metrics given for m.onnx (fp32) were measured on the int8 model"]
    run = summarise(EVALUATION | {"subject": {"kind": "run", "path": "runs/x"}})
    assert "measured on a run, not on the file" in check_measured_on(run, Path("m.onnx"), "fp32")[0]


def test_unreadable_or_rowless_metrics_say_what_to_pass(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    path.write_text("{not json")
    with pytest.raises(ExportError, match="pass the metrics.json written by 'imu-anon evaluate'"):
        load_metrics_file(path)
    with pytest.raises(ExportError, match="no 'aae' row"):
        summarise({"methods": {"raw": {}}})


def test_int8_gaps_are_reported_in_points_and_only_beyond_one_point_flagged() -> None:
    fp32 = {"activity_f1": 93.1, "identity_acc_raw_attacker": 6.2, "identity_acc_adaptive": 21.5}
    int8 = {"activity_f1": 91.6, "identity_acc_raw_attacker": 6.9, "identity_acc_adaptive": 21.5}
    gaps = int8_gaps(fp32, int8)
    assert gaps == {"activity_f1": -1.5, "identity_acc_raw_attacker": 0.7, "identity_acc_adaptive": 0.0}
    assert beyond(gaps) == {"activity_f1": -1.5}


def test_differences_are_measured_in_output_units_and_relative_to_the_signal_spread() -> None:
    rng = np.random.default_rng(0)
    reference = (1.0 + rng.normal(0, 0.5, size=(50, 2, 16))).astype(np.float32)
    diff = compare(reference + 0.05, reference)
    assert diff.windows == 50
    assert diff.max_abs == pytest.approx(0.05, abs=1e-6) and diff.mean_abs == pytest.approx(0.05, abs=1e-6)
    assert diff.relative == pytest.approx(0.1, rel=0.05)  # 0.05 against a spread of 0.5
    with pytest.raises(ParityError, match=r"returns \[50, 1, 16\] where PyTorch returns \[50, 2, 16\]"):
        compare(reference[:, :1], reference)
    assert compare(reference * np.nan, reference).max_abs == float("inf")
