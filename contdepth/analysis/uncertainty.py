"""Predictive uncertainty of a stochastic network (seed 003's stochastic ResNets): Monte Carlo
class probabilities over noise samples, their entropy, and the expected calibration error."""
from __future__ import annotations

from typing import Callable

import torch

from ..errors import check_positive_int


def mc_probabilities(model: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, samples: int) -> torch.Tensor:
    """softmax(model(x)) for ``samples`` independent calls (fresh noise each): shape (samples, B, C).
    Their mean over dim 0 is the predictive distribution p(y | x) = E_W[softmax(logits)].

    Raises ``TypeError``/``ValueError`` if ``samples`` is not an int >= 1.

    Example: ``p = mc_probabilities(model, X, samples=32).mean(0)`` (model: an ``SDEBlock`` net in train mode or ``eval_noise="sample"``).
    """
    check_positive_int("samples", samples)
    with torch.no_grad():
        return torch.stack([torch.softmax(model(x), dim=-1) for _ in range(samples)])


def predictive_entropy(probs: torch.Tensor) -> torch.Tensor:
    """H(p) = -sum_c p_c log p_c per row of ``probs`` (B, C) (0 log 0 = 0); log C at most."""
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (B, C), got {tuple(probs.shape)}")
    return -(probs * torch.log(probs.clamp_min(torch.finfo(probs.dtype).tiny))).sum(-1)


def expected_calibration_error(probs: torch.Tensor, target: torch.Tensor, bins: int = 10) -> float:
    """ECE = sum_b (n_b / n) |accuracy_b - confidence_b| over ``bins`` equal-width bins of the
    confidence max_c p_c (Guo et al. 2017, eq. 3)."""
    if probs.dim() != 2 or target.shape != probs.shape[:1]:
        raise ValueError(f"probs must be (B, C) and target (B,), got {tuple(probs.shape)} and {tuple(target.shape)}")
    check_positive_int("bins", bins)
    confidence, predicted = probs.max(-1)
    correct = (predicted == target).to(probs.dtype)
    which = torch.clamp((confidence * bins).long(), max=bins - 1)  # bin b holds confidences in [b/bins, (b+1)/bins)
    ece = torch.zeros((), dtype=probs.dtype, device=probs.device)
    for b in which.unique():
        mask = which == b
        ece = ece + mask.sum() / len(probs) * (correct[mask].mean() - confidence[mask].mean()).abs()
    return float(ece)
