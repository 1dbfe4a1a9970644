"""Structure-preserving steppers for pair states (q, p) with separated dynamics (seed 003;
Haber & Ruthotto 2017; Chang et al. 2018):

    dq/dt = f(t, p),    dp/dt = g(t, q)    (f depends on p only, g on q only).

A term for them returns the pair (dq/dt, dp/dt); the steppers ask for one half at a time
(``term.half``), so a field that can compute a half alone (``vector_field_half``) does half the
work. For a Hamiltonian system (f = dH/dp, g = -dH/dq) both maps are symplectic: the energy
error stays bounded over long times instead of drifting.

Both are *reversible*: :meth:`inverse` recomputes the start of a step from its end, exactly up to
rounding, which the ``"reversible"`` gradient uses to rebuild states instead of storing them.
"""
from __future__ import annotations

from ..terms import Term
from ..tree import State, axpy, lerp


def _pair(y: State, name: str) -> tuple:
    if not isinstance(y, tuple) or len(y) != 2:
        raise ValueError(f"method={name!r} needs a pair state y0 = (q, p) with dq/dt depending on p only and dp/dt on q only, "
                         f"got {type(y).__name__}{'' if not isinstance(y, tuple) else f' of length {len(y)}'}")
    return y


class SymplecticEuler:
    """p1 = p + h g(t, q);  q1 = q + h f(t + h, p1). Order 1, symplectic, reversible."""

    name = "symplectic_euler"
    order = 1
    adaptive = False
    fsal = False
    reversible = True

    def init(self, term: Term, t0: float, y0: State, direction: int) -> tuple:
        _pair(y0, self.name)
        return ()

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        d = 1 if h > 0 else -1
        q, p = y
        p1 = axpy(p, h, term.half(t, (q, p), d, 1))
        q1 = axpy(q, h, term.half(t + h, (q, p1), -d, 0))
        return (q1, p1), (), None, None

    def inverse(self, term: Term, t: float, h: float, y1: State) -> State:
        """The start (q, p) of the step from t by h that ended at ``y1``."""
        d = 1 if h > 0 else -1
        q1, p1 = y1
        q = axpy(q1, -h, term.half(t + h, (q1, p1), -d, 0))
        return q, axpy(p1, -h, term.half(t, (q, p1), d, 1))

    def interpolate(self, y0: State, y1: State, dense, h: float, s: float) -> State:
        return lerp(y0, y1, s)


class Leapfrog(SymplecticEuler):
    """Stormer-Verlet: p_half = p + h/2 g(t, q);  q1 = q + h f(t + h/2, p_half);
    p1 = p_half + h/2 g(t + h, q1). Order 2, symplectic, time-symmetric: the step from t + h by
    -h undoes it."""

    name = "leapfrog"
    order = 2

    def step(self, term: Term, t: float, h: float, y: State, state: tuple):
        d = 1 if h > 0 else -1
        q, p = y
        p_half = axpy(p, h / 2, term.half(t, (q, p), d, 1))
        q1 = axpy(q, h, term.half(t + h / 2, (q, p_half), d, 0))
        p1 = axpy(p_half, h / 2, term.half(t + h, (q1, p_half), -d, 1))
        return (q1, p1), (), None, None

    def inverse(self, term: Term, t: float, h: float, y1: State) -> State:
        return self.step(term, t + h, -h, y1, ())[0]
