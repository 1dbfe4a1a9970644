"""Activations through the layers of an Euler-stepped image block, and their mass budget.

Seed 000 sec. 4.2 explains PDE1's decline with depth by features that diffuse and "drift out the
boundary of the tensor". This module measures that: the states psi_l of every layer and, step by
step, where the activation mass M = sum(psi) goes (:func:`mass_budget`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..block import ODEBlock
from ..fields.base import ControlledField
from ..solvers import FixedGrid


@dataclass(frozen=True)
class MassBudget:
    """Per-layer activation mass of an Euler-stepped block, each a mean over the inputs (float64).

    Layer l = 0..L is the state psi_l (layer 0: the block's input), step l maps psi_l to
    psi_{l+1} = P(z_l), z_l = psi_l + h F(t_l, psi_l) (P: the block's projection, or the identity).

    * ``mass`` (L + 1,): M_l = sum of psi_l over channels and pixels.
    * ``band`` (L + 1,): the part of M_l on the pixels less than ``band_width`` from the image's edge.
    * ``outflow`` (L,): Phi_l = h sum over the ring of r pixels around the image of
      [F(t_l, pad_r psi_l) - F(t_l, 0)]: the mass the step writes into the zero padding (less what
      it writes there for a zero state, the bias), i.e. what leaves through the image boundary.
      pad_r is zero padding by the field's reach r (``kernel_size // 2``; 1 for the 3x3 stencils).
    * ``source`` (L,): S_l = h sum over the image of F(t_l, psi_l) + Phi_l, the mass the field
      creates. For a linear stencil with kernel k and bias b it is h (sum(k) M_l + b H W) per
      channel; diffusion and drift kernels sum to zero (only gamma, the kernel's sum, creates mass).
    * ``projection`` (L,): R_l = sum(P(z_l) - z_l), the mass the projection adds (for ReLU,
      sum(ReLU(-z_l)) >= 0: the projection onto psi >= 0 never removes mass).

    By construction M_{l+1} - M_l = S_l - Phi_l + R_l (the budget closes to rounding).
    """

    mass: Tensor
    band: Tensor
    source: Tensor
    outflow: Tensor
    projection: Tensor
    band_width: int

    def as_dict(self) -> dict[str, list[float] | int]:
        """The five series as lists of floats, and ``band_width`` (JSON-ready)."""
        series = {k: getattr(self, k).tolist() for k in ("mass", "band", "source", "outflow", "projection")}
        return {**series, "band_width": self.band_width}


def _block_and_input(model: nn.Module, x: Tensor) -> tuple[ODEBlock, Tensor]:
    if isinstance(model, ODEBlock):
        return model, x
    block, stem = getattr(model, "block", None), getattr(model, "stem", None)
    if not isinstance(block, ODEBlock) or not callable(stem):
        raise TypeError("model must be a contdepth.ODEBlock or a classifier with .stem and an ODEBlock .block "
                        f"(contdepth.models.ODEClassifier), got {type(model).__name__}")
    return block, stem(x)


def _euler_steps(model: nn.Module, x: Tensor) -> Iterator[tuple[ControlledField, float, float, Tensor, Tensor, Tensor]]:
    """(field, t_l, h_l, psi_l, z_l, psi_{l+1}) for every Euler step l of ``model``'s block on ``x``."""
    block, psi = _block_and_input(model, x)
    field = block.field
    if not isinstance(field, ControlledField):
        raise TypeError(f"the block's field must be a ControlledField, got {type(field).__name__}")
    if block.method != "euler":
        raise ValueError(f"the block's method must be 'euler' (one state per layer), got {block.method!r}")
    if block.learn_time:
        raise ValueError("a block with learn_time=True is not supported (its theta is stretched over a learned depth)")
    if psi.dim() != 4:
        raise ValueError(f"the block's state must be an image batch (B, C, H, W), got shape {tuple(psi.shape)}")
    grid = field.grid
    t0 = grid.t0 if block.t0 is None else float(block.t0)
    t1 = grid.t1 if block.t1 is None else float(block.t1)
    times = FixedGrid.uniform(t0, t1, block.steps or grid.intervals).times
    term = field.make_term()
    for t, t_next in zip(times, times[1:]):
        h = t_next - t
        z = psi + h * term(t, psi, 1)
        after = z if block.project is None else block.project(z)
        yield field, t, h, psi, z, after
        psi = after


@torch.no_grad()
def layer_states(model: nn.Module, x: Tensor) -> Tensor:
    """The states psi_0, ..., psi_L of every layer of ``model``'s block on the inputs ``x``: (L + 1, B, C, H, W).

    ``model``: a :class:`~contdepth.ODEBlock` (``x`` is its input) or a classifier with ``.stem``
    and an ODEBlock ``.block`` (:class:`~contdepth.models.ODEClassifier`; ``x`` goes through the
    stem first). The block must step with ``method="euler"`` on a
    :class:`~contdepth.fields.ControlledField` of image states; psi_{l+1} = P(psi_l + h F(t_l, psi_l))
    with the block's projection P, as the block computes it (psi_L is the block's output).

    Raises ``TypeError`` for another model or field, ``ValueError`` for another method, a
    learned depth, or a state that is not 4-D.
    """
    steps = list(_euler_steps(model, x))
    return torch.stack([steps[0][3]] + [after for *_, after in steps])


def _band_mask(h: int, w: int, width: int, like: Tensor) -> Tensor:
    rows = torch.arange(h, device=like.device)
    cols = torch.arange(w, device=like.device)
    near_row = (rows < width) | (rows >= h - width)
    near_col = (cols < width) | (cols >= w - width)
    return (near_row[:, None] | near_col[None, :]).to(like.dtype)


@torch.no_grad()
def mass_budget(model: nn.Module, x: Tensor, *, band_width: int = 2) -> MassBudget:
    """Activation mass per layer and where it goes at each step (definitions in :class:`MassBudget`).

    ``model`` and ``x`` as :func:`layer_states`; ``band_width`` >= 1 pixels is the border band
    of :attr:`MassBudget.band`. Every series is the mean over the B inputs, in float64.

    Example: ``b = mass_budget(build_mnist_model("pde1", 5), images)``; ``b.mass[-1]`` is the
    output's mass, ``b.outflow.sum()`` the mass lost through the image boundary over the 5 layers.
    """
    if isinstance(band_width, bool) or not isinstance(band_width, int) or band_width < 1:
        raise ValueError(f"band_width must be an int >= 1, got {band_width!r}")
    mass, band, source, outflow, projection = [], [], [], [], []
    per_input = lambda v: v.sum(dim=(1, 2, 3)).double().mean()  # noqa: E731
    last = None
    for field, t, h, psi, z, after in _euler_steps(model, x):
        if last is None:
            size = psi.shape[-2:]
            if min(size) < 2 * band_width:
                raise ValueError(f"band_width must be at most half the image's side {min(size)}, got {band_width}")
            mask = _band_mask(size[0], size[1], band_width, psi)
        r = getattr(field, "kernel_size", 3) // 2
        term = field.make_term()
        padded = F.pad(psi, (r, r, r, r))
        ring = torch.ones_like(padded[:1, :1])
        ring[..., r:-r, r:-r] = 0
        written = term(t, padded, 1) - term(t, torch.zeros_like(padded), 1)
        phi = h * per_input(written * ring)
        mass.append(per_input(psi))
        band.append(per_input(psi * mask))
        outflow.append(phi)
        source.append(per_input(z - psi) + phi)
        last = after
        projection.append(per_input(last - z))
    mass.append(per_input(last))
    band.append(per_input(last * mask))
    return MassBudget(*(torch.stack(s) for s in (mass, band, source, outflow, projection)), band_width=band_width)
