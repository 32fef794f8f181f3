"""The identity loss Li on hand-computed values, and the other terms."""

from __future__ import annotations

import math

import torch

from trainer.losses import activity_loss, distortion_loss, identity_loss


def test_identity_loss_matches_hand_computed_values_for_probabilities() -> None:
    p = torch.tensor([[0.5, 0.3, 0.2], [0.1, 0.6, 0.3]])
    # row 1, true user 0: -(log(1-0.5) + log(1-0.5)); row 2, true user 2: -(log(0.7) + log(0.4))
    want = (-(math.log(0.5) + math.log(0.5)) - (math.log(0.7) + math.log(0.4))) / 2
    got = identity_loss(p, torch.tensor([0, 2]), from_logits=False)
    assert math.isclose(float(got), want, rel_tol=1e-6)


def test_identity_loss_from_logits_equals_it_on_the_softmax() -> None:
    logits = torch.tensor([[2.0, -1.0, 0.5, 0.0]])
    probs = torch.softmax(logits, dim=-1)
    p = probs[0].tolist()
    want = -(math.log(1 - p[1]) + math.log(1 - max(p)))
    assert math.isclose(float(identity_loss(logits, torch.tensor([1]))), want, rel_tol=1e-6)
    assert math.isclose(float(identity_loss(probs, torch.tensor([1]), from_logits=False)), want, rel_tol=1e-6)


def test_identity_loss_accepts_one_hot_targets() -> None:
    p = torch.tensor([[0.2, 0.7, 0.1]])
    one_hot = torch.tensor([[0.0, 1.0, 0.0]])
    assert math.isclose(float(identity_loss(p, one_hot, from_logits=False)),
                        float(identity_loss(p, torch.tensor([1]), from_logits=False)), rel_tol=1e-7)


def test_identity_loss_is_clipped_so_a_certain_prediction_stays_finite() -> None:
    p = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)  # float64: the clip is exact
    got = float(identity_loss(p, torch.tensor([0]), from_logits=False))
    assert math.isclose(got, -2 * math.log(1e-7), rel_tol=1e-3)  # both terms hit the clip at 1 - 1e-7


def test_identity_loss_is_lowest_for_an_even_guess_and_its_gradient_lowers_the_true_user() -> None:
    k = 5
    even = float(identity_loss(torch.zeros(1, k), torch.tensor([0])))
    assert math.isclose(even, -2 * math.log(1 - 1 / k), rel_tol=1e-6)
    for logits in (torch.tensor([[3.0, 0, 0, 0, 0]]), torch.tensor([[0, 3.0, 0, 0, 0]])):
        assert float(identity_loss(logits, torch.tensor([0]))) > even
    logits = torch.tensor([[1.0, 0.5, 0.0, 0.0, 0.0]], requires_grad=True)
    identity_loss(logits, torch.tensor([0])).backward()
    assert logits.grad[0, 0] > 0  # descending the loss lowers the true user's logit


def test_activity_and_distortion_terms_are_cross_entropy_and_mse() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)]])  # softmax [0.25, 0.75]
    assert math.isclose(float(activity_loss(logits, torch.tensor([1]))), -math.log(0.75), rel_tol=1e-6)
    a, b = torch.tensor([[1.0, 2.0]]), torch.tensor([[0.0, 4.0]])
    assert math.isclose(float(distortion_loss(a, b)), 2.5, rel_tol=1e-7)
