"""Adams-Bashforth and Adams-Bashforth-Moulton methods on a fixed grid (torchdiffeq's fixed_adams.py).

Every step evaluates f_n = f(t_n, y_n) and puts it first in the history f_n, f_{n-1}, ..., f_{n-k+1},
k = min(n + 1, max_order - 1) entries. Then

    k < 3 (the start):  one step of the 3/8 rule (torchdiffeq's rk4) with k_1 = f_n;
    predictor (AB k):   y_{n+1} = y_n + h sum_{j<k} beta_{k,j} f_{n-j};
    corrector (AM k+1): y_{n+1} = y_n + h m_{k+1,0} f(t_{n+1}, y_{n+1}) + h sum_{j<k} m_{k+1,j+1} f_{n-j},

the corrector (``implicit_adams``) by functional iteration from the predictor, at most ``max_iters``
times, until two successive increments d, d' agree: max |d - d'| / (atol + rtol max(|d|, |d'|)) < 1.
If they do not, it warns and drops the oldest history entry (torchdiffeq does both). The weights
are the integrals over [t_n, t_{n+1}] of the Lagrange polynomials through the history's times,
computed exactly in fractions.

The weights assume equal steps (``uniform_steps``): before a step of another length (the last
step of a grid that does not divide the interval, a grid of unequal steps, the step cut at an
event) the march restarts the history, and that step and the next two are 3/8-rule steps.

The history is the stepper's ``state`` (after the state the history was taken along), so
``gradient="checkpoint"`` replays it. A caller that changes the state between steps (the
adjoint adding an output's gradient, a projection) breaks the smooth solution the Adams
polynomial assumes: the history then restarts, as torchdiffeq's adjoint restarts its solver at
every output time.
"""
from __future__ import annotations

import functools
from fractions import Fraction

import torch

from ..errors import warn_user
from ..terms import Term
from ..tree import State, add, axpy, lerp, leaves, weighted
from .rk import RungeKutta
from .tableau import RK38

MAX_ORDER = 12
EXPLICIT_MAX_ORDER = 5  # explicit_adams' default: AB4, stable for h lambda in (-0.30, 0) (AB11: (-0.0034, 0))
MIN_ORDER = 4  # below it every step is the 3/8 rule
_START = MIN_ORDER - 1  # history entries an Adams step needs


def _integrated_lagrange(nodes: tuple[int, ...]) -> tuple[Fraction, ...]:
    """w_j = int_0^1 prod_{i != j} (u - x_i) / (x_j - x_i) du for the nodes x (in steps from t_n)."""
    weights = []
    for j, xj in enumerate(nodes):
        poly = [Fraction(1)]  # coefficients of u^0, u^1, ...
        for i, xi in enumerate(nodes):
            if i != j:
                scale = Fraction(1, xj - xi)
                poly = [scale * (lo - xi * hi) for lo, hi in zip([Fraction(0)] + poly, poly + [Fraction(0)])]
        weights.append(sum(c / (p + 1) for p, c in enumerate(poly)))
    return tuple(weights)


@functools.lru_cache(maxsize=None)
def bashforth(k: int) -> tuple[float, ...]:
    """The k-step Adams-Bashforth weights of f_n, f_{n-1}, ..., f_{n-k+1} (order k)."""
    return tuple(float(w) for w in _integrated_lagrange(tuple(-j for j in range(k))))


@functools.lru_cache(maxsize=None)
def moulton(k: int) -> tuple[float, ...]:
    """The Adams-Moulton weights of f_{n+1}, f_n, ..., f_{n-k+2} (k values, order k)."""
    return tuple(float(w) for w in _integrated_lagrange(tuple(1 - j for j in range(k))))


def _check_int(name: str, value: object, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"options['{name}'] must be an int {bound}, got {value!r}")
    return value


def _check_tol(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(f"{name} (the corrector's tolerance) must be a positive finite float, got {value!r}")
    return float(value)


class Adams:
    """Adams-Bashforth (``implicit=False``) or Adams-Bashforth-Moulton (``implicit=True``) of up to
    ``max_order`` on a fixed grid; the corrector iterated at most ``max_iters`` times to ``rtol``/``atol``.

    ``max_order`` defaults to 12 for the implicit methods (torchdiffeq's) and to 5 for the explicit
    one (AB4; torchdiffeq's 12 takes AB11 steps, whose real interval of absolute stability is 90
    times shorter, (-0.0034, 0) against (-0.30, 0): y' = -y over [0, 1] in 80 steps ends 0.46 off
    e^-1 with it).

    ``order`` is the global order on a fixed grid: explicit min(4, max_order - 1) (the one AB3
    step after the start has a local error O(h^4)), implicit min(5, max_order) (the start and
    the one AB3/AM4 step: O(h^5)). torchdiffeq declares 4 for both. Under :func:`contdepth.solve`
    and :func:`contdepth.odeint` the solve's ``rtol``/``atol`` replace this object's (see
    :meth:`with_options`).
    """

    adaptive = False
    fsal = False
    uniform_steps = True  # the weights assume equal steps: the march restarts the history otherwise

    def __init__(self, implicit: bool, *, name: str | None = None, max_order: int | None = None,
                 max_iters: int = 4, rtol: float = 1e-7, atol: float = 1e-9) -> None:
        self.implicit = bool(implicit)
        self.name = name or ("implicit_adams" if self.implicit else "explicit_adams")
        if max_order is None:
            max_order = MAX_ORDER if self.implicit else EXPLICIT_MAX_ORDER
        self.max_order = _check_int("max_order", max_order, MIN_ORDER, MAX_ORDER)
        self.max_iters = _check_int("max_iters", max_iters, 1)
        self.rtol, self.atol = _check_tol("rtol", rtol), _check_tol("atol", atol)
        self.options = ("max_order", "max_iters") if self.implicit else ("max_order",)
        self.tolerances = self.implicit  # rtol/atol are the corrector's
        self._start = RungeKutta(RK38)

    @property
    def order(self) -> int:
        return min(5, self.max_order) if self.implicit else min(4, self.max_order - 1)

    def with_options(self, *, rtol: float | None = None, atol: float | None = None, **options) -> "Adams":
        """This method with ``options`` (names in :attr:`options`) and, for the corrector, ``rtol``/``atol``."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ValueError(f"unknown option(s) {unknown} for method {self.name!r}; allowed: {list(self.options)}")
        if not self.implicit and (rtol is not None or atol is not None):
            raise ValueError(f"rtol/atol are the corrector's tolerances; method {self.name!r} has no corrector")
        kwargs = dict(max_order=self.max_order, max_iters=self.max_iters, rtol=self.rtol, atol=self.atol)
        kwargs.update({k: v for k, v in (("rtol", rtol), ("atol", atol)) if v is not None}, **options)
        return Adams(self.implicit, name=self.name, **kwargs)

    def __repr__(self) -> str:
        extra = f", max_iters={self.max_iters}, rtol={self.rtol}, atol={self.atol}" if self.implicit else ""
        return f"Adams({self.name!r}, max_order={self.max_order}{extra})"

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        """An empty history: the first step evaluates f(t0, y0)."""
        return ()

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        """One step: (y1, (y1, f_n, f_{n-1}, ...), None, None)."""
        d = 1 if h > 0 else -1
        history = state[1:] if state and _same(y, state[0]) else ()
        f0 = term(t, y, d)
        history = ((f0,) + history)[:self.max_order - 1]
        k = len(history)
        if k < _START:
            y1 = self._start.step_from(term, t, h, y, f0)
            return y1, (y1,) + history, None, None
        dy = weighted(h, bashforth(k), history)
        if self.implicit:
            m = moulton(k + 1)
            rest = weighted(h, m[1:], history)
            converged = False
            for _ in range(self.max_iters):
                f1 = term(t + h, add(y, dy), -d)
                dy, previous = axpy(rest, h * m[0], f1), dy
                if self._converged(previous, dy):
                    converged = True
                    break
            if not converged:
                warn_user(f"{self.name}: the corrector did not converge in max_iters={self.max_iters} "
                          f"iterations at t={t} (h={h}); the solution may be inaccurate (raise max_iters or "
                          "take smaller steps)", RuntimeWarning)
                history = history[:-1]
        y1 = add(y, dy)
        return y1, (y1,) + history, None, None

    def _converged(self, d0: State, d1: State) -> bool:
        """max |d0 - d1| / (atol + rtol max(|d0|, |d1|)) < 1 over all the state's tensors."""
        with torch.no_grad():
            ratios = [((a - b).abs() / (self.atol + self.rtol * torch.maximum(a.abs(), b.abs()))).max()
                      for a, b in zip(leaves(d0), leaves(d1))]
            return bool(torch.stack(ratios).max() < 1)

    def interpolate(self, y0: State, y1: State, dense, h: float, s: float) -> State:
        """Linear, as torchdiffeq's fixed-grid methods."""
        return lerp(y0, y1, s)


def _same(y: State, previous: State) -> bool:
    """y is the state the last step ended on (the same tensors, or equal ones: a checkpoint's copy)."""
    return all(a is b or torch.equal(a, b) for a, b in zip(leaves(y), leaves(previous)))
