"""The emit step: a batch's messages reach every sink in one call, and one failing sink spoils no other."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest
from model_factory import onnx_model  # noqa: F401 (a fixture)
from runtime_helpers import frames_for, signal
from test_runtime_pipeline import DEV_A, DEV_B, Preloaded, expected_windows, gateway_config

from edge_runtime.gateway import open_gateway
from edge_runtime.metrics import Histogram, Metrics
from edge_runtime.pipeline import Pipeline
from edge_runtime.mqtt_link import MqttSettings
from edge_runtime.signals import _ANONYMISER_TOKEN, AnonymisedWindow
from edge_runtime.sinks import PublishSettings, Sink, open_sink
from edge_runtime.stitching import Stitcher


class Recorder(Sink):
    name = "recorder"

    def __init__(self) -> None:
        self.calls: list[list[AnonymisedWindow]] = []

    def write(self, window: AnonymisedWindow) -> None:
        raise AssertionError("the pipeline hands sinks whole batches")

    def write_many(self, windows) -> None:
        for window in windows:
            self.check(window)
        self.calls.append(list(windows))


class FullDisk(Recorder):
    name = "full-disk"

    def write_many(self, windows) -> None:
        raise OSError(28, "No space left on device")


def run_with(tmp_path: Path, model: Path, sinks: list[Sink], **pipeline_settings):
    a, b = signal(700, seed=5), signal(700, seed=6, offset=0.2)
    frames = [f for pair in zip(frames_for(a, DEV_A), frames_for(b, DEV_B)) for f in pair]
    cfg = gateway_config(tmp_path, model, pipeline={"max_batch": 8, "max_wait_ms": 0, **pipeline_settings})
    with open_gateway(cfg) as gw:
        pipeline = Pipeline(anonymiser=gw.anonymiser, sources=[Preloaded(frames)], sinks=[*sinks, *gw.sinks],
                            streams=gw.streams, decoders=gw.decoders, stitcher=gw.stitcher, metrics=gw.metrics,
                            settings=gw.settings)
        summary = pipeline.run()
    return summary, pipeline, 2 * len(expected_windows(a))


def test_each_sink_gets_the_messages_of_a_batch_in_one_call(tmp_path: Path, onnx_model: Path) -> None:
    recorder = Recorder()
    summary, pipeline, windows = run_with(tmp_path, onnx_model, [recorder])
    assert summary.counters["inferences"] == len(recorder.calls) < windows  # one call per batch
    assert all(1 <= len(c) <= 8 for c in recorder.calls)
    assert summary.counters["messages_out"] == windows == sum(len(c) for c in recorder.calls)
    assert pipeline.metrics.histograms["window_latency_seconds"].count == windows
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["stream"], r["index"]) for r in rows] == [(w.stream, w.index) for c in recorder.calls for w in c]


def test_a_sink_that_cannot_write_is_counted_and_the_others_get_every_message(tmp_path: Path, onnx_model: Path,
                                                                              caplog) -> None:
    recorder = Recorder()
    with caplog.at_level(logging.ERROR):
        summary, _, windows = run_with(tmp_path, onnx_model, [FullDisk(), recorder])
    assert summary.counters["sink_errors"] == summary.counters["inferences"]  # one per batch it refused
    assert sum(len(c) for c in recorder.calls) == windows == summary.counters["messages_out"]
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == windows
    assert re.search(r"full-disk: cannot write \d+ message\(s\) \(.*No space left", caplog.text)


def test_the_file_sink_writes_a_batch_as_it_writes_window_after_window(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    out = rng.normal(1.0, 0.5, (5, 2, 16)).astype(np.float32)
    windows = [AnonymisedWindow(stream=f"s-{i:02x}", segment=0, index=i, t0=0.2 * i, rate_hz=50.0,
                                channels=("acc_mag", "gyro_mag"), units=("g", "rad/s"), values=out[i],
                                model="abcdefabcdef", ready_at=0.0, token=_ANONYMISER_TOKEN) for i in range(5)]
    texts = {}
    for name in ("one.jsonl", "many.jsonl", "one.csv", "many.csv"):
        with open_sink(f"file:{tmp_path / name}", publish=PublishSettings(), mqtt=MqttSettings(), metrics=Metrics(),
                       status=lambda *a: b"{}") as sink:
            if name.startswith("one"):
                for w in windows:
                    sink.write(w)
            else:
                sink.write_many(windows)
        texts[name] = (tmp_path / name).read_text()
    assert texts["one.jsonl"] == texts["many.jsonl"] and texts["one.csv"] == texts["many.csv"]
    assert texts["many.jsonl"].count("\n") == 5


@pytest.mark.parametrize("mode", ["off", "tail", "mean"])
def test_push_many_gives_the_messages_of_push_window_after_window(mode: str) -> None:
    rng = np.random.default_rng(5)

    def windows(stream: str, segment: int, first: int, count: int) -> list[AnonymisedWindow]:
        return [AnonymisedWindow(stream=stream, segment=segment, index=k, t0=k * 0.2, rate_hz=10.0,
                                 channels=("a", "b"), units=("g", "g"), values=rng.normal(size=(2, 8)),
                                 model="m" * 12, ready_at=0.0, token=_ANONYMISER_TOKEN)
                for k in range(first, first + count)]

    batches = [windows("s-a", 0, 0, 3) + windows("s-b", 0, 0, 2), windows("s-a", 0, 3, 2) + windows("s-a", 1, 0, 2)]
    one, many = Stitcher(mode, 8, 2), Stitcher(mode, 8, 2)
    by_one = [m for batch in batches for w in batch for m in one.push(w)] + one.flush()
    by_many = [m for batch in batches for m in many.push_many(batch)] + many.flush()
    assert len(by_one) == len(by_many)
    for a, b in zip(by_one, by_many):
        assert (a.stream, a.segment, a.index, a.t0) == (b.stream, b.segment, b.index, b.t0)
        np.testing.assert_array_equal(a.values, b.values)
    if mode == "off":
        assert by_many == [w for batch in batches for w in batch]


def test_observe_many_counts_as_observe_does() -> None:
    values = [0.0001, 0.0005, 0.0007, 0.003, 0.05, 0.05, 4.0, 9.0, 0.02]
    one, many = Histogram(), Histogram()
    for v in values:
        one.observe(v)
    many.observe_many(values[:4])
    many.observe_many(values[4:])
    many.observe_many([])
    assert (many.counts, many.count, many.sum) == (one.counts, one.count, one.sum)
    assert many.percentile(50) == one.percentile(50) and many.percentile(99) == one.percentile(99)
    metrics = Metrics()
    metrics.observe_many("window_latency_seconds", values)
    assert metrics.histograms["window_latency_seconds"].count == len(values)
