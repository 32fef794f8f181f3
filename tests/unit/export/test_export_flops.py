"""FLOP counting over ONNX graphs: known answers worked out by hand, and the trainer's count."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import torch
from onnx import TensorProto, helper, numpy_helper

from edge_runtime.card import INPUT_NAME, OUTPUT_NAME
from export.flops import count_flops, weight_count
from trainer.models import build_anonymiser
from trainer.models import count_flops as torch_count


def _model(nodes, inputs, outputs, inits) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    onnx.checker.check_model(model)
    return model


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.ones(shape, dtype=np.float32), name)


def test_a_conv1d_counts_two_flops_per_multiply_add_at_batch_one() -> None:
    # 4 -> 8 channels, kernel 3, 'same' padding over 32 samples: 8 * 32 outputs of 4 * 3 products
    model = _model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1], kernel_shape=[3])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 32])],
        [_w("w", 8, 4, 3)],
    )
    count = count_flops(model)
    assert count.total == 2 * 8 * 32 * 4 * 3 == 6144
    assert count.by_op == {"Conv": 6144}


def test_a_strided_conv_transpose_counts_per_input_value() -> None:
    # every one of the 4 * 16 inputs is scattered into 8 outputs * kernel 3
    model = _model(
        [helper.make_node("ConvTranspose", ["x", "w"], ["y"], strides=[2], pads=[1, 1], output_padding=[1],
                          kernel_shape=[3])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 16])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 32])],
        [_w("w", 4, 8, 3)],
    )
    assert count_flops(model).total == 2 * 4 * 16 * 8 * 3


def test_gemm_and_matmul_count_m_k_n_and_elementwise_is_kept_apart() -> None:
    model = _model(
        [helper.make_node("Gemm", ["x", "w"], ["h"], transB=1),
         helper.make_node("Relu", ["h"], ["r"]),
         helper.make_node("MatMul", ["r", "v"], ["y"])],
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 5])],
        [_w("w", 20, 10), _w("v", 20, 5)],
    )
    count = count_flops(model)
    assert count.by_op == {"Gemm": 2 * 10 * 20, "MatMul": 2 * 20 * 5}
    assert count.total == 600
    assert count.elementwise == 20  # the Relu's outputs, not part of the total
    assert weight_count(model) == 20 * 10 + 20 * 5


def test_a_qdq_quantised_conv_counts_like_its_float_twin() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8, 32])
    inits = [
        numpy_helper.from_array(np.ones((8, 4, 3), dtype=np.int8), "wq"),
        numpy_helper.from_array(np.full(8, 0.1, dtype=np.float32), "ws"),
        numpy_helper.from_array(np.zeros(8, dtype=np.int8), "wz"),
    ]
    model = _model(
        [helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
         helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1], kernel_shape=[3])],
        [x], [y], inits,
    )
    assert count_flops(model).total == 6144


def test_the_count_over_an_exported_trainer_model_equals_the_trainers_own() -> None:
    torch.manual_seed(0)
    net = build_anonymiser("lean", 2, 64).eval()
    # the TorchScript exporter is quick and enough for counting; the product path uses dynamo
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros(1, 2, 64),), buf, dynamo=False, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], opset_version=18)
    model = onnx.load_from_string(buf.getvalue())
    assert count_flops(model).total == torch_count(net, 2, 64) > 0
