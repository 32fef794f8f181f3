"""The paper's baselines on signals whose answer is known in advance."""

from __future__ import annotations

import numpy as np
import pytest

from trainer.evaluation.baselines import BASELINES, apply_in_chunks, resample_down_up, ssa
from trainer.evaluation.methods import METHODS

RATE, W = 50.0, 128


def tone(cycles_per_window: int, amplitude: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """A sine with a whole number of cycles in the window, so the FFT sees it in one bin."""
    t = np.arange(W)
    return (amplitude * np.sin(2 * np.pi * cycles_per_window * t / W + phase)).astype(np.float64)


def test_resampling_to_10_hz_removes_a_20_hz_tone_and_keeps_a_1_hz_one() -> None:
    slow = tone(3)  # 3 cycles in 2.56 s: 1.17 Hz
    fast = tone(51, 0.5)  # 19.9 Hz, far above the 5 Hz Nyquist limit of 10 Hz
    out = resample_down_up((slow + fast)[None, None], RATE, 10.0)
    assert out.shape == (1, 1, W)
    assert np.max(np.abs(out[0, 0] - slow)) < 1e-4


def test_resampling_to_5_hz_also_removes_a_3_hz_tone() -> None:
    slow, gait = tone(3), tone(8, 0.7)  # 1.17 Hz kept; 3.1 Hz is above the 2.5 Hz limit
    out = resample_down_up((slow + gait)[None], RATE, 5.0)
    assert np.max(np.abs(out[0] - slow)) < 1e-4
    kept_by_10 = resample_down_up((slow + gait)[None], RATE, 10.0)
    assert np.max(np.abs(kept_by_10[0] - (slow + gait))) < 1e-4


def test_resampling_keeps_a_constant_window_constant() -> None:
    out = resample_down_up(np.full((2, 3, W), 0.98), RATE, 5.0)
    assert np.allclose(out, 0.98, atol=1e-5)


def test_resampling_refuses_a_target_rate_that_is_not_lower() -> None:
    with pytest.raises(ValueError, match="between 0 and 50"):
        resample_down_up(np.zeros((1, W)), RATE, 50.0)


def test_ssa_1_of_a_rank_one_trajectory_reproduces_it() -> None:
    geometric = 0.5 * 1.01 ** np.arange(W)  # every lagged row is a multiple of the first
    out = ssa(geometric[None, None], (1,))
    assert np.max(np.abs(out[0, 0] - geometric)) < 1e-5


def test_ssa_1_2_of_a_sinusoid_reproduces_it_and_ssa_1_alone_does_not() -> None:
    wave = tone(5, 2.0, phase=0.3)  # a sinusoid's trajectory matrix has rank two
    both = ssa(wave[None], (1, 2))
    one = ssa(wave[None], (1,))
    assert np.max(np.abs(both[0] - wave)) < 1e-4
    assert np.max(np.abs(one[0] - wave)) > 0.1


def test_ssa_of_every_component_gives_back_any_series() -> None:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 2, W))
    out = ssa(x, tuple(range(1, 33)), lag=32)
    assert np.max(np.abs(out - x)) < 1e-4


def test_ssa_1_keeps_the_dominant_oscillation_of_a_noisy_signal() -> None:
    rng = np.random.default_rng(3)
    wave = tone(4, 1.5)
    noisy = wave + 0.2 * rng.standard_normal(W)
    out = ssa(noisy[None], (1, 2))[0]
    # the two leading components are the sinusoid: much nearer to it than the noisy input
    assert np.sqrt(np.mean((out - wave) ** 2)) < 0.5 * np.sqrt(np.mean((noisy - wave) ** 2))


def test_ssa_rejects_components_beyond_the_trajectory_rows() -> None:
    with pytest.raises(ValueError, match="1-based"):
        ssa(np.zeros((1, W)), (0,))
    with pytest.raises(ValueError, match="1-based"):
        ssa(np.zeros((1, W)), (1, 40), lag=32)


def test_baselines_are_named_as_in_metrics_json_and_keep_the_shape() -> None:
    assert set(BASELINES) == {"resample_10hz", "resample_5hz", "ssa_1", "ssa_12"}
    assert set(BASELINES) < set(METHODS)
    x = np.random.default_rng(0).standard_normal((5, 2, W)).astype(np.float32)
    for name, baseline in BASELINES.items():
        out = apply_in_chunks(lambda z: baseline.apply(z, RATE), x, chunk=2)
        assert out.shape == x.shape and out.dtype == np.float32, name
        assert np.all(np.isfinite(out)), name
