"""2-D loss landscapes along filter-normalised random directions (Li et al. 2018; seed 004 sec. 3.3).

Seed 004 eq. 3.2: f(alpha, beta) = L(theta* + alpha delta + beta eta). Eq. 3.3 (filter
normalisation): every filter d_{i,j} of a Gaussian direction is rescaled to the Frobenius norm of
the matching filter of the weights, d_{i,j} <- d_{i,j} / ||d_{i,j}|| * ||theta_{i,j}||. The seed
normalises by averages instead "for simplicity"; we use the Frobenius norm of Li et al.

Filters: for a parameter with a control axis (a field's ``control_names``) the filters of knot
l are those of a layer, so a weight (n, out, ...) has one filter per (l, out) and a bias (n, D)
one per knot; for any other parameter of 2 or more dimensions, one filter per leading index.
Bias-like parameters (per layer at most 1-D, e.g. biases, gamma) get a zero direction unless
``ignore_bias=False``, as in Li et al.'s default.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from ..fields.base import ControlledField


def filter_normalize(direction: torch.Tensor, weight: torch.Tensor, *, filter_dims: int,
                     eps: float = 1e-10) -> torch.Tensor:
    """Eq. 3.3: rescale each filter of ``direction`` to the norm of the matching filter of ``weight``.

    A filter is the slice at one index of the first ``filter_dims`` axes (0: the whole tensor).
    Filters of ``weight`` with zero norm give zero filters.
    """
    if direction.shape != weight.shape:
        raise ValueError(f"direction shape {tuple(direction.shape)} != weight shape {tuple(weight.shape)}")
    if isinstance(filter_dims, bool) or not isinstance(filter_dims, int) or not 0 <= filter_dims <= weight.dim():
        raise ValueError(f"filter_dims must be an int in [0, {weight.dim()}], got {filter_dims!r}")
    lead = weight.shape[:filter_dims]
    d = direction.reshape(*lead, -1)
    w = weight.reshape(*lead, -1)
    scale = w.norm(dim=-1, keepdim=True) / d.norm(dim=-1, keepdim=True).clamp_min(eps)
    return (d * scale).reshape(weight.shape)


def _control_parameter_names(model: nn.Module) -> set[str]:
    names = set()
    for prefix, module in model.named_modules():
        if isinstance(module, ControlledField):
            names.update(f"{prefix}.{n}" if prefix else n for n in module.control_names)
    return names


def random_direction(model: nn.Module, *, generator: torch.Generator | None = None,
                     ignore_bias: bool = True) -> list[torch.Tensor]:
    """A Gaussian direction over ``model.parameters()``, filter-normalised (eq. 3.3); see the module doc."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be an nn.Module, got {type(model).__name__}")
    control = _control_parameter_names(model)
    out = []
    for name, p in model.named_parameters():
        lead = 1 if name in control else 0
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if p.dim() - lead >= 2:
            out.append(filter_normalize(d, p.detach(), filter_dims=lead + 1))
        elif ignore_bias:
            out.append(torch.zeros_like(p))
        else:
            out.append(filter_normalize(d, p.detach(), filter_dims=lead))
    return out


@dataclass
class Landscape:
    """Loss on the grid theta* + alpha d1 + beta d2: ``loss[i, j]`` at (alphas[i], betas[j])."""

    alphas: torch.Tensor
    betas: torch.Tensor
    loss: torch.Tensor

    def nonconvex_fraction(self) -> float:
        """Fraction of interior grid points where the finite-difference 2x2 Hessian of the loss has a negative eigenvalue.

        A summary of how non-convex the landscape looks (0 for a convex bowl, 1 for a saddle);
        needs at least 3 points along each axis and equally spaced alphas and betas.
        """
        if len(self.alphas) < 3 or len(self.betas) < 3:
            raise ValueError("nonconvex_fraction needs at least 3 alphas and 3 betas")
        da, db = float(self.alphas[1] - self.alphas[0]), float(self.betas[1] - self.betas[0])
        L = self.loss
        haa = (L[2:, 1:-1] - 2 * L[1:-1, 1:-1] + L[:-2, 1:-1]) / da ** 2
        hbb = (L[1:-1, 2:] - 2 * L[1:-1, 1:-1] + L[1:-1, :-2]) / db ** 2
        hab = (L[2:, 2:] - L[2:, :-2] - L[:-2, 2:] + L[:-2, :-2]) / (4 * da * db)
        smallest = (haa + hbb) / 2 - torch.sqrt(((haa - hbb) / 2) ** 2 + hab ** 2)
        return float((smallest < 0).double().mean())


def loss_landscape(model: nn.Module, loss_fn: Callable[[nn.Module], torch.Tensor], *,
                   alphas: Sequence[float] | torch.Tensor, betas: Sequence[float] | torch.Tensor,
                   directions: tuple[list[torch.Tensor], list[torch.Tensor]] | None = None,
                   seed: int = 0, ignore_bias: bool = True) -> Landscape:
    """Eq. 3.2: ``loss_fn(model)`` at theta* + alpha d1 + beta d2 for every (alpha, beta).

    ``directions`` defaults to two independent :func:`random_direction` draws from ``seed``.
    The parameters are restored to theta* afterwards (also on error). No gradients are taken.

    Raises ``ValueError`` for empty ``alphas``/``betas`` or a direction without one tensor per parameter.

    Example: ``loss_landscape(model, lambda m: F.cross_entropy(m(X), y), alphas=a, betas=b)``.
    """
    alphas = torch.as_tensor(alphas, dtype=torch.float64).flatten()
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if len(alphas) == 0 or len(betas) == 0:
        raise ValueError("alphas and betas must be non-empty")
    params = list(model.parameters())
    if directions is None:
        gen = torch.Generator().manual_seed(seed)
        directions = (random_direction(model, generator=gen, ignore_bias=ignore_bias),
                      random_direction(model, generator=gen, ignore_bias=ignore_bias))
    d1, d2 = directions
    if len(d1) != len(params) or len(d2) != len(params):
        raise ValueError(f"each direction needs {len(params)} tensors (one per parameter)")
    origin = [p.detach().clone() for p in params]
    loss = torch.empty(len(alphas), len(betas), dtype=torch.float64)
    try:
        with torch.no_grad():
            for i, a in enumerate(alphas.tolist()):
                for j, b in enumerate(betas.tolist()):
                    for p, p0, u, v in zip(params, origin, d1, d2):
                        p.copy_(p0 + a * u + b * v)
                    loss[i, j] = float(loss_fn(model))
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, origin):
                p.copy_(p0)
    return Landscape(alphas=alphas, betas=betas, loss=loss)
