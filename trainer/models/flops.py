"""Counting a model's floating-point operations per window (2 x multiply-adds)."""

from __future__ import annotations

import torch
from torch import nn


def _macs(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, nn.Conv1d):
        # every output value sums cin/groups x k products
        return out.numel() * (module.in_channels // module.groups) * module.kernel_size[0]
    if isinstance(module, nn.ConvTranspose1d):
        # every input value is scattered into cout/groups x k outputs
        return inp.numel() * (module.out_channels // module.groups) * module.kernel_size[0]
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    return 0


def count_flops(model: nn.Module, channels: int, window: int) -> int:
    """FLOPs of the convolutions and linear layers for one [1, channels, window] input."""
    total = 0

    def hook(module: nn.Module, inputs, output) -> None:
        nonlocal total
        total += 2 * _macs(module, inputs[0], output)

    kinds = (nn.Conv1d, nn.ConvTranspose1d, nn.Linear)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, kinds)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, channels, window))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
