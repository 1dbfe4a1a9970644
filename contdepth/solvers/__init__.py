"""Integrators: fixed-step explicit Runge-Kutta methods (tableaux + one engine) and adaptive dopri5."""
from .tableau import EULER, MIDPOINT, RK4, ButcherTableau

FIXED_STEP = {t.name: t for t in (EULER, MIDPOINT, RK4)}
ADAPTIVE = ("dopri5",)
METHODS = tuple(FIXED_STEP) + ADAPTIVE

__all__ = ["ButcherTableau", "EULER", "MIDPOINT", "RK4", "FIXED_STEP", "ADAPTIVE", "METHODS"]
