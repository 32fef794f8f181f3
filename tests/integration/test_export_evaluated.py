"""Export with evaluation: each file's card carries the metrics measured on that very file."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import run_cli
from export.writer import read_card
from export_support import tiny_run_dir

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_both_files_are_evaluated_themselves_and_int8_is_held_against_fp32(tmp_path: Path, tmp_path_factory) -> None:
    run_dir = tiny_run_dir(tmp_path_factory)
    out = tmp_path / "m.onnx"
    proc = run_cli("export", str(run_dir), "--out", str(out), "--int8", "--quick-evaluation",
                   "--evaluation-windows", "1000", "--parity-windows", "1000", "--no-timing",
                   "--json", str(tmp_path / "summary.json"), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fp32, int8 = read_card(out), read_card(tmp_path / "m.int8.onnx")
    for card, name in ((fp32, "m.onnx"), (int8, "m.int8.onnx")):
        assert card.metrics["measured_on"] == {"kind": "onnx", "precision": card.precision, "file": name}
        assert 0 <= card.metrics["activity_f1"] <= 100
        assert 0 <= card.metrics["identity_acc_adaptive"] <= 100
        assert card.metrics["setting"] == "hapt-walk3" and card.metrics["chance_identity"] == pytest.approx(3.33)
    gaps = int8.metrics["vs_fp32_points"]
    assert gaps["activity_f1"] == pytest.approx(int8.metrics["activity_f1"] - fp32.metrics["activity_f1"], abs=0.011)
    assert re.search(r"int8 is (NOT )?within 1 point of fp32", proc.stdout), proc.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["int8_gaps_points"] == gaps
    assert f"fp32 evaluation: activity_f1 {fp32.metrics['activity_f1']}" in proc.stdout
