"""The torch eager reference: the exported graph, op by op, through torch's own kernels.

What a user would otherwise run is their PyTorch model in eager mode. Rebuilding it from the
ONNX file itself (rather than from a checkpoint) times exactly the arithmetic the runtime
runs, for any exported architecture, with the per-op Python dispatch that eager mode pays.

Run by ``imu-anon bench`` in its own subprocess when torch and onnx are installed, because
the gateway runtime must never import them:

    python bench/torch_eager.py MODEL.onnx --cpu 1 [--quick]   # prints one JSON object

This file lives outside the ``edge_runtime`` package on purpose (dependencies point from
heavy to lean); it needs the repository checkout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edge_runtime.benchmark.device import pin_to  # noqa: E402
from edge_runtime.benchmark.timing import TimingPlan, measure  # noqa: E402
from edge_runtime.benchmark.workload import raw_windows  # noqa: E402
from edge_runtime.card import ModelCard  # noqa: E402


class UnsupportedOp(Exception):
    pass


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _ints(t: torch.Tensor | None) -> list[int] | None:
    return None if t is None else [int(v) for v in t.reshape(-1).tolist()]


def _pads(a: dict, dims: int) -> tuple[list[int], list[int]]:
    pads = list(a.get("pads", [0] * (2 * dims)))
    return pads[:dims], pads[dims:]


def _conv(x, w, b=None, **a):
    dims = w.dim() - 2
    begin, end = _pads(a, dims)
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedOp("Conv with auto_pad")
    if begin != end:
        x = F.pad(x, [p for pair in zip(reversed(begin), reversed(end)) for p in pair])
        begin = [0] * dims
    fn = (F.conv1d, F.conv2d, F.conv3d)[dims - 1]
    return fn(x, w, b, stride=a.get("strides", 1), padding=begin, dilation=a.get("dilations", 1),
              groups=a.get("group", 1))


def _conv_t(x, w, b=None, **a):
    dims = w.dim() - 2
    begin, end = _pads(a, dims)
    if begin != end or "output_shape" in a:
        raise UnsupportedOp("ConvTranspose with asymmetric pads or output_shape")
    fn = (F.conv_transpose1d, F.conv_transpose2d, F.conv_transpose3d)[dims - 1]
    return fn(x, w, b, stride=a.get("strides", 1), padding=begin,
              output_padding=a.get("output_padding", 0), groups=a.get("group", 1),
              dilation=a.get("dilations", 1))


def _maxpool(x, **a):
    kernel = a["kernel_shape"]
    begin, end = _pads(a, len(kernel))
    if begin != end:
        raise UnsupportedOp("MaxPool with asymmetric pads")
    fn = (F.max_pool1d, F.max_pool2d, F.max_pool3d)[len(kernel) - 1]
    return fn(x, kernel, stride=a.get("strides", kernel), padding=begin, ceil_mode=bool(a.get("ceil_mode", 0)))


def _reduce(fn):
    def op(x, axes=None, **a):
        axes = _ints(axes) if axes is not None else a.get("axes")
        keep = bool(a.get("keepdims", 1))
        if axes is None or len(axes) == 0:
            return fn(x, dim=tuple(range(x.dim())), keepdim=keep) if not a.get("noop_with_empty_axes") else x
        return fn(x, dim=tuple(axes), keepdim=keep)
    return op


def _slice(x, starts, ends, axes=None, steps=None, **a):
    starts, ends = _ints(starts), _ints(ends)
    axes = _ints(axes) or list(range(len(starts)))
    steps = _ints(steps) or [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        if st < 0:
            raise UnsupportedOp("Slice with a negative step")
        n = x.shape[ax]
        index[ax] = slice(max(-n, min(s, n)), max(-n, min(e, n)), st)
    return x[tuple(index)]


def _reshape(x, shape, **a):
    dims = _ints(shape)
    dims = [x.shape[i] if d == 0 and not a.get("allowzero") else d for i, d in enumerate(dims)]
    return x.reshape(dims)


def _unsqueeze(x, axes=None, **a):
    axes = sorted(_ints(axes) if axes is not None else a["axes"])
    for ax in axes:
        x = x.unsqueeze(ax if ax >= 0 else ax + x.dim() + 1)
    return x


def _squeeze(x, axes=None, **a):
    axes = _ints(axes) if axes is not None else a.get("axes")
    if not axes:
        return x.squeeze()
    for ax in sorted((ax % x.dim() for ax in axes), reverse=True):
        x = x.squeeze(ax)
    return x


def _bn(x, scale, bias, mean, var, **a):
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=a.get("epsilon", 1e-5))


def _selu(x, **a):
    alpha, gamma = a.get("alpha", SELU_ALPHA), a.get("gamma", SELU_GAMMA)
    if abs(alpha - SELU_ALPHA) < 1e-6 and abs(gamma - SELU_GAMMA) < 1e-6:
        return F.selu(x)
    return gamma * torch.where(x > 0, x, alpha * torch.expm1(x))


SELU_ALPHA, SELU_GAMMA = 1.6732632423543772, 1.0507009873554805


def _gemm(a_, b, c=None, **a):
    a_ = a_.t() if a.get("transA") else a_
    b = b.t() if a.get("transB") else b
    y = a.get("alpha", 1.0) * (a_ @ b)
    return y if c is None else y + a.get("beta", 1.0) * c


def _split(x, split=None, **a):
    axis = a.get("axis", 0)
    sizes = _ints(split) if split is not None else a.get("split")
    if sizes is None:
        n = a.get("num_outputs")
        return torch.chunk(x, n, dim=axis)
    return torch.split(x, sizes, dim=axis)


OPS = {
    "Conv": _conv, "ConvTranspose": _conv_t, "MaxPool": _maxpool, "BatchNormalization": _bn,
    "Selu": _selu,
    "Relu": lambda x, **a: F.relu(x), "Sigmoid": lambda x, **a: torch.sigmoid(x),
    "Tanh": lambda x, **a: torch.tanh(x), "Exp": lambda x, **a: torch.exp(x), "Log": lambda x, **a: torch.log(x),
    "Abs": lambda x, **a: torch.abs(x), "Neg": lambda x, **a: -x, "Sqrt": lambda x, **a: torch.sqrt(x),
    "Add": lambda x, y, **a: x + y, "Sub": lambda x, y, **a: x - y, "Mul": lambda x, y, **a: x * y,
    "Div": lambda x, y, **a: x / y, "Pow": lambda x, y, **a: torch.pow(x, y),
    "Max": lambda *xs, **a: torch.stack(torch.broadcast_tensors(*xs)).amax(0),
    "Min": lambda *xs, **a: torch.stack(torch.broadcast_tensors(*xs)).amin(0),
    "Clip": lambda x, lo=None, hi=None, **a: torch.clamp(x, lo, hi),
    "MatMul": lambda x, y, **a: x @ y, "Gemm": _gemm,
    "ReduceSum": _reduce(torch.sum), "ReduceMean": _reduce(torch.mean),
    "ReduceSumSquare": _reduce(lambda x, dim, keepdim: torch.sum(x * x, dim=dim, keepdim=keepdim)),
    "Reshape": _reshape, "Unsqueeze": _unsqueeze, "Squeeze": _squeeze, "Slice": _slice, "Split": _split,
    "Concat": lambda *xs, **a: torch.cat(xs, dim=a["axis"]),
    "Transpose": lambda x, **a: x.permute(*a["perm"]) if "perm" in a else x.permute(*reversed(range(x.dim()))),
    "Flatten": lambda x, **a: x.reshape(int(np.prod(x.shape[:a.get("axis", 1)])), -1),
    "Identity": lambda x, **a: x, "Dropout": lambda x, *rest, **a: x,
    "Shape": lambda x, **a: torch.tensor(list(x.shape)[a.get("start", 0):a.get("end")], dtype=torch.int64),
    "Gather": lambda x, i, **a: torch.index_select(x, a.get("axis", 0), i.reshape(-1).long()).reshape(
        list(x.shape[:a.get("axis", 0)]) + list(i.shape) + list(x.shape[a.get("axis", 0) + 1:])),
    "Cast": lambda x, **a: x.to({1: torch.float32, 7: torch.int64, 6: torch.int32, 9: torch.bool}[a["to"]]),
    "Expand": lambda x, shape, **a: x * torch.ones(_ints(shape), dtype=x.dtype),
    "Where": lambda c, x, y, **a: torch.where(c, x, y),
}


class GraphModule:
    """Runs an ONNX graph node by node with torch ops, weights as torch tensors."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.consts = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer}
        self.inputs = [i.name for i in graph.input if i.name not in self.consts]
        self.outputs = [o.name for o in graph.output]
        self.nodes = []
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                raise UnsupportedOp(f"{node.domain}.{node.op_type}")
            if node.op_type == "Constant":
                value = _attrs(node).get("value")
                if value is None:
                    raise UnsupportedOp("Constant without a tensor value")
                self.consts[node.output[0]] = torch.from_numpy(numpy_helper.to_array(value).copy())
                continue
            if node.op_type not in OPS:
                raise UnsupportedOp(node.op_type)
            self.nodes.append((OPS[node.op_type], list(node.input), list(node.output), _attrs(node)))

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> torch.Tensor:
        env = dict(self.consts)
        env[self.inputs[0]] = torch.from_numpy(x)
        for fn, ins, outs, attrs in self.nodes:
            result = fn(*[env[i] if i else None for i in ins], **attrs)
            if len(outs) == 1:
                env[outs[0]] = result
            else:
                env.update(zip(outs, result))
        return env[self.outputs[0]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="torch eager reference timing of an imu-anon ONNX model")
    parser.add_argument("model")
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--check", action="store_true", help="also print the first output (for tests)")
    args = parser.parse_args(argv)
    pin_to(args.cpu)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    model = onnx.load(args.model)
    card = ModelCard.from_metadata({p.key: p.value for p in model.metadata_props}, source=args.model)
    try:
        module = GraphModule(model)
    except UnsupportedOp as exc:
        print(json.dumps({"skipped": f"the torch reference cannot run operator {exc}"}))
        return 0
    plan = TimingPlan.quick() if args.quick else TimingPlan()
    result = measure(module, lambda batch: raw_windows(card, batch), plan)
    result["torch"] = torch.__version__
    result["threads"] = torch.get_num_threads()
    if args.check:
        result["output"] = module(raw_windows(card, 1)).numpy().tolist()
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
