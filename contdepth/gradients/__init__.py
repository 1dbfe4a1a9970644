"""Gradient methods: ``backprop`` (through the solver), ``checkpoint`` (exact, recomputing each
step from stored step-boundary states) and ``adjoint`` (continuous adjoint, O(1) memory in steps)."""
from .adjoint import solve_adjoint
from .backprop import solve_backprop
from .checkpoint import solve_checkpoint

FIXED_STEP_GRADIENTS = {"backprop": solve_backprop, "checkpoint": solve_checkpoint, "adjoint": solve_adjoint}
GRADIENTS = tuple(FIXED_STEP_GRADIENTS)

__all__ = ["GRADIENTS", "FIXED_STEP_GRADIENTS", "solve_backprop", "solve_checkpoint", "solve_adjoint"]
