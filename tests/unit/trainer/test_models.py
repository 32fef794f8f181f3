"""The anonymiser architectures and the regulariser CNN: shapes, cost, export-friendly ops."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from trainer.models import build_anonymiser, build_classifier, count_flops

PLAIN_OPS = (nn.Conv1d, nn.ConvTranspose1d, nn.BatchNorm1d, nn.SELU, nn.ReLU, nn.MaxPool1d, nn.Sequential)


@pytest.mark.parametrize("arch,rows", [("paper", 1), ("lean", 1), ("lean-wide", 2)])
@pytest.mark.parametrize("channels", [2, 6])
def test_anonymiser_keeps_the_input_shape_and_halves_time_twice_in_the_latent(arch: str, rows: int,
                                                                              channels: int) -> None:
    torch.manual_seed(0)
    model = build_anonymiser(arch, channels, 128).eval()
    x = torch.randn(3, channels, 128)
    assert model(x).shape == (3, channels, 128)
    assert model.encode(x).shape == (3, channels * rows, 32) == (3, *model.latent_shape)
    # each component keeps its own latent rows: changing one input component moves only its rows
    y = x.clone()
    y[:, 0] += 1.0
    moved = (model.encode(y) - model.encode(x)).abs().amax(dim=(0, 2)) > 0
    assert moved.tolist() == [True] * rows + [False] * (channels - 1) * rows


def test_the_paper_architecture_costs_what_the_paper_reports_and_lean_at_least_three_times_less() -> None:
    paper = count_flops(build_anonymiser("paper", 2, 128), 2, 128)
    lean = count_flops(build_anonymiser("lean", 2, 128), 2, 128)
    assert 50e6 <= paper <= 65e6
    assert paper / lean >= 3.0
    assert paper == 54_144_000  # hand count: 2 rows x the convolutions of 100 filters, see anonymiser.py


def test_components_share_weights_like_the_papers_one_by_three_kernels() -> None:
    torch.manual_seed(1)
    model = build_anonymiser("paper", 2, 64).eval()
    a, b = torch.randn(1, 1, 64), torch.randn(1, 1, 64)
    both = model(torch.cat([a, b], dim=1))
    swapped = model(torch.cat([b, a], dim=1))
    torch.testing.assert_close(both[:, 0], swapped[:, 1])
    torch.testing.assert_close(both[:, 1], swapped[:, 0])


@pytest.mark.parametrize("arch", ["paper", "lean"])
def test_anonymisers_use_only_plain_exportable_layers(arch: str) -> None:
    model = build_anonymiser(arch, 2, 128)
    kinds = {type(m) for m in model.modules() if m is not model}
    assert kinds <= set(PLAIN_OPS), kinds - set(PLAIN_OPS)
    assert (nn.SELU in kinds) == (arch == "paper")


def test_lean_puts_batch_norm_straight_after_each_convolution_so_export_can_fold_it() -> None:
    model = build_anonymiser("lean", 2, 128)
    for seq in (model.encoder, model.decoder):
        layers = list(seq)
        for i, layer in enumerate(layers):
            if isinstance(layer, nn.BatchNorm1d):
                assert isinstance(layers[i - 1], (nn.Conv1d, nn.ConvTranspose1d))


def test_bad_architecture_and_window_are_refused_with_the_valid_choices() -> None:
    with pytest.raises(ValueError, match="unknown arch 'huge'; known: paper, lean"):
        build_anonymiser("huge", 2, 128)
    with pytest.raises(ValueError, match="multiple of 4"):
        build_anonymiser("paper", 2, 130)


@pytest.mark.parametrize("shape", [(2, 128), (2, 32), (6, 128)])
def test_the_regulariser_cnn_returns_one_logit_per_class(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = build_classifier(shape, 24).eval()
    x = torch.randn(5, *shape)
    out = net(x)
    assert out.shape == (5, 24)
    torch.testing.assert_close(net(x), out)  # eval mode: dropout off, deterministic
    with pytest.raises(ValueError, match="at least 2 classes"):
        build_classifier(shape, 1)


def test_the_config_knows_the_same_architectures_as_the_model_builder() -> None:
    from trainer.config import ARCHES as CONFIG_ARCHES
    from trainer.models import ARCHES

    assert CONFIG_ARCHES == ARCHES
