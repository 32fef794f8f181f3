"""Each loader on small files written here in the data set's own layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from trainer.data import load_dataset
from trainer.errors import DatasetError


def _write_raw(folder: Path, exp: int, user: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    acc, gyro = rng.normal(size=(n, 3)).round(6), rng.normal(size=(n, 3)).round(6)
    np.savetxt(folder / f"acc_exp{exp:02d}_user{user:02d}.txt", acc, fmt="%.6f", delimiter=" ")
    np.savetxt(folder / f"gyro_exp{exp:02d}_user{user:02d}.txt", gyro, fmt="%.6f", delimiter=" ")
    return acc, gyro


def test_uci_hapt_raw_folder_loads_with_inclusive_label_ranges_and_sessions_from_experiments(tmp_path: Path) -> None:
    acc1, gyro1 = _write_raw(tmp_path, exp=1, user=1, n=50, seed=1)
    acc2, gyro2 = _write_raw(tmp_path, exp=2, user=3, n=40, seed=2)
    (tmp_path / "labels.txt").write_text("1 1 5 10 19\n1 1 1 30 44\n2 3 2 0 39\n")
    ds = load_dataset("uci-hapt-raw", tmp_path)
    assert len(ds) == 90 and ds.rate_hz == 50.0
    np.testing.assert_allclose(ds.signals[:50], np.hstack([acc1, gyro1]), atol=1e-6)
    np.testing.assert_allclose(ds.signals[50:], np.hstack([acc2, gyro2]), atol=1e-6)
    assert ds.user.tolist() == [1] * 50 + [3] * 40
    assert ds.session.tolist() == [0] * 50 + [1] * 40
    expected = np.full(50, -1)
    expected[10:20], expected[30:45] = 5, 1
    assert ds.activity[:50].tolist() == expected.tolist()
    assert ds.activity[50:].tolist() == [2] * 40
    assert ds.activity_names[1] == "walking"


def test_uci_hapt_raw_labels_outside_the_recording_are_dropped_not_applied(tmp_path: Path, caplog) -> None:
    _write_raw(tmp_path, exp=1, user=1, n=30, seed=1)
    (tmp_path / "labels.txt").write_text("1 1 1 0 9\n1 1 2 20 99\n1 7 3 0 5\n")
    ds = load_dataset("uci-hapt-raw", tmp_path)
    assert ds.activity.tolist() == [1] * 10 + [-1] * 20
    assert "dropped 2 label rows" in caplog.text


def test_uci_hapt_raw_reports_a_missing_gyro_file_by_name(tmp_path: Path) -> None:
    _write_raw(tmp_path, exp=1, user=1, n=30, seed=1)
    (tmp_path / "gyro_exp01_user01.txt").unlink()
    (tmp_path / "labels.txt").write_text("1 1 1 0 9\n")
    with pytest.raises(DatasetError, match="gyro_exp01_user01.txt: missing"):
        load_dataset("uci-hapt-raw", tmp_path)


def test_uci_hapt_raw_refuses_misaligned_acc_and_gyro_files(tmp_path: Path) -> None:
    _write_raw(tmp_path, exp=1, user=1, n=30, seed=1)
    np.savetxt(tmp_path / "gyro_exp01_user01.txt", np.zeros((29, 3)))
    (tmp_path / "labels.txt").write_text("1 1 1 0 9\n")
    with pytest.raises(DatasetError, match="30 rows but gyro_exp01_user01.txt has 29"):
        load_dataset("uci-hapt-raw", tmp_path)


def test_uci_hapt_raw_needs_labels_and_signal_files(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no acc_expXX_userYY.txt files"):
        load_dataset("uci-hapt-raw", tmp_path)
    _write_raw(tmp_path, exp=1, user=1, n=30, seed=1)
    with pytest.raises(DatasetError, match="labels.txt is missing"):
        load_dataset("uci-hapt-raw", tmp_path)
    with pytest.raises(DatasetError, match="needs --data-path"):
        load_dataset("uci-hapt-raw")


HEADER = (",attitude.roll,attitude.pitch,attitude.yaw,gravity.x,gravity.y,gravity.z,rotationRate.x,"
          "rotationRate.y,rotationRate.z,userAcceleration.x,userAcceleration.y,userAcceleration.z")


def _write_motionsense(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [HEADER] + [f"{i}," + ",".join(f"{v:.6f}" for v in row) for i, row in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")


def test_motionsense_adds_gravity_back_and_labels_activity_and_trial(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = rng.normal(size=(20, 12)).round(6)
    b = rng.normal(size=(15, 12)).round(6)
    _write_motionsense(tmp_path / "wlk_7" / "sub_2.csv", a)
    _write_motionsense(tmp_path / "jog_16" / "sub_1.csv", b)
    ds = load_dataset("motionsense", tmp_path)
    assert len(ds) == 35 and ds.rate_hz == 50.0
    # sorted by subject then trial: sub_1 (jog, trial 16) first
    assert ds.user.tolist() == [1] * 15 + [2] * 20
    assert ds.session.tolist() == [16] * 15 + [7] * 20
    assert ds.activity.tolist() == [4] * 15 + [3] * 20
    np.testing.assert_allclose(ds.signals[15:, :3], a[:, 3:6] + a[:, 9:12], atol=1e-5)
    np.testing.assert_allclose(ds.signals[15:, 3:], a[:, 6:9], atol=1e-6)
    assert ds.activity_names[4] == "jogging"


def test_motionsense_skips_foreign_folders_with_a_warning_and_rejects_a_wrong_header(tmp_path: Path, caplog) -> None:
    _write_motionsense(tmp_path / "ups_3" / "sub_5.csv", np.zeros((10, 12)))
    (tmp_path / "notes").mkdir()
    ds = load_dataset("motionsense", tmp_path)
    assert ds.users == (5,) and "skipped 1 entries" in caplog.text
    bad = tmp_path / "dws_1" / "sub_5.csv"
    bad.parent.mkdir()
    bad.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match="missing columns"):
        load_dataset("motionsense", tmp_path)


def test_the_bundled_hapt_copy_loads_thirty_users_at_fifty_hertz(hapt_path: Path) -> None:
    ds = load_dataset("hapt", hapt_path)
    assert ds.users == tuple(range(1, 31))
    assert ds.signals.dtype == np.float32 and ds.signals.shape[1] == 6
    assert ds.rate_hz == 50.0 and np.unique(ds.session).size == 61


def test_unknown_data_sets_and_missing_files_are_named_in_the_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown data set 'mnist'; known: hapt"):
        load_dataset("mnist")
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset("hapt", tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a HAPT npz"):
        load_dataset("hapt", tmp_path / "junk.npz")
