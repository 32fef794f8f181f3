"""Published payloads: JSON by default, compact binary on request, both readable back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_runtime import payload
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow, RawWindow


def anonymised(values: np.ndarray, **over) -> AnonymisedWindow:
    fields = dict(stream="s-0123456789abcdef", segment=2, index=41, t0=82.0, rate_hz=50.0,
                  channels=("acc_mag", "gyro_mag"), units=("g", "rad/s"), values=values, model="9c1d2e3f4a5b",
                  ready_at=0.0, token=_ANONYMISER_TOKEN)
    fields.update(over)
    return AnonymisedWindow(**fields)


VALUES = np.random.default_rng(1).normal(size=(2, 128)).astype(np.float32)


def test_the_json_payload_has_what_an_app_needs() -> None:
    msg = json.loads(payload.encode(anonymised(VALUES)))
    assert {k: msg[k] for k in ("v", "stream", "segment", "index", "t0", "rate_hz", "channels", "units", "model")} == {
        "v": 1, "stream": "s-0123456789abcdef", "segment": 2, "index": 41, "t0": 82.0, "rate_hz": 50.0,
        "channels": ["acc_mag", "gyro_mag"], "units": ["g", "rad/s"], "model": "9c1d2e3f4a5b"}
    assert np.asarray(msg["values"]).shape == (2, 128)
    np.testing.assert_allclose(msg["values"], VALUES, atol=1e-6)


def test_the_binary_payload_round_trips_exactly_and_is_smaller() -> None:
    window = anonymised(VALUES)
    data = payload.encode(window, "binary")
    assert data[:4] == b"IAW1" and len(data) == 40 + 18 + 4 * 2 * 128
    back = payload.decode(data)
    np.testing.assert_array_equal(np.asarray(back["values"], np.float32), VALUES)
    assert (back["stream"], back["segment"], back["index"], back["t0"], back["model"]) == (
        "s-0123456789abcdef", 2, 41, 82.0, "9c1d2e3f4a5b")
    assert len(data) < len(payload.encode(window, "json")) / 2


def test_a_truncated_binary_payload_is_reported() -> None:
    data = payload.encode(anonymised(VALUES), "binary")
    with pytest.raises(ValueError, match="value bytes"):
        payload.decode(data[:-4])


def test_only_anonymised_windows_can_be_encoded() -> None:
    raw = RawWindow(device_id="d", stream="s-1", segment=0, index=0, t0=0.0, rate_hz=50.0,
                    samples=np.zeros((6, 128), np.float32), ready_at=0.0)
    with pytest.raises(TypeError, match="AnonymisedWindow"):
        payload.encode(raw)


def test_an_anonymised_window_cannot_be_made_outside_the_anonymiser() -> None:
    with pytest.raises(TypeError, match="only by edge_runtime.anonymiser"):
        anonymised(VALUES, token=object())


def test_windows_print_without_samples_or_device_ids() -> None:
    raw = RawWindow(device_id="00000000deadbeef", stream="s-1", segment=0, index=0, t0=0.0, rate_hz=50.0,
                    samples=np.full((6, 128), 0.123456, np.float32), ready_at=0.0)
    text = repr(raw) + repr(anonymised(VALUES))
    assert "deadbeef" not in text and "0.123456" not in text and "s-1" in text


@pytest.mark.parametrize("values", [
    VALUES,
    np.array([[0.0, -0.0, -4e-7, 4e-7, 5e-7, -5e-7, 1.5, -0.25, 2.5e-6, 1e-30]], np.float32),
    np.array([[3.4e38, -1.1e12, 123456.789, -9.999999e-1], [1e-45, 7.0, -7.0, 0.1]], np.float32),
    np.random.default_rng(2).normal(scale=30.0, size=(3, 64)).astype(np.float32),
    np.zeros((2, 0), np.float32),
], ids=["normal", "signs-and-ties", "extremes", "three-channels", "empty"])
def test_the_fast_json_encoder_reads_back_as_the_same_numbers_as_json_dumps(values: np.ndarray) -> None:
    channels = tuple(f"c{i}" for i in range(values.shape[0]))
    window = anonymised(values, channels=channels, units=("g",) * len(channels), t0=1234.5678901)
    fast = payload.encode(window)
    reference = json.dumps(payload.as_dict(window), separators=(",", ":")).encode()
    assert json.loads(fast) == json.loads(reference)  # == on floats: the same doubles (0.0 == -0.0)
    assert list(json.loads(fast)) == list(json.loads(reference))  # the same keys in the same order


def test_non_finite_values_keep_jsons_own_spelling() -> None:
    window = anonymised(np.array([[np.nan, 1.0], [np.inf, -np.inf]], np.float32), channels=("a", "b"))
    assert payload.encode(window) == json.dumps(payload.as_dict(window), separators=(",", ":")).encode()


def test_json_values_are_plain_decimals_with_six_places() -> None:
    values = np.array([[1.0628651, -0.5, 999.25, 0.0], [-1e-9, 3.0, -2.0000005, 9.9999999]])
    text = payload.encode(anonymised(values.astype(np.float32), channels=("a", "b"), units=("g", "g"))).decode()
    assert text.endswith('"values":[[1.062865,-0.500000,999.250000,0.000000],[0.000000,3.000000,-2.000000,10.000000]]}')
