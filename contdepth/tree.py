"""States are tensors or (nested) tuples of tensors; the arithmetic the steppers need on them.

A plain tensor takes the fast path in every helper; tuples (a harmonic oscillator's (x, v), the
adjoint's augmented (y, a, dL/dtheta)) are mapped leaf by leaf. ``y + s * k`` is written
exactly so, not fused, so Euler on a tensor is bit for bit the hand-written ``x + h * f(x)``.
"""
from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

State = Union[torch.Tensor, tuple["State", ...]]


def leaves(y: State) -> list[torch.Tensor]:
    """The tensors of ``y`` in depth-first order."""
    if isinstance(y, torch.Tensor):
        return [y]
    return [leaf for part in y for leaf in leaves(part)]


def rebuild(like: State, flat: Sequence[torch.Tensor]) -> State:
    """``flat`` (as from :func:`leaves`) arranged in the structure of ``like``."""
    it = iter(flat)

    def build(node: State) -> State:
        return next(it) if isinstance(node, torch.Tensor) else tuple(build(part) for part in node)

    return build(like)


def tree_map(fn: Callable[..., torch.Tensor], y: State, *rest: State) -> State:
    """``fn`` applied leaf by leaf to ``y`` and states of the same structure."""
    if isinstance(y, torch.Tensor):
        return fn(y, *rest)
    return tuple(tree_map(fn, *parts) for parts in zip(y, *rest))


def axpy(y: State, s: float, k: State) -> State:
    """y + s k."""
    if isinstance(y, torch.Tensor):
        return y + s * k
    return tree_map(lambda a, b: a + s * b, y, k)


def add(y: State, dy: State) -> State:
    """y + dy."""
    return y + dy if isinstance(y, torch.Tensor) else tree_map(lambda a, b: a + b, y, dy)


def lerp(y0: State, y1: State, s: float) -> State:
    """y0 + s (y1 - y0): the linear interpolant of a fixed step (torchdiffeq's dense output)."""
    return axpy(y0, s, tree_map(lambda a, b: a - b, y1, y0))


def hermite(y0: State, y1: State, f0: State, f1: State, h: float, s: float) -> State:
    """The cubic Hermite interpolant at t + s h of a step from (y0, f0 = y'(t)) to (y1, f1 = y'(t + h)):

        (2s^3 - 3s^2 + 1) y0 + (3s^2 - 2s^3) y1 + h (s^3 - 2s^2 + s) f0 + h (s^3 - s^2) f1,

    exact at both ends, error O(h^4) inside."""
    w0, w1 = 2 * s ** 3 - 3 * s ** 2 + 1, 3 * s ** 2 - 2 * s ** 3
    v0, v1 = h * (s ** 3 - 2 * s ** 2 + s), h * (s ** 3 - s ** 2)
    return tree_map(lambda a, b, fa, fb: w0 * a + w1 * b + v0 * fa + v1 * fb, y0, y1, f0, f1)


def combine(y: State, h: float, coeffs: Sequence[float], ks: Sequence[State]) -> State:
    """y + sum_j (h c_j) k_j over the nonzero c_j (y itself when all are zero)."""
    out = y
    for c, k in zip(coeffs, ks):
        if c:
            out = axpy(out, h * c, k)
    return out


def weighted(h: float, coeffs: Sequence[float], ks: Sequence[State]) -> State:
    """sum_j (h c_j) k_j over the nonzero c_j."""
    terms = [(h * c, k) for c, k in zip(coeffs, ks) if c]
    s0, k0 = terms[0]
    out = s0 * k0 if isinstance(k0, torch.Tensor) else tree_map(lambda a: s0 * a, k0)
    for s, k in terms[1:]:
        out = axpy(out, s, k)
    return out


def detach(y: State, requires_grad: bool = False) -> State:
    """A detached copy of ``y`` (leaves requiring grad when asked)."""
    return tree_map(lambda a: a.detach().requires_grad_(requires_grad), y)


def all_finite(y: State) -> bool:
    """True when every entry of every leaf is finite (one host sync)."""
    if isinstance(y, torch.Tensor):
        return bool(torch.isfinite(y).all())
    flags = [torch.isfinite(leaf).all() for leaf in leaves(y)]
    return bool(torch.stack(flags).all()) if flags else True
