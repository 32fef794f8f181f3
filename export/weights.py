"""The weights fingerprint recorded as ``imu_anon.weights_sha256``.

The file's own sha256 (the ``.sha256`` sidecar) changes whenever the metadata is rewritten,
for instance when export adds the metrics measured on the file. The weights fingerprint does
not: it identifies the numbers the model computes with, so two files with the same
fingerprint anonymise identically whatever their metadata says.

Definition (stable across platforms, documented in ``models/README.md``): every constant
tensor of the main graph -- each initializer, and the ``value`` of each ``Constant`` node
under its output name -- sorted by name; for each, feed sha256 with

    name (UTF-8) NUL  data type (ONNX TensorProto enum, decimal) NUL
    dims (decimal, comma-separated) NUL  the values, row-major, little-endian

The int8 file has its own fingerprint (its initializers are the quantised weights, scales
and zero points).
"""

from __future__ import annotations

import hashlib

import numpy as np
import onnx
from onnx import numpy_helper


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    tensors = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type != "Constant" or not node.output:
            continue
        for attr in node.attribute:
            if attr.name == "value" and attr.type == onnx.AttributeProto.TENSOR:
                tensors[node.output[0]] = attr.t
    return tensors


def weights_sha256(model: onnx.ModelProto) -> str:
    """The fingerprint of ``model``'s weights (see the module docstring for the definition)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(_constant_tensors(model.graph).items()):
        array = numpy_helper.to_array(tensor)
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(f"{tensor.data_type}\0{','.join(str(d) for d in array.shape)}\0".encode("ascii"))
        if array.dtype.kind in "OUS":  # string tensors: hash their UTF-8 bytes in order
            digest.update(b"\0".join(str(v).encode("utf-8") for v in array.ravel()))
        else:
            digest.update(np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes())
    return digest.hexdigest()
