"""Gauss-Newton with variable projection (seed 004 ch. 5, MegaNet's ``dnnVarProObjFctn``):
:func:`classifier_fit` solves the convex classifier sub-problem, :class:`GaussNewtonVarPro` trains
the network weights on the reduced objective."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import SolverError, check_positive_int
from ..fields.base import ControlledField
from .regularisers import ridge, time_smoothness

__all__ = ["VarProValue", "classifier_fit", "GaussNewtonVarPro"]


def _number(name: str, value: object, *, low: float, strict: bool, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or value < low or (strict and value == low) or value > high:
        bound = f"> {low}" if strict else f">= {low}"
        raise ValueError(f"{name} must be a finite number {bound}{f' and <= {high}' if high < math.inf else ''}, "
                         f"got {value!r}")
    return float(value)


def _augment(features: Tensor, bias: bool) -> Tensor:
    return torch.cat([features, features.new_ones(features.shape[0], 1)], 1) if bias else features


def _check_labels(labels: object, batch: int, n_classes: int) -> Tensor:
    if not isinstance(labels, Tensor) or labels.dtype != torch.long or labels.shape != (batch,):
        raise TypeError(f"labels must be an int64 tensor of shape ({batch},), got "
                        f"{getattr(labels, 'dtype', type(labels).__name__)} of shape {tuple(getattr(labels, 'shape', ()))}")
    if batch and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes - 1}], got [{labels.min().item()}, {labels.max().item()}]")
    return labels


def _default_tol(dtype: torch.dtype) -> float:
    return 1e-10 if dtype == torch.float64 else 1e-5


def classifier_fit(features: Tensor, labels: Tensor, n_classes: int, *, alpha: float, bias: bool = True,
                   start: Tensor | None = None, tol: float | None = None, max_iter: int = 100) -> tuple[Tensor, int]:
    """W* = argmin_W Phi(W), Phi(W) = (1/B) sum_n CE(W ytilde_n, c_n) + alpha/2 ||W||_F^2, and the Newton steps taken.

    ``features`` (B, d): y_n; ytilde_n = (y_n, 1) with ``bias`` (W is (C, d + 1), its last column
    the bias), y_n without (W is (C, d)); ``labels`` (B,) int64 classes c_n; CE the softmax
    cross-entropy. Phi is strictly convex for ``alpha`` > 0 (seed 004's pRegW, :func:`ridge`).
    Newton from ``start`` (default 0) with Armijo backtracking, on

        grad = (1/B) (P - E)^T Ytilde + alpha W,
        Hess = (1/B) sum_n (diag(p_n) - p_n p_n^T) kron ytilde_n ytilde_n^T + alpha I,

    P the softmax probabilities, E the one-hot labels. It stops when ||grad||_2 <= ``tol``
    (default 1e-10 in float64, 1e-5 otherwise) or the Newton decrement g^T Hess^-1 g / 2 is below
    10 eps |Phi| (no decrease left to represent in the dtype); otherwise, after ``max_iter``
    steps, :class:`~contdepth.errors.SolverError`. No gradient flows to ``features``.
    """
    if not isinstance(features, Tensor) or not features.is_floating_point() or features.dim() != 2:
        raise TypeError(f"features must be a floating-point tensor of shape (B, d), got "
                        f"{getattr(features, 'dtype', type(features).__name__)} of shape "
                        f"{tuple(getattr(features, 'shape', ()))}")
    n_classes = check_positive_int("n_classes", n_classes)
    labels = _check_labels(labels, features.shape[0], n_classes)
    alpha = _number("alpha", alpha, low=0.0, strict=True)
    tol = _default_tol(features.dtype) if tol is None else _number("tol", tol, low=0.0, strict=True)
    max_iter = check_positive_int("max_iter", max_iter)
    with torch.no_grad():
        y = _augment(features.detach(), bias)
        batch, m = y.shape
        if start is None:
            w = y.new_zeros(n_classes, m)
        elif not isinstance(start, Tensor) or start.shape != (n_classes, m):
            raise ValueError(f"start must be a tensor of shape ({n_classes}, {m}), got "
                             f"{tuple(getattr(start, 'shape', ())) or type(start).__name__}")
        else:
            w = start.detach().to(y.dtype).clone()
        onehot = F.one_hot(labels, n_classes).to(y.dtype)
        eye = torch.eye(n_classes * m, dtype=y.dtype, device=y.device)

        def phi(v: Tensor) -> Tensor:
            return F.cross_entropy(y @ v.T, labels) + ridge(v, alpha=alpha)

        eps = torch.finfo(y.dtype).eps
        for it in range(max_iter + 1):
            p = torch.softmax(y @ w.T, 1)
            grad = (p - onehot).T @ y / batch + alpha * w
            if grad.norm() <= tol:
                return w, it
            if it == max_iter:
                break
            curv = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
            hess = torch.einsum("nce,nj,nk->cjek", curv, y, y).reshape(n_classes * m, n_classes * m) / batch
            chol = torch.linalg.cholesky(hess + alpha * eye)
            s = -torch.cholesky_solve(grad.reshape(-1, 1), chol).reshape(n_classes, m)
            slope, value = (grad * s).sum(), phi(w)
            if -slope / 2 <= 10 * eps * value.abs():
                return w, it
            t = 1.0
            while phi(w + t * s) > value + 1e-4 * t * slope and t > 1e-10:
                t /= 2
            w = w + t * s
    raise SolverError(f"classifier_fit: Newton did not reach ||grad|| <= tol = {tol:g} in max_iter = {max_iter} "
                      f"steps (||grad|| = {grad.norm().item():.3g}); raise max_iter or tol")


@dataclass(frozen=True)
class VarProValue:
    """The reduced objective at one theta: ``objective`` J = ``loss`` + ``reg_theta`` + ``reg_w``,
    the classifier ``weight`` W*(theta) (bias last column if any) and its ``logits`` (B, C)."""

    objective: Tensor
    loss: Tensor
    reg_theta: Tensor
    reg_w: Tensor
    weight: Tensor
    logits: Tensor


class GaussNewtonVarPro:
    """Gauss-Newton-CG with variable projection on the weights theta of ``features`` (seed 004 ch. 5).

    The network is ``head(features(x))``, ``head`` an ``nn.Linear`` (C classes) whose weight W
    (and bias) is eliminated: with Y(theta) = features(x) (B, d) and Phi(W, Y) the classifier
    objective of :func:`classifier_fit` (cross-entropy + ``alpha_w``/2 ||W||^2, pRegW), the
    reduced objective is

        J(theta) = Phi(W*(theta), Y(theta)) + R(theta),   W*(theta) = argmin_W Phi(W, Y(theta)),

    R = :func:`time_smoothness` with weight ``alpha_theta`` (pRegTh) summed over every
    ControlledField in ``features``; theta = every trainable parameter of ``features``. Since
    dPhi/dW = 0 at W*, grad J = J_Y^T dPhi/dY(W*, Y) + grad R (variable projection), J_Y = dY/dtheta.
    One :meth:`step` solves (H + ``damping`` I) s = -grad J by at most ``cg_iters`` conjugate-gradient
    iterations (relative residual ``cg_tol``; stopped at non-positive curvature) with the
    Gauss-Newton matrix

        H v = J_Y^T [dPhi^2/dY^2 (J_Y v)] + A v,   dPhi^2/dY^2 u = (1/B) Wt^T (diag(p_n) - p_n p_n^T) Wt u_n,

    (Wt = W* without its bias column, A the Hessian of R), matrix-free by :meth:`linearise`: J_Y v
    by double backward and J_Y^T w by reverse mode through the solve; then an Armijo line search
    J(theta + t s) <= J(theta) + ``armijo`` t grad J . s, t = 1, 1/2, ... (at most ``backtracks``
    halvings; none accepted: theta is kept and ``last["step_size"]`` = 0). The head is set to
    W*(theta) after every step, so ``head(features(x))`` is the trained network. ``newton_tol``,
    ``newton_iters``: :func:`classifier_fit`'s ``tol`` and ``max_iter``.
    """

    def __init__(self, features: nn.Module, head: nn.Linear, *, alpha_theta: float = 1e-3, alpha_w: float = 1e-3,
                 cg_iters: int = 10, cg_tol: float = 0.1, damping: float = 0.0, armijo: float = 1e-4,
                 backtracks: int = 20, newton_tol: float | None = None, newton_iters: int = 100) -> None:
        if not isinstance(features, nn.Module):
            raise TypeError(f"features must be a torch.nn.Module, got {type(features).__name__}")
        if not isinstance(head, nn.Linear):
            raise TypeError(f"head must be a torch.nn.Linear (the classifier W), got {type(head).__name__}")
        if any(p is q for p in head.parameters() for q in features.parameters()):
            raise ValueError("head's parameters are also parameters of features: W is eliminated, theta trained")
        self.params = {name: p for name, p in features.named_parameters() if p.requires_grad}
        if not self.params:
            raise ValueError(f"features ({type(features).__name__}) has no trainable parameter for Gauss-Newton")
        self.features, self.head = features, head
        self.alpha_theta = _number("alpha_theta", alpha_theta, low=0.0, strict=False)
        self.alpha_w = _number("alpha_w", alpha_w, low=0.0, strict=True)
        self.cg_iters, self.backtracks = check_positive_int("cg_iters", cg_iters), check_positive_int("backtracks",
                                                                                                      backtracks)
        self.cg_tol = _number("cg_tol", cg_tol, low=0.0, strict=True, high=1.0)
        self.damping = _number("damping", damping, low=0.0, strict=False)
        self.armijo = _number("armijo", armijo, low=0.0, strict=True, high=0.5)
        self.newton_tol = None if newton_tol is None else _number("newton_tol", newton_tol, low=0.0, strict=True)
        self.newton_iters = check_positive_int("newton_iters", newton_iters)
        self.smoothed = [(f"{prefix}.{name}" if prefix else name, module.grid.dt)
                         for prefix, module in features.named_modules() if isinstance(module, ControlledField)
                         for name in module.control_names]
        self.smoothed = [(name, h) for name, h in self.smoothed if name in self.params]
        self.last: dict[str, float] = {}

    # theta as one flat vector -------------------------------------------------------------------
    def theta(self) -> Tensor:
        """The current theta, flattened (the order of ``features.named_parameters()``)."""
        return torch.cat([p.detach().reshape(-1) for p in self.params.values()])

    def _unflatten(self, flat: Tensor) -> dict[str, Tensor]:
        out, at = {}, 0
        for name, p in self.params.items():
            out[name] = flat[at:at + p.numel()].view_as(p)
            at += p.numel()
        return out

    def _check_theta(self, name: str, v: object) -> Tensor:
        size = sum(p.numel() for p in self.params.values())
        if not isinstance(v, Tensor) or v.shape != (size,):
            raise ValueError(f"{name} must be a flat tensor of shape ({size},), got "
                             f"{tuple(getattr(v, 'shape', ())) or type(v).__name__}")
        return v

    @torch.no_grad()
    def _load(self, flat: Tensor) -> None:
        for p, new in zip(self.params.values(), self._unflatten(flat).values()):
            p.copy_(new)

    def _features(self, x: Tensor) -> Tensor:
        y = self.features(x)
        if not isinstance(y, Tensor) or y.dim() != 2 or y.shape[1] != self.head.in_features:
            raise ValueError(f"features(x) must be (B, {self.head.in_features}) for head, got "
                             f"{tuple(getattr(y, 'shape', ())) or type(y).__name__}")
        return y

    def regulariser(self, flat: Tensor) -> Tensor:
        """R(theta) = sum over the fields' control parameters of ``time_smoothness(.., alpha=alpha_theta)``."""
        values = self._unflatten(flat)
        return sum((time_smoothness(values[name], h, alpha=self.alpha_theta) for name, h in self.smoothed),
                   flat.new_zeros(()))

    def _regulariser_grad(self, flat: Tensor) -> Tensor:
        """grad R at ``flat`` = A flat (R is a quadratic form)."""
        return torch.func.grad(self.regulariser)(flat.detach())

    # the two Jacobian products ---------------------------------------------------------------------
    def linearise(self, x: Tensor) -> tuple[Tensor, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]:
        """(Y, v -> J_Y v, w -> J_Y^T w) at the current theta, from one forward pass through the solve.

        J_Y^T w by reverse mode; J_Y v by double backward: g(u) = J_Y^T u is linear in u, and J_Y v =
        d/du (g(u) . v). Both reuse the graph of the one pass. Exact derivatives of the discrete
        network for ODEBlocks with ``gradient="backprop"`` or ``"checkpoint"``; with ``"adjoint"``
        they are those of the continuous adjoint (approximate to the solver's accuracy)."""
        params = list(self.params.values())
        with torch.enable_grad():
            y = self._features(x)
            u = torch.zeros_like(y, requires_grad=True)
            try:
                g_of_u = torch.autograd.grad(y, params, u, create_graph=True)
            except RuntimeError as e:
                raise ValueError(f"every trainable parameter of features must affect features(x) ({e})") from e

        def jvp(v: Tensor) -> Tensor:
            with torch.enable_grad():
                pairing = sum((g * vi).sum() for g, vi in zip(g_of_u, self._unflatten(self._check_theta("v", v))
                                                              .values()))
                return torch.autograd.grad(pairing, u, retain_graph=True)[0]

        def vjp(w: Tensor) -> Tensor:
            with torch.enable_grad():
                return torch.cat([g.reshape(-1) for g in torch.autograd.grad(y, params, w, retain_graph=True)])
        return y.detach(), jvp, vjp

    # the reduced objective ---------------------------------------------------------------------------
    def _start(self, like: Tensor) -> Tensor:
        head = self.head
        w = head.weight.detach() if head.bias is None else torch.cat([head.weight.detach(), head.bias.detach()[:, None]], 1)
        return w.to(like.dtype)

    def _value(self, flat: Tensor, y: Tensor, labels: Tensor, start: Tensor) -> VarProValue:
        bias = self.head.bias is not None
        w, _ = classifier_fit(y, labels, self.head.out_features, alpha=self.alpha_w, bias=bias, start=start,
                              tol=self.newton_tol, max_iter=self.newton_iters)
        with torch.no_grad():
            logits = _augment(y.detach(), bias) @ w.T
            loss, reg_w, reg_theta = F.cross_entropy(logits, labels), ridge(w, alpha=self.alpha_w), self.regulariser(flat)
        return VarProValue(loss + reg_theta + reg_w, loss, reg_theta, reg_w, w, logits)

    def evaluate(self, x: Tensor, labels: Tensor, theta: Tensor | None = None) -> VarProValue:
        """J(theta) at the current theta (or at the flat ``theta`` given, the parameters restored after)."""
        current = self.theta()
        labels = _check_labels(labels, x.shape[0], self.head.out_features)
        if theta is not None:
            self._load(self._check_theta("theta", theta))
        try:
            with torch.no_grad():
                y = self._features(x)
        finally:
            if theta is not None:
                self._load(current)
        return self._value(current if theta is None else theta, y, labels, self._start(y))

    def _curvature(self, value: VarProValue) -> tuple[Tensor, Tensor]:
        return torch.softmax(value.logits, 1), value.weight[:, :self.head.in_features]

    def gradient(self, x: Tensor, labels: Tensor) -> Tensor:
        """grad J(theta) = J_Y^T dPhi/dY (W*(theta), Y) + grad R(theta) (flat)."""
        value = self.evaluate(x, labels)
        return self._gradient(labels, value, self.linearise(x)[2])

    def _gradient(self, labels: Tensor, value: VarProValue, vjp: Callable[[Tensor], Tensor]) -> Tensor:
        p, wt = self._curvature(value)
        dy = (p - F.one_hot(labels, p.shape[1]).to(p.dtype)) @ wt / p.shape[0]
        return vjp(dy) + self._regulariser_grad(self.theta())

    def gn_matvec(self, x: Tensor, labels: Tensor, v: Tensor) -> Tensor:
        """H v, the Gauss-Newton matrix at the current theta (with ``damping``) times ``v``."""
        value = self.evaluate(x, labels)
        _, jvp, vjp = self.linearise(x)
        return self._matvec(value, jvp, vjp, v)

    def _matvec(self, value: VarProValue, jvp, vjp, v: Tensor) -> Tensor:
        p, wt = self._curvature(value)
        z = jvp(v) @ wt.T
        dz = (p * z - p * (p * z).sum(1, keepdim=True)) @ wt / p.shape[0]
        return vjp(dz) + self._regulariser_grad(v) + self.damping * v

    def step(self, x: Tensor, labels: Tensor) -> VarProValue:
        """One Gauss-Newton-CG iteration with line search; returns J and W* before the update."""
        labels = _check_labels(labels, x.shape[0], self.head.out_features)
        y, jvp, vjp = self.linearise(x)
        value = self._value(self.theta(), y, labels, self._start(y))
        grad = self._gradient(labels, value, vjp)
        rhs = -grad
        s, r = torch.zeros_like(rhs), rhs.clone()
        d, rr, iters = r.clone(), r.dot(r), 0
        for iters in range(1, self.cg_iters + 1):
            hd = self._matvec(value, jvp, vjp, d)
            curv = d.dot(hd)
            if curv <= 0:
                s = rhs if iters == 1 else s
                break
            a = rr / curv
            s, r = s + a * d, r - a * hd
            rr_new = r.dot(r)
            if rr_new.sqrt() <= self.cg_tol * rhs.norm():
                break
            d, rr = r + rr_new / rr * d, rr_new
        slope = grad.dot(s)
        if not slope < 0:
            s, slope = rhs, -grad.dot(grad)
        theta, t, accepted = self.theta(), 1.0, None
        if slope < 0:
            for _ in range(self.backtracks + 1):
                self._load(theta + t * s)
                with torch.no_grad():
                    trial = self._value(theta + t * s, self._features(x), labels, value.weight)
                if trial.objective <= value.objective + self.armijo * t * slope:
                    accepted = trial
                    break
                t /= 2
        if accepted is None:
            self._load(theta)
        self._set_head(accepted.weight if accepted is not None else value.weight)
        self.last = {"objective_before": value.objective.item(),
                     "objective_after": (accepted or value).objective.item(),
                     "step_size": t if accepted is not None else 0.0, "cg_iters": float(iters),
                     "grad_norm": grad.norm().item()}
        return value

    @torch.no_grad()
    def _set_head(self, w: Tensor) -> None:
        d = self.head.in_features
        self.head.weight.copy_(w[:, :d])
        if self.head.bias is not None:
            self.head.bias.copy_(w[:, d])

    def state_dict(self) -> dict[str, float]:
        """The settings (the state itself, theta and W, is the model's)."""
        return {"alpha_theta": self.alpha_theta, "alpha_w": self.alpha_w, "cg_iters": self.cg_iters,
                "cg_tol": self.cg_tol, "damping": self.damping}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Check that ``state`` (from :meth:`state_dict`) has this optimizer's settings (ValueError if not)."""
        if state != self.state_dict():
            raise ValueError(f"state holds Gauss-Newton settings {state}, this optimizer has {self.state_dict()}")
