"""The anonymiser's batch of AnonymisedWindows: built once per batch, same fields, same guarantees."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from model_factory import onnx_model, reference_output  # noqa: F401 (onnx_model: a fixture)

from edge_runtime.anonymiser import Anonymiser
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow, RawWindow

FIELDS = [f.name for f in dataclasses.fields(AnonymisedWindow)]


def raws(n: int, seed: int = 3) -> list[RawWindow]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 0.5, (n, 6, 128)).astype(np.float32)
    x[:, 2] += 1.0
    return [RawWindow(device_id=f"dev{i}", stream=f"s-{i:04x}", segment=i % 3, index=10 + i, t0=2.5 * i,
                      rate_hz=50.0, samples=x[i], ready_at=100.0 + i) for i in range(n)]


def test_each_anonymised_window_carries_its_raw_windows_place_and_the_models_output(onnx_model: Path) -> None:
    model = Anonymiser.open(onnx_model)
    batch = raws(5)
    out, _ = model.anonymise_windows(batch)
    expected = reference_output(np.stack([w.samples for w in batch]))
    assert len(out) == 5
    for w, raw, values in zip(out, batch, expected):
        assert type(w) is AnonymisedWindow
        assert (w.stream, w.segment, w.index, w.t0, w.rate_hz, w.ready_at) == (
            raw.stream, raw.segment, raw.index, raw.t0, raw.rate_hz, raw.ready_at)
        assert (w.channels, w.units, w.model) == (model.card.output_channels, model.card.output_units,
                                                  model.sha256[:12])
        np.testing.assert_allclose(w.values, values, rtol=1e-5, atol=1e-5)
        with pytest.raises(dataclasses.FrozenInstanceError):
            w.stream = "s-other"  # type: ignore[misc]


def test_a_window_whose_output_is_not_finite_is_dropped_and_the_rest_keep_their_order(onnx_model: Path) -> None:
    model = Anonymiser.open(onnx_model)
    batch = raws(4)
    batch[1] = dataclasses.replace(batch[1], samples=np.full((6, 128), np.nan, np.float32))
    out, _ = model.anonymise_windows(batch)
    assert [w.index for w in out] == [batch[0].index, batch[2].index, batch[3].index]
    assert all(np.isfinite(w.values).all() for w in out)


def test_the_batch_constructor_sets_every_field_as_the_constructor_does() -> None:
    batch = raws(3)
    values = np.arange(3 * 2 * 4, dtype=np.float32).reshape(3, 2, 4)
    made = AnonymisedWindow._batch(_ANONYMISER_TOKEN, batch, values, channels=("a", "b"), units=("g", "g"),
                                   model="9c1d2e3f4a5b")
    for w, raw, v in zip(made, batch, values):
        reference = AnonymisedWindow(stream=raw.stream, segment=raw.segment, index=raw.index, t0=raw.t0,
                                     rate_hz=raw.rate_hz, channels=("a", "b"), units=("g", "g"), values=v,
                                     model="9c1d2e3f4a5b", ready_at=raw.ready_at, token=_ANONYMISER_TOKEN)
        for name in FIELDS:
            assert getattr(w, name) is getattr(reference, name) or name == "values"
        assert np.shares_memory(w.values, values) and np.array_equal(w.values, v)  # a view, as before
        assert repr(w) == repr(reference) and dataclasses.replace(w, index=0).index == 0


def test_the_batch_constructor_wants_the_token_and_values_of_the_batchs_shape() -> None:
    batch = raws(2)
    values = np.zeros((2, 2, 4), np.float32)
    with pytest.raises(TypeError, match="only by edge_runtime.anonymiser"):
        AnonymisedWindow._batch(object(), batch, values, channels=("a", "b"), units=("g", "g"), model="m")
    for wrong in (np.zeros((3, 2, 4), np.float32), np.zeros((2, 3, 4), np.float32), np.zeros((2, 8), np.float32)):
        with pytest.raises(ValueError, match="values must be"):
            AnonymisedWindow._batch(_ANONYMISER_TOKEN, batch, wrong, channels=("a", "b"), units=("g", "g"),
                                    model="m")
