"""The torch eager reference runs the exported graph with torch's kernels and agrees with it.

It is a subprocess (bench/torch_eager.py) so the runtime's process never imports torch.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from model_factory import build_model, reference_output

from edge_runtime.benchmark.inference import TORCH_SCRIPT, measure_torch, torch_unavailable
from edge_runtime.benchmark.workload import raw_windows
from edge_runtime.card import ModelCard

pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")


@pytest.mark.parametrize("mode", ["mag", "axes"])
def test_torch_reference_computes_what_the_model_computes(tmp_path: Path, mode: str) -> None:
    model = build_model(tmp_path / "m.onnx", hop=10, mode=mode)
    done = subprocess.run([sys.executable, str(TORCH_SCRIPT), str(model), "--quick", "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    card = ModelCard.from_metadata({p.key: p.value for p in onnx.load(str(model)).metadata_props})
    expected = reference_output(raw_windows(card, 1), mode)
    np.testing.assert_allclose(np.array(result["output"], dtype=np.float32), expected, rtol=1e-5, atol=1e-5)
    assert set(result["throughput_wps"]) == {"1", "8", "32", "128"}
    assert result["threads"] == 1


def test_torch_reference_reports_flops_and_fraction_of_peak(tmp_path: Path) -> None:
    assert torch_unavailable() is None
    model = build_model(tmp_path / "m.onnx", hop=10)
    out = measure_torch(model, cpu=None, quick=True, peak_gflops=50.0, flops_per_window=1_000_000)
    assert out["flops_per_window"] == 1_000_000
    assert out["fraction_of_peak"] == pytest.approx(out["gflops"] / 50.0, rel=1e-3)
    assert out["latency_ms"]["p50"] > 0
