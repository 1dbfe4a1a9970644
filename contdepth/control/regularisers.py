"""The two regularisers of seed 004's variable-projection objective (its MATLAB call
``dnnVarProObjFctn(net, pRegTh, pLoss, pRegW, ...)``, ch. 5): pRegTh on the network weights theta,
pRegW on the classifier W.

* :func:`time_smoothness` (pRegTh): alpha/(2h) sum_l ||theta_{l+1} - theta_l||^2, the discretised
  time derivative of the control (seed 002 eq. 81-82);
* :func:`ridge` (pRegW): alpha/2 ||W||_F^2, Tikhonov regularisation of the classifier.

Both are quadratic forms R(v) = v^T A v / 2, so the gradient of R at a vector v is A v: the
Gauss-Newton solver uses that as the regulariser's exact Hessian-vector product.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..fields.base import ControlledField

__all__ = ["time_smoothness", "ridge"]


def _weight(alpha: object) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    return float(alpha)


def time_smoothness(knots: ControlledField | Tensor, h: float | None = None, *, alpha: float = 1.0) -> Tensor:
    """pRegTh of seed 004 = alpha times seed 002 eq. 82: R(theta) = alpha/(2h) sum_l ||theta_{l+1} - theta_l||^2.

    ``knots``: a :class:`~contdepth.fields.ControlledField` (the sum over its control parameters,
    h = ``field.grid.dt``, the knot spacing; ``h`` must then be None) or a tensor of knot values
    with the control axis first (``h`` > 0 required). dR/dtheta_l = alpha/h (2 theta_l -
    theta_{l-1} - theta_{l+1}) inside, alpha/h (theta_0 - theta_1) and alpha/h (theta_n - theta_{n-1})
    at the ends. A single knot gives 0.
    """
    alpha = _weight(alpha)
    if isinstance(knots, ControlledField):
        if h is not None:
            raise ValueError(f"h is the field's knot spacing field.grid.dt = {knots.grid.dt}; pass h=None with a field")
        values, h = [getattr(knots, name) for name in knots.control_names], knots.grid.dt
        if not values:
            raise ValueError(f"knots ({type(knots).__name__}) has no control parameters to smooth")
    elif isinstance(knots, Tensor):
        if not knots.is_floating_point() or knots.dim() < 1:
            raise TypeError(f"knots must be a floating-point tensor with the control axis first, got "
                            f"{knots.dtype} of shape {tuple(knots.shape)}")
        if isinstance(h, bool) or not isinstance(h, (int, float)) or not math.isfinite(h) or h <= 0:
            raise ValueError(f"h (the knot spacing) must be a finite number > 0 with a tensor of knots, got {h!r}")
        values = [knots]
    else:
        raise TypeError(f"knots must be a ControlledField or a tensor of knot values, got {type(knots).__name__}")
    return alpha / (2 * h) * sum(v.diff(dim=0).square().sum() for v in values)


def ridge(weight: Tensor, *, alpha: float = 1.0) -> Tensor:
    """pRegW of seed 004: R(W) = alpha/2 ||W||_F^2 (every entry, bias column included), gradient alpha W."""
    alpha = _weight(alpha)
    if not isinstance(weight, Tensor) or not weight.is_floating_point():
        raise TypeError(f"weight must be a floating-point tensor, got {getattr(weight, 'dtype', type(weight).__name__)}")
    return alpha / 2 * weight.square().sum()
