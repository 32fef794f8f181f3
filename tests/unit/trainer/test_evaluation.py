"""``imu-anon evaluate`` on the bundled HAPT data with tiny models: an exported ONNX file
(the runtime's loader) and a run directory (the checkpoint's loader)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli
from model_factory import build_model
from trainer.checkpoint import MODEL_FILE, model_record, save_torch
from trainer.config import TrainConfig
from trainer.data import SETTINGS, Standardiser, load_dataset, make_windows
from trainer.evaluation.subjects import load_subject
from trainer.evaluation.tasks import build_tasks, dtw_sample
from trainer.models import build_anonymiser

METHODS = ("raw", "aae", "resample_10hz", "resample_5hz", "ssa_1", "ssa_12", "rep")
REQUIRED = ("activity_f1", "identity_acc_raw_attacker", "identity_acc_adaptive", "identity_acc_adaptive_unseen",
            "identity_acc_adaptive_cross_session", "mse")
PERCENT_SUFFIXES = ("_f1", "_acc", "_attacker", "_adaptive", "_unseen", "_session", "_classifier", "_top1", "_pct")


def tiny_run(run_dir: Path) -> Path:
    """A run directory as 'imu-anon train' leaves it, holding an untrained lean anonymiser."""
    config = TrainConfig(arch="lean", max_windows=3000)
    torch.manual_seed(0)
    model = build_anonymiser("lean", 2, 128)
    standardiser = Standardiser(mean=np.array([1.0, 0.6], np.float32), std=np.array([0.35, 0.7], np.float32))
    run_dir.mkdir(parents=True)
    save_torch(run_dir / MODEL_FILE, model_record(model, config, standardiser, rate_hz=50.0,
                                                  split="subject:test=[2,4,9,10,12,13]",
                                                  class_names=("walking", "upstairs", "downstairs"),
                                                  train_users=(1, 3)))
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    return run_dir


def test_tasks_hold_out_the_right_users_and_never_share_a_sample_between_train_and_test(hapt_path: Path) -> None:
    setting = SETTINGS["hapt-walk3"]
    ws = make_windows(load_dataset("hapt", hapt_path), setting, 128, 32)
    tasks = build_tasks(ws, setting, seed=0)
    assert set(tasks) == {"activity", "identity_time", "identity_time_unseen", "identity_cross_session",
                          "identity_cross_session_unseen"}
    assert set(ws.user[tasks["activity"].test]) == set(setting.test_users)
    assert not set(ws.user[tasks["activity"].train]) & set(setting.test_users)
    for name in ("identity_time_unseen", "identity_cross_session_unseen"):
        t = tasks[name]
        assert set(ws.user[t.train]) == set(ws.user[t.test]) == set(setting.test_users)
        assert t.chance == pytest.approx(100 / 6)
    time = tasks["identity_time"]
    assert len(time.codec) == 30
    for seg in np.unique(ws.segment[time.test]):
        train_starts = ws.start[time.train][ws.segment[time.train] == seg]
        test_starts = ws.start[time.test][ws.segment[time.test] == seg]
        if train_starts.size:  # every test window begins after the last training window ends
            assert test_starts.min() >= train_starts.max() + 128
    cross = tasks["identity_cross_session"]
    for user in ws.users:
        assert not set(ws.session[cross.train][ws.user[cross.train] == user]) & set(
            ws.session[cross.test][ws.user[cross.test] == user])
    queries, refs = dtw_sample(ws, time, 2, 3, seed=0)
    assert np.isin(queries, time.test).all() and np.isin(refs, time.train).all()
    assert np.bincount(ws.user[refs]).max() == 3 and len(np.unique(ws.user[queries])) == 30


@pytest.mark.slow
def test_evaluating_an_onnx_file_writes_every_metric_in_range_a_table_and_plots(tmp_path: Path) -> None:
    aae = build_model(tmp_path / "aae.onnx")  # a fixed smoothing convolution: mild distortion
    rep = build_model(tmp_path / "rep.onnx")
    out = tmp_path / "eval"
    proc = run_cli("evaluate", str(aae), "--quick", "--epochs", "1", "--rep", str(rep), "--max-windows", "2000",
                   "--out", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "assumed setting 'hapt-walk3'" in proc.stderr

    m = json.loads((out / "metrics.json").read_text())
    assert (m["dataset"], m["setting"], m["n_users"], m["n_users_unseen"]) == ("hapt", "hapt-walk3", 30, 6)
    assert m["chance_identity"] == pytest.approx(3.33) and m["chance_identity_unseen"] == pytest.approx(16.67)
    assert tuple(m["methods"]) == METHODS
    for name, row in m["methods"].items():
        for key in REQUIRED:
            assert key in row, (name, key)
        for key, value in row.items():
            if key.endswith(PERCENT_SUFFIXES):
                assert 0.0 <= value <= 100.0, (name, key, value)
        assert 1.0 <= row["dtw_rank"] <= 30.0
    raw, smooth = m["methods"]["raw"], m["methods"]["aae"]
    assert raw["mse"] == 0.0 and raw["negative_magnitude_pct"] == 0.0
    # the paper's attacker on raw data is the adaptive one: the same classifier, the same figure
    assert raw["identity_acc_raw_attacker"] == raw["identity_acc_adaptive"]
    # light smoothing distorts less than throwing away everything above 2.5 Hz
    assert 0.0 < smooth["mse"] < m["methods"]["resample_5hz"]["mse"]
    assert m["targets"]["aae_on_pareto_front"]["met"] in (True, False)

    readme = (out / "README.md").read_text()
    assert f"imu-anon evaluate {aae} --out {out} --quick --epochs 1 --rep {rep} --max-windows 2000" in readme
    assert "Identity, paper's attacker (chance 3.3)" in readme
    for png in ("windows.png", "spectrograms.png", "privacy_utility.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert f"]({png})" in readme
    assert proc.stdout.splitlines()[0].split()[:3] == ["method", "act", "F1"]
    assert any(line.startswith("chance") for line in proc.stdout.splitlines())


@pytest.mark.slow
def test_evaluating_a_run_directory_copies_metrics_into_the_run(tmp_path: Path) -> None:
    run = tiny_run(tmp_path / "run")
    proc = run_cli("evaluate", str(run), "--quick", "--epochs", "1", "--methods", "aae", "--max-windows", "1500",
                   "--no-plots", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    written = json.loads((run / "evaluation" / "metrics.json").read_text())
    assert json.loads((run / "metrics.json").read_text()) == written
    assert tuple(written["methods"]) == ("raw", "aae")
    assert written["subject"]["kind"] == "run" and written["subject"]["arch"] == "lean"
    # the report says how the model was trained, as a file 'imu-anon train --config' reads back
    toml = run / "evaluation" / "train.toml"
    assert TrainConfig.from_toml(toml) == TrainConfig(arch="lean", max_windows=3000)
    readme = (run / "evaluation" / "README.md").read_text()
    assert f"imu-anon train --config {run / 'evaluation'}/train.toml --out {run}" in readme


def test_a_run_directory_and_an_onnx_file_look_alike_to_the_protocol(tmp_path: Path) -> None:
    run = load_subject(tiny_run(tmp_path / "run"))
    onnx = load_subject(build_model(tmp_path / "m.onnx", acc_units="m/s^2"), setting="hapt-6")
    raw = np.zeros((3, 6, 128), np.float32)
    raw[:, 2] = 1.0  # 1 g on z, the phone lying still
    for subject in (run, onnx):
        assert subject.anonymise(raw).shape == (3, 2, 128)
        assert subject.channel_mode == "mag" and subject.window == 128
    assert (run.kind, run.setting, onnx.kind, onnx.setting) == ("run", "hapt-walk3", "onnx", "hapt-6")
    # the file takes m/s^2: the adapter converts the evaluator's g, so the still phone stays near 1 g
    assert np.allclose(onnx.anonymise(raw)[:, 0, 10:-10], 1.0, atol=0.05)


@pytest.mark.parametrize("args, message", [
    (["does/not/exist"], "no such run directory or model file"),
    (["pyproject.toml"], "neither a run directory nor an .onnx file"),
])
def test_evaluate_says_what_to_pass_when_the_model_is_wrong(args: list[str], message: str) -> None:
    proc = run_cli("evaluate", *args, timeout=120)
    assert proc.returncode == 1
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_refuses_to_guess_a_rep_model_for_a_file_without_training_config(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m.onnx")
    proc = run_cli("evaluate", str(model), "--out", str(tmp_path / "e"), timeout=120)
    assert proc.returncode == 1
    assert "carries no training config to train REP with; pass --rep RUN_DIR" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_rejects_an_unknown_method_and_setting(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m.onnx")
    bad_method = run_cli("evaluate", str(model), "--methods", "blur", timeout=120)
    assert bad_method.returncode == 2 and "invalid choice: 'blur'" in bad_method.stderr
    bad_setting = run_cli("evaluate", str(model), "--setting", "hapt-99", "--quick", timeout=120)
    assert bad_setting.returncode == 1 and "unknown setting 'hapt-99'" in bad_setting.stderr


def test_evaluate_rejects_an_out_of_range_budget_in_one_line(tmp_path: Path) -> None:
    model = build_model(tmp_path / "m.onnx")
    proc = run_cli("evaluate", str(model), "--quick", "--epochs", "0", timeout=120)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "imu-anon evaluate: error: classifier epochs must be an integer >= 1, got 0")
