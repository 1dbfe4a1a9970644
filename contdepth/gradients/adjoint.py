"""The continuous adjoint method (seed 002 eq. 10-15): memory independent of the number of steps.

Backward in time from t1 to t0, with a(t1) = dL/dy(t1), the engine integrates the augmented
state (y, a, g) (eq. 11-12)

    dy/dt = f(t, y),   da/dt = -a^T df/dy,   dg/dt = -a^T df/dtheta,   g(t1) = 0,

so that dL/dy0 = a(t0) and dL/dtheta = g(t0) (the parameter integral of eq. 12). Requested
states at other times add their gradients to a on the way, and there y restarts from the forward
pass, y(t_k) := y_k (as torchdiffeq's ``odeint_adjoint``, which solves backward from one output
time to the previous one): the backward reconstruction of y errs over one output interval, not
over all of [t0, t1]. Fixed-step methods walk the forward grid in reverse; an output interpolated
inside a step adds its gradient to both ends with the interpolation weights, and y restarts at the
step's later end (the backward solve's first) from the forward value kept there. Adaptive methods
control the error of (y, a, g), or of (y, a) alone with ``seminorm`` (Kidger, Chen & Lyons 2021:
the g-integrals do not feed back into the dynamics), and stop at every output time and jump of f.
Fixed-step Runge-Kutta methods march (y, a) alone and take g as the stepper's own quadrature of
its stages (the same numbers as marching g along, without parameter-sized tensors in every
stage's combination). An implicit backward method (a stiff field) marches (a, g) alone, with y(t)
the cubic Hermite interpolant of the forward solve's accepted steps (:class:`ForwardPath`): y
cannot be rebuilt backward in time there, since the field's fast decaying modes grow backward;
this keeps the forward step ends (O(steps) memory, as torchdiffeq's and diffrax's interpolated
and checkpointed adjoints). The gradient is that of the continuous problem, so it differs from
backprop's by the discretisation error.
"""
from __future__ import annotations

import bisect
import dataclasses
from collections import defaultdict
from typing import Callable

import torch

from ..errors import SolverError
from ..solvers.controllers import Adaptive, FixedGrid
from ..timetol import close, slack
from ..solvers.engine import Problem, march
from ..terms import Term
from ..tree import State, add, all_finite, detach, hermite, leaves, rebuild, tree_map
from .common import (PieceGrads, check_no_forward_ad, check_params_found, check_same_module, counting, module_tensors,
                     output_grads, stack_outputs, vjp)


class AdjointTerm(Term):
    """The augmented right-hand side (f, -a df/dy, -a df/dtheta) of ``term`` (seed 002 eq. 11-12)."""

    def __init__(self, term: Term) -> None:
        self.term = term  # evaluations are counted by the wrapped term
        self._params = term.params()
        self._checked = False

    def _pullback(self, t: float, y: State, a: State, side: int) -> tuple[State, State, tuple[torch.Tensor, ...]]:
        """(f, -a df/dy, -a df/dtheta) at (t, y); the first call checks that theta is all f reads."""
        with torch.enable_grad():
            y_in = detach(y, True)
            f = self.term(t, y_in, side)
            if not self._checked:
                check_params_found(self.term, leaves(f), leaves(y_in) + self._params)
                self._checked = True
            grads = vjp(leaves(f), leaves(y_in) + self._params, leaves(a))
        n = len(leaves(y_in))
        return detach(f), rebuild(a, [-x for x in grads[:n]]), tuple(-x for x in grads[n:])

    def __call__(self, t: float, state, side: int):
        y, a, _ = state
        return self._pullback(t, y, a, side)

    @property
    def counts(self):
        """The wrapped term's counters (an implicit stepper adds its Jacobians and solves there)."""
        return self.term.counts

    def coupled_drift(self, t: float, side: int, state) -> tuple[int, Callable]:
        """(2 n, fn) for an implicit stepper: the first 2 n tensors of (y, a, g) (n those of y) are
        all that the drift depends on, and fn(y + a) = (f, -a^T df/dy) as :mod:`torch.func` can
        differentiate (its Jacobian in y, a is exact, second derivatives of f included)."""
        y, a, _ = state
        n = len(leaves(y))

        def fn(parts: list[torch.Tensor]) -> list[torch.Tensor]:
            f, pull = torch.func.vjp(lambda z: self.term(t, z, side), rebuild(y, parts[:n]))
            return leaves(f) + [-x for x in leaves(pull(rebuild(a, parts[n:]))[0])]
        return 2 * n, fn


class ForwardPath:
    """y(t) for the backward solve, from the forward solve's accepted step ends (t_k, y_k): in the
    step from t_k to t_k+1 the cubic Hermite interpolant (:func:`~contdepth.tree.hermite`) through
    (y_k, f_k) and (y_k+1, f_k+1), f_k = f(t_k, y_k) seen from inside the step (evaluated once per
    step end when the backward solve first needs it, counted as the backward pass's). Exact at the
    step ends, error O(h^4) inside a step."""

    def __init__(self, term: Term, times: list[float], ys: list[State]) -> None:
        self.term, self.times, self.ys = term, times, ys
        self.d = 1 if times[-1] > times[0] else -1
        self._keys = [self.d * t for t in times]
        self._jumps = frozenset(term.jumps())
        self._slopes: dict[tuple[int, int], State] = {}

    def _slope(self, k: int, side: int) -> State:
        key = (k, side if self.times[k] in self._jumps else 0)
        if key not in self._slopes:
            with torch.no_grad():
                self._slopes[key] = detach(self.term(self.times[k], self.ys[k], side))
        return self._slopes[key]

    def __call__(self, t: float) -> State:
        """y(t), t in the forward solve's interval (the step that holds t; at a step end, y_k)."""
        j = min(max(bisect.bisect_right(self._keys, self.d * t) - 1, 0), len(self.times) - 2)
        t0, t1 = self.times[j], self.times[j + 1]
        if t == t0 or t == t1:
            return self.ys[j] if t == t0 else self.ys[j + 1]
        return hermite(self.ys[j], self.ys[j + 1], self._slope(j, self.d), self._slope(j + 1, -self.d), t1 - t0,
                       (t - t0) / (t1 - t0))


class InterpolatedAdjointTerm(AdjointTerm):
    """The adjoint right-hand side (-a df/dy, -a df/dtheta) of (a, g) alone, with y(t) from the
    forward solve (:class:`ForwardPath`) instead of solved backward along with them: da/dt is
    linear in a, and an implicit method integrates it as stably as the forward solve did y, where
    rebuilding y backward in time would follow a stiff field's decaying modes growing."""

    def __init__(self, term: Term, path: ForwardPath) -> None:
        super().__init__(term)
        self.path = path

    def __call__(self, t: float, state, side: int):
        a, _ = state
        return self._pullback(t, self.path(t), a, side)[1:]

    def coupled_drift(self, t: float, side: int, state) -> tuple[int, Callable]:
        """(n, fn) for an implicit stepper: a (its n tensors) is all the drift depends on, and
        fn(a) = -a^T df/dy(t, y(t)) as :mod:`torch.func` can differentiate (a Jacobian -df/dy^T)."""
        a, _ = state
        n = len(leaves(a))
        y = self.path(t)

        def fn(parts: list[torch.Tensor]) -> list[torch.Tensor]:
            _, pull = torch.func.vjp(lambda z: self.term(t, z, side), y)
            return [-x for x in leaves(pull(rebuild(a, parts))[0])]
        return n, fn


class QuadratureAdjointTerm(Term):
    """The augmented right-hand side (f, -a df/dy) of (y, a) alone, for a fixed-step Runge-Kutta
    stepper on a fixed grid: dg/dt = -a df/dtheta does not feed back, so g is the quadrature
    g(t0) = -sum_steps h sum_i b_i a_i df/dtheta(t_i, y_i) over the stages the stepper evaluates,
    in the order it evaluates them (:meth:`close_step` after each step). The parameter vjps are
    taken with respect to the knots a stage uses (:meth:`~contdepth.terms.Term.param_pieces`), and
    no parameter-sized tensor enters the Runge-Kutta combinations. A term with a hand-written
    :meth:`~contdepth.terms.Term.vjp` is evaluated without autograd and adds its stage's share
    at once (``step_sizes``: the step h that starts at each grid time, where stage 0 lies)."""

    def __init__(self, term: Term, weights: tuple[float, ...], step_sizes: dict[float, float]) -> None:
        self.term, self.weights, self.step_sizes = term, weights, step_sizes
        self.by_hand = term.has_vjp
        if self.by_hand:
            self._grads = [torch.zeros_like(p) for p in term.params()]
        else:
            with torch.enable_grad():
                self.params = PieceGrads(term.param_pieces())
        self._stages: list[list[torch.Tensor | None]] = []
        self._h = 0.0
        self._checked = False

    def __call__(self, t: float, state, side: int):
        y, a = state
        if self.by_hand:
            i = len(self._stages)
            if i == 0:
                self._h = self.step_sizes[t]
            f = self.term(t, y, side)
            self._stages.append([])
            return f, -self.term.vjp(t, y, side, f, a, self._grads, scale=-self._h * self.weights[i])
        with torch.enable_grad():
            y_in = detach(y, True)
            f = self.term(t, y_in, side)
            if not self._checked:
                check_params_found(self.term, leaves(f), leaves(y_in) + self.term.params())
                self._checked = True
            grads = vjp(leaves(f), leaves(y_in), leaves(a), sparse=self.params.inputs)
        n = len(leaves(y_in))
        self._stages.append(grads[n:])
        return detach(f), rebuild(a, [-x for x in grads[:n]])

    def close_step(self, h: float) -> None:
        """Add the step just taken, -h sum_i b_i (a_i df/dtheta), to the parameter gradients."""
        if len(self._stages) != len(self.weights):
            raise RuntimeError(f"the stepper evaluated {len(self._stages)} stages, its tableau has {len(self.weights)}")
        if not self.by_hand:
            for b, grads in zip(self.weights, self._stages):
                if b:
                    self.params.add([None if x is None else (-h * b) * x for x in grads])
        self._stages = []

    def result(self) -> list[torch.Tensor]:
        """dL/dtheta, one tensor per parameter of the term."""
        return self._grads if self.by_hand else self.params.result()


def _grid_index(times: tuple[float, ...], t: float) -> int:
    """The first j with times[j] at or past t (up to rounding) in the grid's direction."""
    d = 1 if times[-1] > times[0] else -1
    return bisect.bisect_left([d * s for s in times], d * t - slack(t))


def _injections(problem: Problem, g: list[State]) -> dict[float, list[tuple[State, float]]]:
    """Where the backward solve adds each output's gradient, with which weight."""
    at: dict[float, list] = defaultdict(list)
    if isinstance(problem.grid, FixedGrid):
        times = problem.grid.times
        for i, t in enumerate(problem.out_times):
            j = _grid_index(times, t)
            if close(t, times[j]):
                at[times[j]].append((g[i], 1.0))
            else:  # inside step j - 1 -> j: the forward pass interpolated linearly
                s = (t - times[j - 1]) / (times[j] - times[j - 1])
                at[times[j - 1]].append((g[i], 1.0 - s))
                at[times[j]].append((g[i], s))
    else:
        for i, t in enumerate(problem.out_times):
            at[t].append((g[i], 1.0))
    return at


def _restarts(problem: Problem) -> tuple[dict[float, int], tuple[float, ...]]:
    """The step ends strictly inside (t0, t1) where the backward solve restarts y from the forward
    pass: {time: index of the output that is y there}, and the ends of the fixed steps an output is
    interpolated in (the step end the backward solve reaches first), whose y the forward pass keeps."""
    inside = lambda t: not (close(t, problem.t0) or close(t, problem.t1))
    if not isinstance(problem.grid, FixedGrid):  # every output time is a stop of the backward solve
        return {t: i for i, t in enumerate(problem.out_times) if inside(t)}, ()
    times = problem.grid.times
    outputs, ends = {}, []
    for i, t in enumerate(problem.out_times):
        j = _grid_index(times, t)
        if close(t, times[j]):
            outputs[times[j]] = i
        else:
            ends.append(times[j])
    return ({s: i for s, i in outputs.items() if inside(s)},
            tuple(dict.fromkeys(s for s in ends if inside(s) and s not in outputs)))


def interpolates(problem: Problem) -> bool:
    """True when the backward solve takes y from the forward solve (:class:`ForwardPath`) instead of
    solving for it: with an implicit backward method (a stiff field, whose y cannot be rebuilt
    backward in time), for an ODE."""
    return getattr(problem.adjoint.stepper, "implicit", False) \
        and type(problem.term).adjoint_term is Term.adjoint_term


class _Adjoint(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, like: State, *inputs: torch.Tensor):
        n = len(leaves(like))
        ctx.interpolated = interpolates(problem)
        from_outputs, from_steps = ((), ()) if ctx.interpolated else _restarts(problem)
        wanted, kept, knots = frozenset(from_steps), {}, []

        def keep(rec, y: State, state: tuple) -> None:
            if ctx.interpolated:
                knots.append((rec.t, rec.t_next, y))
            elif rec.t in wanted:
                kept[rec.t] = y

        with torch.no_grad():
            outs, y1 = problem.march(rebuild(like, inputs[:n]), on_step=keep if from_steps or ctx.interpolated
                                     else None)
        stacked = stack_outputs(outs)
        ctx.problem, ctx.like, ctx.from_outputs, ctx.from_steps = problem, like, from_outputs, from_steps
        ctx.module = module_tensors(problem.term)
        ctx.knot_times = [t for t, _, _ in knots] + [knots[-1][1]] if knots else []
        ctx.y1_is_output = close(problem.out_times[-1], problem.t1)  # then y1 is the last output itself
        ctx.save_for_backward(*stacked, *(x for t in from_steps for x in leaves(kept[t])),
                              *(x for _, _, y in knots for x in leaves(y)),
                              *(() if ctx.y1_is_output else leaves(y1)))
        return stacked

    @staticmethod
    def backward(ctx, *grads):
        problem: Problem = ctx.problem
        check_same_module(problem.term, ctx.module, "adjoint")
        config = problem.adjoint
        like, saved, n = ctx.like, ctx.saved_tensors, len(leaves(ctx.like))
        output = lambda i: rebuild(like, [x[i] for x in saved[:n]])
        y1 = output(-1) if ctx.y1_is_output else rebuild(like, saved[-n:])
        g = [rebuild(like, x) for x in output_grads(grads, len(problem.out_times))]
        at = _injections(problem, g)

        def gathered(t: float, a: State) -> State:
            for grad, w in at.get(t, ()):
                a = add(a, grad if w == 1.0 else tree_map(lambda x: w * x, grad))
            return a

        stepper, grid = config.stepper, config.grid
        a1 = gathered(problem.t1, tree_map(torch.zeros_like, y1))
        n_y = len(leaves(y1))
        zero_params = tuple(torch.zeros_like(p) for p in problem.term.params())
        weights = getattr(stepper, "quadrature_weights", None)
        quadrature = not ctx.interpolated and weights is not None and type(problem.term).adjoint_term is Term.adjoint_term
        if ctx.interpolated:
            start = len(saved) - (0 if ctx.y1_is_output else n) - n * (len(ctx.knot_times) - 1)
            ys = [rebuild(like, saved[start + k * n:start + (k + 1) * n]) for k in range(len(ctx.knot_times) - 1)]
            term, aug0 = InterpolatedAdjointTerm(problem.term, ForwardPath(problem.term, ctx.knot_times, ys + [y1])), (
                a1, zero_params)
            inject = lambda t, state: (gathered(t, state[0]), state[1]) if t in at else state
            if isinstance(grid, Adaptive) and grid.norm is not None:  # the norm sees y's error as zero
                norm, zero_y = grid.norm, tree_map(torch.zeros_like, y1)
                grid = dataclasses.replace(grid, norm=lambda scaled: norm((zero_y, *scaled)))
        else:
            restart = {t: output(i) for t, i in ctx.from_outputs.items()}
            restart.update((t, rebuild(like, saved[(1 + k) * n:(2 + k) * n])) for k, t in enumerate(ctx.from_steps))

            def inject(t: float, state):  # every restart time is also in ``at``
                return (restart.get(t, state[0]), gathered(t, state[1]), *state[2:]) if t in at else state
            if quadrature:
                term = None
            else:
                term, aug0 = problem.term.adjoint_term(AdjointTerm(problem.term)), (y1, a1, zero_params)
        norm_leaves = (n_y if ctx.interpolated else 2 * n_y) if config.seminorm else None
        controller = problem.controller(problem.t1, problem.t0, stepper=stepper, grid=grid,
                                        stops=tuple(at) + config.jumps, norm_leaves=norm_leaves)
        if quadrature:
            drift = QuadratureAdjointTerm(problem.term, weights, controller.step_sizes())
            term, aug0 = drift, (y1, a1)
        try:
            with counting(problem.term, problem.stats.backward):
                _, end = march(term, stepper, controller, aug0, problem.t1, problem.t0, (), problem.stats.backward,
                               inject=inject, on_step=(lambda rec, y, s: drift.close_step(rec.h)) if quadrature else None)
        except SolverError as err:
            raise SolverError(f"the adjoint backward solve failed: {err}") from err
        if ctx.interpolated:
            a, p = end
            y = ()
        else:
            y, a = end[0], end[1]
            p = drift.result() if quadrature else end[2]
        if not all_finite((y, a)):
            cause = ("the field's derivative is not finite on the forward trajectory, or the loss gradient is not "
                     "finite" if ctx.interpolated else
                     "reconstructing y backward in time is unstable for this field (e.g. strong friction, which "
                     "contracts forward and expands backward), or the loss gradient is not finite; "
                     "use gradient='checkpoint' or more steps")
            raise SolverError(
                f"the adjoint backward solve ({getattr(config.stepper, 'name', config.stepper)}) became non-finite: "
                + cause)
        if not all_finite(tuple(p)):
            raise SolverError(
                f"the adjoint backward solve ({getattr(config.stepper, 'name', config.stepper)}) gave non-finite "
                "parameter gradients with a finite adjoint state: the field's derivative with respect to a "
                "parameter is not finite on the trajectory (e.g. sqrt(theta) at theta = 0)")
        return (None, None, *leaves(a), *p)


def solve_adjoint(problem: Problem, y0: State) -> tuple[torch.Tensor, ...]:
    """Per leaf of the state, its values at ``problem.out_times`` stacked; gradients by the
    continuous adjoint, storing these outputs, y(t1) unless it is one of them, and y at the end of
    each fixed step an output is interpolated in."""
    check_no_forward_ad(y0, problem.term, "adjoint")
    return _Adjoint.apply(problem, detach(y0), *leaves(y0), *problem.term.params())
