"""Checkpoints, resume, refusals of missing / corrupt / clashing runs, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from synthetic_hapt import write_synthetic_hapt
from tests.conftest import run_cli
from trainer.checkpoint import load_run
from trainer.config import QUICK, TrainConfig
from trainer.errors import ConfigError, RunError
from trainer.training import train


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_synthetic_hapt(tmp_path_factory.mktemp("data") / "synthetic.npz", seconds=8)


def _config(data: Path, **over) -> TrainConfig:
    base = dict(data_path=str(data), arch="lean", window=32, hop=16, pretrain_epochs=1, reg_epochs=1,
                aae_epochs=1, rounds=2, batch_size=32, val_fraction=0.2, seed=3)
    return TrainConfig(**{**base, **over})


def test_a_paused_run_resumes_to_exactly_the_weights_of_an_uninterrupted_one(data: Path, tmp_path: Path) -> None:
    config = _config(data)
    whole = train(config, tmp_path / "whole", progress=False, threads=1)
    assert train(config, tmp_path / "paused", progress=False, threads=1, max_phases=3) is None
    assert not (tmp_path / "paused" / "model.pt").exists()
    history = json.loads((tmp_path / "paused" / "history.json").read_text())
    assert history["pretrained"] and history["rounds_done"] == 1
    resumed = train(config, tmp_path / "paused", resume=True, progress=False, threads=1)
    for key, value in whole.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, rtol=0, atol=0)
    assert resumed.history["states"] == whole.history["states"]


def test_an_existing_run_is_never_overwritten_and_resume_needs_the_same_config(data: Path, tmp_path: Path) -> None:
    config = _config(data, rounds=1)
    assert train(config, tmp_path / "run", progress=False, threads=1, max_phases=1) is None
    with pytest.raises(RunError, match="already holds a run .*pass --resume"):
        train(config, tmp_path / "run", progress=False, threads=1)
    with pytest.raises(RunError, match=r"different config .*'seed': \(3, 4\)"):
        train(_config(data, rounds=1, seed=4), tmp_path / "run", resume=True, progress=False, threads=1)
    with pytest.raises(RunError, match="nothing to resume"):
        train(config, tmp_path / "fresh", resume=True, progress=False, threads=1)


def test_load_run_explains_missing_unfinished_and_corrupt_runs(data: Path, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="no such run directory; train one with 'imu-anon train"):
        load_run(tmp_path / "nowhere")
    config = _config(data, rounds=1)
    train(config, tmp_path / "half", progress=False, threads=1, max_phases=1)
    with pytest.raises(RunError, match="training did not finish;.*--resume"):
        load_run(tmp_path / "half")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "model.pt").write_bytes(b"not a torch file")
    with pytest.raises(RunError, match="corrupt or not an imu-anon model"):
        load_run(tmp_path / "bad")
    (tmp_path / "half" / "checkpoint.pt").write_bytes(b"truncated")
    with pytest.raises(RunError, match="corrupt checkpoint"):
        train(config, tmp_path / "half", resume=True, progress=False, threads=1)


def test_config_round_trips_and_rejects_unknown_keys_with_a_suggestion(tmp_path: Path) -> None:
    assert TrainConfig.from_dict(QUICK.to_dict()) == QUICK
    with pytest.raises(ConfigError, match=r"'seeds' \(did you mean 'seed'\?\)"):
        TrainConfig.from_dict({"seeds": 1})
    with pytest.raises(ConfigError, match="arch must be one of"):
        TrainConfig(arch="tiny")
    toml = tmp_path / "train.toml"
    toml.write_text('[train]\narch = "lean"\nrounds = 7\n')
    assert TrainConfig.from_toml(toml, base=QUICK) == TrainConfig.from_dict({"arch": "lean", "rounds": 7}, base=QUICK)


def test_the_train_command_trains_and_prints_a_summary(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = run_cli("train", "--dataset", "hapt", "--data-path", str(data), "--out", str(out), "--arch", "lean",
                     "--window", "32", "--hop", "16", "--epochs", "1", "--rounds", "1", "--no-progress",
                     "--threads", "1", timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"trained {out} (lean, mag, aae)" in result.stdout
    assert json.loads(result.stdout.splitlines()[-1])["chance"] == pytest.approx(0.2)
    assert load_run(out).config.pretrain_epochs == 1


def test_the_train_command_reports_bad_options_in_one_line(tmp_path: Path) -> None:
    result = run_cli("train", "--out", str(tmp_path / "x"), "--window", "30", timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "imu-anon train: error: invalid training config: window must be a multiple of 4 and at least 32, got 30"]
