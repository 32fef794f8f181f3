"""Model calls in chunks: found on the machine, fixed by configuration, never changing a number."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from model_factory import onnx_model  # noqa: F401 (a fixture)

from edge_runtime import chunking
from edge_runtime.anonymiser import Anonymiser, InferenceSettings
from edge_runtime.chunking import CANDIDATES, MIN_BATCH, ROUNDS, ChunkTuner
from edge_runtime.errors import ConfigError

MODELS = Path(__file__).resolve().parents[3] / "models"


def _calibrate(tuner: ChunkTuner, n: int, us_per_window: dict[int, float]) -> None:
    """Feed the tuner the batches it asks for, each taking its candidate's cost per window."""
    for _ in range(ROUNDS * len(CANDIDATES)):
        chunk = tuner.chunk_for(n)
        tuner.record(n, chunk, n * us_per_window[0 if chunk == n else chunk] / 1e6)


def test_the_fastest_chunk_on_this_machine_is_kept(caplog: pytest.LogCaptureFixture) -> None:
    tuner = ChunkTuner()
    with caplog.at_level(logging.INFO, logger=chunking.__name__):
        _calibrate(tuner, 32, {4: 1000.0, 8: 900.0, 16: 1100.0, 0: 1200.0})
    assert tuner.chosen == 8
    assert tuner.chunk_for(32) == 8 and tuner.chunk_for(3) == 8
    assert "8 windows per call" in caplog.text and "whole: 1200" in caplog.text


def test_a_model_that_gains_from_batches_keeps_whole_batches() -> None:
    tuner = ChunkTuner()
    _calibrate(tuner, 32, {4: 180.0, 8: 140.0, 16: 120.0, 0: 105.0})
    assert tuner.chosen == 0 and tuner.chunk_for(32) == 32 and tuner.chunk_for(7) == 7


def test_a_chunk_only_a_little_faster_than_whole_batches_is_noise() -> None:
    tuner = ChunkTuner()
    _calibrate(tuner, 32, {4: 1010.0, 8: 990.0, 16: 1000.0, 0: 1020.0})  # 3 % apart: whole batches stay
    assert tuner.chosen == 0


def test_small_batches_teach_nothing_and_a_fixed_chunk_skips_the_tuning() -> None:
    tuner = ChunkTuner()
    for _ in range(100):
        assert tuner.chunk_for(MIN_BATCH - 1) == MIN_BATCH - 1
        tuner.record(MIN_BATCH - 1, MIN_BATCH - 1, 0.001)
    assert tuner.chosen is None
    fixed = ChunkTuner(fixed=2)
    assert fixed.chunk_for(32) == 2 and fixed.chosen == 2


@pytest.mark.parametrize("chunk", [0, 1, 4, 16])
def test_chunks_return_exactly_what_one_call_returns(onnx_model: Path, chunk: int) -> None:  # noqa: F811
    whole = Anonymiser.open(onnx_model, InferenceSettings(chunk=1000))
    chunked = Anonymiser.open(onnx_model, InferenceSettings(chunk=chunk))
    x = np.random.default_rng(3).normal(size=(37, 6, 128)).astype(np.float32)
    expected = whole.anonymise(x)
    for _ in range(ROUNDS * len(CANDIDATES) + 2):  # through the tuning (chunk 0) and after it
        assert np.array_equal(chunked.anonymise(x), expected)


@pytest.mark.parametrize("name", ["hapt-aae.onnx", "hapt-aae.int8.onnx"])
def test_the_released_models_give_the_same_bits_in_any_chunk(name: str) -> None:
    model = Anonymiser.open(MODELS / name)
    x = np.random.default_rng(4).normal(0, 0.5, size=(32, 6, 128)).astype(np.float32)
    whole = model._run(x)
    single = np.concatenate([model._run(x[i:i + 1]) for i in range(32)])
    fours = np.concatenate([model._run(x[i:i + 4]) for i in range(0, 32, 4)])
    assert np.array_equal(whole, single) and np.array_equal(whole, fours)


def test_a_negative_chunk_is_refused() -> None:
    with pytest.raises(ConfigError, match="inference chunk"):
        InferenceSettings(chunk=-1)
