"""The whole data path in-process: frames in, the model's own numbers out, per device."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import numpy as np
import pytest
from model_factory import onnx_model, reference_output  # noqa: F401 (onnx_model: a fixture)
from runtime_helpers import as_decoded, device_name, frames_for, signal

from edge_runtime import config
from edge_runtime.decode import Received
from edge_runtime.gateway import open_gateway
from edge_runtime.pipeline import Pipeline
from edge_runtime.pseudonym import Pseudonymiser, load_or_create_secret
from edge_runtime.sources import Source
from edge_runtime.windowing import sliding_windows

W, HOP = 128, 64
DEV_A, DEV_B = 0x1111222233334444, 0x5555666677778888


def gateway_config(tmp_path: Path, model: Path, **sections) -> config.GatewayConfig:
    values = {"model": {"path": str(model)},
              "pipeline": {"sources": ["loop:test"], "sinks": [f"file:{tmp_path / 'out.jsonl'}"], "max_wait_ms": 5},
              "privacy": {"secret_file": str(tmp_path / "key")}, "metrics": {"interval_s": 0}}
    for name, over in sections.items():
        values.setdefault(name, {}).update(over)
    return config.build(values)


def expected_windows(samples: np.ndarray) -> np.ndarray:
    raw = np.ascontiguousarray(sliding_windows(as_decoded(samples), W, HOP))
    return reference_output(raw)


def run_frames(cfg: config.GatewayConfig, frames: list[bytes]):
    with open_gateway(cfg) as pipeline:
        source = pipeline.sources[0]
        for frame in frames:
            source.feed(frame)
        source.end()
        summary = pipeline.run()
    return summary, pipeline


def test_two_interleaved_devices_get_their_own_windows_with_the_models_numbers(tmp_path: Path,
                                                                               onnx_model: Path) -> None:
    a, b = signal(700, seed=1), signal(700, seed=2, offset=0.3)
    fa, fb = frames_for(a, DEV_A), frames_for(b, DEV_B)
    interleaved = [f for pair in zip(fa, fb) for f in pair]
    cfg = gateway_config(tmp_path, onnx_model)
    summary, _ = run_frames(cfg, interleaved)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    pseudonym = Pseudonymiser(load_or_create_secret(tmp_path / "key"))
    for device, samples in ((DEV_A, a), (DEV_B, b)):
        mine = [r for r in rows if r["stream"] == pseudonym(device_name(device))]
        expected = expected_windows(samples)
        assert len(mine) == len(expected) == (700 - W) // HOP + 1
        assert [r["index"] for r in mine] == list(range(len(mine)))
        np.testing.assert_allclose(np.array([r["values"] for r in mine]), expected, atol=2e-5)
        assert mine[1]["t0"] == pytest.approx(HOP / 50.0)
    assert summary.counters["windows_anonymised"] == 2 * len(expected_windows(a))
    assert summary.counters["frames_corrupt"] == 0 and summary.counters.get("gaps", 0) == 0


def test_no_device_id_reaches_the_output(tmp_path: Path, onnx_model: Path) -> None:
    run_frames(gateway_config(tmp_path, onnx_model), frames_for(signal(300, seed=3), DEV_A))
    text = (tmp_path / "out.jsonl").read_text()
    assert text and device_name(DEV_A) not in text and str(DEV_A) not in text


def test_a_lost_frame_splits_the_stream_into_segments(tmp_path: Path, onnx_model: Path) -> None:
    samples = signal(800, seed=4)
    frames = frames_for(samples, DEV_A, hello_every=1000)
    del frames[1 + 40]  # SAMPLES frame 40 carries samples 320..327
    summary, _ = run_frames(gateway_config(tmp_path, onnx_model), frames)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["segment"] for r in rows].count(0) == (320 - W) // HOP + 1
    second = [r for r in rows if r["segment"] == 1]
    np.testing.assert_allclose(np.array([r["values"] for r in second]), expected_windows(samples[328:]), atol=2e-5)
    assert summary.counters["gaps_seq"] == 1 and summary.counters["frames_missing"] == 1


def test_tail_stitching_publishes_each_sample_once(tmp_path: Path, onnx_model: Path) -> None:
    samples = signal(640, seed=5)
    cfg = gateway_config(tmp_path, onnx_model, publish={"stitch": "tail"})
    run_frames(cfg, frames_for(samples, DEV_A))
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    stream = np.concatenate([np.array(r["values"]) for r in rows], axis=1)
    assert stream.shape == (2, 640)  # (640 - 128) is a multiple of the hop: every sample, once
    expected = expected_windows(samples)
    np.testing.assert_allclose(stream[:, :W], expected[0], atol=2e-5)
    np.testing.assert_allclose(stream[:, W:W + HOP], expected[1][:, -HOP:], atol=2e-5)
    assert [r["t0"] for r in rows[:3]] == pytest.approx([0.0, W / 50, (W + HOP) / 50])


def test_windows_are_batched_across_devices(tmp_path: Path, onnx_model: Path) -> None:
    streams = [signal(256, seed=10 + i) for i in range(8)]
    frames = [f for group in zip(*[frames_for(s, DEV_A + i) for i, s in enumerate(streams)]) for f in group]
    cfg = gateway_config(tmp_path, onnx_model, pipeline={"max_batch": 8, "max_wait_ms": 1000})
    summary, _ = run_frames(cfg, frames)
    assert summary.counters["windows_anonymised"] == 8 * 3
    assert summary.counters["inferences"] == 3  # each inference took one window of every device


def test_a_batch_the_model_fails_on_is_counted_and_the_run_goes_on(tmp_path: Path, caplog) -> None:
    import logging

    import onnx
    from model_factory import build_model
    from onnx import TensorProto, helper

    from edge_runtime.integrity import write_sidecar

    path = build_model(tmp_path / "one-at-a-time.onnx")
    model = onnx.load(path)  # a graph that only runs one window at a time: batches of two fail
    model.graph.initializer.append(helper.make_tensor("one", TensorProto.INT64, [3], [1, 2, 128]))
    model.graph.node[-1].output[0] = "pre"
    model.graph.node.append(helper.make_node("Reshape", ["pre", "one"], ["anonymised"]))
    onnx.save(model, path)
    write_sidecar(path)
    frames = [f for pair in zip(frames_for(signal(256, seed=1), DEV_A), frames_for(signal(256, seed=2), DEV_B))
              for f in pair]
    cfg = gateway_config(tmp_path, path, pipeline={"max_batch": 2, "max_wait_ms": 1000})
    with caplog.at_level(logging.ERROR):
        summary, _ = run_frames(cfg, frames)
    assert summary.counters["windows_failed"] == 6 and summary.counters.get("windows_anonymised", 0) == 0
    assert "inference failed on a batch of 2 window(s)" in caplog.text


class Preloaded(Source):
    """Everything is already in the inbox when the loop starts: a gateway that fell behind."""

    live = False

    def __init__(self, frames: list[bytes]) -> None:
        super().__init__()
        self.frames = frames

    def start(self, inbox) -> None:
        for frame in self.frames:
            inbox.put(Received("loop:preloaded", frame, "frames"), self._stop)
        self.done = True


def test_a_lagging_pipeline_drains_the_inbox_into_one_batch_instead_of_running_each_window_alone(
        tmp_path: Path, onnx_model: Path) -> None:
    a, b = signal(700, seed=5), signal(700, seed=6, offset=0.2)
    frames = [f for pair in zip(frames_for(a, DEV_A), frames_for(b, DEV_B)) for f in pair]
    cfg = gateway_config(tmp_path, onnx_model, pipeline={"max_batch": 64, "max_wait_ms": 0})
    with open_gateway(cfg) as gw:
        pipeline = Pipeline(anonymiser=gw.anonymiser, sources=[Preloaded(frames)], sinks=gw.sinks,
                            streams=gw.streams, decoders=gw.decoders, stitcher=gw.stitcher, metrics=gw.metrics,
                            settings=gw.settings)
        summary = pipeline.run()
    windows = 2 * len(expected_windows(a))
    assert summary.counters["windows_anonymised"] == windows == 18
    assert summary.counters["inferences"] == 1  # every overdue window used to go through the model alone
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(rows) == windows


def test_the_loop_hides_the_heap_from_the_collector_while_it_runs_and_gives_it_back(tmp_path: Path,
                                                                                  onnx_model: Path) -> None:
    frozen_while_decoding: list[int] = []

    class Watching:
        def __init__(self, inner) -> None:
            self.inner = inner

        def decode_many(self, items):
            frozen_while_decoding.append(gc.get_freeze_count())
            return self.inner.decode_many(items)

    def run(gw: Pipeline, frames: list[bytes]) -> None:
        pipeline = Pipeline(anonymiser=gw.anonymiser, sources=gw.sources, sinks=gw.sinks, streams=gw.streams,
                            decoders=Watching(gw.decoders), stitcher=gw.stitcher, metrics=gw.metrics,
                            settings=gw.settings)
        for frame in frames:
            gw.sources[0].feed(frame)
        gw.sources[0].end()
        pipeline.run()

    frames = frames_for(signal(300, seed=4), DEV_A)
    with open_gateway(gateway_config(tmp_path, onnx_model)) as gw:
        run(gw, frames)
    assert frozen_while_decoding and min(frozen_while_decoding) > 0 and gc.get_freeze_count() == 0
    gc.freeze()  # someone else's freeze is theirs to undo
    try:
        with open_gateway(gateway_config(tmp_path, onnx_model)) as gw:
            run(gw, frames)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
