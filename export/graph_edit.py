"""The few things every rewrite of an exported graph needs: its constants, who reads a tensor,
node attributes as plain values, and new initializers with names that cannot collide."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


class GraphIndex:
    """Constants, producers and readers of ``graph`` as they are when built; rebuild after edits."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.weights = {init.name: init for init in graph.initializer}
        self.producers = {out: node for node in graph.node for out in node.output}
        self.readers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for name in node.input:
                self.readers.setdefault(name, []).append(node)
        self.outputs = {o.name for o in graph.output}

    def constant(self, name: str) -> np.ndarray | None:
        return numpy_helper.to_array(self.weights[name]) if name in self.weights else None

    def sole_reader(self, name: str) -> onnx.NodeProto | None:
        """The one node reading ``name``, or None if it is a graph output or read by several (or none)."""
        readers = self.readers.get(name, [])
        return readers[0] if len(readers) == 1 and name not in self.outputs else None


def attrs(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def add_weight(graph: onnx.GraphProto, name: str, array: np.ndarray | list[int] | float) -> str:
    """A new initializer: float32 weights (a Python float: a scalar), or int64 when given a list
    (shapes, axes). The name gets a numeric suffix if it is taken."""
    taken = {init.name for init in graph.initializer}
    unique, i = name, 1
    while unique in taken:
        unique, i = f"{name}.{i}", i + 1
    dtype = np.int64 if isinstance(array, list) else np.float32
    graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(array, dtype=dtype), unique))
    return unique


def prune_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
