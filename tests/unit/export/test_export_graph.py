"""The deployed graph computes the runtime's reference preprocessing, in torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from edge_runtime.layout import STANDARD_GRAVITY, to_model_channels
from export.errors import ExportError
from export.graph import DeployedAnonymiser
from export.parity import torch_reference


def _raw(n: int = 8, w: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    raw = rng.normal(0.0, 0.3, size=(n, 6, w)).astype(np.float32)
    raw[:, 2] += 1.0  # gravity on z, in g
    return raw


class Doubling(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 2 * x


@pytest.mark.parametrize("mode, mean, std", [("mag", (1.0, 0.4), (0.3, 0.5)),
                                             ("axes", (0.1, 0.0, 0.9, 0.0, 0.1, 0.0), (0.3,) * 6)])
def test_the_wrapper_standardises_runs_the_network_and_restores_physical_units(mode, mean, std) -> None:
    raw = _raw()
    wrapper = DeployedAnonymiser(Doubling(), mean=mean, std=std, channel_mode=mode)
    got = wrapper(torch.from_numpy(raw)).detach().numpy()
    m = np.asarray(mean, np.float32)[:, None]
    s = np.asarray(std, np.float32)[:, None]
    expected = (2 * (to_model_channels(raw, mode) - m) / s) * s + m
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_an_identity_network_returns_the_channels_the_runtime_reference_computes() -> None:
    raw = _raw()
    wrapper = DeployedAnonymiser(nn.Identity(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag")
    np.testing.assert_allclose(wrapper(torch.from_numpy(raw)).numpy(), to_model_channels(raw, "mag"), atol=1e-6)


def test_acceleration_in_metres_per_second_squared_is_converted_to_g_inside_the_graph() -> None:
    raw_g = _raw()
    raw_si = raw_g.copy()
    raw_si[:, 0:3] *= STANDARD_GRAVITY
    in_g = DeployedAnonymiser(nn.Identity(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag")
    in_si = DeployedAnonymiser(nn.Identity(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag", acc_unit="m/s^2")
    np.testing.assert_allclose(in_si(torch.from_numpy(raw_si)).numpy(), in_g(torch.from_numpy(raw_g)).numpy(),
                               atol=1e-5)
    reference = torch_reference(nn.Identity(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag",
                                acc_unit="m/s^2")
    np.testing.assert_allclose(reference(raw_si), to_model_channels(raw_g, "mag"), atol=1e-5)


def test_inconsistent_statistics_or_modes_are_refused_with_a_reason() -> None:
    with pytest.raises(ExportError, match="2 channels but the standardiser has 3 means"):
        DeployedAnonymiser(nn.Identity(), mean=(1.0, 0.4, 0.0), std=(0.3, 0.5, 1.0), channel_mode="mag")
    with pytest.raises(ExportError, match="std must be positive"):
        DeployedAnonymiser(nn.Identity(), mean=(1.0, 0.4), std=(0.3, 0.0), channel_mode="mag")
    with pytest.raises(ExportError, match="unknown channel mode 'polar'"):
        DeployedAnonymiser(nn.Identity(), mean=(1.0,), std=(1.0,), channel_mode="polar")
    with pytest.raises(ExportError, match="accelerometer unit 'ft/s'"):
        DeployedAnonymiser(nn.Identity(), mean=(1.0, 0.4), std=(0.3, 0.5), channel_mode="mag", acc_unit="ft/s")
