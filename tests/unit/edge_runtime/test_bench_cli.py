"""``imu-anon bench`` end to end on a tiny model: the JSON keys, the table, the errors.

Functional only: figures on a shared test machine mean nothing, so no timing is asserted
beyond "positive and finite".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import run_cli
from model_factory import build_model

QUICK = ["--quick", "--sink", "null", "--max-wearables", "6", "--step-s", "4", "--capacity-time-s", "20",
         "--skip", "torch"]


def _positive(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str]:
    folder = tmp_path_factory.mktemp("bench")
    model = build_model(folder / "tiny.onnx", hop=10)
    build_model(folder / "tiny.int8.onnx", hop=10, precision="int8")
    out = folder / "result.json"
    done = run_cli("bench", "--model", str(model), "--json", str(out), *QUICK, timeout=240)
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def test_json_holds_every_figure_the_issue_asks_for(bench_run: tuple[dict, str]) -> None:
    result, _ = bench_run
    assert _positive(result["peak_gflops"])
    for variant in ("fp32", "int8"):
        v = result[variant]
        assert isinstance(v["flops_per_window"], int) and v["flops_per_window"] > 0
        assert set(v["latency_ms"]) >= {"p50", "p95", "p99"}
        assert all(_positive(v["latency_ms"][k]) for k in ("p50", "p95", "p99"))
        assert v["latency_ms"]["p50"] <= v["latency_ms"]["p99"]
        assert set(v["throughput_wps"]) == {"1", "8", "32", "128"}
        assert all(_positive(x) for x in v["throughput_wps"].values())
        assert _positive(v["fraction_of_peak"])
        assert sum(v["op_share"].values()) == pytest.approx(1.0, abs=0.01)
    assert result["int8"]["precision"] == "int8"
    cap = result["capacity"]
    assert isinstance(cap["wearables_per_core"], int) and 0 <= cap["wearables_per_core"] <= 6
    assert isinstance(cap["drops"], int)
    assert cap["p99_latency_ms"] is None or cap["p99_latency_ms"] >= 0
    assert set(cap["stage_share"]) >= {"decode", "window", "infer", "encode", "publish"}
    assert cap["steps"] and all(isinstance(s["ok"], bool) for s in cap["steps"])
    assert _positive(result["rss_mb"]) and _positive(result["cold_start_s"])
    assert _positive(result["footprint"]["cold_start_uncached_s"])  # beside it: no bytecode caches at all
    assert result["footprint"]["torch_loaded"] is False and result["footprint"]["heavy_modules"] == []
    assert {"numpy", "onnxruntime", "edge_runtime"} <= set(result["footprint"]["packages"])
    device = result["device"]
    assert device["onnxruntime"] and device["execution_provider"] == "CPUExecutionProvider"
    assert device["intra_op_threads"] == 1 and device["pinned_cpu"] in device["allowed_cpus"]
    assert result["skipped"]["torch"] == "--skip torch"
    assert "ESTIMATE" in result["estimates"]["note"]


def test_table_prints_latency_throughput_capacity_and_footprint(bench_run: tuple[dict, str]) -> None:
    result, table = bench_run
    assert "p50 ms" in table and "b128 w/s" in table and "% peak" in table
    assert any(line.startswith("fp32") for line in table.splitlines())
    assert any(line.startswith("int8") for line in table.splitlines())
    assert f"{result['capacity']['wearables_per_core']} wearables/core" in table
    assert "time by stage: decode" in table
    assert "heavy imports: none" in table and "without bytecode caches" in table
    assert "Raspberry Pi ESTIMATE" in table


def test_a_missing_model_is_one_line_saying_what_to_pass(tmp_path: Path) -> None:
    done = run_cli("bench", "--model", str(tmp_path / "none.onnx"), "--quick", timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "no such model file" in done.stderr and "Traceback" not in done.stderr


def test_an_unknown_part_to_skip_lists_the_known_ones(tmp_path: Path) -> None:
    model = build_model(tmp_path / "tiny.onnx", hop=10)
    done = run_cli("bench", "--model", str(model), "--skip", "gpu", timeout=60)
    assert done.returncode == 1
    assert "unknown part(s) ['gpu']" in done.stderr and "capacity" in done.stderr


def test_a_core_this_process_may_not_use_is_refused(tmp_path: Path) -> None:
    model = build_model(tmp_path / "tiny.onnx", hop=10)
    done = run_cli("bench", "--model", str(model), "--cpu", "4096", "--skip", "capacity,footprint", timeout=60)
    assert done.returncode == 1
    assert "--cpu 4096 is not available" in done.stderr
