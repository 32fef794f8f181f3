"""The weights fingerprint: blind to metadata and naming order, sensitive to every weight bit."""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from export.weights import weights_sha256


def _model(w: np.ndarray, b: np.ndarray, reverse: bool = False) -> onnx.ModelProto:
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[1])], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4])],
        inits[::-1] if reverse else inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


W = np.arange(4, dtype=np.float32).reshape(2, 2, 1)
B = np.array([0.5, -0.5], dtype=np.float32)


def test_the_fingerprint_follows_the_documented_definition() -> None:
    digest = hashlib.sha256()
    for name, array, dtype in (("b", B, TensorProto.FLOAT), ("w", W, TensorProto.FLOAT)):
        digest.update(name.encode() + b"\0")
        digest.update(f"{dtype}\0{','.join(map(str, array.shape))}\0".encode())
        digest.update(array.astype("<f4").tobytes())
    assert weights_sha256(_model(W, B)) == digest.hexdigest()


def test_metadata_and_initializer_order_do_not_change_the_fingerprint() -> None:
    plain = _model(W, B)
    labelled = _model(W, B, reverse=True)
    helper.set_model_props(labelled, {"imu_anon.metrics": '{"activity_f1": 90}'})
    assert weights_sha256(plain) == weights_sha256(labelled)


def test_one_flipped_bit_in_any_weight_changes_the_fingerprint() -> None:
    base = weights_sha256(_model(W, B))
    flipped = W.copy()
    flipped.view(np.uint32)[1, 0, 0] ^= 1  # the least significant mantissa bit
    assert weights_sha256(_model(flipped, B)) != base
    assert weights_sha256(_model(W, B + np.float32(1e-7))) != base


def test_constant_nodes_count_as_weights() -> None:
    model = _model(W, B)
    before = weights_sha256(model)
    model.graph.node.insert(0, helper.make_node(
        "Constant", [], ["k"], value=numpy_helper.from_array(np.array([3.0], dtype=np.float32))))
    assert weights_sha256(model) != before
