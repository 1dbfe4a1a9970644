"""Dense fields on states of shape (B, dim)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..errors import check_positive_int
from ..grid import ControlGrid
from .base import ACTIVATION_VJPS, ControlledField, activation_fn, check_dims


def signed_power(psi: torch.Tensor, mu: float) -> torch.Tensor:
    """sign(psi) |psi|^mu (psi^3 for mu = 3)."""
    return psi.pow(3) if mu == 3.0 else psi.sign() * psi.abs().pow(mu)


def friction(psi: torch.Tensor, gamma: torch.Tensor, mu: float) -> torch.Tensor:
    """The friction term gamma * sign(psi) |psi|^mu of seed 002 eq. 57 (gamma psi^3 for mu = 3, eq. 56)."""
    return gamma * signed_power(psi, mu)


class CubicFrictionMixin:
    """The shared gamma parameter of the friction fields (seed 002 eq. 71: gamma may be learned).

    ``gamma_min`` / ``gamma_max`` (None: unbounded) bound gamma. With a bound the field uses gamma
    clamped to [gamma_min, gamma_max] (gradient 1 inside and on the bounds, 0 outside), and
    :meth:`project_` clamps the stored gamma into them; :func:`contdepth.train.fit` calls ``project_``
    on every module that has one after each optimizer step (projected gradient descent). Friction
    needs gamma >= 0: below zero -gamma x^3 is anti-friction and the flow blows up in finite time.
    An upper bound keeps explicit Euler stable on the friction term (3 gamma h x^2 < 2) for larger
    states |x| < sqrt(2 / (3 gamma_max h)).
    """

    def _init_gamma(self, gamma: float, mu: float, learn_gamma: bool, gamma_min: float | None,
                    gamma_max: float | None) -> None:
        if not isinstance(mu, (int, float)) or mu <= 0:
            raise ValueError(f"mu must be a positive number, got {mu!r}")
        for name, bound in (("gamma_min", gamma_min), ("gamma_max", gamma_max)):
            if bound is not None and (isinstance(bound, bool) or not isinstance(bound, (int, float))
                                      or not math.isfinite(bound)):
                raise ValueError(f"{name} must be a finite number or None, got {bound!r}")
        if gamma_min is not None and gamma_max is not None and gamma_min > gamma_max:
            raise ValueError(f"gamma_min must be <= gamma_max, got {gamma_min!r} > {gamma_max!r}")
        if gamma_min is not None and gamma < gamma_min:
            raise ValueError(f"gamma must be >= gamma_min, got gamma={gamma!r} < gamma_min={gamma_min!r}")
        if gamma_max is not None and gamma > gamma_max:
            raise ValueError(f"gamma must be <= gamma_max, got gamma={gamma!r} > gamma_max={gamma_max!r}")
        self.mu = float(mu)
        self.gamma_min = None if gamma_min is None else float(gamma_min)
        self.gamma_max = None if gamma_max is None else float(gamma_max)
        value = torch.tensor(float(gamma))
        if learn_gamma:
            self.gamma = torch.nn.Parameter(value)
        else:
            self.register_buffer("gamma", value)

    def bounded_gamma(self) -> torch.Tensor:
        """gamma clamped to [gamma_min, gamma_max], the gradient passed inside and on the bounds."""
        g = self.gamma
        if self.gamma_min is not None:
            g = torch.where(g >= self.gamma_min, g, torch.full_like(g, self.gamma_min))
        if self.gamma_max is not None:
            g = torch.where(g <= self.gamma_max, g, torch.full_like(g, self.gamma_max))
        return g

    vjp_uses_output = False  # the friction fields' VJPs need psi only

    def friction_vjp(self, psi: torch.Tensor, cotangent: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """cotangent^T d/dpsi and d/dgamma of minus the friction term, -gamma sign(psi) |psi|^mu
        (the gamma entry only when gamma is learned)."""
        gamma = self.bounded_gamma()
        slope = 3 * psi.square() if self.mu == 3.0 else self.mu * psi.abs().pow(self.mu - 1)
        grads = {}
        if self.gamma.requires_grad:
            g = -(cotangent * signed_power(psi, self.mu)).sum()
            # bounded_gamma passes gamma itself (gradient 1) inside and on the bounds, a constant outside
            grads["gamma"] = torch.where(gamma == self.gamma, g, torch.zeros_like(g))
        return -gamma * slope * cotangent, grads

    @torch.no_grad()
    def project_(self) -> None:
        """Clamp the stored gamma into [gamma_min, gamma_max] in place (nothing without bounds)."""
        if self.gamma_min is not None or self.gamma_max is not None:
            self.gamma.clamp_(min=self.gamma_min, max=self.gamma_max)


class CubicFriction(CubicFrictionMixin, ControlledField):
    """Seed 002 eq. 56/57: F(x) = W(t) x + b(t) - gamma sign(x) |x|^mu.

    ``weight`` (n, dim, dim) and ``bias`` (n, dim) start at zero (seed 002 sec. 4.4).
    ``gamma``: the friction coefficient's initial value (>= 0 for friction); ``learn_gamma``: train
    it as a parameter (True) or keep it a fixed buffer; ``mu``: the exponent, a number > 0 (3: the
    cubic friction of eq. 56). ``gamma_min``, ``gamma_max``: bounds on gamma (see
    :class:`CubicFrictionMixin`). Raises ``ValueError`` for ``dim`` < 1, ``mu`` <= 0 or gamma outside
    its bounds.

    Example: ``CubicFriction(3, ControlGrid(0.0, 4.0, n=8), gamma=0.1, learn_gamma=False)``.
    """

    def __init__(self, dim: int, grid: ControlGrid, *, gamma: float = 1.0, mu: float = 3.0,
                 learn_gamma: bool = True, gamma_min: float | None = None, gamma_max: float | None = None) -> None:
        super().__init__(grid)
        self.dim = check_positive_int("dim", dim)
        self.add_control("weight", torch.zeros(grid.n, dim, dim))
        self.add_control("bias", torch.zeros(grid.n, dim))
        self._init_gamma(gamma, mu, learn_gamma, gamma_min, gamma_max)

    def vector_field(self, t, psi, theta):
        """F = W(t) psi + b(t) - gamma sign(psi) |psi|^mu for psi (B, dim), theta's ``weight`` and ``bias`` at t."""
        return F.linear(psi, theta["weight"], theta["bias"]) - friction(psi, self.bounded_gamma(), self.mu)

    def vector_field_vjp(self, t, psi, theta, out, cotangent):
        """(c W + d/dpsi of minus the friction, {weight: c^T psi, bias: sum_B c, gamma: -sum c sign(psi) |psi|^mu}), c = ``cotangent``: cotangent^T dF/dpsi and cotangent^T dF/dtheta for the fused fixed-step gradients (checked against autograd in tests/test_fused.py)."""
        friction_bar, grads = self.friction_vjp(psi, cotangent)
        grads.update(weight=cotangent.t() @ psi, bias=cotangent.sum(0))
        return cotangent @ theta["weight"] + friction_bar, grads

    def check_state(self, psi):
        """Raise ``ValueError`` unless ``psi`` is (B, dim)."""
        check_dims("CubicFriction", psi, 2, 1, self.dim, "(B, dim)")


class DenseResidual(ControlledField):
    """Seed 004 eq. 2.11: F(x) = act(K(t) x + b(t)), ``weight`` (n, dim, dim), ``bias`` (n, dim).

    Each knot is initialised like ``torch.nn.Linear(dim, dim)``.
    """

    def __init__(self, dim: int, grid: ControlGrid, *, activation: str = "tanh") -> None:
        super().__init__(grid)
        self.dim = check_positive_int("dim", dim)
        self.activation = activation
        self._act = activation_fn(activation)
        bound = dim ** -0.5
        self.add_control("weight", torch.empty(grid.n, dim, dim).uniform_(-bound, bound))
        self.add_control("bias", torch.empty(grid.n, dim).uniform_(-bound, bound))

    def vector_field(self, t, psi, theta):
        """F = act(K(t) psi + b(t)) for psi (B, dim), theta's ``weight`` K and ``bias`` b at t."""
        return self._act(F.linear(psi, theta["weight"], theta["bias"]))

    def vector_field_vjp(self, t, psi, theta, out, cotangent):
        """With g = cotangent * act'(K psi + b) (from ``out``): (g K, {weight: g^T psi, bias: sum_B g}); cotangent^T dF/dpsi and cotangent^T dF/dtheta for the fused fixed-step gradients (checked against autograd in tests/test_fused.py)."""
        g = ACTIVATION_VJPS[self.activation](cotangent, out)
        return g @ theta["weight"], {"weight": g.t() @ psi, "bias": g.sum(0)}

    @property
    def vjp_uses_output(self) -> bool:
        return self.activation != "identity"

    def check_state(self, psi):
        """Raise ``ValueError`` unless ``psi`` is (B, dim)."""
        check_dims(type(self).__name__, psi, 2, 1, self.dim, "(B, dim)")


class AntisymmetricResidual(DenseResidual):
    """Haber & Ruthotto 2017's stable layer: F(x) = act((K(t) - K(t)^T - gamma I) x + b(t)).

    K - K^T - gamma I has eigenvalues with real part -gamma, and for an increasing activation
    (act' > 0) the Jacobian diag(act') (K - K^T - gamma I) keeps Re(lambda) <= 0: the continuous
    dynamics neither blow up nor lose information fast. Parameters and initialisation as
    :class:`DenseResidual`; ``gamma`` a fixed float >= 0.
    """

    def __init__(self, dim: int, grid: ControlGrid, *, gamma: float = 0.01, activation: str = "tanh") -> None:
        if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or gamma < 0:
            raise ValueError(f"gamma must be a number >= 0, got {gamma!r}")
        super().__init__(dim, grid, activation=activation)
        self.gamma = float(gamma)

    def vector_field(self, t, psi, theta):
        """F = act((K(t) - K(t)^T - gamma I) psi + b(t)) for psi (B, dim); no hand-written vjp (autograd)."""
        k = theta["weight"]
        a = k - k.transpose(-1, -2) - self.gamma * torch.eye(self.dim, dtype=k.dtype, device=k.device)
        return self._act(F.linear(psi, a, theta["bias"]))
