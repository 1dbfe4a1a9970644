"""Gradient methods, each wrapping the engine's march loop: ``backprop`` (through the solver),
``checkpoint`` (exact, replaying each stored step) and ``adjoint`` (continuous adjoint, O(1)
memory in steps)."""
from .adjoint import solve_adjoint
from .backprop import solve_backprop
from .checkpoint import solve_checkpoint

GRADIENTS = {"backprop": solve_backprop, "checkpoint": solve_checkpoint, "adjoint": solve_adjoint}

__all__ = ["GRADIENTS", "solve_backprop", "solve_checkpoint", "solve_adjoint"]
