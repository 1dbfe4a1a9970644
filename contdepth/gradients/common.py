"""Plumbing shared by the hand-written backward passes (checkpoint and adjoint).

Both are ``torch.autograd.Function``s whose inputs are the leaves of y0 followed by the term's
parameters, and whose outputs are, per leaf of the state, the states at the output times
stacked along a new leading axis.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch

from ..solution import StepCounts
from ..timetol import close
from ..solvers.engine import Problem
from ..terms import Term, trainable_leaves
from ..tree import State, leaves


def vjp(outputs: Sequence[torch.Tensor], inputs: Sequence[torch.Tensor],
        grad_outputs: Sequence[torch.Tensor | None], *,
        sparse: Sequence[torch.Tensor] = ()) -> list[torch.Tensor | None]:
    """sum_i grad_outputs[i]^T d outputs[i] / d x for x in ``inputs`` (zeros where nothing depends
    on x), then for x in ``sparse`` (None there: a parameter piece a step did not touch).

    Outputs without an autograd path (a field f(t) that ignores y and has no parameters, as
    torchdiffeq's ExpODE) contribute nothing instead of failing.
    """
    pairs = [(o, g) for o, g in zip(outputs, grad_outputs) if g is not None and o.requires_grad]
    everything = list(inputs) + list(sparse)
    if not pairs or not everything:
        grads = [None] * len(everything)
    else:
        outs, cotangents = zip(*pairs)
        grads = list(torch.autograd.grad(outs, everything, cotangents, allow_unused=True))
    n = len(inputs)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads[:n])] + grads[n:]


def check_params_found(term: Term, outputs: Sequence[torch.Tensor], known: Sequence[torch.Tensor]) -> None:
    """Raise if ``outputs`` (one evaluation or step, recomputed by a backward pass) depend on a
    trainable tensor outside ``known`` (the step's inputs and the term's parameters): its gradient
    would silently be missing. Not checked when the user named the parameters (``adjoint_params``)."""
    if term.params_explicit:
        return
    ids = {id(x) for x in known}
    missed = [x for x in trainable_leaves(outputs) if id(x) not in ids]
    if missed:
        shapes = ", ".join(str(tuple(x.shape)) for x in missed[:4])
        raise RuntimeError(f"the field uses {len(missed)} trainable tensor(s) (shapes {shapes}) that were not found "
                           "as its parameters (they are not parameters of func, and no evaluation at t0 used them); "
                           "their gradients would be missing: pass adjoint_params=[...] naming every tensor to "
                           "differentiate")


def module_tensors(term: Term) -> tuple[int, ...]:
    """The identities of the parameters and buffers of the module the term reads (empty: none)."""
    module = term.module()
    if module is None:
        return ()
    return tuple(id(x) for x in (*module.parameters(), *module.buffers()))


def is_stateless(term: Term) -> bool:
    """True when the term's module holds a plain tensor in place of a parameter (inside
    ``torch.func.functional_call``): its tensors are the call's, and later they will not be."""
    module = term.module()
    return module is not None and any(
        p is not None and not isinstance(p, torch.nn.Parameter)
        for m in module.modules() for p in m._parameters.values())


def check_same_module(term: Term, forward: tuple[int, ...], gradient: str) -> None:
    """Raise unless the term's module still has the parameters and buffers ``forward`` (from
    :func:`module_tensors` at the forward pass): a backward pass that recomputes f with other
    tensors would return gradients that belong to neither."""
    if module_tensors(term) != forward:
        raise RuntimeError(f"the field's parameters or buffers are not those of the forward pass (the solve ran "
                           f"inside torch.func.functional_call, or they were replaced since): gradient={gradient!r} "
                           "recomputes f in the backward pass and would return wrong gradients. Call backward "
                           "inside the functional_call, or use gradient='backprop'")


def forward_ad_tangents(y0: State, term: Term) -> bool:
    """True when y0 or a tensor of the term's module carries a forward-mode AD tangent."""
    module = term.module()
    tensors = [*leaves(y0), *term.params(), *(() if module is None else (*module.parameters(), *module.buffers()))]
    return any(torch.autograd.forward_ad.unpack_dual(x).tangent is not None for x in tensors)


def check_no_forward_ad(y0: State, term: Term, gradient: str) -> None:
    """Raise ``NotImplementedError`` if forward-mode AD reaches a hand-written gradient method
    (its autograd Functions have no jvp, and a tangent on a module tensor would be dropped)."""
    if forward_ad_tangents(y0, term):
        raise NotImplementedError(f"forward-mode AD (torch.autograd.forward_ad, torch.func.jvp) does not pass "
                                  f"through gradient={gradient!r}; use gradient='backprop'")


class PieceGrads:
    """Parameter gradients accumulated per piece (:meth:`~contdepth.terms.Term.param_pieces`):
    a backward step adds only the knots it touched; :meth:`result` stacks them once at the end."""

    def __init__(self, pieces: list[tuple[tuple[torch.Tensor, ...], bool]]) -> None:
        self.pieces = pieces
        self.inputs = [x for tensors, _ in pieces for x in tensors]
        self._sums: list[torch.Tensor | None] = [None] * len(self.inputs)

    def add(self, grads: Sequence[torch.Tensor | None]) -> None:
        for i, g in enumerate(grads):
            if g is not None:
                self._sums[i] = g if self._sums[i] is None else self._sums[i] + g

    def result(self) -> list[torch.Tensor]:
        out, i = [], 0
        for tensors, stacked in self.pieces:
            sums = [torch.zeros_like(x) if g is None else g for x, g in zip(tensors, self._sums[i:i + len(tensors)])]
            out.append(torch.stack(sums) if stacked else sums[0])
            i += len(tensors)
        return out


def stack_outputs(outs: list[State]) -> tuple[torch.Tensor, ...]:
    """Per state leaf, the states at the output times stacked on a new leading axis."""
    return tuple(torch.stack(column) for column in zip(*(leaves(o) for o in outs)))


def output_grads(grads: Sequence[torch.Tensor], count: int) -> list[list[torch.Tensor]]:
    """The incoming gradients of the stacked outputs (one per state leaf; autograd materialises
    zeros for an unused one), split per output time: one tensor per state leaf."""
    return [[g[k] for g in grads] for k in range(count)]


@contextlib.contextmanager
def counting(term: Term, counts: StepCounts):
    """Count the term's evaluations in ``counts`` (the backward pass's) for the duration."""
    previous, term.counts = term.counts, counts
    try:
        yield
    finally:
        term.counts = previous


def add_grads(a: list, b: list) -> list:
    """Leafwise a + b."""
    return [x + y for x, y in zip(a, b)]


def with_t0_outputs(problem: Problem, a_y: list, g: list[list[torch.Tensor]]) -> list:
    """dL/dy0 plus the gradients of the outputs at t0 (they are y0 itself)."""
    for i, t in enumerate(problem.out_times):
        if close(t, problem.t0):
            a_y = add_grads(a_y, g[i])
    return a_y
