"""The paper's regulariser CNN (EncReg, DecReg, ActReg) and the attackers built like it.

Conv(32, C x 5, relu) spans every component at once (the paper's 2x5 kernel on two
magnitudes): a Conv1d over [N, C, W] with C input channels. Two conv blocks with max pooling
and dropout 0.25, then Dense 256 -> Dense 64 with dropout 0.5; the module returns logits.
"""

from __future__ import annotations

import torch
from torch import nn


class Classifier(nn.Module):
    def __init__(self, channels: int, window: int, n_classes: int, filters: int = 32) -> None:
        super().__init__()
        self.in_shape, self.n_classes = (channels, window), n_classes
        length = window
        layers: list[nn.Module] = []
        cin = channels
        for _ in range(2):
            # the paper's 5-sample kernels; shorter ones on short inputs (a small latent)
            kernel = 5 if length >= 10 else 3 if length >= 6 else 1
            layers += [nn.Conv1d(cin, filters, kernel), nn.ReLU()]
            length -= kernel - 1
            if length >= 2:
                layers.append(nn.MaxPool1d(2))
                length //= 2
            layers.append(nn.Dropout(0.25))
            cin = filters
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(filters * length, 256), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(256, 64), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(64, n_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build_classifier(in_shape: tuple[int, int], n_classes: int) -> nn.Module:
    channels, window = in_shape
    if channels < 1 or window < 8:
        raise ValueError(f"classifier input must be at least [1, 8], got {list(in_shape)}")
    if n_classes < 2:
        raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
    return Classifier(channels, window, n_classes)
