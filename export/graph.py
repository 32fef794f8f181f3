"""The deployed graph: raw device units in, anonymised physical units out, nothing hidden.

A model fed un-standardised data still outputs numbers, so the preprocessing must not be
left to the runtime: :class:`DeployedAnonymiser` wraps the trained network with the unit
conversion, the channel mapping (magnitudes or axes), the training standardisation and its
inverse, and is what gets exported. Its arithmetic is that of
:func:`edge_runtime.layout.to_model_channels` followed by ``(x - mean) / std`` (computed as
``x * (1 / std) - mean / std``), so the numpy reference and the ONNX graph agree to float32
rounding. :mod:`export.dense` then rewrites the exported graph into its compute-dense form.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edge_runtime.layout import ACC_UNITS, RAW_CHANNELS, model_channels
from export.errors import ExportError


class DeployedAnonymiser(nn.Module):
    """``imu`` [N, 6, W] (acc in ``acc_unit``, gyro in rad/s) -> ``anonymised`` [N, C, W].

    ``network`` maps standardised model channels [N, C, W] to standardised [N, C, W].
    """

    def __init__(
        self,
        network: nn.Module,
        *,
        mean: Sequence[float],
        std: Sequence[float],
        channel_mode: str,
        acc_unit: str = "g",
    ) -> None:
        super().__init__()
        try:
            names, _ = model_channels(channel_mode)
        except ValueError as exc:
            raise ExportError(f"{exc}; the run's channel mode cannot be exported") from None
        if acc_unit not in ACC_UNITS:
            raise ExportError(f"accelerometer unit {acc_unit!r} is not one of {sorted(ACC_UNITS)}")
        if len(mean) != len(names) or len(std) != len(names):
            raise ExportError(
                f"mode {channel_mode!r} has {len(names)} channels but the standardiser has "
                f"{len(mean)} means and {len(std)} stds; the run directory is inconsistent, retrain it"
            )
        if any(not s > 0 for s in std):
            raise ExportError(f"standardiser std must be positive, got {list(std)}; retrain the run")
        self.network = network
        self.channel_mode = channel_mode
        self.acc_unit = acc_unit
        # Stored as [1, C, 1] so they broadcast over batch and time without a Reshape node.
        self.register_buffer("mean", torch.tensor(list(mean), dtype=torch.float32).view(1, -1, 1))
        self.register_buffer("std", torch.tensor(list(std), dtype=torch.float32).view(1, -1, 1))
        # (x - mean) / std as one multiply-add: two cheap nodes instead of a Sub and a Div.
        self.register_buffer("inv_std", 1.0 / self.std)
        self.register_buffer("shift", -self.mean / self.std)
        scale = torch.ones(1, len(RAW_CHANNELS), 1)
        scale[:, 0:3] = ACC_UNITS[acc_unit]
        self.register_buffer("unit_scale", scale)
        # The multiply is skipped for g so the graph (and its rounding) matches the reference exactly.
        self._scale_units = acc_unit != "g"

    def to_model_channels(self, raw: torch.Tensor) -> torch.Tensor:
        """The torch twin of :func:`edge_runtime.layout.to_model_channels`."""
        if self._scale_units:
            raw = raw * self.unit_scale
        if self.channel_mode == "axes":
            return raw
        # Both magnitudes in four nodes (Mul, Reshape, ReduceSum, Sqrt), not two slices of each.
        return torch.sqrt(torch.sum((raw * raw).view(-1, 2, 3, raw.shape[-1]), dim=2))

    def forward(self, imu: torch.Tensor) -> torch.Tensor:
        x = self.to_model_channels(imu) * self.inv_std + self.shift
        return self.network(x) * self.std + self.mean
