"""The rewrites between the convolutions: each one in isolation, on small graphs, against the
graph before it (onnxruntime on both), seeded."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from export.elementwise import tune_elementwise

C, L = 8, 32
RNG = np.random.default_rng(0)


def _model(nodes: list[onnx.NodeProto], inits: dict[str, np.ndarray], shape=(None, C, L)) -> onnx.ModelProto:
    dims = ["n" if d is None else d for d in shape]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["o0", "o1", "o2"])],
        [numpy_helper.from_array(np.asarray(v, dtype=np.int64 if v.dtype.kind == "i" else np.float32), k)
         for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def _tuned(model: onnx.ModelProto) -> onnx.ModelProto:
    tuned = onnx.ModelProto()
    tuned.CopyFrom(model)
    tune_elementwise(tuned)
    onnx.checker.check_model(tuned, full_check=True)
    return tuned


def _inputs(seed: int = 1) -> list[np.ndarray]:
    """Ordinary values, and values large enough to drive every activation deep into both of its
    branches (exp underflowing to zero on the negative side)."""
    rng = np.random.default_rng(seed)
    return [rng.normal(0, 1, (4, C, L)).astype(np.float32), rng.normal(0, 40, (3, C, L)).astype(np.float32),
            rng.normal(0, 1, (1, C, L)).astype(np.float32)]


def _assert_same_function(before: onnx.ModelProto, after: onnx.ModelProto) -> None:
    for x in _inputs():
        expected = _run(before, x)
        tolerance = 2e-6 * max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(_run(after, x), expected, rtol=0, atol=tolerance)


def _conv(name: str, source: str, out: str, inits: dict, channels_in: int = C) -> onnx.NodeProto:
    inits[f"{name}.w"] = RNG.normal(0, 1.2 / np.sqrt(3 * channels_in), (C, channels_in, 3))
    inits[f"{name}.b"] = RNG.normal(0, 0.3, C)
    return helper.make_node("Conv", [source, f"{name}.w", f"{name}.b"], [out], name=name, kernel_shape=[3], pads=[1, 1])


def _batch_norm(name: str, source: str, out: str, inits: dict, scale: np.ndarray | None = None) -> onnx.NodeProto:
    inits[f"{name}.scale"] = RNG.uniform(0.2, 2.0, C) if scale is None else scale
    inits[f"{name}.bias"] = RNG.normal(0, 0.5, C)
    inits[f"{name}.mean"] = RNG.normal(0, 0.5, C)
    inits[f"{name}.var"] = RNG.uniform(0.3, 3.0, C)
    return helper.make_node("BatchNormalization", [source] + [f"{name}.{p}" for p in ("scale", "bias", "mean", "var")],
                            [out], name=name)


def _ops(model: onnx.ModelProto) -> list[str]:
    return [node.op_type for node in model.graph.node]


def test_a_selu_after_a_conv_becomes_clip_exp_add_and_a_batch_norm_of_its_own_when_a_conv_follows() -> None:
    inits: dict = {}
    model = _model([_conv("c1", "x", "h", inits), helper.make_node("Selu", ["h"], ["s"]),
                    _conv("c2", "s", "y", inits)], inits)
    tuned = _tuned(model)
    assert _ops(tuned) == ["Conv", "Clip", "Clip", "Exp", "Add", "BatchNormalization", "Conv"]
    _assert_same_function(model, tuned)


def test_a_batch_norm_after_a_selu_absorbs_the_selu_scale_and_offset() -> None:
    inits: dict = {}
    model = _model([_conv("c1", "x", "h", inits), helper.make_node("Selu", ["h"], ["s"], alpha=1.5, gamma=1.2),
                    _batch_norm("bn", "s", "y", inits)], inits)
    tuned = _tuned(model)
    assert _ops(tuned) == ["Conv", "Clip", "Clip", "Exp", "Add", "BatchNormalization"]
    _assert_same_function(model, tuned)


@pytest.mark.parametrize("reason", ["graph input", "conv read twice"])
def test_a_selu_without_a_conv_of_its_own_before_it_stays(reason: str) -> None:
    inits: dict = {}
    if reason == "graph input":
        nodes = [helper.make_node("Selu", ["x"], ["s"]), _conv("c1", "s", "y", inits)]
    else:
        nodes = [_conv("c1", "x", "h", inits), helper.make_node("Selu", ["h"], ["s"]),
                 helper.make_node("Add", ["s", "h"], ["y"])]
    model = _model(nodes, inits)
    tuned = _tuned(model)
    assert "Selu" in _ops(tuned)
    _assert_same_function(model, tuned)


def test_a_max_pool_moves_above_a_selu_and_a_batch_norm_whose_scales_are_all_non_negative() -> None:
    inits: dict = {}
    scale = RNG.uniform(0.2, 2.0, C)
    scale[3] = 0.0  # a channel the batch norm flattens is still monotone
    model = _model([_conv("c1", "x", "h", inits), helper.make_node("Selu", ["h"], ["s"]),
                    _batch_norm("bn", "s", "b", inits, scale),
                    helper.make_node("MaxPool", ["b"], ["y"], kernel_shape=[2], strides=[2])], inits)
    tuned = _tuned(model)
    assert _ops(tuned) == ["Conv", "MaxPool", "Clip", "Clip", "Exp", "Add", "BatchNormalization"]
    _assert_same_function(model, tuned)


def test_a_max_pool_stays_below_a_batch_norm_with_a_negative_scale() -> None:
    inits: dict = {}
    scale = RNG.uniform(0.2, 2.0, C)
    scale[5] = -0.7  # max of a negated channel is its min: the pool cannot move up
    model = _model([_conv("c1", "x", "h", inits), helper.make_node("Selu", ["h"], ["s"]),
                    _batch_norm("bn", "s", "b", inits, scale),
                    helper.make_node("MaxPool", ["b"], ["y"], kernel_shape=[2], strides=[2])], inits)
    tuned = _tuned(model)
    assert _ops(tuned)[-1] == "MaxPool"
    _assert_same_function(model, tuned)


def test_a_max_pool_after_a_relu_is_left_for_onnxruntime_to_fuse_the_relu_into_its_conv() -> None:
    inits: dict = {}
    model = _model([_conv("c1", "x", "h", inits), helper.make_node("Relu", ["h"], ["r"]),
                    helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2], strides=[2])], inits)
    assert _ops(_tuned(model)) == ["Conv", "Relu", "MaxPool"]


def test_a_multiply_and_add_by_per_channel_constants_become_one_batch_norm() -> None:
    inits = {"a": RNG.uniform(0.5, 3.0, (1, C, 1)), "b": RNG.normal(0, 1, (1, C, 1))}
    model = _model([helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])], inits)
    tuned = _tuned(model)
    assert _ops(tuned) == ["BatchNormalization"]
    _assert_same_function(model, tuned)


def test_a_multiply_and_add_by_constants_that_vary_along_time_stay() -> None:
    inits = {"a": RNG.uniform(0.5, 3.0, (1, 1, L)), "b": RNG.normal(0, 1, (1, C, 1))}
    model = _model([helper.make_node("Mul", ["x", "a"], ["m"]), helper.make_node("Add", ["m", "b"], ["y"])], inits)
    assert _ops(_tuned(model)) == ["Mul", "Add"]


def test_a_reshape_to_its_input_shape_goes_and_one_that_changes_it_stays() -> None:
    inits: dict = {"same": np.array([-1, C, L], np.int64), "other": np.array([-1, C // 2, 2 * L], np.int64)}
    model = _model([_conv("c1", "x", "h", inits), helper.make_node("Reshape", ["h", "same"], ["r"]),
                    _conv("c2", "r", "h2", inits), helper.make_node("Reshape", ["h2", "other"], ["y"])], inits)
    tuned = _tuned(model)
    assert _ops(tuned) == ["Conv", "Conv", "Reshape"]
    _assert_same_function(model, tuned)
