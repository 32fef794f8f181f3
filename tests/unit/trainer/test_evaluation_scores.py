"""Scores, DTW, classifiers and the report's verdicts, on tiny arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from trainer.evaluation.classifiers import (
    ClassifierConfig, Fitter, FitJob, LabelCodec, predict, stratified_subset, train_classifier,
)
from trainer.evaluation.dtw import dtw_matrix, dtw_pairs, true_user_rank
from trainer.evaluation.metrics import accuracy, chance, confusion, macro_f1
from trainer.evaluation.report import assess_targets, markdown_table, pareto_front, text_table


def test_accuracy_and_macro_f1_match_hand_computed_values() -> None:
    truth = np.array([0, 0, 1, 1, 2])
    pred = np.array([0, 1, 1, 1, 0])
    assert accuracy(truth, pred) == pytest.approx(60.0)
    # F1 per class: 0 -> 2*1/(2+1+1) = 0.5; 1 -> 2*2/(4+1) = 0.8; 2 -> 0
    assert macro_f1(truth, pred) == pytest.approx(100 * (0.5 + 0.8 + 0.0) / 3)


def test_macro_f1_counts_a_class_that_is_predicted_but_never_true() -> None:
    assert macro_f1(np.array([0, 0]), np.array([0, 1])) == pytest.approx(100 * (2 / 3 + 0) / 2)


def test_confusion_counts_true_rows_and_predicted_columns() -> None:
    out = confusion(np.array([0, 0, 1, 2]), np.array([0, 2, 1, 2]), 3)
    assert out.tolist() == [[1, 0, 1], [0, 1, 0], [0, 0, 1]]


def test_chance_is_one_in_n_in_percent() -> None:
    assert chance(30) == pytest.approx(3.3333, abs=1e-3)
    assert chance(6) == pytest.approx(16.667, abs=1e-3)


def test_scores_refuse_mismatched_or_empty_inputs() -> None:
    with pytest.raises(ValueError, match="3 true labels for 2"):
        accuracy(np.array([0, 1, 2]), np.array([0, 1]))
    with pytest.raises(ValueError, match="no predictions"):
        macro_f1(np.array([]), np.array([]))


def _dtw_reference(a: np.ndarray, b: np.ndarray, band: int | None = None) -> float:
    """The textbook O(W^2) dynamic programme, one cell at a time."""
    n = a.shape[-1]
    acc = np.full((n + 1, n + 1), np.inf)
    acc[0, 0] = 0.0
    for i in range(n):
        for j in range(n):
            if band is not None and abs(i - j) > band:
                continue
            cost = np.sqrt(np.sum((a[:, i] - b[:, j]) ** 2))
            acc[i + 1, j + 1] = cost + min(acc[i, j + 1], acc[i + 1, j], acc[i, j])
    return float(acc[n, n])


def test_dtw_aligns_a_shifted_step_at_no_cost_where_the_pointwise_distance_is_two() -> None:
    a = np.array([[0.0, 0.0, 1.0, 2.0]])
    b = np.array([[0.0, 1.0, 2.0, 2.0]])
    assert dtw_pairs(a, b)[0] == pytest.approx(0.0)
    assert dtw_pairs(a, b, band=0)[0] == pytest.approx(2.0)  # no warping: sum of |a - b|


def test_dtw_local_cost_is_the_euclidean_distance_across_channels() -> None:
    a = np.array([[[3.0, 3.0], [4.0, 4.0]]])  # two channels, two samples: (3, 4) twice
    b = np.zeros_like(a)
    assert dtw_pairs(a, b)[0] == pytest.approx(10.0)  # 5 + 5 along the diagonal


def test_dtw_hand_computed_three_sample_example() -> None:
    # costs |a_i - b_j| for a = 1, 3, 4 and b = 1, 2, 4; the best path (0,0) (1,1) (2,2) costs 0 + 1 + 0
    assert dtw_pairs(np.array([[1.0, 3.0, 4.0]]), np.array([[1.0, 2.0, 4.0]]))[0] == pytest.approx(1.0)


@pytest.mark.parametrize("band", [None, 0, 2, 5])
def test_dtw_matches_the_cell_by_cell_programme_on_random_series(band: int | None) -> None:
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((6, 2, 24)), rng.standard_normal((6, 2, 24))
    expected = [_dtw_reference(x, y, band) for x, y in zip(a, b)]
    assert np.allclose(dtw_pairs(a, b, band), expected)


def test_dtw_matrix_pairs_every_query_with_every_reference_in_chunks() -> None:
    rng = np.random.default_rng(5)
    q, r = rng.standard_normal((3, 2, 16)), rng.standard_normal((4, 2, 16))
    out = dtw_matrix(q, r, band=3, max_pairs=5)
    assert out.shape == (3, 4)
    assert out[2, 1] == pytest.approx(_dtw_reference(q[2], r[1], 3))
    assert np.allclose(dtw_matrix(q, q, band=3).diagonal(), 0.0)


def test_true_user_rank_orders_users_by_their_nearest_reference() -> None:
    distances = np.array([
        [5.0, 1.0, 3.0, 2.0],  # query of user 7: user 8 nearest (1.0), user 7 next (2.0) -> rank 2
        [0.5, 4.0, 4.0, 9.0],  # query of user 8: user 7 nearest (0.5), user 8 tied with 9 (4.0) -> rank 3
        [3.0, 3.0, 1.0, 1.0],  # query of user 7 (1.0) tied with user 9 (1.0) -> rank 2
    ])
    refs = np.array([7, 8, 9, 7])
    assert true_user_rank(distances, np.array([7, 8, 7]), refs).tolist() == [2, 3, 2]


def test_true_user_rank_refuses_a_query_user_without_references() -> None:
    with pytest.raises(ValueError, match="no reference"):
        true_user_rank(np.zeros((1, 2)), np.array([3]), np.array([1, 2]))


def test_stratified_subset_keeps_every_label_and_its_share() -> None:
    y = np.array([0] * 800 + [1] * 200 + [2] * 3)
    picked = stratified_subset(y, 100, np.random.default_rng(0))
    counts = np.bincount(y[picked], minlength=3)
    assert counts[0] == 80 and counts[1] == 20 and counts[2] == 1
    assert np.all(np.diff(picked) > 0)


def test_label_codec_maps_user_ids_to_outputs_and_back() -> None:
    codec = LabelCodec.of(np.array([30, 2, 9]), np.array([9, 13]))
    assert codec.labels.tolist() == [2, 9, 13, 30]
    assert codec.encode(np.array([13, 2])).tolist() == [2, 0]
    assert codec.decode(np.array([3, 1])).tolist() == [30, 9]
    with pytest.raises(ValueError, match="outside"):
        codec.encode(np.array([5]))


def test_a_trained_classifier_separates_two_obvious_classes_and_is_reproducible() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    t = np.arange(32)
    # class 1 oscillates four times faster than class 0
    x = np.stack([np.sin(2 * np.pi * (2 + 6 * c) * t / 32 + rng.uniform(0, 6.3)) for c in y])[:, None, :]
    x = (x + 0.3 * rng.standard_normal(x.shape)).astype(np.float32)
    config = ClassifierConfig(epochs=4, batch_size=32, max_train_windows=300)
    first = predict(train_classifier(x[:300], y[:300], 2, config=config, seed=1), x[300:])
    second = predict(train_classifier(x[:300], y[:300], 2, config=config, seed=1), x[300:])
    assert accuracy(y[300:], first) > 90.0
    assert first.tolist() == second.tolist()


def _metrics(rows: dict) -> dict:
    return {"methods": rows, "labels": {n: n for n in rows}, "chance_identity": 3.33,
            "chance_identity_unseen": 16.67, "dtw_chance_rank": 15.5}


def _row(f1: float, paper: float, adaptive: float) -> dict:
    return {"activity_f1": f1, "identity_acc_raw_attacker": paper, "identity_acc_adaptive": adaptive,
            "identity_acc_adaptive_unseen": 40.0, "identity_acc_adaptive_cross_session": 10.0, "mse": 0.1,
            "dtw_rank": 3.0}


def test_pareto_front_drops_a_method_beaten_on_both_axes() -> None:
    rows = {"raw": _row(97, 50, 50), "aae": _row(96, 5, 20), "ssa_1": _row(90, 10, 25), "rep": _row(96, 5, 30)}
    assert pareto_front(rows, "identity_acc_adaptive") == ["raw", "aae"]


def test_targets_report_each_verdict_with_its_figures() -> None:
    rows = {"raw": _row(97.0, 50, 50), "aae": _row(96.5, 6.0, 20), "resample_5hz": _row(95.0, 8, 18),
            "ssa_1": _row(80.0, 5, 10)}
    t = assess_targets(_metrics(rows))
    assert t["activity_within_1_point_of_raw"]["met"] is True
    assert t["paper_attacker_at_most_2x_chance"] == {"aae": 6.0, "limit": 6.66, "met": True}
    # resample 5 Hz keeps activity within 3 points and is harder to attack: target missed
    assert t["adaptive_below_useful_baselines"]["baselines"] == {"resample_5hz": 18}
    assert t["adaptive_below_useful_baselines"]["met"] is False
    assert t["aae_on_pareto_front"]["met"] is True


def test_tables_print_chance_beside_the_identity_columns() -> None:
    m = _metrics({"raw": _row(97.0, 50.0, 50.0), "aae": _row(96.5, 6.0, 20.0)})
    md = markdown_table(m)
    assert "Identity, paper's attacker (chance 3.3)" in md
    assert "held-out users (chance 16.7)" in md
    assert "| **AAE** |" not in md and "| **aae** | 96.5 | 6.0 | 20.0 |" in md
    text = text_table(m).splitlines()
    assert text[0].split()[:3] == ["method", "act", "F1"]
    assert text[-1].split()[:3] == ["chance", "3.3", "3.3"]


def test_classifiers_trained_in_worker_processes_equal_those_trained_here() -> None:
    rng = np.random.default_rng(2)
    x = rng.standard_normal((120, 2, 16)).astype(np.float32)
    y = (x[:, 0].mean(axis=1) > 0).astype(np.int64)
    config = ClassifierConfig(epochs=2, batch_size=32, max_train_windows=100)
    jobs = [FitJob(x, y, 2, seed) for seed in (1, 2, 3)]
    with Fitter(config, workers=1) as here, Fitter(config, workers=2) as pool:
        local, remote = here.fit_many(jobs), pool.fit_many(jobs)
    for a, b in zip(local, remote):
        assert predict(a, x).tolist() == predict(b, x).tolist()
        assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
