"""Convolutional fields on image states of shape (B, C, H, W)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import check_positive_int
from ..grid import ControlGrid
from .base import ACTIVATION_VJPS, ControlledField, activation_fn, check_dims
from .dense import CubicFrictionMixin, friction


def _kernel_size(kernel_size: int) -> int:
    check_positive_int("kernel_size", kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd (same padding), got {kernel_size}")
    return kernel_size


def conv_vjp(psi: torch.Tensor, weight: torch.Tensor, g: torch.Tensor, *, groups: int = 1,
             bias: bool = True) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The cotangent ``g`` of a stride-1, same-padded ``F.conv2d(psi, weight, bias, groups=groups)``
    (``groups`` 1, or depthwise) pulled back to (psi, weight, bias).

    One ``convolution_backward`` call (what autograd does), except for a contiguous (NCHW) state
    with fewer than 16 channels: there psi's gradient is the forward convolution of g with the
    flipped kernel (in and out channels swapped), the same numbers 1.1x (10 channels) to 8x (1
    channel) faster on this project's CPU; from 16 channels, or for channels-last states, the single
    call is as fast or faster (``python benchmarks/conv_vjp.py``, docs/PERFORMANCE.md).
    """
    pad = weight.shape[-1] // 2
    backward = lambda mask: torch.ops.aten.convolution_backward(
        g, psi, weight, [weight.shape[0]] if bias else None, [1, 1], [pad, pad], [1, 1], False, [0, 0], groups, mask)
    channels = psi.shape[1]
    if groups > 1 or channels >= 16 or (channels > 1 and psi.is_contiguous(memory_format=torch.channels_last)):
        return backward([True, True, bias])
    _, w_bar, b_bar = backward([False, True, bias])
    return F.conv2d(g, weight.flip(-1, -2).transpose(0, 1), padding=pad), w_bar, b_bar


class ConvResidual(ControlledField):
    """Seed 004 eq. 2.13 / seed 000 c_ResNet: F(psi) = act(K(t) * psi + b(t)), same padding.

    ``weight`` (n, C, C, k, k), ``bias`` (n, C); each knot initialised like ``torch.nn.Conv2d``.
    Euler with h = 1 and one step per knot is exactly the ResNet x + act(K x + b).
    """

    def __init__(self, channels: int, grid: ControlGrid, *, kernel_size: int = 3,
                 activation: str = "relu") -> None:
        super().__init__(grid)
        self.channels = check_positive_int("channels", channels)
        self.kernel_size = _kernel_size(kernel_size)
        self.activation = activation
        self._act = activation_fn(activation)
        bound = 1.0 / math.sqrt(channels * kernel_size ** 2)
        self.add_control("weight", torch.empty(grid.n, channels, channels, kernel_size, kernel_size)
                         .uniform_(-bound, bound))
        self.add_control("bias", torch.empty(grid.n, channels).uniform_(-bound, bound))

    def vector_field(self, t, psi, theta):
        """F = act(K(t) * psi + b(t)): a 'same'-padded 2-D convolution of psi (B, C, H, W)."""
        weight, bias, pad = theta["weight"], theta["bias"], self.kernel_size // 2
        if self.channels == 1 and psi.is_contiguous():
            # the B images as the channels of one batch-1 depthwise convolution: the same sums; CPU
            # convolutions (and autograd's backward of them) are slow for one channel and fast for many
            b, _, h, w = psi.shape
            out = F.conv2d(psi.view(1, b, h, w), weight.expand(b, 1, -1, -1), bias.expand(b), padding=pad, groups=b)
            return self._act(out.view(b, 1, h, w))
        return self._act(F.conv2d(psi, weight, bias, padding=pad))

    def vector_field_vjp(self, t, psi, theta, out, cotangent):
        """With g = cotangent * act'(out): the transposed convolutions (dF/dpsi^T g, {weight, bias}); cotangent^T dF/dpsi and cotangent^T dF/dtheta for the fused fixed-step gradients (checked against autograd in tests/test_fused.py)."""
        psi_bar, w_bar, b_bar = conv_vjp(psi, theta["weight"], ACTIVATION_VJPS[self.activation](cotangent, out))
        return psi_bar, {"weight": w_bar, "bias": b_bar}

    @property
    def vjp_uses_output(self) -> bool:
        return self.activation != "identity"

    def check_state(self, psi):
        """Raise ``ValueError`` unless ``psi`` is (B, C, H, W) with C = ``channels``."""
        check_dims("ConvResidual", psi, 4, 1, self.channels, "(B, C, H, W)")


class ConvCubicFriction(CubicFrictionMixin, ControlledField):
    """Seed 002 eq. 75 (with channels): F(psi) = K(t) * psi + b(t) - gamma sign(psi) |psi|^mu.

    ``weight`` (n, C, C, k, k), ``bias`` (n, C), zero-initialised (seed 002 sec. 4.4).
    With C = 10, k = 3, n = 20 and learnable gamma: 18,201 parameters (seed 002 sec. 5.2).
    ``gamma``, ``mu``, ``learn_gamma`` as in :class:`~contdepth.fields.dense.CubicFriction` (initial
    friction coefficient, exponent > 0, trained or fixed); ``gamma_min``, ``gamma_max``: bounds on
    gamma (see :class:`~contdepth.fields.dense.CubicFrictionMixin`).
    """

    def __init__(self, channels: int, grid: ControlGrid, *, kernel_size: int = 3, gamma: float = 1.0,
                 mu: float = 3.0, learn_gamma: bool = True, gamma_min: float | None = None,
                 gamma_max: float | None = None) -> None:
        super().__init__(grid)
        self.channels = check_positive_int("channels", channels)
        self.kernel_size = _kernel_size(kernel_size)
        self.add_control("weight", torch.zeros(grid.n, channels, channels, kernel_size, kernel_size))
        self.add_control("bias", torch.zeros(grid.n, channels))
        self._init_gamma(gamma, mu, learn_gamma, gamma_min, gamma_max)

    def vector_field(self, t, psi, theta):
        """F = K(t) * psi + b(t) - gamma sign(psi) |psi|^mu, the convolution 'same'-padded, psi (B, C, H, W)."""
        lin = F.conv2d(psi, theta["weight"], theta["bias"], padding=self.kernel_size // 2)
        return lin - friction(psi, self.bounded_gamma(), self.mu)

    def vector_field_vjp(self, t, psi, theta, out, cotangent):
        """The convolution's transposed products plus the friction's (with its gamma gradient); cotangent^T dF/dpsi and cotangent^T dF/dtheta for the fused fixed-step gradients (checked against autograd in tests/test_fused.py)."""
        friction_bar, grads = self.friction_vjp(psi, cotangent)
        psi_bar, grads["weight"], grads["bias"] = conv_vjp(psi, theta["weight"], cotangent)
        return psi_bar + friction_bar, grads

    def check_state(self, psi):
        """Raise ``ValueError`` unless ``psi`` is (B, C, H, W) with C = ``channels``."""
        check_dims("ConvCubicFriction", psi, 4, 1, self.channels, "(B, C, H, W)")


class ConvNormResidual(ControlledField):
    """Chen et al. 2018's ODE-Net field (their ``ODEfunc``, two convolutions):

        F(psi) = GN3(K2(t) * relu(GN2(K1(t) * relu(GN1(psi)) + b1(t))) + b2(t)),

    GN_i a group norm with ``groups`` groups and affine weight/bias ``norm{i}_weight``,
    ``norm{i}_bias`` (n, C) on the grid too; ``conv{i}_weight`` (n, C, C, k, k) and ``conv{i}_bias``
    (n, C), each knot initialised like ``torch.nn.Conv2d``, the norms as ``torch.nn.GroupNorm``
    (1, 0). Chen et al. make F depend on t through an extra input channel holding t; here, as in
    every contdepth field, t enters through theta(t) (n = 1: an autonomous field).
    """

    def __init__(self, channels: int, grid: ControlGrid, *, groups: int, kernel_size: int = 3) -> None:
        super().__init__(grid)
        self.channels = check_positive_int("channels", channels)
        self.groups = check_positive_int("groups", groups)
        if channels % groups:
            raise ValueError(f"groups must divide channels, got channels={channels}, groups={groups}")
        self.kernel_size = _kernel_size(kernel_size)
        bound = 1.0 / math.sqrt(channels * kernel_size ** 2)
        for i in (1, 2):
            self.add_control(f"conv{i}_weight", torch.empty(grid.n, channels, channels, kernel_size, kernel_size)
                             .uniform_(-bound, bound))
            self.add_control(f"conv{i}_bias", torch.empty(grid.n, channels).uniform_(-bound, bound))
        for i in (1, 2, 3):
            self.add_control(f"norm{i}_weight", torch.ones(grid.n, channels))
            self.add_control(f"norm{i}_bias", torch.zeros(grid.n, channels))

    def vector_field(self, t, psi, theta):
        """F = GN3(K2(t) * relu(GN2(K1(t) * relu(GN1(psi)) + b1(t))) + b2(t)) for psi (B, C, H, W); autograd gradients."""
        norm = lambda x, i: F.group_norm(x, self.groups, theta[f"norm{i}_weight"], theta[f"norm{i}_bias"])
        conv = lambda x, i: F.conv2d(x, theta[f"conv{i}_weight"], theta[f"conv{i}_bias"],
                                     padding=self.kernel_size // 2)
        return norm(conv(F.relu(norm(conv(F.relu(norm(psi, 1)), 1), 2)), 2), 3)

    def check_state(self, psi):
        """Raise ``ValueError`` unless ``psi`` is (B, C, H, W) with C = ``channels``."""
        check_dims("ConvNormResidual", psi, 4, 1, self.channels, "(B, C, H, W)")
