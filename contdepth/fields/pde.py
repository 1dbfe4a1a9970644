"""The PDE-stencil field of seed 000 ch. 4 on image states (B, C, H, W)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import check_choice, check_positive_int
from ..grid import ControlGrid
from ..terms import tensor_cache
from .base import ACTIVATION_VJPS, ControlledField, activation_fn, check_dims
from .conv import conv_vjp

DRIFT_SCALE = {"pde1": 1.0, "pde2": -1.0 / 8.0}
"""The drift factor s of :class:`PDEStencil`: 1 for pde1 (seed 000 eq. 39), -1/8 for pde2 (eq. 40)."""


def stencil_kernel(alpha: torch.Tensor, beta: torch.Tensor, sigma: torch.Tensor, rho: torch.Tensor,
                   gamma: torch.Tensor, s: float) -> torch.Tensor:
    """The field's linear part as one 3x3 kernel per channel, (C, 1, 3, 3) for a depthwise
    (``groups=C``) convolution with zero padding: d_xx -> [1, -2, 1], d_x -> [-1/2, 0, 1/2]
    along the width (x), the same along the height (y) (seed 000 eq. 22, unit spacing)."""
    zero = torch.zeros_like(alpha)
    a2, s2 = alpha ** 2 / 2, sigma ** 2 / 2
    rows = [zero, s2 - s * rho / 2, zero,                          # y - 1: up
            a2 - s * beta / 2, gamma - 2 * a2 - 2 * s2, a2 + s * beta / 2,   # y: left, centre, right
            zero, s2 + s * rho / 2, zero]                          # y + 1: down
    return torch.stack(rows, dim=-1).view(-1, 1, 3, 3)


@tensor_cache(maxsize=16)
def _stencil_jacobian(s: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """The (9, 5) derivative of :func:`stencil_kernel`'s entries by (alpha^2/2, beta, sigma^2/2, rho, gamma)."""
    jac = torch.zeros(9, 5, dtype=dtype, device=device)
    for entry, column, value in ((3, 0, 1.0), (4, 0, -2.0), (5, 0, 1.0), (3, 1, -s / 2), (5, 1, s / 2),
                                 (1, 2, 1.0), (4, 2, -2.0), (7, 2, 1.0), (1, 3, -s / 2), (7, 3, s / 2), (4, 4, 1.0)):
        jac[entry, column] = value
    return jac


class PDEStencil(ControlledField):
    """Seed 000 eq. 39 ("pde1") / eq. 40 ("pde2"), per channel c:

    F = act(alpha^2/2 d_xx psi + s beta d_x psi + sigma^2/2 d_yy psi + s rho d_y psi + gamma psi),
    s = 1 (pde1) or -1/8 (pde2); ``act`` defaults to the identity (the linear PDE). Evaluated as
    one depthwise 3x3 convolution whose kernel is assembled from the five coefficients.
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
        """F = act(alpha^2/2 d_xx psi + s beta d_x psi + sigma^2/2 d_yy psi + s rho d_y psi + gamma psi) per channel, one depthwise 3x3 convolution of psi (B, C, H, W)."""
        kernel = stencil_kernel(theta["alpha"], theta["beta"], theta["sigma"], theta["rho"], theta["gamma"],
                                DRIFT_SCALE[self.variant])
        # every (image, channel) plane as a channel of one batch-1 depthwise convolution: CPU conv
        # kernels are fast for many channels and slow for few (benchmarks/run.py measures the gain)
        b, c, h, w = psi.shape
        out = F.conv2d(psi.reshape(1, b * c, h, w), kernel.repeat(b, 1, 1, 1), padding=1, groups=b * c)
        return self._act(out.view(b, c, h, w))

    def vector_field_vjp(self, t, psi, theta, out, cotangent):
        """The depthwise convolution's transposed products: cotangent^T dF/dpsi and the gradients of the five coefficients; cotangent^T dF/dpsi and cotangent^T dF/dtheta for the fused fixed-step gradients (checked against autograd in tests/test_fused.py)."""
        s = DRIFT_SCALE[self.variant]
        kernel = stencil_kernel(theta["alpha"], theta["beta"], theta["sigma"], theta["rho"], theta["gamma"], s)
        b, c, h, w = psi.shape
        g = ACTIVATION_VJPS[self.activation](cotangent, out).reshape(1, b * c, h, w)
        psi_bar, k_bar, _ = conv_vjp(psi.reshape(1, b * c, h, w), kernel.repeat(b, 1, 1, 1), g, groups=b * c,
                                     bias=False)
        # d(kernel entries)/d(a2, beta, s2, rho, gamma) as one (9, 5) matrix, a2 = alpha^2/2, s2 = sigma^2/2
        coeffs = k_bar.view(b, c, 9).sum(0) @ _stencil_jacobian(s, psi.dtype, psi.device)
        a2, beta, s2, rho, gamma = coeffs.unbind(-1)
        return psi_bar.view(b, c, h, w), {"alpha": theta["alpha"] * a2, "beta": beta, "sigma": theta["sigma"] * s2,
                                          "rho": rho, "gamma": gamma}

    def coefficients(self) -> dict[str, torch.Tensor]:
        """The PDE's coefficients per layer and channel, (n, C) each, detached: ``diffusion_x``
        = alpha^2/2, ``drift_x`` = s beta, ``diffusion_y`` = sigma^2/2, ``drift_y`` = s rho and
        ``reaction`` = gamma, the factors of d_xx, d_x, d_yy, d_y and psi in eq. 39 / 40 (s the
        variant's drift factor: what the network applies, whatever its parametrisation)."""
        s = DRIFT_SCALE[self.variant]
        theta = {name: getattr(self, name).detach() for name in ("alpha", "beta", "sigma", "rho", "gamma")}
        return {"diffusion_x": theta["alpha"] ** 2 / 2, "drift_x": s * theta["beta"],
                "diffusion_y": theta["sigma"] ** 2 / 2, "drift_y": s * theta["rho"], "reaction": theta["gamma"]}

    @property
    def vjp_uses_output(self) -> bool:
        return self.activation != "identity"

    def check_state(self, psi):
        """Raise ``ValueError`` unless ``psi`` is (B, C, H, W) with C = ``channels``."""
        check_dims("PDEStencil", psi, 4, 1, self.channels, "(B, C, H, W)")
