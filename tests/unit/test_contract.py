"""The numpy-only contract: layout, windowing and the model card."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime.card import ModelCard
from edge_runtime.errors import ModelCardError
from edge_runtime.layout import to_model_channels
from edge_runtime.windowing import gather_windows, sliding_windows, window_starts


def _card(**over) -> ModelCard:
    base = dict(
        window=128, hop=10, sample_rate_hz=50.0, channel_mode="mag",
        output_channels=("acc_mag", "gyro_mag"), output_units=("g", "rad/s"),
        mean=(1.0, 0.5), std=(0.3, 0.4), arch="paper", flops_per_window=54_000_000, opset=17, dataset="hapt",
        split="subject:test=[2,4,9,10,12,13]", metrics={"activity_f1": 97.0},
        created="2026-11-23T00:00:00Z", code_version="0.1.0", weights_sha256="a" * 64,
    )
    base.update(over)
    return ModelCard(**base)


def test_windows_never_cross_a_segment_boundary() -> None:
    ids = np.array([0] * 25 + [1] * 12 + [2] * 30)
    starts = window_starts(ids, window=10, hop=5)
    assert starts.tolist() == [0, 5, 10, 15, 25, 37, 42, 47, 52, 57]
    for s in starts:
        assert len(set(ids[s:s + 10].tolist())) == 1


def test_window_count_follows_the_hop_formula() -> None:
    ids = np.zeros(1000, dtype=int)
    assert window_starts(ids, 128, 10).size == (1000 - 128) // 10 + 1
    assert window_starts(np.zeros(127, dtype=int), 128, 10).size == 0


def test_sliding_windows_is_a_view_and_matches_gather() -> None:
    x = np.arange(60, dtype=np.float32).reshape(30, 2)
    view = sliding_windows(x, 8, 3)
    assert np.shares_memory(view, x)
    assert view.shape == (8, 2, 8)
    np.testing.assert_array_equal(view, gather_windows(x, np.arange(0, 23, 3), 8))
    np.testing.assert_array_equal(view[1, 0], x[3:11, 0])


def test_magnitudes_are_the_euclidean_norms_of_acc_and_gyro() -> None:
    raw = np.zeros((1, 6, 4), dtype=np.float32)
    raw[0, 0:3, :] = np.array([3.0, 4.0, 0.0])[:, None]
    raw[0, 3:6, :] = np.array([1.0, 2.0, 2.0])[:, None]
    mag = to_model_channels(raw, "mag")
    assert mag.shape == (1, 2, 4)
    np.testing.assert_allclose(mag[0, 0], 5.0)
    np.testing.assert_allclose(mag[0, 1], 3.0)


def test_card_round_trips_through_metadata() -> None:
    card = _card()
    props = card.to_metadata()
    assert all(k.startswith("imu_anon.") for k in props)
    assert json.loads(props["imu_anon.window"]) == 128
    assert ModelCard.from_metadata(props) == card


def test_card_lists_every_problem_of_a_broken_metadata_set() -> None:
    props = _card().to_metadata()
    del props["imu_anon.hop"]
    props["imu_anon.window"] = "not json"
    with pytest.raises(ModelCardError) as info:
        ModelCard.from_metadata(props, source="broken.onnx")
    message = str(info.value)
    assert "imu_anon.hop" in message and "imu_anon.window" in message and "broken.onnx" in message


def test_card_refuses_inconsistent_channels_and_statistics() -> None:
    with pytest.raises(ModelCardError, match="output_channels"):
        _card(output_channels=("acc_x",))
    with pytest.raises(ModelCardError, match="std must be positive"):
        _card(std=(0.3, 0.0))
    with pytest.raises(ModelCardError, match="hop 200 is larger"):
        _card(hop=200)
