"""Counting an ONNX graph's arithmetic for one window (``imu_anon.flops_per_window``).

FLOPs here are multiply-adds x 2 of the matrix-like operators -- Conv, ConvTranspose, Gemm,
MatMul and their quantised forms -- at batch 1, which is what dominates a convolutional
autoencoder and what the paper's "about 65 MFLOP a window" counts. Elementwise work (the
standardisation, activations, batch-norm if not folded) is reported separately and is not
part of ``total``. Bias additions are not counted. The same count serves fp32 and QDQ int8
files, since a QDQ graph keeps the float operators between its (De)QuantizeLinear nodes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from onnx import shape_inference

from export.errors import ExportError

# Operator -> index of its weight input (the other operand of the multiply-adds).
_CONV_WEIGHT = {"Conv": 1, "ConvInteger": 1, "QLinearConv": 3}
_CONV_T_WEIGHT = {"ConvTranspose": 1}
_MATMUL = {"MatMul": (0, 1), "MatMulInteger": (0, 1), "QLinearMatMul": (0, 3)}
_ELEMENTWISE = {
    "Add", "Sub", "Mul", "Div", "Sqrt", "Pow", "Relu", "Selu", "Elu", "LeakyRelu", "Sigmoid",
    "Tanh", "BatchNormalization", "ReduceSum", "ReduceSumSquare", "ReduceMean", "MaxPool",
    "AveragePool", "Softmax", "Abs", "Neg", "Exp", "Log", "Clip",
}


@dataclass(frozen=True, slots=True, kw_only=True)
class FlopCount:
    """Arithmetic of one inference at batch 1."""

    total: int  # multiply-adds x 2 of Conv / ConvTranspose / Gemm / MatMul
    by_op: dict[str, int] = field(default_factory=dict)
    elementwise: int = 0  # one per output element of each elementwise operator, not in ``total``

    def __str__(self) -> str:
        parts = ", ".join(f"{op} {n / 1e6:.2f}M" for op, n in sorted(self.by_op.items()))
        return f"{self.total / 1e6:.2f} MFLOP per window ({parts}; elementwise {self.elementwise / 1e6:.2f}M)"


def _batch_one(model: onnx.ModelProto) -> onnx.ModelProto:
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].Clear()
            dims[0].dim_value = 1
    del fixed.graph.value_info[:]
    return shape_inference.infer_shapes(fixed, strict_mode=False, data_prop=True)


def _shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    graph = model.graph
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if all(d.HasField("dim_value") for d in dims):
            shapes[value.name] = tuple(d.dim_value for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(init.dims)
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                    shapes[node.output[0]] = tuple(attr.t.dims)
    return shapes


def _require(shapes: dict[str, tuple[int, ...]], name: str, node: onnx.NodeProto) -> tuple[int, ...]:
    if name not in shapes:
        raise ExportError(
            f"cannot count FLOPs: the shape of {name!r} (an input of {node.op_type} node "
            f"{node.name!r}) is unknown after shape inference; export with static shapes but the batch"
        )
    return shapes[name]


def _gemm_flops(node: onnx.NodeProto, shapes: dict[str, tuple[int, ...]]) -> int:
    attrs = {a.name: a.i for a in node.attribute if a.type == onnx.AttributeProto.INT}
    a = _require(shapes, node.input[0], node)
    b = _require(shapes, node.input[1], node)
    m, k = (a[1], a[0]) if attrs.get("transA") else (a[0], a[1])
    n = b[0] if attrs.get("transB") else b[1]
    return 2 * m * k * n


def count_flops(model: onnx.ModelProto | str | Path) -> FlopCount:
    """Multiply-adds x 2 of one window through ``model`` (a proto or a path), batch fixed to 1."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model))
    inferred = _batch_one(model)
    shapes = _shapes(inferred)
    by_op: dict[str, int] = {}
    elementwise = 0
    for node in inferred.graph.node:
        op = node.op_type
        if op in _CONV_WEIGHT:
            out = _require(shapes, node.output[0], node)
            weight = _require(shapes, node.input[_CONV_WEIGHT[op]], node)
            flops = 2 * math.prod(out) * math.prod(weight[1:])
        elif op in _CONV_T_WEIGHT:
            inp = _require(shapes, node.input[0], node)
            weight = _require(shapes, node.input[_CONV_T_WEIGHT[op]], node)
            flops = 2 * math.prod(inp) * math.prod(weight[1:])
        elif op in _MATMUL:
            a_index, _ = _MATMUL[op]
            out = _require(shapes, node.output[0], node)
            k = _require(shapes, node.input[a_index], node)[-1]
            flops = 2 * math.prod(out) * k
        elif op == "Gemm":
            flops = _gemm_flops(node, shapes)
        else:
            if op in _ELEMENTWISE and node.output[0] in shapes:
                elementwise += math.prod(shapes[node.output[0]])
            continue
        by_op[op] = by_op.get(op, 0) + flops
    return FlopCount(total=sum(by_op.values()), by_op=by_op, elementwise=elementwise)


def weight_count(model: onnx.ModelProto) -> int:
    """Number of values in the graph's initializers (parameters, buffers and constants)."""
    return sum(math.prod(init.dims) for init in model.graph.initializer)
