"""The compute-dense form of the deployed graph: no ConvTranspose left, the same numbers."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from export.dense import densify
from export.flops import count_flops
from export.graph import DeployedAnonymiser
from export.writer import export_graph
from trainer.models import build_anonymiser

W = 64


def _decoder_like(relu_after_upsampling: bool) -> nn.Module:
    """The shapes a decoder has: a stride-1 transposed conv, two upsampling ones, a conv out."""
    act = nn.ReLU() if relu_after_upsampling else nn.Identity()
    return nn.Sequential(
        nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.MaxPool1d(2),
        nn.ConvTranspose1d(8, 8, 3, stride=1, padding=1), nn.ReLU(),
        nn.ConvTranspose1d(8, 6, 3, stride=2, padding=1, output_padding=1), act,
        nn.ConvTranspose1d(6, 8, 5, stride=2, padding=2, output_padding=1), act,
        nn.ConvTranspose1d(8, 4, 5, stride=1, padding=1), nn.Conv1d(4, 1, 3, padding=0),
    )


class PerChannel(nn.Module):
    """Each magnitude through the same network, as the trainer's architectures do."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, w = x.shape
        return self.net(x.reshape(n * c, 1, w)).reshape(n, c, w)


def _raw(n: int = 16, seed: int = 0) -> np.ndarray:
    raw = np.random.default_rng(seed).normal(0.0, 0.4, size=(n, 6, W)).astype(np.float32)
    raw[:, 2] += 1.0
    return raw


def _run(model, raw: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"imu": raw})[0]


@pytest.mark.parametrize("network", [
    PerChannel(_decoder_like(relu_after_upsampling=True)),
    PerChannel(_decoder_like(relu_after_upsampling=False)),
    build_anonymiser("lean", 2, W),
], ids=["decoder-relu", "decoder-linear", "lean"])
def test_the_dense_graph_has_no_conv_transpose_and_matches_pytorch_within_1e5(network: nn.Module) -> None:
    torch.manual_seed(0)
    for p in network.parameters():  # weights of a trained size, not the initialiser's
        nn.init.normal_(p, 0.0, 0.3)
    deployed = DeployedAnonymiser(network.eval(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag")
    exported = export_graph(deployed, W)
    flops = count_flops(exported).total
    dense = densify(export_graph(deployed, W))
    raw = _raw()
    with torch.no_grad():
        expected = deployed(torch.from_numpy(raw)).numpy()
    assert "ConvTranspose" not in {node.op_type for node in dense.graph.node}
    np.testing.assert_allclose(_run(dense, raw), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(_run(dense, raw[:1]), expected[:1], rtol=0, atol=1e-5)  # batch stays dynamic
    assert count_flops(exported).total == flops  # the card counts the model, not the rewrite's zero taps


def test_a_relu_after_an_upsampling_layer_moves_onto_its_conv() -> None:
    deployed = DeployedAnonymiser(PerChannel(_decoder_like(relu_after_upsampling=True)).eval(),
                                  mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag")
    ops = [node.op_type for node in densify(export_graph(deployed, W)).graph.node]
    for i, op in enumerate(ops):
        if op == "Transpose":  # the interleave: Conv, Relu, Reshape, Transpose, Reshape
            assert ops[i - 3:i + 2] == ["Conv", "Relu", "Reshape", "Transpose", "Reshape"]


def test_the_lean_network_runs_as_2d_convolutions_without_added_squeezes() -> None:
    deployed = DeployedAnonymiser(build_anonymiser("lean", 2, W).eval(), mean=(1.0, 0.4), std=(0.3, 0.5),
                                  channel_mode="mag")
    graph = densify(export_graph(deployed, W)).graph
    weights = {init.name: len(init.dims) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs and all(weights[node.input[1]] == 4 for node in convs)
    assert not {"Squeeze", "Unsqueeze"} & {node.op_type for node in graph.node}
