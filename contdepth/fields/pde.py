"""The PDE-stencil field of seed 000 ch. 4 on image states (B, C, H, W)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import check_choice, check_positive_int
from ..grid import ControlGrid
from .base import ControlledField, activation_fn, check_dims

DRIFT_SCALE = {"pde1": 1.0, "pde2": -1.0 / 8.0}


def stencil_derivatives(psi: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(d_xx, d_x, d_yy, d_y) of ``psi`` with zero padding; x = width (last axis), y = height.

    d_xx -> [1, -2, 1], d_x -> (psi[j+1] - psi[j-1]) / 2 (seed 000 eq. 22 with unit spacing).
    """
    p = F.pad(psi, (1, 1, 1, 1))
    centre = p[..., 1:-1, 1:-1]
    right, left = p[..., 1:-1, 2:], p[..., 1:-1, :-2]
    down, up = p[..., 2:, 1:-1], p[..., :-2, 1:-1]
    return right - 2 * centre + left, (right - left) / 2, down - 2 * centre + up, (down - up) / 2


class PDEStencil(ControlledField):
    """Seed 000 eq. 39 ("pde1") / eq. 40 ("pde2"), per channel c:

    F = act(alpha^2/2 d_xx psi + s beta d_x psi + sigma^2/2 d_yy psi + s rho d_y psi + gamma psi),
    s = 1 (pde1) or -1/8 (pde2); ``act`` defaults to the identity (the linear PDE).
    ``alpha``, ``beta``, ``sigma``, ``rho``, ``gamma`` are (n, C). Init: alpha = sigma = 0.5
    (stable diffusion for h <= 4), beta = rho = gamma = 0.
    """

    def __init__(self, channels: int, grid: ControlGrid, *, variant: str = "pde1",
                 activation: str = "identity") -> None:
        super().__init__(grid)
        self.channels = check_positive_int("channels", channels)
        check_choice("variant", variant, DRIFT_SCALE)
        self.variant = variant
        self.activation = activation
        self._act = activation_fn(activation)
        for name, value in (("alpha", 0.5), ("beta", 0.0), ("sigma", 0.5), ("rho", 0.0), ("gamma", 0.0)):
            self.add_control(name, torch.full((grid.n, channels), value))

    def vector_field(self, t, psi, theta):
        dxx, dx, dyy, dy = stencil_derivatives(psi)
        s = DRIFT_SCALE[self.variant]
        c = {name: value.view(-1, 1, 1) for name, value in theta.items()}
        out = (c["alpha"] ** 2 / 2 * dxx + s * c["beta"] * dx + c["sigma"] ** 2 / 2 * dyy
               + s * c["rho"] * dy + c["gamma"] * psi)
        return self._act(out)

    def check_state(self, psi):
        check_dims("PDEStencil", psi, 4, 1, self.channels, "(B, C, H, W)")
