"""Per-device streams: training-identical windows, never mixed, reset at every gap."""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest

from edge_runtime.errors import ConfigError
from edge_runtime.metrics import Metrics
from edge_runtime.signals import RawWindow
from edge_runtime.streams import StreamSettings, StreamTable, in_shard
from edge_runtime.windowing import sliding_windows
from firmware_bridge.blocks import SampleBlock

W, HOP, RATE = 128, 64, 50.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def table(clock: Clock | None = None, **settings) -> tuple[StreamTable, Metrics]:
    metrics = Metrics()
    return StreamTable(W, HOP, RATE, StreamSettings(**settings), metrics, lambda d: f"s-{d}", clock or Clock()), metrics


def blocks_of(samples: np.ndarray, device: str, sizes: list[int], seq0: int = 0, t_first: float = 0.0,
              epoch: int = 0, rate: float = RATE) -> list[SampleBlock]:
    out, start = [], 0
    for k, size in enumerate(sizes):
        chunk = samples[start:start + size]
        if len(chunk) == 0:
            break
        out.append(SampleBlock(device_id=device, seq=seq0 + k, epoch=epoch, t0=t_first + start / rate, rate_hz=rate,
                               samples=chunk))
        start += size
    return out


def ramp(n: int, base: float = 0.0) -> np.ndarray:
    return (base + np.arange(n * 6, dtype=np.float32).reshape(n, 6) / 1000).astype(np.float32)


def test_windows_equal_the_training_windows_whatever_the_block_sizes() -> None:
    samples = ramp(1000)
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 300, 40).tolist()
    streams, metrics = table()
    windows = [w for b in blocks_of(samples, "A", sizes) for w in streams.push(b)]
    expected = sliding_windows(samples[:sum(sizes)], W, HOP)
    assert len(windows) == len(expected) == (min(sum(sizes), 1000) - W) // HOP + 1
    for w, e in zip(windows, expected):
        np.testing.assert_array_equal(w.samples, e)
    assert [w.index for w in windows] == list(range(len(windows)))
    assert [w.t0 for w in windows] == pytest.approx([i * HOP / RATE for i in range(len(windows))])
    assert metrics.get("windows_cut") == len(windows) and metrics.get("gaps") == 0


def test_one_huge_block_is_cut_through_a_bounded_ring() -> None:
    samples = ramp(20_000)
    streams, _ = table()
    windows = streams.push(SampleBlock(device_id="A", seq=0, epoch=0, t0=0.0, rate_hz=RATE, samples=samples))
    assert len(windows) == (20_000 - W) // HOP + 1
    np.testing.assert_array_equal(windows[-1].samples, sliding_windows(samples, W, HOP)[-1])
    assert streams._streams["A"]._ring.shape == (2 * W, 6)


def test_two_interleaved_devices_never_share_a_window() -> None:
    a, b = ramp(600, base=1.0), -ramp(600, base=1.0)
    streams, _ = table()
    out = []
    for block_a, block_b in zip(blocks_of(a, "A", [25] * 24), blocks_of(b, "B", [25] * 24)):
        out += streams.push(block_a) + streams.push(block_b)
    by_device = {"A": [w for w in out if w.device_id == "A"], "B": [w for w in out if w.device_id == "B"]}
    assert len(by_device["A"]) == len(by_device["B"]) == (600 - W) // HOP + 1
    for device, source in (("A", a), ("B", b)):
        for w, e in zip(by_device[device], sliding_windows(source, W, HOP)):
            np.testing.assert_array_equal(w.samples, e)
            assert w.stream == f"s-{device}"
    assert all((w.samples > 0).all() for w in by_device["A"]) and all((w.samples < 0).all() for w in by_device["B"])


def test_a_skipped_sequence_number_starts_a_new_segment() -> None:
    samples = ramp(500)
    blocks = blocks_of(samples, "A", [50] * 10)
    del blocks[3]  # samples 150..199 lost on the way
    streams, metrics = table()
    windows = [w for b in blocks for w in streams.push(b)]
    first = [w for w in windows if w.segment == 0]
    second = [w for w in windows if w.segment == 1]
    assert len(first) == 1 and len(second) == (300 - W) // HOP + 1
    np.testing.assert_array_equal(second[0].samples, samples[200:200 + W].T)
    assert second[0].index == 0 and second[0].t0 == pytest.approx(200 / RATE)
    assert metrics.get("gaps_seq") == 1 and metrics.get("blocks_missing") == 1
    assert metrics.get("samples_unwindowed") == 150 - W  # 22 samples of segment 0 in no window


def test_a_timestamp_jump_starts_a_new_segment_even_with_consecutive_sequence_numbers() -> None:
    samples = ramp(400)
    blocks = blocks_of(samples, "A", [100] * 4)
    late = blocks[2]
    blocks[2] = SampleBlock(device_id="A", seq=late.seq, epoch=0, t0=late.t0 + 1.0, rate_hz=RATE, samples=late.samples)
    blocks[3] = SampleBlock(device_id="A", seq=blocks[3].seq, epoch=0, t0=blocks[3].t0 + 1.0, rate_hz=RATE,
                            samples=blocks[3].samples)
    streams, metrics = table()
    windows = [w for b in blocks for w in streams.push(b)]
    assert metrics.get("gaps_time") == 1
    assert {w.segment for w in windows} == {0, 1}
    assert all(not (w.segment == 0 and w.t0 + W / RATE > 200 / RATE + 1e-9) for w in windows)


def test_a_reboot_starts_a_new_segment_and_restarts_sequence_numbers() -> None:
    samples = ramp(400)
    before = blocks_of(samples[:200], "A", [50] * 4, seq0=100)
    after = blocks_of(samples[200:], "A", [50] * 4, seq0=0, epoch=1, t_first=0.0)
    streams, metrics = table()
    windows = [w for b in before + after for w in streams.push(b)]
    assert metrics.get("gaps_reboot") == 1 and metrics.get("blocks_out_of_order") == 0
    assert [w.segment for w in windows] == [0, 0, 1, 1]


def test_duplicates_and_late_frames_are_dropped_and_counted() -> None:
    samples = ramp(300)
    blocks = blocks_of(samples, "A", [50] * 6)
    streams, metrics = table()
    windows = []
    for b in blocks[:3] + [blocks[1]] + blocks[3:]:
        windows += streams.push(b)
    assert metrics.get("blocks_out_of_order") == 1 and metrics.get("gaps") == 0
    for w, e in zip(windows, sliding_windows(samples, W, HOP)):
        np.testing.assert_array_equal(w.samples, e)


def test_a_sequence_that_restarts_far_behind_is_a_new_segment_not_a_flood_of_duplicates() -> None:
    samples = ramp(600)
    before = blocks_of(samples[:300], "A", [50] * 6, seq0=5000)
    after = blocks_of(samples[300:], "A", [50] * 6, seq0=0, t_first=6.0)  # no new epoch: a JSON sender
    streams, metrics = table()
    windows = [w for b in before + after for w in streams.push(b)]
    assert metrics.get("gaps_seq_restart") == 1 and metrics.get("blocks_out_of_order") == 0
    assert [w.segment for w in windows] == [0, 0, 0, 1, 1, 1]


def test_silence_longer_than_the_limit_starts_a_new_segment() -> None:
    clock = Clock()
    streams, metrics = table(clock, silence_s=2.0)
    samples = ramp(200)
    streams.push(SampleBlock(device_id="A", seq=None, epoch=0, t0=math.nan, rate_hz=RATE, samples=samples[:100]))
    clock.now += 5.0
    windows = streams.push(SampleBlock(device_id="A", seq=None, epoch=0, t0=math.nan, rate_hz=RATE,
                                       samples=samples[100:]))
    assert windows == [] and metrics.get("gaps_silence") == 1


def test_a_device_at_another_rate_is_refused_with_one_clear_log_line(caplog: pytest.LogCaptureFixture) -> None:
    streams, metrics = table()
    samples = ramp(400)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.streams"):
        for b in blocks_of(samples, "A", [100] * 4, rate=100.0):
            assert streams.push(b) == []
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1
    assert "declares 100 Hz but the model needs 50 Hz" in lines[0] and "s-A" in lines[0]
    assert metrics.get("samples_refused_rate") == 400
    assert len([w for b in blocks_of(samples, "A", [100] * 4, seq0=10) for w in streams.push(b)]) == 5


def test_new_devices_beyond_the_limit_are_refused_and_counted() -> None:
    streams, metrics = table(max_devices=2)
    for device in ("A", "B", "C"):
        streams.push(SampleBlock(device_id=device, seq=0, epoch=0, t0=0.0, rate_hz=RATE, samples=ramp(10)))
    assert len(streams) == 2 and metrics.get("samples_refused_devices") == 10


def test_idle_devices_are_forgotten_so_new_ones_fit() -> None:
    clock = Clock()
    streams, _ = table(clock, max_devices=1, idle_forget_s=60.0)
    streams.push(SampleBlock(device_id="A", seq=0, epoch=0, t0=0.0, rate_hz=RATE, samples=ramp(10)))
    clock.now += 61
    streams.push(SampleBlock(device_id="B", seq=0, epoch=0, t0=0.0, rate_hz=RATE, samples=ramp(10)))
    assert list(streams._streams) == ["B"]


def test_a_shard_keeps_only_its_devices_and_every_device_has_exactly_one_shard() -> None:
    devices = [f"{i:016x}" for i in range(200)]
    owners = [[k for k in range(3) if in_shard(d, (k, 3))] for d in devices]
    assert all(len(o) == 1 for o in owners)
    assert {o[0] for o in owners} == {0, 1, 2}
    streams, metrics = table(shard="1/3")
    for d in devices[:30]:
        streams.push(SampleBlock(device_id=d, seq=0, epoch=0, t0=0.0, rate_hz=RATE, samples=ramp(5)))
    assert len(streams) == sum(1 for o in owners[:30] if o == [1])
    with pytest.raises(ConfigError, match="k/n"):
        StreamSettings(shard="3")


def test_the_measured_rate_is_compared_with_the_models(caplog: pytest.LogCaptureFixture) -> None:
    streams, metrics = table(drift_min_s=10.0)
    samples = ramp(1500)
    fast = 52.0  # the device's clock says 52 samples a second while it declares 50
    with caplog.at_level(logging.WARNING, logger="edge_runtime.streams"):
        for k, start in enumerate(range(0, 1500, 26)):
            streams.push(SampleBlock(device_id="A", seq=k, epoch=0, t0=start / fast, rate_hz=RATE,
                                     samples=samples[start:start + 26]), )
    assert any("measured 52.000 Hz by its own clock, 4.00% off" in r.getMessage() for r in caplog.records)
    assert "imu_anon_stream_drift_ppm{stream=\"s-A\"} 40000" in metrics.prometheus()
    assert metrics.get("gaps") == 0  # 4 % off the declared rate, block to block, is no gap


def test_lines_without_timestamps_are_timed_by_their_arrival(caplog: pytest.LogCaptureFixture) -> None:
    streams, metrics = table(drift_min_s=10.0)
    samples = ramp(1008)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.streams"):
        for k, start in enumerate(range(0, 1008, 24)):  # 24 samples every 0.5 s: 48 Hz, not 50
            streams.push(SampleBlock(device_id="A", seq=k, epoch=0, t0=math.nan, rate_hz=RATE,
                                     samples=samples[start:start + 24]), at=100.0 + 0.5 * k)
    assert any("measured 48.000 Hz arriving at the gateway" in r.getMessage() for r in caplog.records)
    [gauge] = [line for line in metrics.prometheus().splitlines()
               if line.startswith('imu_anon_stream_arrival_rate_hz{stream="s-A"}')]
    assert float(gauge.split()[1]) == pytest.approx(48.0)


def test_windows_waiting_for_a_batch_keep_their_samples_while_the_ring_compacts_and_resets() -> None:
    streams, _ = table()
    samples = np.random.default_rng(7).normal(size=(1000, 6)).astype(np.float32)
    waiting = []
    for block in blocks_of(samples, "dev", [10] * 100):
        waiting.extend(streams.push(block, at=0.0))  # never batched: every window stays a view of a ring
    later = np.random.default_rng(8).normal(size=(300, 6)).astype(np.float32)
    for block in blocks_of(later, "dev", [10] * 30, seq0=200, t_first=100.0):  # a gap: new segment, ring reused
        streams.push(block, at=0.0)
    expected = sliding_windows(samples, W, HOP)
    assert len(waiting) == len(expected)
    for window, want in zip(waiting, expected):
        np.testing.assert_array_equal(window.samples, want)


class CountingMetrics(Metrics):
    def __init__(self) -> None:
        super().__init__()
        self.gauge_calls: list[tuple[str, float]] = []

    def gauge(self, name: str, value: float, stream: str = "") -> None:
        self.gauge_calls.append((name, value))
        super().gauge(name, value, stream)


def test_the_rate_gauges_are_refreshed_once_a_second_not_at_every_block(caplog: pytest.LogCaptureFixture) -> None:
    metrics = CountingMetrics()
    streams = StreamTable(W, HOP, RATE, StreamSettings(drift_min_s=10.0), metrics, lambda d: f"s-{d}", Clock())
    samples = ramp(2000)
    with caplog.at_level(logging.WARNING, logger="edge_runtime.streams"):
        for k, start in enumerate(range(0, 2000, 5)):  # 10 blocks a second by the device clock, 52 Hz
            streams.push(SampleBlock(device_id="A", seq=k, epoch=0, t0=start / 52.0, rate_hz=RATE,
                                     samples=samples[start:start + 5]))
    rates = [value for name, value in metrics.gauge_calls if name == "stream_rate_hz"]
    # 38 s of signal, judged from 10 s on: about 29 refreshes instead of ~290
    assert 27 <= len(rates) <= 30 and all(abs(r - 52.0) < 0.1 for r in rates)
    assert len([r for r in caplog.records if "measured 52.000 Hz" in r.getMessage()]) == 1


def test_a_device_that_changes_to_a_wrong_rate_is_refused_at_its_first_such_block() -> None:
    streams, metrics = table()
    samples = ramp(300)
    assert streams.push(SampleBlock(device_id="A", seq=0, epoch=0, t0=0.0, rate_hz=RATE, samples=samples[:200]))
    assert streams.push(SampleBlock(device_id="A", seq=1, epoch=0, t0=4.0, rate_hz=100.0, samples=samples[200:])) == []
    assert metrics.get("samples_refused_rate") == 100 and metrics.get("gaps_rate") == 1


def test_a_gap_of_any_kind_is_found_between_two_usual_blocks() -> None:
    clock = Clock()
    samples = ramp(400)
    usual = blocks_of(samples[:200], "A", [10] * 20)  # consecutive, on time: the quick path
    late = SampleBlock(device_id="A", seq=20, epoch=0, t0=4.0, rate_hz=RATE, samples=samples[200:210])
    for what, block, tick in (("silence", late, 5.0), ("time", dataclasses.replace(late, t0=9.0), 0.0),
                              ("reboot", dataclasses.replace(late, epoch=1), 0.0)):
        streams, metrics = table(clock, silence_s=2.0)
        for b in usual:
            streams.push(b)
        clock.now += tick
        streams.push(block)
        assert metrics.get("gaps") == 1 and metrics.get(f"gaps_{what}") == 1, what
    streams, metrics = table(clock)
    nan_times = [dataclasses.replace(b, t0=math.nan) for b in usual]
    windows = [w for b in nan_times for w in streams.push(b, at=clock.now)]
    assert metrics.get("gaps") == 0 and [w.index for w in windows] == [0, 1]


def test_windows_cut_in_one_go_carry_what_the_constructor_would_give_them() -> None:
    streams, _ = table()
    samples = ramp(300)
    (block,) = blocks_of(samples, "A", [300], t_first=7.0)
    windows = streams.push(block, at=42.0)
    assert len(windows) == 3
    for i, w in enumerate(windows):
        reference = RawWindow(device_id="A", stream="s-A", segment=0, index=i, t0=7.0 + i * HOP / RATE, rate_hz=RATE,
                              samples=w.samples, ready_at=42.0)
        assert all(getattr(w, f.name) == getattr(reference, f.name) for f in dataclasses.fields(RawWindow)
                   if f.name != "samples")
        np.testing.assert_array_equal(w.samples, samples[i * HOP:i * HOP + W].T)
        assert repr(w) == repr(reference)
    with pytest.raises(ValueError, match=r"\[6, W\]"):
        RawWindow._run([np.zeros((6, 8)), np.zeros((6, 4))], [0.0, 1.0], device_id="A", stream="s", segment=0,
                       index=0, rate_hz=RATE, ready_at=0.0)
    with pytest.raises(ValueError, match=r"\[6, W\]"):
        RawWindow(device_id="A", stream="s", segment=0, index=0, t0=0.0, rate_hz=RATE, samples=np.zeros((5, 8)),
                  ready_at=0.0)
