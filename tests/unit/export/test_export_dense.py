"""The compute-dense form of the deployed graph: no ConvTranspose or Selu left, the same numbers."""

from __future__ import annotations

import numpy as np
import onnx
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


def _decoder_like(act: type[nn.Module] | None) -> nn.Module:
    """The shapes a decoder has: a stride-1 transposed conv, two upsampling ones, a conv out;
    ``act`` (and, for SELU, a batch norm) after every layer but the last two."""
    def after(channels: int) -> list[nn.Module]:
        if act is None:
            return []
        return [act(), nn.BatchNorm1d(channels)] if act is nn.SELU else [act()]

    return nn.Sequential(
        nn.Conv1d(1, 8, 3, padding=1), *after(8), nn.MaxPool1d(2), nn.MaxPool1d(2),
        nn.ConvTranspose1d(8, 8, 3, stride=1, padding=1), *after(8),
        nn.ConvTranspose1d(8, 6, 3, stride=2, padding=1, output_padding=1), *after(6),
        nn.ConvTranspose1d(6, 8, 5, stride=2, padding=2, output_padding=1), *after(8),
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


def _trained_looking(network: nn.Module, seed: int = 0) -> nn.Module:
    """Weights and batch-norm statistics of a trained size, not the initialiser's; the initialiser's
    scale is kept for wide layers (100 filters), so activations stay of order one."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for module in network.modules():
            if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
                fan_in = module.weight.shape[1] * module.weight.shape[2]
                if isinstance(module, nn.ConvTranspose1d):
                    fan_in = module.weight.shape[0] * module.weight.shape[2] // module.stride[0]
                module.weight.normal_(0.0, 1.5 / fan_in ** 0.5)
                module.bias.normal_(0.0, 0.3)
            elif isinstance(module, nn.BatchNorm1d):
                module.weight.uniform_(-0.5, 2.0)  # some negative scales: a max-pool must not pass those
                module.bias.normal_(0.0, 0.3)
                module.running_mean.normal_(0.0, 0.5)
                module.running_var.uniform_(0.3, 3.0)
    return network.eval()


def _random(n: int = 16, seed: int = 0) -> np.ndarray:
    raw = np.random.default_rng(seed).normal(0.0, 0.4, size=(n, 6, W)).astype(np.float32)
    raw[:, 2] += 1.0
    return raw


def _walking(n: int = 16, seed: int = 1) -> np.ndarray:
    """Windows that look like a phone on a walker at 50 Hz: gravity, a 1.5-2.2 Hz gait in every
    axis, turning rates of about 1 rad/s and sensor noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(W) / 50.0
    cadence = rng.uniform(1.5, 2.2, size=(n, 1, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 6, 1))
    amplitude = np.array([0.3, 0.2, 0.4, 1.0, 0.6, 0.8])[None, :, None]
    raw = amplitude * np.sin(2 * np.pi * cadence * t + phase) + rng.normal(0, 0.02, size=(n, 6, W))
    raw[:, 2] += 1.0
    return raw.astype(np.float32)


def _run(model: onnx.ModelProto, raw: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"imu": raw})[0]


def _deployed(network: nn.Module) -> DeployedAnonymiser:
    return DeployedAnonymiser(network.eval(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag")


NETWORKS = {
    "decoder-relu": lambda: PerChannel(_decoder_like(nn.ReLU)),
    "decoder-linear": lambda: PerChannel(_decoder_like(None)),
    "decoder-selu": lambda: PerChannel(_decoder_like(nn.SELU)),
    "lean": lambda: build_anonymiser("lean", 2, W),
    "lean-wide": lambda: build_anonymiser("lean-wide", 2, W),
    "paper": lambda: build_anonymiser("paper", 2, W),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_the_dense_graph_has_no_conv_transpose_or_selu_and_matches_pytorch_to_float_rounding(name: str) -> None:
    deployed = _deployed(_trained_looking(NETWORKS[name]()))
    exported = export_graph(deployed, W)
    flops = count_flops(exported).total
    dense = densify(export_graph(deployed, W))
    onnx.checker.check_model(dense, full_check=True)
    assert not {"ConvTranspose", "Selu"} & {node.op_type for node in dense.graph.node}
    for raw in (_random(), _walking()):
        with torch.no_grad():
            expected = deployed(torch.from_numpy(raw)).numpy()
        tolerance = 1e-5 * max(1.0, float(np.abs(expected).max()))  # float32 rounding of outputs up to ~50
        np.testing.assert_allclose(_run(dense, raw), expected, rtol=0, atol=tolerance)
        np.testing.assert_allclose(_run(dense, raw), _run(exported, raw), rtol=0, atol=tolerance)  # as exported
        np.testing.assert_allclose(_run(dense, raw[:1]), expected[:1], rtol=0, atol=tolerance)  # batch stays dynamic
    assert count_flops(exported).total == flops  # the card counts the model, not the rewrite's zero taps


def _ops(network: nn.Module) -> list[str]:
    return [node.op_type for node in densify(export_graph(_deployed(network), W)).graph.node]


def test_a_relu_after_an_upsampling_layer_moves_onto_its_conv_and_the_interleave_feeds_the_next() -> None:
    ops = _ops(PerChannel(_decoder_like(nn.ReLU)))
    interleaves = [i for i, op in enumerate(ops) if op == "Transpose"][::2]
    assert len(interleaves) == 2
    for i in interleaves:  # Conv, Relu, then channels-last, Reshape, channels-first into the next Conv
        assert ops[i - 2:i + 4] == ["Conv", "Relu", "Transpose", "Reshape", "Transpose", "Conv"]


def test_a_selu_network_upsamples_with_one_conv_per_phase_and_its_activations_before_the_interleave() -> None:
    ops = _ops(PerChannel(_decoder_like(nn.SELU)))
    stacks = [i for i, op in enumerate(ops) if op == "Concat"]
    assert len(stacks) == 2
    for i in stacks:
        assert ops[i - 4:i + 1] == ["Conv", "Unsqueeze", "Conv", "Unsqueeze", "Concat"]
        assert ops[i + 1:i + 8] == ["Clip", "Clip", "Exp", "Add", "BatchNormalization", "Reshape", "Conv"]
    assert "Transpose" not in ops


def test_relu_networks_run_as_2d_convolutions_without_added_squeezes() -> None:
    graph = densify(export_graph(_deployed(build_anonymiser("lean-wide", 2, W)), W)).graph
    weights = {init.name: len(init.dims) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs and all(weights[node.input[1]] == 4 for node in convs)
    assert not {"Squeeze", "Unsqueeze"} & {node.op_type for node in graph.node}


def test_selu_networks_stay_1d_since_their_activations_leave_the_blocked_layout_at_every_layer() -> None:
    graph = densify(export_graph(_deployed(build_anonymiser("paper", 2, W)), W)).graph
    weights = {init.name: len(init.dims) for init in graph.initializer}
    convs = [node for node in graph.node if node.op_type == "Conv"]
    assert convs and all(weights[node.input[1]] == 3 for node in convs)
    assert "Squeeze" not in {node.op_type for node in graph.node}


def test_the_standardisation_at_both_ends_of_the_graph_is_a_batch_norm_each() -> None:
    ops = _ops(build_anonymiser("lean-wide", 2, W))
    assert ops[:6] == ["Mul", "Reshape", "ReduceSum", "Sqrt", "BatchNormalization", "Reshape"]
    assert ops[-2:] == ["Reshape", "BatchNormalization"] and "Add" not in ops


@pytest.mark.parametrize("arch", ["lean", "paper"])
def test_six_axes_in_metres_per_second_squared_keep_their_standardisation_exact(arch: str) -> None:
    network = _trained_looking(build_anonymiser(arch, 6, W))
    deployed = DeployedAnonymiser(network, mean=(0.1, 0.0, 0.9, 0.0, 0.1, 0.0), std=(0.3, 0.3, 0.3, 0.5, 0.5, 0.5),
                                  channel_mode="axes", acc_unit="m/s^2")
    exported = export_graph(deployed, W)
    dense = densify(export_graph(deployed, W))
    raw = _walking()
    raw[:, :3] *= 9.80665
    with torch.no_grad():
        expected = deployed(torch.from_numpy(raw)).numpy()
    tolerance = 1e-5 * max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(_run(dense, raw), expected, rtol=0, atol=tolerance)
    np.testing.assert_allclose(_run(dense, raw), _run(exported, raw), rtol=0, atol=tolerance)
    assert [node.op_type for node in dense.graph.node][-1] == "BatchNormalization"
