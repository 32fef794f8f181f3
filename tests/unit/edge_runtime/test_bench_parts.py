"""The bench's parts on their own: timing arithmetic, the search, the fleet, the report."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from edge_runtime.benchmark import report
from edge_runtime.benchmark.capacity import CapacityError, CapacitySettings
from edge_runtime.benchmark.device import cpu_flags, describe
from edge_runtime.benchmark.fleet import Fleet, FleetSource, expected_windows
from edge_runtime.benchmark.inference import variant_paths
from edge_runtime.benchmark.peak import run_peak
from edge_runtime.benchmark.timing import TimingPlan, measure, percentiles_ms, time_calls, with_flops
from edge_runtime.decode import Decoders, Received
from edge_runtime.metrics import Metrics
from edge_runtime.sources import Inbox
from edge_runtime.streams import StreamSettings, StreamTable


def test_percentiles_are_reported_in_milliseconds() -> None:
    seconds = np.arange(1, 101, dtype=np.float64) / 1000.0  # 1..100 ms
    p = percentiles_ms(seconds)
    assert p["p50"] == pytest.approx(50.5)
    assert p["p99"] == pytest.approx(99.01)
    assert p["mean"] == pytest.approx(50.5)
    assert math.isnan(percentiles_ms(np.zeros(0))["p50"])


def test_timing_loops_stop_at_their_time_limit_after_the_minimum_calls() -> None:
    calls = []
    started = time.perf_counter()
    times = time_calls(lambda: calls.append(1), 0.05, min_calls=3, warmup=2)
    assert time.perf_counter() - started < 2.0
    assert times.size >= 3 and len(calls) == times.size + 2
    slow = time_calls(lambda: time.sleep(0.02), 0.001, min_calls=4, warmup=0)
    assert slow.size == 4  # the minimum wins over a deadline already passed


def test_throughput_counts_every_window_of_a_batch() -> None:
    def model(x: np.ndarray) -> np.ndarray:
        time.sleep(0.002)  # a fixed cost per call whatever the batch
        return x

    plan = TimingPlan(warmup_calls=1, latency_s=0.02, throughput_s=0.05, min_calls=3, batches=(1, 8))
    out = measure(model, lambda b: np.zeros((b, 6, 4), np.float32), plan)
    wps = out["throughput_wps"]
    assert set(wps) == {"1", "8"}
    assert wps["8"] > 4 * wps["1"]  # eight windows per ~2 ms call against one
    assert out["latency_ms"]["p50"] >= 2.0


def test_fraction_of_peak_is_achieved_gflops_over_the_measured_peak() -> None:
    result = {"throughput_wps": {"1": 500.0, "8": 800.0}, "latency_ms": {}}
    out = with_flops(result, 50_000_000, peak_gflops=80.0)
    assert out["best_batch"] == 8
    assert out["gflops"] == pytest.approx(40.0)
    assert out["fraction_of_peak"] == pytest.approx(0.5)
    assert out["gflops_by_batch"] == {"1": 25.0, "8": 40.0}


def test_capacity_settings_refuse_steps_too_short_for_one_window() -> None:
    with pytest.raises(CapacityError, match="at least 4 s"):
        CapacitySettings(step_s=2.0)
    with pytest.raises(CapacityError, match="payload format"):
        CapacitySettings(payload_format="xml")


def test_expected_windows_follow_the_window_and_hop() -> None:
    assert expected_windows(600, 128, 10) == 48
    assert expected_windows(127, 128, 10) == 0


def test_fleet_frames_decode_into_the_samples_the_wearables_sent() -> None:
    fleet = Fleet(duration_s=4.0)
    wearables = fleet.wearables(3)
    assert len({w.device_id for w in wearables}) == 3
    assert all(np.all(np.diff(w.t_dev) >= 0) for w in wearables)
    metrics = Metrics()
    decoders = Decoders(metrics, pseudonym=lambda d: "s-" + d[-4:])
    streams = StreamTable(128, 10, 50.0, StreamSettings(), metrics, pseudonym=lambda d: "s-" + d[-4:])
    windows = []
    for i, w in enumerate(wearables):
        for frame in w.frames:
            for block in decoders.decode(Received(f"t:{i}", frame, "frames")):
                windows += streams.push(block)
    assert sum(w.samples for w in wearables) == 3 * 200
    assert len(windows) == 3 * expected_windows(200, 128, 10)
    assert metrics.snapshot().get("samples_in") == 600


def test_fleet_source_hands_over_every_frame_in_due_order() -> None:
    wearables = Fleet(duration_s=1.0).wearables(2)
    source = FleetSource(wearables, frame_period_s=0.2, lead_s=0.0)
    assert source.schedule_s < 1.2
    inbox = Inbox(10_000, Metrics())
    # The schedule is real time (1 s); the source runs in its own thread and ends on its own.
    with source:
        source.start(inbox)
        deadline = time.monotonic() + 15
        while not source.done and time.monotonic() < deadline:
            time.sleep(0.05)
    assert source.done
    got = []
    while (item := inbox.get(0)) is not None:
        got.append(item)
    assert len(got) == source.offered == sum(len(w.frames) for w in wearables)
    assert [g.at for g in got] == sorted(g.at for g in got)


def test_pi_estimates_scale_the_measured_fraction_to_the_pi_peak() -> None:
    result = {"fp32": {"fraction_of_peak": 0.5, "flops_per_window": 50_000_000}, "peak_gflops": 96.0,
              "capacity": {"wearables_per_core": 160}}
    est = report.pi_estimates(result)
    pi4 = est["raspberry_pi_4"]
    assert pi4["windows_per_s"] == [120.0, 144.0]  # 12-14.4 GFLOP/s x 0.5 / 50 MFLOP
    assert pi4["wearables_per_core"] == [20, 24]  # 160 x 12/96 and 160 x 14.4/96
    # Without the capacity the inference ceiling alone: 120-144 windows/s over 5 windows/s a wearable.
    del result["capacity"]
    assert report.pi_estimates(result)["raspberry_pi_4"]["wearables_per_core"] == [24, 28]
    assert "ESTIMATE" in est["note"]
    assert report.pi_estimates({}) == {}


def _result() -> dict:
    variant = {"latency_ms": {"p50": 1.2, "p95": 1.5, "p99": 2.0, "mean": 1.3}, "throughput_wps": {"1": 800.0, "8": 820.0},
               "flops_per_window": 54_000_000, "gflops": 44.3, "fraction_of_peak": 0.5, "op_share": {"Conv": 0.6}}
    return {
        "quick": True, "created": "2026-11-23T10:00:00Z", "peak_gflops": 88.0, "peak": {"best_size": 512},
        "device": {"cpu_model": "Test CPU", "machine": "x86_64", "cpu_flags": {"avx2": True}, "pinned_cpu": 1, "allowed_cpus": [0, 1],
                   "load_average": [0.1, 0.1, 0.1], "onnxruntime": "1.0", "execution_provider": "CPUExecutionProvider",
                   "intra_op_threads": 1, "spinning": False, "graph_optimisation": "ORT_ENABLE_ALL"},
        "model": {"path": "m.onnx", "arch": "paper", "precision": "fp32", "flops_per_window": 54_000_000, "window": 128, "hop": 10,
                  "sample_rate_hz": 50.0},
        "fp32": variant, "skipped": {"torch": "not installed"},
        "capacity": {"wearables_per_core": 150, "p99_latency_ms": 40.0, "drops": 0, "budget_ms": 100.0, "sink": "null",
                     "stage_share": {"decode": 0.02, "infer": 0.95}, "overhead_share": 0.05, "steps": [
                         {"wearables": 150, "offered_windows_per_s": 750.0, "p99_latency_ms": 40.0, "drops": 0,
                          "cpu_share": 0.97, "ok": True, "why": "", "stage_us_per_window": {"infer": 1200.0}}]},
        "rss_mb": 60.5, "cold_start_s": 0.2,
        "footprint": {"heavy_modules": [], "modules_loaded": 300, "torch_loaded": False},
        "estimates": {"raspberry_pi_4": {"core": "A72", "peak_gflops": [12.0, 14.4], "windows_per_s": [100.0, 120.0],
                                         "wearables_per_core": [19, 22]}},
    }


def test_table_shows_every_figure_a_gateway_owner_sizes_with() -> None:
    text = report.format_table(_result())
    for needle in ("paper, 54 MFLOP/window", "88.0 GFLOP/s", "fp32", "820", "50.0", "150 wearables/core",
                   "p99 sample-to-publish 40.0 ms", "drops 0", "peak RSS 60.5 MB", "heavy imports: none",
                   "skipped torch: not installed", "ESTIMATE", "~19-22 wearables/core", "Conv 60%"):
        assert needle in text, needle


def test_table_marks_a_size_run_again_to_confirm_its_failure() -> None:
    result = _result()
    first = {**result["capacity"]["steps"][0], "ok": False, "why": "p99 130 ms over the 100 ms budget", "retry": 0}
    again = {**result["capacity"]["steps"][0], "retry": 1}
    result["capacity"]["steps"] = [first, again]
    lines = [line for line in report.format_table(result).splitlines() if "750 windows/s" in line]
    assert len(lines) == 2
    assert "150 wearables:" in lines[0] and "fails (p99 130 ms" in lines[0]
    assert "150 wearables, run again:" in lines[1] and lines[1].endswith("-> ok")


def test_json_is_written_atomically_with_nan_as_null(tmp_path: Path) -> None:
    path = report.write_json({"a": math.nan, "b": [1.0, math.inf], "c": {"d": 2}}, tmp_path / "sub" / "r.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    assert not list(path.parent.glob("*.tmp"))


def test_an_int8_sibling_beside_the_model_is_measured_too(tmp_path: Path) -> None:
    fp32 = tmp_path / "m.onnx"
    assert variant_paths(fp32, "fp32") == {"fp32": fp32}
    (tmp_path / "m.int8.onnx").write_bytes(b"x")
    assert variant_paths(fp32, "fp32") == {"fp32": fp32, "int8": tmp_path / "m.int8.onnx"}
    assert variant_paths(tmp_path / "m.int8.onnx", "int8") == {"int8": tmp_path / "m.int8.onnx"}


def test_device_section_names_the_simd_flags_and_the_runtime() -> None:
    info = describe(cpu=None, threads=1)
    assert info["onnxruntime"] and "CPUExecutionProvider" in info["available_providers"]
    assert info["execution_provider"] == "CPUExecutionProvider" and info["spinning"] is False
    flags = cpu_flags()
    assert all(isinstance(v, bool) for v in flags.values())
    assert ("avx2" in flags) or ("asimd" in flags) or flags == {}


def test_peak_is_measured_in_a_single_threaded_subprocess() -> None:
    peak = run_peak(cpu=None, quick=True)
    assert peak["peak_gflops"] > 0 and peak["blas_threads"] == 1
    assert set(peak["gflops_by_size"]) == {"256", "512"}


def _summarise():
    import importlib.util

    script = Path(__file__).resolve().parents[3] / "bench" / "summarise.py"
    spec = importlib.util.spec_from_file_location("bench_summarise", script)
    summarise = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(summarise)
    return summarise


def test_readme_summary_tables_and_targets_come_from_the_results(tmp_path: Path) -> None:
    path = report.write_json(_result(), tmp_path / "paper-test.json")
    text = _summarise().render([path])
    assert "| paper-test (quick) | paper | 54.0 | 88.0 | 1.20 / 2.00 | 800 / 820 | 50.0 % |" in text
    assert "150 (40.0, 0)" in text and "| 60.5 | 0.20 |" in text
    assert ("- paper-test: fp32 >= 45 % of peak yes, >= 150 wearables (150) yes, 0 drops yes, overhead <= 7 % yes"
            in text)
    assert "ESTIMATES, not measurements" in text and "~100-120" in text
    assert "re-run" not in text  # a result without re-runs (or from before them) says nothing about them


def test_the_summary_says_how_many_failing_sizes_were_run_again(tmp_path: Path) -> None:
    result = _result()
    result["capacity"]["retried_sizes"] = 2
    text = _summarise().render([report.write_json(result, tmp_path / "paper-test.json")])
    assert "150 (40.0, 0), 2 failing size(s) re-run |" in text


def test_a_lean_model_is_held_to_500_wearables_and_3x_the_papers_speed_when_the_paper_was_measured() -> None:
    paper, lean = _result(), _result()
    lean["model"]["arch"] = "lean-wide"
    lean["capacity"]["wearables_per_core"] = 320
    lean["fp32"] = dict(lean["fp32"], throughput_wps={"1": 2000.0, "8": 2600.0})
    alone = _summarise().targets([("lean", lean)])
    assert ">= 500 wearables (320) **no**" in alone[0] and "paper's" not in alone[0]
    both = _summarise().targets([("lean", lean), ("paper", paper)])
    assert "fp32 windows/s >= 3x the paper's (3.2x) yes" in both[0] and ">= 500 wearables (320) **no**" in both[0]
    assert "paper's" not in both[1] and ">= 150 wearables (150) yes" in both[1]
