"""Implicit Runge-Kutta steppers for stiff problems: one object for every implicit tableau.

Stage values solve Y_i = y + h sum_j a_ij f(t + c_j h, Y_j) by Newton's method
(:mod:`contdepth.solvers.newton`); k_i = f(t + c_i h, Y_i) is recovered from the converged stages
(DIRK: k_i = (Y_i - y - h sum_{j<i} a_ij k_j) / (h a_ii); fully implicit: K = (h A)^{-1} (Y - y)),
and y1 = Y_s for a stiffly accurate tableau, else y + h sum_i b_i k_i. Diagonally implicit
tableaux are solved stage by stage with M = I - h a_ii J, the others all stages at once with
M = I - h (A kron J).

Gradients. Newton runs without autograd; under autograd each solve adds the correction
Y <- Y* + (c - c.detach()), c = -J*^{-1} G(Y*), with G(Y) = Y - y - h (A kron I) F(Y) evaluated
on the detached root Y* (the graph reaches y, earlier stages and f's parameters) and J* = dG/dY
at Y*, a constant (dense, or GMRES with a GMRES backward pass). Its value is exactly Y*, its
derivative -J*^{-1} dG is the implicit function theorem's: the exact derivative of the root, not of
the iterations that found it, at the cost of one evaluation of f and one Jacobian (or Krylov
solve) per stage solve. So a step's value does not depend on the grad mode, and a checkpoint
replay reproduces the forward step: the step is a function of (y, state), the state holding the
Jacobian it reuses.

Jacobian reuse (dense Newton). The stepper's state is (J,), J = df/dy taken at the start of an
earlier step; the step's LU factors are kept while J and h are unchanged. A step whose Newton
iteration fails with a reused J retries with a fresh one at (t, y); a step whose contraction ratio
exceeded ``refresh_rate`` hands on the empty state (), so the next step takes a fresh J. An
adaptive step that fails with a fresh J is rejected (error estimate inf: the controller shrinks h;
``max_failures`` failures in a row are a SolverError naming t and h); a fixed step retries with
full Newton (a Jacobian at every iterate), then raises the SolverError.

A term may provide ``coupled_drift(t, side, y) -> (n, fn)``: only the first n tensors of the
state feed f, fn maps those to their derivatives and is traceable by :mod:`torch.func`; the
remaining entries get the identity in M (the adjoint's parameter integrals).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch

from ..errors import SolverError, check_positive_int
from ..terms import Term
from ..tree import State, add, combine, hermite, lerp, leaves, rebuild, tree_map, weighted
from . import implicit_tableau as tableaux
from .implicit_tableau import ImplicitTableau
from .newton import KrylovSolve, NewtonOptions, dense_jacobian, gmres, jvp, newton, vjp

Flat = Callable[[torch.Tensor], torch.Tensor]


def _flat(y: State) -> torch.Tensor:
    """The tensors of ``y`` as one vector."""
    parts = leaves(y)
    return parts[0].reshape(-1) if len(parts) == 1 else torch.cat([x.reshape(-1) for x in parts])


def _unflat(like: State, x: torch.Tensor) -> State:
    """The vector ``x`` in the structure of ``like``."""
    out, offset = [], 0
    for leaf in leaves(like):
        out.append(x[offset:offset + leaf.numel()].view(leaf.shape))
        offset += leaf.numel()
    return rebuild(like, out)


def _count(term: Term, field: str, n: int = 1) -> None:
    counts = getattr(term, "counts", None)
    if counts is not None:
        setattr(counts, field, getattr(counts, field) + n)


def _requires_grad(y: State) -> bool:
    return any(x.requires_grad for x in leaves(y))


class _Probe:
    """``fn`` whose first call runs under autograd when ``wanted`` (inside Newton's no-grad
    iterations): ``needs_grad`` then says whether f depends on tensors that require grad, so a
    solve that no gradient can reach skips the implicit-function correction at no extra cost."""

    def __init__(self, fn: Flat, wanted: bool) -> None:
        self.fn, self.pending, self.needs_grad = fn, wanted, False

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if not self.pending:
            return self.fn(x)
        self.pending = False
        with torch.enable_grad():
            out = self.fn(x)
        self.needs_grad = out.requires_grad
        return out.detach()


class ImplicitRungeKutta:
    """Implicit Runge-Kutta stepper for ``tableau`` (see the module docstring for the equations).

    newton: ``"dense"`` (J by :func:`torch.func.jacrev`, reused across stages and steps), ``"jfnk"``
        (Jacobian-free Newton-Krylov: GMRES on Jacobian-vector products), or ``"auto"`` (dense up to
        ``dense_max`` coupled entries). newton_rtol, newton_atol: the scaled-increment test;
        newton_max_iter: iterations per solve. refresh_rate, krylov_dim, krylov_restarts,
        krylov_rtol: see :class:`~contdepth.solvers.newton.NewtonOptions`. max_failures: Newton
        failures in a row (each with a fresh Jacobian) before an adaptive solve gives up.
    """

    fsal = False
    implicit = True

    def __init__(self, tableau: ImplicitTableau, *, newton: str = "auto", newton_rtol: float = 1e-9,
                 newton_atol: float = 1e-12, newton_max_iter: int = 10, dense_max: int = 256,
                 refresh_rate: float = 0.2, krylov_dim: int = 20, krylov_restarts: int = 10,
                 krylov_rtol: float = 1e-10, max_failures: int = 10) -> None:
        if not isinstance(tableau, ImplicitTableau):
            raise TypeError(f"tableau must be an ImplicitTableau, got {type(tableau).__name__}")
        self.tableau = tableau
        self.name, self.order, self.adaptive = tableau.name, tableau.order, tableau.adaptive
        self.newton_options = NewtonOptions(newton, newton_rtol, newton_atol, newton_max_iter, dense_max, refresh_rate,
                                     krylov_dim, krylov_restarts, krylov_rtol)
        self.max_failures = check_positive_int("max_failures", max_failures)
        self._failures = 0
        self._lu: tuple = (None, None, None)
        self._fresh: tuple = (None, None, None)
        self._a_inv: dict = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(newton={self.newton_options.kind!r})"

    # -- the protocol ------------------------------------------------------------------------

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        """The empty state: the first step takes a fresh Jacobian (dense Newton)."""
        return ()

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        """One step from (t, y) to t + h: (y1, state1, error estimate or None, dense-output data)."""
        d = 1 if h > 0 else -1
        m, _ = self._drift(term, t, d, y)
        dense = self._dense(m)
        jac, fresh = (state[0] if state else None), False
        if dense and jac is None:
            jac, fresh = self._jacobian(term, t, d, y), True
        run = self._dirk if self.tableau.diagonally_implicit else self._full
        attempt = run(term, t, h, y, jac, m, False)
        if attempt is None and dense and not fresh:
            jac, fresh = self._jacobian(term, t, d, y), True
            attempt = run(term, t, h, y, jac, m, False)
        if attempt is None and dense and not self.adaptive:  # a fixed step's last resort: full Newton
            attempt = run(term, t, h, y, jac, m, True)
        if attempt is None:
            return self._failed(t, h, y, state)
        self._failures = 0
        ks, y1, rate = attempt
        state1 = (jac,) if dense and rate <= self.newton_options.refresh_rate else ()
        error = weighted(h, self.tableau.b_error, ks) if self.adaptive else None
        return y1, state1, error, self._dense_data(ks)

    def interpolate(self, y0: State, y1: State, dense, h: float, s: float) -> State:
        """Dense output at t + s h: the cubic Hermite interpolant through (y0, f(t, y0)) and
        (y1, k_s) for the adaptive ESDIRK pairs (k_s = f(t + h, y1), stiffly accurate), else linear."""
        if dense is None:
            return lerp(y0, y1, s)
        return hermite(y0, y1, *dense, h, s)

    # -- pieces ------------------------------------------------------------------------------

    def _dense_data(self, ks: list[State]):
        tab = self.tableau
        return (ks[0], ks[-1]) if tab.adaptive and tab.explicit_first_stage and tab.stiffly_accurate else None

    def _stage_time(self, t: float, h: float, i: int) -> tuple[float, int]:
        """(time, side) of stage i: inside the step seen ahead, the step's end from behind."""
        ci, direction = self.tableau.c[i], 1 if h > 0 else -1
        return (t + h, -direction) if ci == 1 else (t + ci * h, direction)

    def _dense(self, m: int) -> bool:
        kind = self.newton_options.kind
        return kind == "dense" or (kind == "auto" and m <= self.newton_options.dense_max)

    @staticmethod
    def _drift(term: Term, t: float, side: int, like: State) -> tuple[int, Flat]:
        """(m, fn): fn maps the first m entries of a flat state (the part f depends on) to theirs of f."""
        coupled = getattr(term, "coupled_drift", None)
        if coupled is None:
            return _flat(like).numel(), lambda x: _flat(term(t, _unflat(like, x), side))
        n, fn = coupled(t, side, like)
        parts = leaves(like)[:n]
        m = sum(p.numel() for p in parts)
        return m, lambda x: _flat(tuple(fn(list(_unflat(tuple(parts), x)))))

    def _jacobian(self, term: Term, t: float, side: int, y: State) -> torch.Tensor:
        """df/dy on the coupled part at (t, y), counted; kept for a retry at the same (t, y)."""
        key_t, key_y, jac = self._fresh
        if key_t == t and key_y is y:
            return jac
        m, fn = self._drift(term, t, side, y)
        _count(term, "jacobians")
        jac = dense_jacobian(fn, _flat(y).detach()[:m])
        self._fresh = (t, y, jac)
        return jac

    def _lu_factors(self, jac: torch.Tensor, scale: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor] | None:
        """LU of I - (scale kron J) (scale an s x s matrix h A, or the number h a_ii), kept while the
        same J object (the one in the state) and scale come back; None if the matrix is singular."""
        key_j, key_s, lu = self._lu
        same = key_j is jac and (torch.equal(key_s, scale) if isinstance(scale, torch.Tensor) else key_s == scale)
        if not same:
            big = torch.kron(scale, jac.detach()) if isinstance(scale, torch.Tensor) else scale * jac.detach()
            lu, piv, info = torch.linalg.lu_factor_ex(torch.eye(big.shape[0], dtype=big.dtype, device=big.device) - big)
            lu = None if int(info) != 0 or not bool(torch.isfinite(lu).all()) else (lu, piv)
            self._lu = (jac, scale, lu)
        return lu

    def _failed(self, t: float, h: float, y: State, state: tuple):
        self._failures += 1
        if not self.adaptive or self._failures >= self.max_failures:
            self._failures = 0
            fix = "a smaller first_step or tighter rtol" if self.adaptive else "more steps"
            raise SolverError(
                f"Newton's iteration for the stages of {self.name} did not converge at t={t} with h={h} "
                f"(newton={self.newton_options.kind!r}, newton_max_iter={self.newton_options.max_iter}, with a fresh Jacobian"
                f"{'' if self.adaptive else ', fixed step'}): use smaller steps ({fix}), raise newton_max_iter, "
                "or check that f is finite and differentiable there")
        return y, state, tree_map(lambda x: torch.full_like(x, math.inf), y), None

    def _count_solve(self, term: Term, solve):
        def counted(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            _count(term, "linear_solves")
            return solve(r, x)
        return counted

    # -- diagonally implicit: one stage at a time ---------------------------------------------

    def _dirk(self, term: Term, t: float, h: float, y: State, jac: torch.Tensor | None, m: int, exact: bool):
        """(k_i, y1, largest contraction ratio), or None when a stage's Newton iteration failed
        (``exact``: full Newton, a Jacobian at every iterate, instead of ``jac``)."""
        tab, opts, grad = self.tableau, self.newton_options, torch.is_grad_enabled()
        ks: list[State] = []
        stage_y: State = y
        worst = 0.0
        for i in range(tab.stages):
            ti, side = self._stage_time(t, h, i)
            base = combine(y, h, tab.a[i][:i], ks)
            gamma = tab.a[i][i]
            if gamma == 0:
                ks.append(term(ti, base, side))
                stage_y = base
                continue
            hg = h * gamma
            full = lambda x, ti=ti, side=side: _flat(term(ti, _unflat(y, x), side))
            with torch.no_grad():
                b = _flat(base).detach()
                guess = self._guess(i, ks)
                x0 = b if guess is None else b + hg * _flat(guess).detach()
                _, fn = self._drift(term, ti, side, y)
                solve = self._exact_solver(term, [fn], hg, m) if exact else self._dirk_solver(jac, hg, m, fn)
                if solve is None:
                    return None
                probe = _Probe(full, grad)
                result = newton(lambda x: x - b - hg * probe(x), self._count_solve(term, solve), x0, opts)
            if not result.converged:
                return None
            worst = max(worst, result.rate)
            root = result.x
            if grad and (probe.needs_grad or _requires_grad(base)):
                root = self._ift(term, root, _flat(base), full, hg, None)
            stage_y = _unflat(y, root)
            ks.append(tree_map(lambda a, c: (a - c) / hg, stage_y, base))
        y1 = stage_y if tab.stiffly_accurate else add(y, weighted(h, tab.b, ks))
        return ks, y1, worst

    def _guess(self, i: int, ks: list[State]) -> State | None:
        """The first guess of k_i: the tableau's predictor, else none (Y_i starts at y + h sum_{j<i} a_ij k_j;
        the previous stage's k overshoots on stiff problems)."""
        pred = self.tableau.predictor
        return weighted(1.0, pred[i], ks) if pred is not None and i > 0 else None

    def _exact_solver(self, term: Term, fns: list[Flat], scale: torch.Tensor | float, m: int):
        """Full Newton: dX = M^{-1} R with M = I - scale_ij J(X_j) from Jacobians at the iterate X
        (one stage with scale h a_ii, or all with scale h A)."""
        def solve(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            xs, rs = (x[None], r[None]) if x.dim() == 1 else (x, r)
            s = len(fns)
            _count(term, "jacobians", s)
            jacs = [dense_jacobian(f, xi[:m]) for f, xi in zip(fns, xs)]
            coef = scale if isinstance(scale, torch.Tensor) else torch.full((1, 1), scale, dtype=x.dtype)
            mat = torch.eye(s * m, dtype=x.dtype, device=x.device) - torch.cat(
                [torch.cat([coef[i, j] * jacs[j] for j in range(s)], 1) for i in range(s)])
            dc, info = torch.linalg.solve_ex(mat, rs[:, :m].reshape(-1))
            dc = dc if int(info) == 0 else torch.full_like(dc, math.nan)
            return torch.cat([dc.view(s, m), rs[:, m:]], dim=1).view_as(r)
        return solve

    def _dirk_solver(self, jac: torch.Tensor | None, hg: float, m: int, fn: Flat):
        """dx = M^{-1} r with M = I - h a_ii J on the coupled part, I on the rest (None: M is singular)."""
        if jac is not None:
            factors = self._lu_factors(jac, hg)
            if factors is None:
                return None
            lu, piv = factors

            def solve(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
                return torch.cat([torch.linalg.lu_solve(lu, piv, r[:m, None])[:, 0], r[m:]])
            return solve
        opts = self.newton_options

        def solve(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            xc = x[:m]
            dx, _ = gmres(lambda v: v - hg * jvp(fn, xc, v), r[:m], restart=opts.krylov_dim,
                          max_restarts=opts.krylov_restarts, rtol=opts.krylov_rtol)
            return torch.cat([dx, r[m:]])
        return solve

    # -- fully implicit: all stages at once ----------------------------------------------------

    def _full(self, term: Term, t: float, h: float, y: State, jac: torch.Tensor | None, m: int, exact: bool):
        """(k_i, y1, contraction ratio) of a fully implicit tableau, or None when Newton failed."""
        tab, opts, grad = self.tableau, self.newton_options, torch.is_grad_enabled()
        y_flat = _flat(y)
        a, a_inv = self._matrices(y_flat)
        stage = [self._stage_time(t, h, i) for i in range(tab.stages)]
        fulls = [lambda x, ti=ti, side=side: _flat(term(ti, _unflat(y, x), side)) for ti, side in stage]
        F = lambda xs: torch.stack([f(x) for f, x in zip(fulls, xs)])
        with torch.no_grad():
            yb = y_flat.detach()
            x0 = yb.expand(tab.stages, -1).clone()
            fns = [self._drift(term, ti, side, y)[1] for ti, side in stage]
            solve = self._exact_solver(term, fns, h * a, m) if exact else self._full_solver(jac, h * a, m, fns)
            if solve is None:
                return None
            probe = _Probe(F, grad)
            result = newton(lambda xs: xs - yb - h * (a @ probe(xs)), self._count_solve(term, solve), x0, opts)
        if not result.converged:
            return None
        roots = result.x
        if grad and (probe.needs_grad or _requires_grad(y)):
            roots = self._ift(term, roots, y_flat, fulls, h, a)
        big_k = (a_inv @ (roots - y_flat)) / h
        ks = [_unflat(y, big_k[i]) for i in range(tab.stages)]
        y1 = _unflat(y, roots[-1]) if tab.stiffly_accurate else add(y, weighted(h, tab.b, ks))
        return ks, y1, result.rate

    def _matrices(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A and A^{-1} as tensors of ``like``'s dtype and device."""
        key = (like.dtype, like.device)
        if key not in self._a_inv:
            a = torch.tensor(self.tableau.a, dtype=torch.float64)
            self._a_inv[key] = (a.to(*key[::-1]), torch.linalg.inv(a).to(*key[::-1]))
        return self._a_inv[key]

    def _full_solver(self, jac: torch.Tensor | None, ha: torch.Tensor, m: int, fns: list[Flat]):
        """dX = M^{-1} R with M = I - (h A kron J) on the coupled columns of the stages, I on the rest
        (None: M is singular)."""
        s = ha.shape[0]
        if jac is not None:
            factors = self._lu_factors(jac, ha)
            if factors is None:
                return None
            lu, piv = factors

            def solve(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
                dc = torch.linalg.lu_solve(lu, piv, r[:, :m].reshape(-1, 1)).reshape(s, m)
                return torch.cat([dc, r[:, m:]], dim=1)
            return solve
        opts = self.newton_options

        def solve(r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
            xc = x[:, :m]

            def matvec(v: torch.Tensor) -> torch.Tensor:
                vs = v.view(s, m)
                return (vs - ha @ torch.stack([jvp(f, xi, vi) for f, xi, vi in zip(fns, xc, vs)])).reshape(-1)
            dc, _ = gmres(matvec, r[:, :m].reshape(-1), restart=opts.krylov_dim, max_restarts=opts.krylov_restarts,
                          rtol=opts.krylov_rtol)
            return torch.cat([dc.view(s, m), r[:, m:]], dim=1)
        return solve

    # -- the implicit function theorem -------------------------------------------------------

    def _ift(self, term: Term, root: torch.Tensor, y_flat: torch.Tensor, full, h: float,
             a: torch.Tensor | None) -> torch.Tensor:
        """root + (c - c.detach()), c = -J*^{-1} G(root): the value root, the derivative of the root
        by the implicit function theorem. DIRK (``a`` None): G(Y) = Y - base - h a_ii f(Y), ``h`` is
        h a_ii and ``full`` one function; else G(Y) = Y - y - h A F(Y) over all stages."""
        x = root.detach()
        if a is None:
            g = x - y_flat - h * full(x)
        else:
            g = x - y_flat - h * (a @ torch.stack([f(xi) for f, xi in zip(full, x)]))
        if not g.requires_grad:
            return root
        _count(term, "linear_solves")
        n = x.shape[-1]
        if self._dense(n):
            if a is None:
                _count(term, "jacobians")
                mat = torch.eye(n, dtype=x.dtype, device=x.device) - h * dense_jacobian(full, x)
                c = -torch.linalg.solve(mat, g)
            else:
                _count(term, "jacobians", len(full))
                jacs = [dense_jacobian(f, xi) for f, xi in zip(full, x)]
                s = len(full)
                blocks = [[h * a[i, j] * jacs[j] for j in range(s)] for i in range(s)]
                mat = torch.eye(s * n, dtype=x.dtype, device=x.device) - torch.cat([torch.cat(r, 1) for r in blocks])
                c = -torch.linalg.solve(mat, g.reshape(-1)).view_as(g)
        elif a is None:
            c = -KrylovSolve.apply(g, lambda v: v - h * jvp(full, x, v), lambda w: w - h * vjp(full, x, w),
                                   self.newton_options)
        else:
            s = len(full)

            def matvec(v: torch.Tensor) -> torch.Tensor:
                vs = v.view(s, n)
                return (vs - h * (a @ torch.stack([jvp(f, xi, vi) for f, xi, vi in zip(full, x, vs)]))).reshape(-1)

            def rmatvec(w: torch.Tensor) -> torch.Tensor:
                ws = h * (a.T @ w.view(s, n))
                return (w.view(s, n) - torch.stack([vjp(f, xi, wi) for f, xi, wi in zip(full, x, ws)])).reshape(-1)
            c = -KrylovSolve.apply(g.reshape(-1), matvec, rmatvec, self.newton_options).view_as(g)
        return x + (c - c.detach())


class ImplicitEuler(ImplicitRungeKutta):
    """y1 = y + h f(t + h, y1): order 1, L-stable. Options as :class:`ImplicitRungeKutta`."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.IMPLICIT_EULER, **options)


class ImplicitMidpoint(ImplicitRungeKutta):
    """Y = y + (h/2) f(t + h/2, Y), y1 = y + h f(t + h/2, Y): order 2, A-stable, symplectic."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.IMPLICIT_MIDPOINT, **options)


class Trapezoid(ImplicitRungeKutta):
    """y1 = y + (h/2) (f(t, y) + f(t + h, y1)): order 2, A-stable."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.TRAPEZOID, **options)


class RadauIIA3(ImplicitRungeKutta):
    """2-stage Radau IIA collocation (c = 1/3, 1): order 3, L-stable, stiffly accurate."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.RADAU_IIA3, **options)


class RadauIIA5(ImplicitRungeKutta):
    """3-stage Radau IIA collocation (Hairer's RADAU5 tableau): order 5, L-stable, stiffly accurate."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.RADAU_IIA5, **options)


class GaussLegendre4(ImplicitRungeKutta):
    """2-stage Gauss-Legendre collocation: order 4, A-stable, symplectic."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.GL4, **options)


class GaussLegendre6(ImplicitRungeKutta):
    """3-stage Gauss-Legendre collocation: order 6, A-stable, symplectic."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.GL6, **options)


class SDIRK2(ImplicitRungeKutta):
    """2-stage SDIRK with gamma = 1 - 1/sqrt(2): order 2, L-stable, stiffly accurate."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.SDIRK2, **options)


class TRBDF2(ImplicitRungeKutta):
    """TR-BDF2 as an ESDIRK (trapezoid to t + 2 gamma h, then BDF2): order 2, L-stable."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.TRBDF2, **options)


class Kvaerno3(ImplicitRungeKutta):
    """Kvaerno's 4-stage ESDIRK 3(2) pair (Kvaerno 2004): L-stable, stiffly accurate, adaptive."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.KVAERNO3, **options)


class Kvaerno5(ImplicitRungeKutta):
    """Kvaerno's 7-stage ESDIRK 5(4) pair (Kvaerno 2004): L-stable, stiffly accurate, adaptive."""

    def __init__(self, **options: Any) -> None:
        super().__init__(tableaux.KVAERNO5, **options)


IMPLICIT_STEPPERS = {cls().name: cls for cls in (ImplicitEuler, ImplicitMidpoint, Trapezoid, RadauIIA3, RadauIIA5,
                                                 GaussLegendre4, GaussLegendre6, SDIRK2, TRBDF2, Kvaerno3, Kvaerno5)}
