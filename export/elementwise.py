"""What lies between the convolutions, in operators that onnxruntime runs vectorised or fuses.

Measured on one x86 core (onnxruntime 1.32, a [2, 100, 1, 128] activation): ``Selu`` runs at
2.2 ns an element (a scalar ``exp`` per element), where ``Exp`` takes 0.25-0.35, ``Clip`` 0.03,
an ``Add`` of two tensors 0.08 and ``BatchNormalization`` 0.03-0.06. So:

* a max-pool moves above the activations and batch norms before it when they are monotone
  (non-decreasing per channel), since max(f(a), f(b)) = f(max(a, b)): the pool then reads its
  convolution's output and everything after it works on half the samples (not above a lone
  ``Relu``, which onnxruntime fuses into the convolution for free);
* ``Selu(x)`` = gamma * (max(x, 0) + alpha * exp(min(x, 0)) - alpha) becomes
  ``Clip(x', min=c) + Exp(Clip(x', max=c))`` with c = ln(alpha) added to the bias of the
  convolution that produces x (x' = x + c, so exp(min(x', c)) = alpha * exp(min(x, 0))); the
  sum is gamma^-1 * Selu(x) + k with k = alpha + c, and the scale and offset go into the batch
  norm that follows (or a batch norm of their own when none does);
* a multiply and an add by per-channel constants (the standardisation at each end of the
  graph) become one ``BatchNormalization``;
* a Reshape that gives its input's own shape back (the latent's encode/decode pair) goes.

Every rewrite is exact in real arithmetic; in float32 the outputs move by a few units in the
last place (the parity check of ``imu-anon export`` bounds them against PyTorch).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, shape_inference

from export.graph_edit import GraphIndex, add_weight, attrs

SELU_ALPHA = 1.67326319217681884765625  # the ONNX defaults
SELU_GAMMA = 1.05070102214813232421875
_MONOTONE = {"Relu", "Selu", "Elu", "LeakyRelu", "Sigmoid", "Tanh"}  # non-decreasing (alpha >= 0)
_UNFUSED = {"Selu", "Elu"}  # activations onnxruntime cannot fuse into the Conv before them


def tune_elementwise(model: onnx.ModelProto) -> str:
    """Apply every rewrite of this module to ``model`` (in place); says what changed."""
    graph = model.graph
    counts = {
        "max-pools hoisted": _repeat(graph, _hoist_one_max_pool),
        "Selu as Exp": _selu_as_exp(graph),
    }
    shapes = _shapes(model)
    counts["affine pairs as BatchNormalization"] = _affine_as_batch_norm(graph, shapes)
    counts["no-op Reshapes dropped"] = _drop_noop_reshapes(graph, shapes)
    return ", ".join(f"{n} {what}" for what, n in counts.items())


def _repeat(graph: onnx.GraphProto, step: Callable[[onnx.GraphProto], bool]) -> int:
    done = 0
    while step(graph):
        done += 1
    return done


def _monotone(node: onnx.NodeProto, index: GraphIndex) -> bool:
    """Non-decreasing in every element of its first input (per channel for a batch norm)."""
    if len(node.output) != 1:
        return False
    if node.op_type in _MONOTONE:
        return all(v >= 0 for k, v in attrs(node).items() if k in ("alpha", "gamma"))
    if node.op_type != "BatchNormalization" or len(node.input) != 5 or attrs(node).get("training_mode", 0):
        return False
    scale, var = index.constant(node.input[1]), index.constant(node.input[4])
    eps = float(attrs(node).get("epsilon", 1e-5))
    return (scale is not None and var is not None and index.constant(node.input[3]) is not None
            and bool(np.all(var.astype(np.float64) + eps > 0)) and bool(np.all(scale >= 0)))


def _hoist_one_max_pool(graph: onnx.GraphProto) -> bool:
    """Move one MaxPool above the monotone nodes that lead to it; False when none can move."""
    index = GraphIndex(graph)
    for pool in graph.node:
        if pool.op_type != "MaxPool" or len(pool.output) != 1:
            continue
        chain: list[onnx.NodeProto] = []
        name, reader = pool.input[0], pool
        while ((node := index.producers.get(name)) is not None and _monotone(node, index)
               and (sole := index.sole_reader(name)) is not None and sole.output[0] == reader.output[0]):
            chain.insert(0, node)
            name, reader = node.input[0], node
        if not any(node.op_type in _UNFUSED for node in chain):
            continue  # a Relu (or batch norm) the pool would separate from its Conv runs free there
        pooled = f"{pool.output[0]}.pooled"
        last = pool.output[0]
        pool.input[0], pool.output[0] = chain[0].input[0], pooled
        chain[0].input[0] = pooled
        chain[-1].output[0] = last
        nodes = []
        for node in graph.node:
            if node.input and node.input[0] == pooled:
                nodes.append(pool)
            if node.output[0] != pooled:
                nodes.append(node)
        _replace_nodes(graph, nodes)
        return True
    return False


def _replace_nodes(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> None:
    copies = []
    for node in nodes:  # copies first: clearing the field would invalidate the originals
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copies.append(copy)
    del graph.node[:]
    graph.node.extend(copies)


_SELECTING = {"MaxPool", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Transpose"}  # outputs are input values


def _source_convs(name: str, index: GraphIndex) -> list[onnx.NodeProto]:
    """The Convs with constant weights whose outputs alone make up ``name``, through nodes that
    only select or move values (max-pools, concatenations, reshapes); [] if anything else does."""
    producer = index.producers.get(name)
    if producer is None or index.sole_reader(name) is None:
        return []
    if producer.op_type == "Conv":
        return [producer] if producer.input[1] in index.weights else []
    if producer.op_type not in _SELECTING:
        return []
    data = producer.input if producer.op_type == "Concat" else producer.input[:1]
    convs = [_source_convs(source, index) for source in data]
    return [c for found in convs for c in found] if all(convs) else []


def _selu_as_exp(graph: onnx.GraphProto) -> int:
    index = GraphIndex(graph)
    nodes: list[onnx.NodeProto] = []
    rewritten = 0
    for node in graph.node:
        a = attrs(node)
        alpha, gamma = float(a.get("alpha", SELU_ALPHA)), float(a.get("gamma", SELU_GAMMA))
        convs = _source_convs(node.input[0], index) if node.op_type == "Selu" and alpha > 0 else []
        biases = [_conv_bias(conv, index) for conv in convs]
        if not convs or any(b is None for b in biases):
            nodes.append(node)
            continue
        c = np.float32(math.log(alpha))
        k = float(c) + math.exp(float(c))  # alpha as exp(c) gives it, so k matches the graph's arithmetic
        base = node.name or node.output[0]
        shifted: dict[str, str] = {}  # convolutions that share a bias share the shifted one
        for conv, bias in zip(convs, biases):
            key = conv.input[2] if len(conv.input) > 2 and conv.input[2] else conv.output[0]
            if key not in shifted:
                shifted[key] = add_weight(graph, f"{conv.name or conv.output[0]}.bias_plus_ln_alpha", bias + c)
            del conv.input[2:]
            conv.input.append(shifted[key])
        c_name = add_weight(graph, f"{base}.ln_alpha", float(c))
        x, z = node.input[0], f"{node.output[0]}.plus_k"
        nodes += [
            helper.make_node("Clip", [x, c_name], [f"{base}.pos"], name=f"{base}.pos"),
            helper.make_node("Clip", [x, "", c_name], [f"{base}.neg"], name=f"{base}.neg"),
            helper.make_node("Exp", [f"{base}.neg"], [f"{base}.exp"], name=f"{base}.exp"),
            helper.make_node("Add", [f"{base}.pos", f"{base}.exp"], [z], name=f"{base}.sum"),
        ]
        readers = index.readers.get(node.output[0], [])
        if node.output[0] not in index.outputs and readers and all(_is_batch_norm_of(r, node.output[0], index)
                                                                   for r in readers):
            for bn in readers:  # BN(gamma * (z - k)): the same BN of z with scale * gamma, mean k + mean / gamma
                bn.input[0] = z
                bn.input[1] = add_weight(graph, f"{bn.input[1]}.times_selu_gamma",
                                         index.constant(bn.input[1]).astype(np.float64) * gamma)
                bn.input[3] = add_weight(graph, f"{bn.input[3]}.selu_shifted",
                                         k + index.constant(bn.input[3]).astype(np.float64) / gamma)
        else:
            channels = len(biases[0])
            params = [add_weight(graph, f"{base}.affine_{what}", np.full(channels, value))
                      for what, value in (("scale", gamma), ("bias", -gamma * k), ("mean", 0.0), ("var", 1.0))]
            nodes.append(helper.make_node("BatchNormalization", [z, *params], [node.output[0]], name=f"{base}.affine",
                                          epsilon=0.0))
        rewritten += 1
    _replace_nodes(graph, nodes)
    return rewritten


def _conv_bias(conv: onnx.NodeProto, index: GraphIndex) -> np.ndarray | None:
    """The bias of ``conv`` (zeros when it has none); None when it is not a constant."""
    if len(conv.input) > 2 and conv.input[2]:
        bias = index.constant(conv.input[2])
        return None if bias is None else bias.astype(np.float32)
    return np.zeros(index.weights[conv.input[1]].dims[0], dtype=np.float32)


def _is_batch_norm_of(node: onnx.NodeProto, name: str, index: GraphIndex) -> bool:
    return (node.op_type == "BatchNormalization" and node.input[0] == name and len(node.output) == 1
            and len(node.input) == 5 and not attrs(node).get("training_mode", 0)
            and all(index.constant(p) is not None for p in node.input[1:]))


def _shapes(model: onnx.ModelProto) -> dict[str, list[int | None]]:
    """Inferred shapes of the graph's tensors: ints where known, None where symbolic or unknown."""
    inferred = shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, list[int | None]] = {}
    for info in [*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output]:
        t = info.type.tensor_type
        if t.HasField("shape"):
            shapes[info.name] = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
    return shapes


def _per_channel(value: np.ndarray | None, shape: list[int | None] | None) -> np.ndarray | None:
    """``value`` as one number per channel of a tensor of ``shape`` it broadcasts over by channel."""
    if value is None or shape is None or len(shape) < 2 or shape[1] is None:
        return None
    if value.size == 1:
        return np.full(shape[1], float(value.reshape(-1)[0]))
    expected = [1, shape[1]] + [1] * (len(shape) - 2)
    return value.reshape(-1).astype(np.float64) if list(value.shape) == expected else None


def _affine_as_batch_norm(graph: onnx.GraphProto, shapes: dict[str, list[int | None]]) -> int:
    """Mul(x, a) -> Add(., b) with per-channel constants a, b as BatchNormalization(x)."""
    index = GraphIndex(graph)
    drop: set[str] = set()  # outputs of the Add nodes now written by a batch norm
    for mul in graph.node:
        add = index.sole_reader(mul.output[0]) if mul.op_type == "Mul" else None
        if add is None or add.op_type != "Add":
            continue
        x, a = (mul.input[0], mul.input[1]) if mul.input[1] in index.weights else (mul.input[1], mul.input[0])
        b = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
        scale, shift = _per_channel(index.constant(a), shapes.get(x)), _per_channel(index.constant(b), shapes.get(x))
        if scale is None or shift is None or x in index.weights:
            continue
        base = add.name or add.output[0]
        params = [add_weight(graph, f"{base}.affine_{what}", value) for what, value in
                  (("scale", scale), ("bias", shift), ("mean", np.zeros_like(scale)), ("var", np.ones_like(scale)))]
        mul.CopyFrom(helper.make_node("BatchNormalization", [x, *params], [add.output[0]], name=base, epsilon=0.0))
        drop.add(add.output[0])
    _replace_nodes(graph, [n for n in graph.node if not (n.op_type == "Add" and n.output[0] in drop)])
    return len(drop)


def _drop_noop_reshapes(graph: onnx.GraphProto, shapes: dict[str, list[int | None]]) -> int:
    """Remove a Reshape whose constant target is its input's own (inferred) shape."""
    index = GraphIndex(graph)
    alias: dict[str, str] = {}
    for node in graph.node:
        target = index.constant(node.input[1]) if node.op_type == "Reshape" else None
        shape = shapes.get(node.input[0])
        if target is None or shape is None or node.output[0] in index.outputs or len(target) != len(shape):
            continue
        copies = int(target[0]) == -1 or (int(target[0]) == 0 and not attrs(node).get("allowzero", 0))
        leading = copies or (shape[0] is not None and int(target[0]) == shape[0])
        if leading and all(s is not None and int(t) == s for t, s in zip(target[1:], shape[1:])):
            alias[node.output[0]] = node.input[0]
    for node in graph.node:
        for i, name in enumerate(node.input):
            while name in alias:
                name = alias[name]
            node.input[i] = name
    _replace_nodes(graph, [n for n in graph.node if n.output[0] not in alias])
    return len(alias)
