"""encode_many, the batched encoder of the emit path: the same bytes as encode, window by window."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from edge_runtime import payload
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow, RawWindow

SHAPES = [(2, 128), (6, 128), (2, 10), (1, 1), (3, 7), (2, 0)]
T0S = [0.0, -0.0, 82.2, 1234.5678901, 5e-5, -3e-7, 1e-4, 0.000150000001, 999999999.9999999, 1e9, 3.5e12, -17.25,
       float("nan"), float("inf")]


def window(values: np.ndarray, rng: np.random.Generator, **over) -> AnonymisedWindow:
    c = values.shape[0]
    fields = dict(stream=f"s-{int(rng.integers(1 << 62)):016x}", segment=int(rng.integers(0, 1 << 33)),
                  index=int(rng.integers(0, 1 << 33)), t0=float(rng.choice(T0S)) if rng.random() < 0.3
                  else float(rng.uniform(-1e6, 1e6)), rate_hz=float(rng.choice([50.0, 25.5, 100.0])),
                  channels=tuple(f"c{i}" for i in range(c)), units=("g",) * c, values=values,
                  model="9c1d2e3f4a5b", ready_at=0.0, token=_ANONYMISER_TOKEN)
    fields.update(over)
    return AnonymisedWindow(**fields)


def values_for(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Numbers from every path of the encoder: magnitudes (one digit, no sign), signed, large,
    rounding ties and near-zeros, FIXED6_MAX and beyond, NaN and infinities."""
    kind = rng.integers(8)
    if kind == 0:
        v = rng.uniform(0.0, 9.9999999, shape)
    elif kind == 1:
        v = rng.normal(0.0, 1.0, shape)
    elif kind == 2:
        v = rng.normal(0.0, 300.0, shape)
    elif kind == 3:  # ties of the 6th decimal, signed zeros, what rounds to (minus) zero, 9.9999995, 999.999
        pool = np.array([0.0, -0.0, 4e-7, -4e-7, 5e-7, -5e-7, 1.5e-6, 2.5e-6, -2.5e-6, 9.9999995, 9.9999994,
                         -9.9999995, 10.0, 999.9989999, -999.9989999, 0.1234565, 99.0, -100.0])
        v = rng.choice(pool, shape)
    elif kind == 4:
        v = rng.normal(0.0, 1.0, shape)
        if v.size:
            v.flat[rng.integers(v.size)] = rng.choice([np.nan, np.inf, -np.inf])
    elif kind == 5:
        v = rng.normal(0.0, 1.0, shape) * rng.choice([1.0, 999.999, 1000.0, 3e38], shape)
    elif kind == 6:
        v = np.abs(rng.normal(1.0, 0.3, shape))
        if v.size:
            v.flat[rng.integers(v.size)] = -1e-3  # one sign in an otherwise plain window
    else:
        v = rng.uniform(-999.999, 999.999, shape)
    with np.errstate(over="ignore"):  # 3e38 * N(0, 1) beyond float32: an infinity, also wanted
        return v.astype(rng.choice([np.float32, np.float64]))


def random_batch(seed: int) -> list[AnonymisedWindow]:
    rng = np.random.default_rng(seed)
    shapes = [SHAPES[rng.integers(len(SHAPES))] for _ in range(rng.integers(1, 4))]
    return [window(values_for(rng, shapes[rng.integers(len(shapes))]), rng) for _ in range(rng.integers(1, 41))]


@pytest.mark.parametrize("seed", range(60))
def test_encode_many_writes_the_same_json_as_encode_window_by_window(seed: int) -> None:
    windows = random_batch(seed)
    assert payload.encode_many(windows) == [payload.encode(w) for w in windows]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")  # float64 beyond float32, in both
@pytest.mark.parametrize("seed", range(20))
def test_encode_many_writes_the_same_binary_as_encode_window_by_window(seed: int) -> None:
    rng = np.random.default_rng(seed)
    windows = random_batch(seed)
    same_shape = [window(values_for(rng, (2, 128)), rng) for _ in range(rng.integers(1, 33))]
    for batch in (windows, same_shape):
        assert payload.encode_many(batch, "binary") == [payload.encode(w, "binary") for w in batch]


@pytest.mark.parametrize("seed", range(10))
def test_batched_json_reads_back_as_json_dumps_of_the_rounded_window(seed: int) -> None:
    # Below FIXED6_MAX, where the table look-ups claim numpy's round(v, 6); larger numbers take
    # the %-template in both encoders (byte-identical, above).
    windows = [w for w in random_batch(seed)
               if (np.abs(w.values) < payload.FIXED6_MAX).all() and math.isfinite(w.t0)]
    for data, w in zip(payload.encode_many(windows), windows):
        reference = json.dumps(payload.as_dict(w), separators=(",", ":"))
        assert json.loads(data) == json.loads(reference)


def test_a_full_batch_of_model_outputs_spans_several_numpy_passes_and_stays_exact() -> None:
    rng = np.random.default_rng(7)
    out = np.abs(rng.normal(1.0, 0.4, (64, 2, 128))).astype(np.float32)  # views of one array, as the model gives
    windows = [window(out[i], rng, t0=12.5 + 0.2 * i) for i in range(len(out))]
    assert 64 * 256 > payload.CHUNK_VALUES
    assert payload.encode_many(windows) == [payload.encode(w) for w in windows]


def test_strided_values_are_written_as_their_numbers() -> None:
    rng = np.random.default_rng(8)
    base = rng.normal(0.0, 2.0, (4, 6, 256)).astype(np.float32)
    windows = [window(base[i, :, ::2], rng) for i in range(4)] + [window(base[i, ::3, 5:133], rng) for i in range(4)]
    for fmt in payload.FORMATS:
        assert payload.encode_many(windows, fmt) == [payload.encode(w, fmt) for w in windows]


def test_t0_is_written_as_repr_of_round_6_at_every_magnitude() -> None:
    rng = np.random.default_rng(11)
    t0s = np.concatenate([np.arange(500) * 0.2, 1234.5 + np.arange(500) * 0.02, rng.uniform(-1e9, 1e9, 500),
                          10 ** rng.uniform(-7, 11, 500) * rng.choice([-1, 1], 500),
                          np.nextafter(np.round(rng.uniform(0, 1e3, 500), 6) + 5e-7, 0)])  # just below a tie
    values = np.ones((len(t0s), 1, 2), np.float32)
    windows = [window(values[i], rng, t0=float(t)) for i, t in enumerate(t0s)]
    assert payload.encode_many(windows) == [payload.encode(w) for w in windows]


def test_stream_ids_are_quoted_as_json_quotes_them() -> None:
    rng = np.random.default_rng(9)
    windows = [window(np.ones((2, 4), np.float32), rng, stream=s) for s in ('s-"x"', "s-\\", "s-é", "s-\n")]
    assert payload.encode_many(windows) == [payload.encode(w) for w in windows]


def test_an_empty_batch_encodes_to_nothing_and_bad_input_is_refused_as_by_encode() -> None:
    assert payload.encode_many([]) == [] and payload.encode_many([], "binary") == []
    rng = np.random.default_rng(10)
    good = window(np.ones((2, 4), np.float32), rng)
    with pytest.raises(ValueError, match="unknown payload format"):
        payload.encode_many([good], "xml")
    raw = RawWindow(device_id="d", stream="s-1", segment=0, index=0, t0=0.0, rate_hz=50.0,
                    samples=np.zeros((6, 128), np.float32), ready_at=0.0)
    with pytest.raises(TypeError, match="AnonymisedWindow"):
        payload.encode_many([good, raw])
