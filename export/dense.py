"""The deployed graph in its compute-dense form: the same function, cheaper operators.

onnxruntime runs ``ConvTranspose`` through a scatter (col2im) after its matrix product, and
cannot fuse the activation that follows it; a ``Conv`` gets its im2col-free paths and its
``Relu`` fused. So every 1-D transposed convolution is rewritten as a convolution, and then
every 1-D convolution and max-pool as its 2-D twin over [N, C, 1, L], the only form for which
onnxruntime has its blocked-layout (NCHWc) kernels. Transposed convolutions become:

* stride 1: the same kernel, flipped in time, with input and output channels swapped and the
  complementary padding (``k - 1 - p`` each side);
* stride s (a decoder's upsampling): s polyphase convolutions stacked into one ``Conv`` with s x
  the output channels (output phase r of sample m only ever sees inputs m + d for a few offsets
  d), followed by an interleave (Reshape, Transpose, Reshape) back to s x the length. A ``Relu``
  that followed the transposed convolution moves before the interleave, onto the ``Conv``.

Weights are only re-indexed, never recomputed, so the rewritten graph matches the exported one
to float32 rounding (the parity check of ``imu-anon export`` compares the file with PyTorch).
FLOPs per window are counted on the graph as exported, before this rewrite: the zero taps a
polyphase kernel carries are not the model's arithmetic.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
from onnx import helper, numpy_helper

log = logging.getLogger(__name__)


def densify(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` with its 1-D ``ConvTranspose`` nodes rewritten as ``Conv`` (in place; returned)."""
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}
    nodes: list[onnx.NodeProto] = []
    absorbed: set[int] = set()  # ids of Relu nodes moved onto a rewritten Conv
    rewritten = 0
    for node in graph.node:
        if id(node) in absorbed:
            continue
        plan = _conv_transpose_plan(node, weights)
        if plan is None:
            nodes.append(node)
            continue
        relu = _sole_relu(node.output[0], consumers, outputs)
        if relu is not None:
            absorbed.add(id(relu))
        nodes.extend(_as_conv(node, plan, weights, graph, relu))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    widened = _as_2d(graph)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # shapes of rewritten tensors are stale; onnxruntime infers its own
    log.debug("dense form: %d ConvTranspose node(s) rewritten as Conv, %d 1-D node(s) made 2-D", rewritten, widened)
    return model


_UNARY = {"Relu", "LeakyRelu", "Selu", "Elu", "Sigmoid", "Tanh"}  # shape-blind: a [N, C, 1, L] input is fine


def _as_2d(graph: onnx.GraphProto) -> int:
    """Every 1-D Conv and MaxPool as its 2-D twin over [N, C, 1, L]. onnxruntime's blocked-layout
    (NCHWc) convolutions, several times denser on AVX2/NEON, exist for 2-D only. Tensors between
    such nodes stay 4-D; a rank-3 Reshape feeding one gains the 1, and anything else that reads a
    4-D tensor gets it back through a Squeeze. Returns how many nodes were made 2-D."""
    weights = {init.name: init for init in graph.initializer}
    producers = {out: node for node in graph.node for out in node.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    wide: set[str] = set()  # tensors now [N, C, 1, L]
    nodes: list[onnx.NodeProto] = []
    widened = 0

    def narrow(name: str) -> str:
        squeezed = f"{name}.as_1d"
        if squeezed not in producers:
            axes = _add_weight(graph, f"{name}.as_1d_axes", [2])
            producers[squeezed] = helper.make_node("Squeeze", [name, axes], [squeezed], name=f"{name}.as_1d")
            nodes.append(producers[squeezed])
        return squeezed

    for node in graph.node:
        if _is_1d(node, weights):
            source = node.input[0]
            if source not in wide and not _widen_reshape(producers.get(source), weights, readers, graph):
                axes = _add_weight(graph, f"{source}.as_2d_axes", [2])
                nodes.append(helper.make_node("Unsqueeze", [source, axes], [f"{source}.as_2d"], name=f"{source}.as_2d"))
                node.input[0] = f"{source}.as_2d"
            _make_2d(node, weights)
            wide.update(node.output[:1])
            widened += 1
        elif node.op_type in _UNARY and node.input[0] in wide:
            wide.update(node.output)
        elif node.op_type == "Reshape" and node.input[0] in wide and _keeps_leading(node, weights):
            pass  # a Reshape with a full target shape reads a 4-D tensor as well as the 3-D one
        else:
            for i, name in enumerate(node.input):
                if name in wide:
                    node.input[i] = narrow(name)
        nodes.append(node)
    for out in graph.output:
        if out.name in wide:  # never the case for an exported anonymiser (it ends with a Reshape)
            raise ValueError(f"graph output {out.name!r} would become 4-D")
    del graph.node[:]
    graph.node.extend(nodes)
    return widened


def _is_1d(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    a = _attrs(node)
    if node.op_type == "MaxPool":
        return len(a.get("kernel_shape", [])) == 1 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET")
    return (node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights
            and len(weights[node.input[1]].dims) == 3 and a.get("auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def _make_2d(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> None:
    a = _attrs(node)
    widened = {"kernel_shape": [1, *a["kernel_shape"]] if "kernel_shape" in a else None,
               "strides": [1, *a.get("strides", [1])], "dilations": [1, *a.get("dilations", [1])]}
    pads = list(a.get("pads", [0, 0]))
    widened["pads"] = [0, pads[0], 0, pads[1]]
    del node.attribute[:]
    for key, value in a.items():
        node.attribute.append(helper.make_attribute(key, widened.get(key) or value))
    for key in ("strides", "dilations", "pads"):
        if key not in a:
            node.attribute.append(helper.make_attribute(key, widened[key]))
    if node.op_type == "Conv":
        w = weights[node.input[1]]
        w.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(w)[:, :, None, :].copy(), w.name))


def _shape_constant(node: onnx.NodeProto | None, weights: dict[str, onnx.TensorProto]) -> np.ndarray | None:
    if node is None or node.op_type != "Reshape" or node.input[1] not in weights:
        return None
    return numpy_helper.to_array(weights[node.input[1]])


def _keeps_leading(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    """A Reshape whose target copies no input dimension past the channels (0 means "copy")."""
    shape = _shape_constant(node, weights)
    return shape is not None and not (shape[2:] == 0).any()


def _widen_reshape(node: onnx.NodeProto | None, weights: dict[str, onnx.TensorProto],
                   readers: dict[str, list[onnx.NodeProto]], graph: onnx.GraphProto) -> bool:
    """Make a rank-3 Reshape that only feeds 1-D nodes produce [N, C, 1, L]; False if it cannot."""
    shape = _shape_constant(node, weights)
    if shape is None or shape.shape != (3,) or (shape[2:] == 0).any():
        return False
    if not all(_is_1d(r, weights) for r in readers.get(node.output[0], [])):
        return False
    node.input[1] = _add_weight(graph, f"{node.output[0]}.shape_2d", [int(shape[0]), int(shape[1]), 1, int(shape[2])])
    return True


def _attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _conv_transpose_plan(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> dict | None:
    """What a 1-D, ungrouped, undilated ConvTranspose with constant weights needs to become a
    Conv; None for anything else (left as it is)."""
    if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in weights:
        return None
    a = _attrs(node)
    w = numpy_helper.to_array(weights[node.input[1]])
    if w.ndim != 3 or a.get("group", 1) != 1 or list(a.get("dilations", [1])) != [1]:
        return None
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET") or "output_shape" in a:
        return None
    k = w.shape[2]
    stride = int(list(a.get("strides", [1]))[0])
    pad_left, pad_right = (int(p) for p in a.get("pads", [0, 0]))
    extra = int(list(a.get("output_padding", [0]))[0])
    if stride == 1 and extra == 0 and pad_left <= k - 1 and pad_right <= k - 1:
        return {"stride": 1, "w": w, "pads": [k - 1 - pad_left, k - 1 - pad_right]}
    # Output length s * L (what a decoder's upsampling wants): every phase gets exactly L outputs.
    if stride > 1 and k + extra - pad_left - pad_right == stride and pad_left == pad_right:
        return {"stride": stride, "w": w, "pad": pad_left}
    return None


def _sole_relu(name: str, consumers: dict[str, list[onnx.NodeProto]], outputs: set[str]) -> onnx.NodeProto | None:
    users = consumers.get(name, [])
    if name in outputs or len(users) != 1 or users[0].op_type != "Relu":
        return None
    return users[0]


def _add_weight(graph: onnx.GraphProto, name: str, array: np.ndarray | list[int]) -> str:
    """A new initializer: float32 weights, or int64 when given a list (shapes, axes)."""
    dtype = np.int64 if isinstance(array, list) else np.float32
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), name))
    return name


def _as_conv(node: onnx.NodeProto, plan: dict, weights: dict[str, onnx.TensorProto], graph: onnx.GraphProto,
             relu: onnx.NodeProto | None) -> list[onnx.NodeProto]:
    w = plan["w"]  # [in, out, k]
    c_in, c_out, k = w.shape
    base = node.name or node.output[0]
    result = relu.output[0] if relu is not None else node.output[0]
    bias = list(node.input[2:3])
    if plan["stride"] == 1:
        conv_w = _add_weight(graph, f"{base}.dense_weight", w[:, :, ::-1].transpose(1, 0, 2))
        conv_out = node.output[0] if relu is not None else result
        out = [helper.make_node("Conv", [node.input[0], conv_w, *bias], [conv_out], name=f"{base}.dense",
                                kernel_shape=[k], pads=plan["pads"], strides=[1])]
        if relu is not None:
            out.append(relu)
        return out
    s, p = plan["stride"], plan["pad"]
    # y[s*m + r] = sum over taps j with (r + p - j) % s == 0 of W[:, :, j]^T x[m + (r + p - j) // s]
    taps = [(r, j, (r + p - j) // s) for r in range(s) for j in range(k) if (r + p - j) % s == 0]
    d_min, d_max = min(t[2] for t in taps), max(t[2] for t in taps)
    kernel = np.zeros((s * c_out, c_in, d_max - d_min + 1), dtype=np.float32)
    for r, j, d in taps:
        kernel[r * c_out:(r + 1) * c_out, :, d - d_min] = w[:, :, j].T
    inputs = [node.input[0], _add_weight(graph, f"{base}.dense_weight", kernel)]
    if bias:
        b = numpy_helper.to_array(weights[bias[0]]) if bias[0] in weights else None
        if b is None:
            raise ValueError(f"{base}: a ConvTranspose bias that is not a constant cannot be rewritten")
        inputs.append(_add_weight(graph, f"{base}.dense_bias", np.tile(b, s)))
    phases = f"{base}.dense_phases"
    out = [helper.make_node("Conv", inputs, [phases], name=f"{base}.dense", kernel_shape=[d_max - d_min + 1],
                            pads=[-d_min, d_max], strides=[1])]
    if relu is not None:
        out.append(helper.make_node("Relu", [phases], [f"{phases}.relu"], name=f"{base}.dense_relu"))
        phases = f"{phases}.relu"
    split = _add_weight(graph, f"{base}.dense_split_shape", [0, s, c_out, -1])
    merged = _add_weight(graph, f"{base}.dense_merge_shape", [0, c_out, -1])
    out += [
        helper.make_node("Reshape", [phases, split], [f"{base}.dense_split"], name=f"{base}.dense_split"),
        helper.make_node("Transpose", [f"{base}.dense_split"], [f"{base}.dense_interleave"],
                         name=f"{base}.dense_interleave", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{base}.dense_interleave", merged], [result], name=f"{base}.dense_merge"),
    ]
    return out
