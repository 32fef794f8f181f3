"""The AAE's loss terms (SPEC section 1).

The identity loss of a softmax prediction p of the true user u is
``Li = -(log(1 - p[u]) + log(1 - max p))`` with p clipped to [1e-7, 1 - 1e-7]: it is small
when the true user gets little probability AND no user stands out, so minimising it pushes
the regulariser towards an even guess rather than a confident wrong one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLIP = 1e-7


def identity_loss(probs_or_logits: torch.Tensor, target: torch.Tensor, *, from_logits: bool = True) -> torch.Tensor:
    """Mean Li over the batch. ``target`` holds class indices [N] (or one-hot rows [N, K]);
    pass ``from_logits=False`` when the first argument already holds probabilities."""
    probs = torch.softmax(probs_or_logits, dim=-1) if from_logits else probs_or_logits
    probs = probs.clamp(CLIP, 1.0 - CLIP)
    if target.dim() == probs.dim():
        true_term = (target * torch.log1p(-probs)).sum(dim=-1)
    else:
        true_term = torch.log1p(-probs.gather(-1, target.long().unsqueeze(-1)).squeeze(-1))
    max_term = torch.log1p(-probs.max(dim=-1).values)
    return -(true_term + max_term).mean()


def activity_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The utility term: cross-entropy of the activity regulariser, to be minimised."""
    return F.cross_entropy(logits, target)


def distortion_loss(x_prime: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """d(X, X'): mean squared error in standardised units."""
    return F.mse_loss(x_prime, x)
