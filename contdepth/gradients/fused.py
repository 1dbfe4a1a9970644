"""Fixed-step gradients without autograd's graph: the discrete adjoint of the steps, by hand.

When the steps end on a fixed grid, the stepper is a fixed-step Runge-Kutta tableau
(:meth:`~contdepth.solvers.rk.RungeKutta.step_vjp`), the term has a hand-written
vector-Jacobian product (:attr:`~contdepth.terms.Term.has_vjp`: the built-in fields) and no
projection follows the steps (``project=`` solves take autograd's path), the
``backprop`` and ``checkpoint`` gradients run the forward solve without autograd and pull the
output gradients back step by step. The gradient is the one autograd computes through the same
steps (to float rounding: sums run in another order); the per-stage graph, and its Python cost,
is gone. ``backprop`` keeps every step's stage states and derivatives (autograd's memory);
``checkpoint`` keeps each step's start and recomputes its stages during the backward pass.

A second derivative (``create_graph=True``) is taken through a re-run of the solve under autograd.
Under ``torch.compile`` the solve takes the autograd path instead: dynamo traces those steps into
one graph and AOTAutograd compiles their backward, which beats the hand-written pass (that one
would run eagerly between graph breaks; docs/PERFORMANCE.md, "torch.compile").
"""
from __future__ import annotations

import dataclasses

import torch

from ..solvers.controllers import FixedGrid
from ..solvers.engine import Problem
from ..tree import State
from .common import (check_same_module, counting, forward_ad_tangents, is_stateless, module_tensors, output_grads,
                     stack_outputs, with_t0_outputs)


def fused_applies(problem: Problem, y0: State) -> bool:
    """True when :func:`solve_fused` can differentiate ``problem`` (see the module docstring), a
    gradient is wanted (under ``torch.no_grad`` there is nothing to keep) and dynamo is not tracing."""
    return (not torch.compiler.is_compiling() and isinstance(y0, torch.Tensor)
            and isinstance(problem.grid, FixedGrid) and torch.is_grad_enabled()
            and (y0.requires_grad or any(p.requires_grad for p in problem.params()))
            and getattr(problem.stepper, "has_vjp", False) and problem.term.has_vjp and problem.project is None
            and len(problem.params()) == len(problem.term.params())  # no trainable stepper
            # the hand-written pass reads the field's tensors when it runs: not after a functional_call
            # returns, and it has no forward mode (plain autograd has both)
            and not is_stateless(problem.term) and not forward_ad_tangents(y0, problem.term))


class _Taping:
    """The problem's stepper, keeping the tape of the step just taken (fixed grids accept every step)."""

    def __init__(self, stepper) -> None:
        self.stepper, self.name, self.order = stepper, stepper.name, stepper.order
        self.adaptive, self.fsal, self.tape = False, False, None

    def init(self, term, t0, y0, direction) -> tuple:
        return ()

    def step(self, term, t, h, y, state):
        y1, self.tape = self.stepper.taped_step(term, t, h, y)
        return y1, (), None, self.tape[2]

    def interpolate(self, y0, y1, dense, h, s):
        return self.stepper.interpolate(y0, y1, dense, h, s)


class _Fused(torch.autograd.Function):
    @staticmethod
    def forward(ctx, problem: Problem, keep_stages: bool, y0: torch.Tensor, *params: torch.Tensor):
        records: list = []
        saved: list[torch.Tensor] = []  # through save_for_backward, so memory accounting sees them
        with torch.no_grad():
            if keep_stages:  # per step: its stage states Y_i, then (if the VJP uses them) its stage derivatives k_i
                taping = _Taping(problem.stepper)

                def keep(rec, y, state):
                    records.append(rec)
                    saved.extend(taping.tape[1] + (taping.tape[2] if problem.term.vjp_uses_output else []))

                outs, _ = dataclasses.replace(problem, stepper=taping).march(y0, on_step=keep)
            else:  # per step: its start
                outs, _ = problem.march(y0, on_step=lambda rec, y, state: (records.append(rec), saved.append(y)))
        ctx.problem, ctx.keep_stages, ctx.records = problem, keep_stages, records
        ctx.module = module_tensors(problem.term)
        ctx.save_for_backward(y0, *saved)  # the parameters are the term's own tensors: not saved again
        return stack_outputs(outs)

    @staticmethod
    def backward(ctx, *grads):
        problem: Problem = ctx.problem
        check_same_module(problem.term, ctx.module, problem.stats.gradient)
        if torch.is_grad_enabled():
            return (None, None, *_through_autograd(ctx, grads))
        y0, *saved = ctx.saved_tensors
        term, stepper = problem.term, problem.stepper
        stages = stepper.tableau.stages
        with_ks = term.vjp_uses_output
        per_step = (2 if with_ks else 1) * stages if ctx.keep_stages else 1
        g = [out[0] for out in output_grads(grads, len(problem.out_times))]
        param_grads = [torch.zeros_like(p) for p in problem.params()]
        y_bar = torch.zeros_like(y0)
        with counting(term, problem.stats.backward):
            for j in reversed(range(len(ctx.records))):
                rec, kept = ctx.records[j], saved[j * per_step:(j + 1) * per_step]
                problem.stats.backward.accepted_steps += 1
                tape = (rec.t, kept[:stages], kept[stages:] if with_ks else [None] * stages) if ctx.keep_stages else \
                    stepper.taped_step(term, rec.t, rec.h, kept[0])[1]
                start_bar = None  # outputs inside the step are (1 - s) y + s y1
                for i, s in rec.outs:
                    y_bar = y_bar + (g[i] if s is None else s * g[i])
                    if s is not None:
                        start_bar = (1 - s) * g[i] if start_bar is None else start_bar + (1 - s) * g[i]
                y_bar = stepper.step_vjp(term, rec.h, tape, y_bar, param_grads)
                if start_bar is not None:
                    y_bar = y_bar + start_bar
        y_bar, = with_t0_outputs(problem, [y_bar], [[x] for x in g])
        return (None, None, y_bar, *param_grads)


def _through_autograd(ctx, grads) -> list[torch.Tensor | None]:
    """The first derivatives as a differentiable function of the inputs: the solve re-run under
    autograd and differentiated with ``create_graph=True`` (for a second derivative)."""
    problem: Problem = ctx.problem
    inputs = [ctx.saved_tensors[0], *problem.params()]
    need = ctx.needs_input_grad[2:]
    with torch.enable_grad(), counting(problem.term, problem.stats.backward):
        outs = stack_outputs(problem.march(inputs[0])[0])
        wrt = [x for x, n in zip(inputs, need) if n]
        got = iter(torch.autograd.grad(outs, wrt, [torch.zeros_like(o) if g is None else g for o, g in zip(outs, grads)],
                                       create_graph=True, allow_unused=True))
    return [next(got) if n else None for n in need]


def solve_fused(problem: Problem, y0: torch.Tensor, *, keep_stages: bool) -> tuple[torch.Tensor, ...]:
    """The outputs of ``problem`` (stacked per output time), differentiable by the hand-written
    discrete adjoint; ``keep_stages``: store every stage (backprop) or each step's start (checkpoint)."""
    return _Fused.apply(problem, keep_stages, y0, *problem.params())
