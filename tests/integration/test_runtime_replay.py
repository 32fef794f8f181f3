"""`imu-anon replay` and `imu-anon inspect` as a user runs them, on the bundled recording."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli
from model_factory import build_model, reference_output

from edge_runtime.windowing import sliding_windows
from firmware_bridge.recordings import load_csv, save_csv

pytestmark = pytest.mark.integration
W, HOP = 128, 64
SAMPLE = Path(__file__).resolve().parents[2] / "data" / "samples" / "hapt-user09.csv"


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return build_model(tmp_path / "anon.onnx")


def test_the_bundled_recording_replays_to_json_lines_with_the_models_numbers(tmp_path: Path, model: Path) -> None:
    out = tmp_path / "out.jsonl"
    result = run_cli("replay", str(SAMPLE), "--model", str(model), "--speed", "max", "--sink", f"file:{out}",
                     "--privacy-secret-file", str(tmp_path / "key"), timeout=120)
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    recording = load_csv(SAMPLE)
    assert len(recording) == 16244 and len(rows) == (16244 - W) // HOP + 1 == 252
    for key in ("stream", "t0", "rate_hz", "channels", "values"):
        assert key in rows[0]
    assert rows[0]["channels"] == ["acc_mag", "gyro_mag"] and rows[0]["rate_hz"] == 50.0
    assert [r["t0"] for r in rows[:3]] == pytest.approx([0.0, 1.28, 2.56])
    expected = reference_output(np.ascontiguousarray(sliding_windows(recording.samples, W, HOP)))
    np.testing.assert_allclose(np.array([r["values"] for r in rows]), expected, atol=2e-5)
    summary = result.stdout
    assert "windows 252, messages 252, streams 1" in summary and "latency  p50" in summary and "p99" in summary
    assert "samples not in any window 52" in summary


def test_the_json_summary_reports_latency_percentiles(tmp_path: Path, model: Path) -> None:
    result = run_cli("replay", f"npz:data/hapt.npz?user=9", "--model", str(model), "--json",
                     "--privacy-secret-file", str(tmp_path / "key"), timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["windows"] == report["messages"] == (16244 - W) // HOP + 1
    assert 0 < report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]
    assert 0 < report["inference_ms"]["p50"] <= report["inference_ms"]["p99"]


def test_speed_paces_a_recording_by_its_own_clock(tmp_path: Path, model: Path) -> None:
    rec = load_csv(SAMPLE)
    short = save_csv(type(rec)(name="ten-s", t=rec.t[:500], samples=rec.samples[:500], rate_hz=50.0),
                     tmp_path / "s.csv")
    began = time.monotonic()
    result = run_cli("replay", str(short), "--model", str(model), "--speed", "5", "--json",
                     "--privacy-secret-file", str(tmp_path / "key"), timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["elapsed_s"] >= 10.0 / 5 * 0.95
    assert time.monotonic() - began < 30


def test_a_frame_capture_replays_like_a_recording(tmp_path: Path, model: Path) -> None:
    from runtime_helpers import frames_for, signal

    from firmware_bridge.recordings import save_frames

    capture = save_frames(frames_for(signal(640, seed=1), 0xABCDEF) + frames_for(signal(640, seed=2), 0x123456),
                          tmp_path / "two.imuf")
    result = run_cli("replay", str(capture), "--model", str(model), "--json",
                     "--privacy-secret-file", str(tmp_path / "key"), timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["streams"] == 2 and report["windows"] == 2 * ((640 - W) // HOP + 1)
    assert report["counters"]["frames_ok"] > 0 and report["counters"].get("frames_corrupt", 0) == 0


def test_a_bad_speed_or_missing_file_is_one_line_and_exit_1(tmp_path: Path, model: Path) -> None:
    result = run_cli("replay", str(SAMPLE), "--model", str(model), "--speed", "warp", timeout=60)
    assert result.returncode == 1 and "speed must be a positive number or 'max'" in result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("replay", str(tmp_path / "none.csv"), "--model", str(model),
                     "--privacy-secret-file", str(tmp_path / "key"), timeout=60)
    assert result.returncode == 1 and "none.csv: cannot read" in result.stderr and "Traceback" not in result.stderr


def test_inspect_prints_the_card_and_the_signature(model: Path) -> None:
    result = run_cli("inspect", str(model), timeout=60)
    assert result.returncode == 0, result.stderr
    assert "window            128" in result.stdout and "activity_f1       91.5" in result.stdout
    assert "input  imu         tensor(float) [N, 6, 128]" in result.stdout
    assert "output anonymised  tensor(float) [N, 2, 128]" in result.stdout
    info = json.loads(run_cli("inspect", str(model), "--json", timeout=60).stdout)
    assert info["card"]["hop"] == 64 and info["inputs"][0]["shape"] == ["N", 6, 128] and len(info["sha256"]) == 64


def test_inspect_refuses_a_broken_file_in_one_line(tmp_path: Path, model: Path) -> None:
    model.write_bytes(model.read_bytes()[:-10])
    result = run_cli("inspect", str(model), timeout=60)
    assert result.returncode == 1 and "does not match" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_reports_configuration_mistakes_in_one_line(tmp_path: Path, model: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[model]\npath = "{model}"\n[pipeline]\nsources = ["loop:x"]\n[streams]\nsilence = 3\n')
    result = run_cli("run", "--config", str(config), timeout=60)
    assert result.returncode == 1 and "unknown key streams.silence (did you mean 'silence_s'?)" in result.stderr
    result = run_cli("run", "--model", str(model), "--source", "bogus://x", "--privacy-secret-file",
                     str(tmp_path / "key"), timeout=60)
    assert result.returncode == 1 and "unknown source 'bogus://x'; known:" in result.stderr
