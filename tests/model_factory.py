"""Small, valid imu-anon ONNX models built with ``onnx.helper`` (no torch), for the runtime tests.

The graph is the contract's shape in miniature: raw ``imu`` [N, 6, W] -> the card's channels
(two magnitudes or the six axes) -> standardise -> one Conv1d -> inverse standardise ->
``anonymised`` [N, C, W]. :func:`reference_output` computes the same arithmetic in numpy so a
test can assert the runtime's numbers, not just shapes.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge_runtime.card import ModelCard
from edge_runtime.integrity import write_sidecar
from edge_runtime.layout import model_channels, to_model_channels

MEANS = {"mag": (1.0, 0.6), "axes": (0.8, 0.1, 0.1, 0.0, 0.0, 0.0)}
STDS = {"mag": (0.35, 0.7), "axes": (0.4, 0.3, 0.3, 0.5, 0.5, 0.5)}


def conv_weights(channels: int) -> tuple[np.ndarray, np.ndarray]:
    """A fixed smoothing kernel with a little cross-channel mixing (deterministic)."""
    w = np.full((channels, channels, 3), 0.02, dtype=np.float32)
    for c in range(channels):
        w[c, c] = (0.25, 0.5, 0.25)
    b = np.linspace(-0.05, 0.05, channels).astype(np.float32)
    return w, b


def reference_output(raw: np.ndarray, mode: str = "mag") -> np.ndarray:
    """What the factory's graph computes for raw windows [N, 6, W] (acc in g)."""
    x = to_model_channels(np.asarray(raw, dtype=np.float32), mode)
    mean = np.asarray(MEANS[mode], dtype=np.float32)[None, :, None]
    std = np.asarray(STDS[mode], dtype=np.float32)[None, :, None]
    z = (x - mean) / std
    w, b = conv_weights(x.shape[1])
    padded = np.pad(z, ((0, 0), (0, 0), (1, 1)))
    y = np.einsum("ock,nckw->now", w, np.stack([padded[..., k:k + z.shape[-1]] for k in range(3)], axis=2))
    y = y + b[None, :, None]
    return (y * std + mean).astype(np.float32)


def card_for(window: int = 128, hop: int = 64, rate: float = 50.0, mode: str = "mag",
             weights_sha256: str = "0" * 64, **over: Any) -> ModelCard:
    names, units = model_channels(mode)
    channels = len(names)
    fields: dict[str, Any] = dict(
        window=window, hop=hop, sample_rate_hz=rate, channel_mode=mode,
        output_channels=names, output_units=units, mean=MEANS[mode], std=STDS[mode],
        arch="test-conv1", flops_per_window=2 * channels * channels * 3 * window, opset=17,
        dataset="hapt", split="subject:test=[2,4,9,10,12,13]",
        metrics={"activity_f1": 91.5, "identity_acc": 7.25}, created="2026-01-01T00:00:00Z",
        code_version="0.1.0-test", weights_sha256=weights_sha256,
    )
    fields.update(over)
    return ModelCard(**fields)


def _graph(window: int, mode: str, input_name: str, output_name: str, acc_scale: float) -> onnx.GraphProto:
    channels = len(model_channels(mode)[0])
    w, b = conv_weights(channels)
    inits = [
        numpy_helper.from_array(np.asarray(MEANS[mode], np.float32).reshape(1, channels, 1), "mean"),
        numpy_helper.from_array(np.asarray(STDS[mode], np.float32).reshape(1, channels, 1), "std"),
        numpy_helper.from_array(w, "conv_w"),
        numpy_helper.from_array(b, "conv_b"),
        numpy_helper.from_array(np.array([0], np.int64), "i0"),
        numpy_helper.from_array(np.array([3], np.int64), "i3"),
        numpy_helper.from_array(np.array([6], np.int64), "i6"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([acc_scale, acc_scale, acc_scale, 1, 1, 1], np.float32)
                                .reshape(1, 6, 1), "to_g"),
    ]
    nodes = [helper.make_node("Mul", [input_name, "to_g"], ["raw_g"])]
    if mode == "mag":
        nodes += [
            helper.make_node("Slice", ["raw_g", "i0", "i3", "axis1"], ["acc"]),
            helper.make_node("Slice", ["raw_g", "i3", "i6", "axis1"], ["gyro"]),
            helper.make_node("Mul", ["acc", "acc"], ["acc2"]),
            helper.make_node("Mul", ["gyro", "gyro"], ["gyro2"]),
            helper.make_node("ReduceSum", ["acc2", "axis1"], ["acc_ss"], keepdims=1),
            helper.make_node("ReduceSum", ["gyro2", "axis1"], ["gyro_ss"], keepdims=1),
            helper.make_node("Sqrt", ["acc_ss"], ["acc_mag"]),
            helper.make_node("Sqrt", ["gyro_ss"], ["gyro_mag"]),
            helper.make_node("Concat", ["acc_mag", "gyro_mag"], ["chan"], axis=1),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["raw_g"], ["chan"]))
    nodes += [
        helper.make_node("Sub", ["chan", "mean"], ["xc"]),
        helper.make_node("Div", ["xc", "std"], ["z"]),
        helper.make_node("Conv", ["z", "conv_w", "conv_b"], ["conv_out"], pads=[1, 1], kernel_shape=[3]),
        helper.make_node("Mul", ["conv_out", "std"], ["ys"]),
        helper.make_node("Add", ["ys", "mean"], [output_name]),
    ]
    return helper.make_graph(
        nodes, "imu_anon_test",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", 6, window])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["N", channels, window])],
        inits,
    )


def build_model(path: str | Path, *, window: int = 128, hop: int = 64, rate: float = 50.0, mode: str = "mag",
                input_name: str = "imu", output_name: str = "anonymised", graph_window: int | None = None,
                metadata: dict[str, str] | None = None, sidecar: bool = True, acc_units: str = "g",
                **card_over: Any) -> Path:
    """Write a model (and its .sha256) and return its path. ``metadata`` replaces the card's
    entries entirely (to build broken files); ``graph_window`` makes the graph disagree with the card."""
    path = Path(path)
    acc_scale = 1.0 if acc_units == "g" else 1.0 / 9.80665
    graph = _graph(graph_window or window, mode, input_name, output_name, acc_scale)
    digest = hashlib.sha256(b"".join(i.raw_data for i in graph.initializer)).hexdigest()
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="imu-anon-tests")
    model.ir_version = 8
    if metadata is None:
        units = (acc_units,) * 3 + ("rad/s",) * 3
        card = card_for(window, hop, rate, mode, weights_sha256=digest, input_units=units, **card_over)
        metadata = card.to_metadata()
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model)
    onnx.save(model, path)
    if sidecar:
        write_sidecar(path)
    return path


@pytest.fixture
def onnx_model(tmp_path: Path) -> Path:
    """A valid magnitude model: window 128, hop 64, 50 Hz, with its sha256 sidecar."""
    return build_model(tmp_path / "anon.onnx")
