"""Gradient methods, each wrapping the engine's march loop: ``backprop`` (through the solver),
``checkpoint`` (exact, replaying each stored step), ``adjoint`` (continuous adjoint, O(1)
memory in steps) and ``reversible`` (exact, O(1) memory, for reversible steppers)."""
from .adjoint import solve_adjoint
from .backprop import solve_backprop
from .checkpoint import solve_checkpoint
from .reversible import solve_reversible

GRADIENTS = {"backprop": solve_backprop, "checkpoint": solve_checkpoint, "adjoint": solve_adjoint,
             "reversible": solve_reversible}

__all__ = ["GRADIENTS", "solve_backprop", "solve_checkpoint", "solve_adjoint", "solve_reversible"]
