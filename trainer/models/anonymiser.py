"""The Anonymising AutoEncoder: the paper's architecture and a lean one for the gateway.

Mapping the paper's Keras model to PyTorch: its input is [N, C, W, 1] channels-last with
1x3 kernels, so the "image" has C rows (sensor components) and one feature map, and every
kernel slides along time inside one row with weights shared across rows. That is exactly a
1-D convolution over [N * C, 1, W]: we fold the components into the batch, run plain
Conv1d / ConvTranspose1d / BatchNorm1d / MaxPool1d layers and unfold at the end. The
arithmetic (and its ~65 MFLOP per two-channel window) is the paper's, and the graph holds
only ops that ONNX export and int8 quantisation handle.

``lean`` keeps the shape of the paper's model with 32 instead of 100 filters (about a
tenth of the multiply-adds), ReLU instead of SELU, and Conv -> BN -> ReLU order so the
exporter can fold every batch norm into the convolution before it.
"""

from __future__ import annotations

import torch
from torch import nn

# arch -> (filters, latent filters per component). The paper squeezes each component into one
# latent row of W/4 samples: 12.5 Hz at 50 Hz input, less than a 10 Hz resampling keeps.
ARCH_SPECS: dict[str, tuple[int, int]] = {"paper": (100, 1), "lean": (32, 1), "lean-wide": (32, 2)}
ARCHES = tuple(ARCH_SPECS)


def _act(arch: str) -> nn.Module:
    return nn.SELU() if arch == "paper" else nn.ReLU()


def _block(arch: str, conv: nn.Module, filters: int) -> list[nn.Module]:
    # paper: Conv(selu)+BN as in the authors' Keras code; lean: Conv+BN+ReLU (foldable)
    if arch == "paper":
        return [conv, nn.SELU(), nn.BatchNorm1d(filters)]
    return [conv, nn.BatchNorm1d(filters), nn.ReLU()]


class Anonymiser(nn.Module):
    """forward(x [N, C, W] standardised) -> [N, C, W]; ``encode`` gives the latent [N, C * k, W/4]."""

    def __init__(self, arch: str, channels: int, window: int, filters: int, latent_filters: int = 1) -> None:
        super().__init__()
        self.arch, self.channels, self.window, self.filters = arch, channels, window, filters
        self.latent_filters = latent_filters
        f, k = filters, latent_filters

        def conv(cin: int, cout: int) -> nn.Conv1d:
            return nn.Conv1d(cin, cout, 3, padding=1)

        def up(cin: int, cout: int, stride: int) -> nn.ConvTranspose1d:
            # stride 2 with output_padding 1 doubles the length like Keras' 'same' padding
            return nn.ConvTranspose1d(cin, cout, 3, stride=stride, padding=1, output_padding=stride - 1)

        self.encoder = nn.Sequential(
            *_block(arch, conv(1, f), f),
            *_block(arch, conv(f, f), f),
            nn.MaxPool1d(2),
            *_block(arch, conv(f, f), f),
            nn.MaxPool1d(2),
            *_block(arch, conv(f, f), f),
            conv(f, k),
            nn.BatchNorm1d(k),
        )
        self.decoder = nn.Sequential(
            *_block(arch, up(k, f, 1), f),
            *_block(arch, up(f, f, 2), f),
            *_block(arch, up(f, f, 2), f),
            up(f, f, 1),
            _act(arch),
            conv(f, 1),
        )

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[N, C, W] -> the latent [N, C * latent_filters, W/4], component-major."""
        n = x.shape[0]
        return self.encoder(x.reshape(-1, 1, x.shape[-1])).reshape(n, -1, x.shape[-1] // 4)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        n = latent.shape[0]
        rows = latent.reshape(-1, self.latent_filters, latent.shape[-1])
        return self.decoder(rows).reshape(n, self.channels, -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def hidden_conv_weights(self) -> list[nn.Parameter]:
        """Weights the paper regularises with L2 (every convolution but the two linear ones)."""
        hidden = []
        for seq in (self.encoder, self.decoder):
            convs = [m for m in seq if isinstance(m, (nn.Conv1d, nn.ConvTranspose1d))]
            hidden += [m.weight for m in convs[:-1]]
        return hidden

    @property
    def latent_shape(self) -> tuple[int, int]:
        return (self.channels * self.latent_filters, self.window // 4)


def build_anonymiser(arch: str, channels: int, window: int) -> nn.Module:
    if arch not in ARCHES:
        raise ValueError(f"unknown arch {arch!r}; known: {', '.join(ARCHES)}")
    if channels < 1:
        raise ValueError(f"channels must be positive, got {channels}")
    if window < 8 or window % 4:
        raise ValueError(f"window must be a multiple of 4 (two 2x poolings), at least 8; got {window}")
    filters, latent_filters = ARCH_SPECS[arch]
    return Anonymiser(arch, channels, window, filters=filters, latent_filters=latent_filters)
