"""The explicit Runge-Kutta stepper: one object for every tableau, fixed or embedded pair.

Stepper protocol (every stepper of the engine has it)::

    state = stepper.init(term, t0, y0, direction)
    y1, state1, error, dense = stepper.step(term, t, h, y, state)
    y_s = stepper.interpolate(y, y1, dense, h, s)        # the state at t + s h, 0 < s < 1

``state`` holds what a stepper carries between steps (here the FSAL derivative f(t, y) of
an embedded pair; history for multistep methods, noise for SDE methods) as a tuple of tensors,
so the checkpoint gradient can store and differentiate it. ``error`` is the embedded error
estimate (None for fixed-step methods).

Which side of a jump in t a stage sees: a stage at c < 1 lies inside the step, ahead of its
time in the direction of travel (side = +direction); the stage at c = 1 is the step's end,
reached from behind (side = -direction). So a step inside one control cell sees only that
cell's theta, whatever the floats.
"""
from __future__ import annotations

from ..terms import Term
from ..tree import State, add, combine, lerp, tree_map, weighted
from .tableau import ButcherTableau


class RungeKutta:
    """Explicit Runge-Kutta stepper for ``tableau``: k_i = f(t + c_i h, y + h sum_j a_ij k_j),
    y1 = y + h sum_i b_i k_i (seed 004 eq. 2.17-2.21 for classical RK4)."""

    def __init__(self, tableau: ButcherTableau) -> None:
        self.tableau = tableau
        self.name = tableau.name
        self.order = tableau.order
        self.adaptive = tableau.adaptive
        self.fsal = tableau.fsal
        # b, when the adjoint may take dL/dtheta as the quadrature h sum_i b_i a_i . df/dtheta over
        # this method's own stages (a fixed step that carries no FSAL state); None otherwise
        self.quadrature_weights = None if tableau.adaptive or tableau.fsal else tableau.b

    def __repr__(self) -> str:
        return f"RungeKutta({self.name!r})"

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        """The FSAL derivative f(t0, y0) seen from the side of travel, or ()."""
        return (term(t0, y0, direction),) if self.fsal else ()

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        """One step from (t, y) to t + h: (y1, state1, error estimate or None, stages)."""
        tab = self.tableau
        ks, inputs = self._stages(term, t, h, y, state)
        # FSAL: the last stage was evaluated at y + h sum b_j k_j, which is y1 itself.
        y1 = inputs[-1] if self.fsal else add(y, weighted(h, tab.b, ks))
        error = weighted(h, tab.b_error, ks) if self.adaptive else None
        return y1, ((ks[-1],) if self.fsal else ()), error, ks

    def step_from(self, term: Term, t: float, h: float, y: State, f0: State) -> State:
        """y1 of one step of a fixed-step tableau whose first stage f(t, y) = ``f0`` is known
        (a multistep method's start, which has evaluated it already)."""
        ks, _ = self._stages(term, t, h, y, (f0,), first=True)
        return add(y, weighted(h, self.tableau.b, ks))

    def _stages(self, term: Term, t: float, h: float, y: State, state: tuple,
                first: bool = False) -> tuple[list[State], list[State]]:
        """The stage derivatives k_i and the states Y_i = y + h sum_j a_ij k_j they were taken at
        (k_0 = state[0] for an FSAL tableau, or when ``first``)."""
        ks: list[State] = []
        inputs: list[State] = []
        for i, row in enumerate(self.tableau.a):
            yi = combine(y, h, row, ks)
            inputs.append(yi)
            if i == 0 and (self.fsal or first):
                ks.append(state[0])
            else:
                ti, side = self._stage_time(t, h, i)
                ks.append(term(ti, yi, side))
        return ks, inputs

    def _stage_time(self, t: float, h: float, i: int) -> tuple[float, int]:
        """(time, side) of stage i: inside the step seen ahead (side = direction), its end from behind."""
        ci, direction = self.tableau.c[i], 1 if h > 0 else -1
        return (t + h, -direction) if ci == 1 else (t + ci * h, direction)

    @property
    def has_vjp(self) -> bool:
        """True when :meth:`taped_step` / :meth:`step_vjp` apply: a fixed-step, non-FSAL tableau."""
        return not self.fsal and not self.adaptive

    def taped_step(self, term: Term, t: float, h: float, y: State) -> tuple[State, tuple]:
        """:meth:`step` of a fixed-step tableau, with the tape :meth:`step_vjp` needs: (y1, (t, Y, k))."""
        ks, inputs = self._stages(term, t, h, y, ())
        return add(y, weighted(h, self.tableau.b, ks)), (t, inputs, ks)

    def step_vjp(self, term: Term, h: float, tape: tuple, y1_bar: State, grads: list) -> State:
        """The discrete adjoint of one step: dL/dy from dL/dy1, adding dL/dtheta into ``grads``.

        With Ybar_i = kbar_i^T df/dy (Y_i) and kbar_i = h (b_i y1bar + sum_{l > i} a_li Ybar_l),
        ybar = y1bar + sum_i Ybar_i -- what autograd computes through :meth:`step`, with the
        stage VJPs from the term (:meth:`~contdepth.terms.Term.vjp`) instead of a recorded graph.
        """
        tab = self.tableau
        t, inputs, ks = tape
        stage_bars: list[State | None] = [None] * len(ks)
        y_bar = y1_bar
        for i in reversed(range(len(ks))):
            weights = [tab.b[i]] + [tab.a[l][i] for l in range(i + 1, len(ks))]
            cotangents = [y1_bar] + stage_bars[i + 1:]
            used = [(w, c) for w, c in zip(weights, cotangents) if w and c is not None]
            if not used:
                continue
            k_bar = weighted(h, [w for w, _ in used], [c for _, c in used])
            ti, side = self._stage_time(t, h, i)
            stage_bars[i] = term.vjp(ti, inputs[i], side, ks[i], k_bar, grads)
            y_bar = add(y_bar, stage_bars[i])
        return y_bar

    def interpolate(self, y0: State, y1: State, ks: list[State], h: float, s: float) -> State:
        """Dense output at t + s h: linear for fixed-step methods (torchdiffeq's choice); for an
        FSAL pair the 4th-order polynomial through y0, y1, y(t + h/2), f0 and f1; for a pair with
        ``dense`` weights y0 + h sum_i b_i(s) k_i, b_i(s) = sum_p w_ip s^p."""
        if self.tableau.dense is not None:
            return combine(y0, h, [sum(w * s ** (p + 1) for p, w in enumerate(row)) for row in self.tableau.dense], ks)
        if self.tableau.mid is None:
            return lerp(y0, y1, s)
        y_mid = combine(y0, h, self.tableau.mid, ks)
        f0, f1 = ks[0], ks[-1]

        def quartic(y0, y1, ym, f0, f1):
            # torchdiffeq interp.py: coefficients of p(s) = e + d s + c s^2 + b s^3 + a s^4.
            a = 2 * h * (f1 - f0) - 8 * (y1 + y0) + 16 * ym
            b = h * (5 * f0 - 3 * f1) + 18 * y0 + 14 * y1 - 32 * ym
            c = h * (f1 - 4 * f0) - 11 * y0 - 5 * y1 + 16 * ym
            return y0 + s * (h * f0 + s * (c + s * (b + s * a)))

        return tree_map(quartic, y0, y1, y_mid, f0, f1)
