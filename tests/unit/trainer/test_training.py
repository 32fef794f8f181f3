"""Training smoke test on tiny synthetic data: the losses move the right way and the run
directory holds a usable anonymiser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from synthetic_hapt import write_synthetic_hapt
from trainer.checkpoint import load_run
from trainer.config import TrainConfig
from trainer.training import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smoke")
    data = write_synthetic_hapt(folder / "synthetic.npz", seconds=8)
    config = TrainConfig(data_path=str(data), arch="lean", window=32, hop=8, pretrain_epochs=3, reg_epochs=3,
                         aae_epochs=3, rounds=2, batch_size=32, val_fraction=0.2, seed=0, epoch_fraction=1.0)
    run = train(config, folder / "run", progress=False, threads=1)
    return run, folder / "run", data


def test_pretraining_lowers_the_reconstruction_error(trained) -> None:
    run, _, _ = trained
    mse = [e["mse"] for e in run.history["pretrain"]]
    assert len(mse) == 3 and mse[-1] < 0.6 * mse[0]


def test_each_aae_round_lowers_its_loss_and_the_identity_term_against_frozen_regularisers(trained) -> None:
    run, _, _ = trained
    for epochs in run.history["rounds"]:
        assert epochs[-1]["loss"] < epochs[0]["loss"]
        assert epochs[-1]["li_dec"] < epochs[0]["li_dec"]


def test_anonymising_removes_identity_for_raw_and_retrained_attackers_and_keeps_activity(trained) -> None:
    run, _, _ = trained
    h = run.history
    states = {s["round"]: s for s in h["states"]}
    before, kept = states[0], states[h["best_round"]]
    assert h["raw"]["identity_acc"] > 0.6  # the synthetic users are easy to tell apart
    assert before["raw_attacker_identity_acc"] > 0.6
    assert kept["raw_attacker_identity_acc"] < 0.5 * before["raw_attacker_identity_acc"]
    assert kept["identity_acc"] < before["identity_acc"] - 0.1
    assert kept["activity_acc"] >= 0.9


def test_training_stops_early_once_a_fresh_probe_is_near_chance_and_activity_holds(trained) -> None:
    run, _, _ = trained
    h = run.history
    last = h["states"][-1]
    assert h["stopped"] == f"converged after round {last['round']}" and last["round"] < 2
    assert last["identity_acc"] <= 2 * h["raw"]["chance"]
    assert last["activity_acc"] >= h["raw"]["activity_acc"] - 0.02


def test_the_run_directory_holds_config_history_and_a_loadable_model(trained) -> None:
    run, out, data = trained
    for name in ("config.json", "history.json", "model.pt", "checkpoint.pt"):
        assert (out / name).is_file(), name
    assert json.loads((out / "config.json").read_text())["data_path"] == str(data)
    loaded = load_run(out)
    assert loaded.arch == "lean" and loaded.channel_mode == "mag" and loaded.window == 32 and loaded.hop == 8
    assert loaded.rate_hz == 50.0 and loaded.setting == "hapt-walk3"
    assert loaded.split == "subject:test=[2,4,9,10,12,13]"
    assert 2 not in loaded.train_users and set(loaded.train_users) == {1, 3, 5, 6, 7}
    assert loaded.metrics is None


def test_anonymise_maps_raw_windows_to_physical_units_deterministically(trained) -> None:
    _, out, data = trained
    run = load_run(out)
    with np.load(data) as d:
        raw = np.stack([d["signals"][i:i + 32].T for i in range(0, 3200, 32)])
    a, b = run.anonymise(raw), run.anonymise(raw)
    assert a.shape == (100, 2, 32) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    # physical units: the output magnitudes sit near the training mean, not near 0
    assert abs(float(a[:, 0].mean()) - float(run.standardiser.mean[0])) < 3 * float(run.standardiser.std[0])
    assert run.encode(raw).shape == (100, 2, 8)


def test_the_rep_variant_trains_without_output_regularisers(tmp_path: Path) -> None:
    data = write_synthetic_hapt(tmp_path / "s.npz", seconds=8)
    config = TrainConfig(data_path=str(data), arch="lean", variant="rep", window=32, hop=16, pretrain_epochs=1,
                         reg_epochs=1, aae_epochs=1, rounds=1, batch_size=32, val_fraction=0.2)
    run = train(config, tmp_path / "rep", progress=False, threads=1)
    terms = run.history["rounds"][0][0]
    assert "li_enc" in terms and "li_dec" not in terms and "ce_act" not in terms
