"""The deployed graph in its compute-dense form: the same function, cheaper operators.

First, for a network whose activations onnxruntime can keep in its blocked layout (ReLU), every
1-D convolution, transposed convolution and max-pool becomes its 2-D twin over [N, C, 1, L], the
only form for which onnxruntime has its blocked-layout (NCHWc) kernels. A network whose
activations leave that layout after every layer (SELU) stays 1-D: the layout conversions around
each layer cost more than the blocked kernels save. Then every transposed convolution becomes a
convolution: onnxruntime runs ``ConvTranspose`` through a scatter (col2im) after its matrix
product and cannot fuse the activation that follows it; a ``Conv`` gets its im2col-free paths
and its ``Relu`` fused.

* stride 1: the same kernel, flipped in time, with input and output channels swapped and the
  complementary padding (``k - 1 - p`` each side);
* stride s (a decoder's upsampling): output phase r of sample m only ever sees inputs m + d for
  a few offsets d, so each phase is a convolution, and an interleave puts phase r of step m at
  time s*m + r. Element-wise activations and batch norms that followed the transposed
  convolution move before the interleave, onto the phases, so a ``Relu`` fuses and the
  interleave feeds the next convolution directly. In the 1-D form each phase is its own
  ``Conv`` with only its own taps, stacked on a new last axis [N, C, L, s] that a Reshape reads
  as [N, C, s*L]. In the 2-D form the phases are one ``Conv`` with s x the output channels (a
  batch norm's parameters repeated per phase), and the interleave is Transpose to
  channels-last, Reshape, Transpose back: onnxruntime turns both transposes into the
  channels-last forms of the layout conversions (ReorderOutput, ReorderInput) that the blocked
  layout needs anyway, so it costs no copy of its own.

Last, :mod:`export.elementwise` rewrites what lies between the convolutions.

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

from export.elementwise import tune_elementwise
from export.graph_edit import GraphIndex, add_weight, attrs, prune_initializers

log = logging.getLogger(__name__)


def densify(model: onnx.ModelProto) -> onnx.ModelProto:
    """``model`` in its compute-dense form (in place; returned)."""
    graph = model.graph
    del graph.value_info[:]  # shapes of rewritten tensors go stale; onnxruntime infers its own
    widened = _as_2d(graph) if _blocked_layout_pays(graph) else 0
    rewritten = _transposed_as_conv(graph)
    tuned = tune_elementwise(model)
    prune_initializers(graph)
    log.debug("dense form: %d 1-D node(s) made 2-D, %d ConvTranspose node(s) rewritten as Conv, %s",
              widened, rewritten, tuned)
    return model


_UNARY = {"Relu", "LeakyRelu", "Selu", "Elu", "Sigmoid", "Tanh"}  # shape-blind: a [N, C, 1, L] input is fine
# Activations onnxruntime's blocked-layout Conv fuses or runs in that layout; any other sends its
# tensor back to NCHW and again to NCHWc around it, at every layer.
_BLOCKED_ACTIVATIONS = {"Relu", "Sigmoid", "Tanh"}
_NOTSET = (b"NOTSET", "NOTSET")


def _blocked_layout_pays(graph: onnx.GraphProto) -> bool:
    """Whether 2-D convolutions (onnxruntime's blocked layout) beat 1-D ones (im2col and a matrix
    product) for this graph. Measured on one AVX2 core they do by 1.3-1.45x for the ReLU models,
    but a SELU network leaves the blocked layout after every layer, and as 1-D it ran 5-8 % faster."""
    return all(node.op_type in _BLOCKED_ACTIVATIONS for node in graph.node if node.op_type in _UNARY)


def _as_2d(graph: onnx.GraphProto) -> int:
    """Every 1-D Conv, MaxPool and (rewritable) ConvTranspose as its 2-D twin over [N, C, 1, L].
    Tensors between such nodes stay 4-D (element-wise activations and batch norms read them as
    they are); a rank-3 Reshape feeding one gains the 1, and anything else that reads a 4-D
    tensor gets it back through a Squeeze. Returns how many nodes were made 2-D."""
    index = GraphIndex(graph)
    weights = index.weights
    wide: set[str] = set()  # tensors now [N, C, 1, L]
    nodes: list[onnx.NodeProto] = []
    widened = 0

    def narrow(name: str) -> str:
        squeezed = f"{name}.as_1d"
        if squeezed not in index.producers:
            axes = add_weight(graph, f"{name}.as_1d_axes", [2])
            index.producers[squeezed] = helper.make_node("Squeeze", [name, axes], [squeezed], name=f"{name}.as_1d")
            nodes.append(index.producers[squeezed])
        return squeezed

    for node in graph.node:
        if _is_1d(node, weights):
            source = node.input[0]
            if source not in wide and not _widen_reshape(index.producers.get(source), index, graph):
                axes = add_weight(graph, f"{source}.as_2d_axes", [2])
                nodes.append(helper.make_node("Unsqueeze", [source, axes], [f"{source}.as_2d"], name=f"{source}.as_2d"))
                node.input[0] = f"{source}.as_2d"
            _make_2d(node, weights)
            wide.update(node.output[:1])
            widened += 1
        elif _channelwise(node, weights) and node.input[0] in wide:
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


def _channelwise(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    """An element-wise activation, or an inference batch norm with constant parameters: reads
    [N, C, ...] of any rank, one channel at a time."""
    if node.op_type in _UNARY:
        return True
    return (node.op_type == "BatchNormalization" and len(node.output) == 1 and len(node.input) == 5
            and all(name in weights and len(weights[name].dims) == 1 for name in node.input[1:])
            and not attrs(node).get("training_mode", 0))


def _is_1d(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> bool:
    a = attrs(node)
    if a.get("auto_pad", b"NOTSET") not in _NOTSET:
        return False
    if node.op_type == "MaxPool":
        return len(a.get("kernel_shape", [])) == 1 and len(node.output) == 1
    if node.op_type == "ConvTranspose":
        return _conv_transpose_plan(node, weights) is not None and len(weights[node.input[1]].dims) == 3
    return (node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in weights
            and len(weights[node.input[1]].dims) == 3)


def _make_2d(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> None:
    a = attrs(node)
    widened = {"kernel_shape": [1, *a["kernel_shape"]] if "kernel_shape" in a else None,
               "strides": [1, *a.get("strides", [1])], "dilations": [1, *a.get("dilations", [1])],
               "output_padding": [0, *a["output_padding"]] if "output_padding" in a else None}
    pads = list(a.get("pads", [0, 0]))
    widened["pads"] = [0, pads[0], 0, pads[1]]
    del node.attribute[:]
    for key, value in a.items():
        node.attribute.append(helper.make_attribute(key, widened.get(key) or value))
    for key in ("strides", "dilations", "pads"):
        if key not in a:
            node.attribute.append(helper.make_attribute(key, widened[key]))
    if node.op_type in ("Conv", "ConvTranspose"):
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


def _widen_reshape(node: onnx.NodeProto | None, index: GraphIndex, graph: onnx.GraphProto) -> bool:
    """Make a rank-3 Reshape that only feeds 1-D nodes produce [N, C, 1, L]; False if it cannot."""
    shape = _shape_constant(node, index.weights)
    if shape is None or shape.shape != (3,) or (shape[2:] == 0).any():
        return False
    if not all(_is_1d(r, index.weights) for r in index.readers.get(node.output[0], [])):
        return False
    node.input[1] = add_weight(graph, f"{node.output[0]}.shape_2d",
                               [int(shape[0]), int(shape[1]), 1, int(shape[2])])
    return True


def _time_attrs(node: onnx.NodeProto, rank: int) -> dict[str, int] | None:
    """Stride, dilation, pads and output padding along time of a node with ``rank`` spatial axes
    (1, or 2 over [N, C, 1, L]); None if a 2-D node also strides, dilates or pads the unit axis."""
    a = attrs(node)
    strides = list(a.get("strides", [1] * rank))
    dilations = list(a.get("dilations", [1] * rank))
    pads = list(a.get("pads", [0] * 2 * rank))
    extra = list(a.get("output_padding", [0] * rank))
    if rank == 2 and (strides[0], dilations[0], pads[0], pads[2], extra[0]) != (1, 1, 0, 0, 0):
        return None
    return {"stride": int(strides[-1]), "dilation": int(dilations[-1]), "pad_left": int(pads[rank - 1]),
            "pad_right": int(pads[-1]), "extra": int(extra[-1])}


def _conv_transpose_plan(node: onnx.NodeProto, weights: dict[str, onnx.TensorProto]) -> dict | None:
    """What an ungrouped, undilated ConvTranspose along time (1-D, or 2-D over [N, C, 1, L]) with
    constant weights needs to become a Conv; None for anything else (left as it is)."""
    if node.op_type != "ConvTranspose" or len(node.input) < 2 or node.input[1] not in weights:
        return None
    a = attrs(node)
    w = numpy_helper.to_array(weights[node.input[1]])
    rank = w.ndim - 2
    if rank == 2 and w.shape[2] == 1:
        w = w[:, :, 0, :]
    elif rank != 1:
        return None
    t = _time_attrs(node, rank)
    if t is None or a.get("group", 1) != 1 or t["dilation"] != 1:
        return None
    if a.get("auto_pad", b"NOTSET") not in _NOTSET or "output_shape" in a:
        return None
    k, stride, pad_left, pad_right, extra = w.shape[2], t["stride"], t["pad_left"], t["pad_right"], t["extra"]
    if stride == 1 and extra == 0 and pad_left <= k - 1 and pad_right <= k - 1:
        return {"stride": 1, "w": w, "rank": rank, "pads": [k - 1 - pad_left, k - 1 - pad_right]}
    # Output length s * L (what a decoder's upsampling wants): every phase gets exactly L outputs.
    if stride > 1 and k + extra - pad_left - pad_right == stride and pad_left == pad_right:
        return {"stride": stride, "w": w, "rank": rank, "pad": pad_left}
    return None


def _transposed_as_conv(graph: onnx.GraphProto) -> int:
    """Every ConvTranspose that :func:`_conv_transpose_plan` accepts as a Conv (plus the
    interleave when it upsamples). Returns how many were rewritten."""
    index = GraphIndex(graph)
    nodes: list[onnx.NodeProto] = []
    moved: set[str] = set()  # outputs of the nodes that now run on the phases, before the interleave
    rewritten = 0
    for node in graph.node:
        if node.output[0] in moved:
            continue
        plan = _conv_transpose_plan(node, index.weights)
        if plan is None:
            nodes.append(node)
            continue
        chain = _phase_chain(node.output[0], index) if plan["stride"] > 1 else []
        moved.update(n.output[0] for n in chain)
        nodes.extend(_as_conv(node, plan, index, chain))
        rewritten += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return rewritten


def _phase_chain(name: str, index: GraphIndex) -> list[onnx.NodeProto]:
    """The element-wise activations and batch norms that follow ``name`` one after another."""
    chain: list[onnx.NodeProto] = []
    while (reader := index.sole_reader(name)) is not None and reader.input[0] == name \
            and _channelwise(reader, index.weights):
        chain.append(reader)
        name = reader.output[0]
    return chain


def _as_conv(node: onnx.NodeProto, plan: dict, index: GraphIndex, chain: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    graph = index.graph
    w, rank = plan["w"], plan["rank"]  # w: [in, out, k] whatever the rank
    c_in, c_out, k = w.shape
    base = node.name or node.output[0]

    def conv(inputs: list[str], output: str, kernel: np.ndarray, left: int, right: int, name: str) -> onnx.NodeProto:
        """A Conv along time with ``kernel`` [out, in, k]; 2-D over [N, C, 1, L] for rank 2."""
        weight = add_weight(graph, f"{name}_weight", kernel if rank == 1 else kernel[:, :, None, :])
        inputs = [inputs[0], weight, *inputs[1:]]
        if rank == 1:
            return helper.make_node("Conv", inputs, [output], name=name, kernel_shape=[kernel.shape[-1]],
                                    pads=[left, right], strides=[1])
        return helper.make_node("Conv", inputs, [output], name=name, kernel_shape=[1, kernel.shape[-1]],
                                pads=[0, left, 0, right], strides=[1, 1])

    if plan["stride"] == 1:
        return [conv([node.input[0], *node.input[2:3]], node.output[0], w[:, :, ::-1].transpose(1, 0, 2),
                     *plan["pads"], name=f"{base}.dense")]
    s, p = plan["stride"], plan["pad"]
    # y[s*m + r] = sum over taps j with (r + p - j) % s == 0 of W[:, :, j]^T x[m + (r + p - j) // s]
    taps = [(r, j, (r + p - j) // s) for r in range(s) for j in range(k) if (r + p - j) % s == 0]
    bias = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and bias is None:
        raise ValueError(f"{base}: a ConvTranspose bias that is not a constant cannot be rewritten")
    result = chain[-1].output[0] if chain else node.output[0]
    out: list[onnx.NodeProto] = []

    def run_chain(phases: str, repeat: int) -> str:
        """The moved activations and batch norms on ``phases`` (their parameters ``repeat`` times)."""
        for original in chain:
            moved = onnx.NodeProto()
            moved.CopyFrom(original)
            moved.input[0], moved.output[0] = phases, f"{original.output[0]}.phases"
            for i, name in enumerate(moved.input[1:], start=1):
                moved.input[i] = add_weight(graph, f"{name}.phases", np.tile(index.constant(name), repeat))
            out.append(moved)
            phases = moved.output[0]
        return phases

    if rank == 1:
        # One Conv per phase with only its own taps (a stacked kernel would multiply by the others'
        # zeros: a third more arithmetic for k=3, s=2), stacked on a new last axis [N, C, L, s],
        # which read as [N, C, s*L] is the interleave.
        axes = add_weight(graph, f"{base}.dense_phase_axes", [3])
        stacked = []
        for r in range(s):
            offsets = [d for phase, _, d in taps if phase == r]
            lo, hi = min(0, *offsets), max(0, *offsets)
            kernel = np.zeros((c_out, c_in, hi - lo + 1), dtype=np.float32)
            for phase, j, d in taps:
                if phase == r:
                    kernel[:, :, d - lo] = w[:, :, j].T
            bias_r = [add_weight(graph, f"{base}.dense_phase{r}_bias", bias)] if bias is not None else []
            name = f"{base}.dense_phase{r}"
            out += [conv([node.input[0], *bias_r], name, kernel, -lo, hi, name=name),
                    helper.make_node("Unsqueeze", [name, axes], [f"{name}.stacked"], name=f"{name}.stacked")]
            stacked.append(f"{name}.stacked")
        out.append(helper.make_node("Concat", stacked, [f"{base}.dense_phases"], name=f"{base}.dense_phases", axis=3))
        merged = add_weight(graph, f"{base}.dense_merge_shape", [0, c_out, -1])
        phases = run_chain(f"{base}.dense_phases", 1)
        return out + [helper.make_node("Reshape", [phases, merged], [result], name=f"{base}.dense_merge")]

    # 2-D: the s phases stacked into one Conv with s x the channels (channel r*C + c is channel c of
    # phase r), then [N, s*C, 1, L] -> [N, 1, L, s*C] -> [N, 1, s*L, C] -> [N, C, 1, s*L]: onnxruntime
    # makes both transposes the channels-last forms of the blocked layout's own reorders.
    d_min, d_max = min(t[2] for t in taps), max(t[2] for t in taps)
    kernel = np.zeros((s * c_out, c_in, d_max - d_min + 1), dtype=np.float32)
    for r, j, d in taps:
        kernel[r * c_out:(r + 1) * c_out, :, d - d_min] = w[:, :, j].T
    tiled = [add_weight(graph, f"{base}.dense_bias", np.tile(bias, s))] if bias is not None else []
    out.append(conv([node.input[0], *tiled], f"{base}.dense_phases", kernel, -d_min, d_max, name=f"{base}.dense"))
    phases = run_chain(f"{base}.dense_phases", s)
    merged = add_weight(graph, f"{base}.dense_interleave_shape", [0, 1, -1, c_out])
    return out + [
        helper.make_node("Transpose", [phases], [f"{base}.dense_nhwc"], name=f"{base}.dense_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Reshape", [f"{base}.dense_nhwc", merged], [f"{base}.dense_interleave"],
                         name=f"{base}.dense_interleave"),
        helper.make_node("Transpose", [f"{base}.dense_interleave"], [result], name=f"{base}.dense_nchw",
                         perm=[0, 3, 1, 2]),
    ]
