"""The engine: steppers (explicit Runge-Kutta tableaux, fixed and embedded pairs), where steps end
(fixed grids, adaptive error control), and the one march loop. Imports neither fields nor
gradient methods."""
import functools

from .base import Controller, Stepper, StepRecord
from .controllers import Adaptive, FixedGrid
from .engine import AdjointConfig, Problem, march, replay
from .adams import Adams
from .multistep import LinearTwoStep
from .implicit import (IMPLICIT_STEPPERS, TRBDF2, SDIRK2, GaussLegendre4, GaussLegendre6, ImplicitEuler,
                       ImplicitMidpoint, ImplicitRungeKutta, Kvaerno3, Kvaerno5, RadauIIA3, RadauIIA5, Trapezoid)
from .implicit_tableau import IMPLICIT_TABLEAUX, ImplicitTableau
from .rk import RungeKutta
from .symplectic import Leapfrog, SymplecticEuler
from .tableau import BOSH3, DOPRI5, EULER, MIDPOINT, RK4, TABLEAUX, TSIT5, ButcherTableau
from .tableau import ADAPTIVE_HEUN, DOPRI8, FEHLBERG2, HEUN2, HEUN3

FIXED_STEP = {name: t for name, t in TABLEAUX.items() if not t.adaptive}
ADAPTIVE = {name: t for name, t in TABLEAUX.items() if t.adaptive}
STEPPERS = {**{name: functools.partial(RungeKutta, t) for name, t in TABLEAUX.items()},
            "symplectic_euler": SymplecticEuler, "leapfrog": Leapfrog, **IMPLICIT_STEPPERS}
STEPPERS.update(explicit_adams=functools.partial(Adams, False), implicit_adams=functools.partial(Adams, True),
                fixed_adams=functools.partial(Adams, True, name="fixed_adams"))
METHODS = tuple(STEPPERS)


def get_stepper(method: object):
    """The stepper called ``method`` (a name in ``METHODS``), or ``method`` itself if it is a
    stepper object (it has ``init``, ``step`` and ``interpolate``)."""
    if isinstance(method, str):
        if method not in STEPPERS:
            raise ValueError(f"method must be one of {list(METHODS)} or a stepper object, got {method!r}")
        return STEPPERS[method]()
    if all(hasattr(method, name) for name in ("init", "step", "interpolate")):
        return method
    raise TypeError(f"method must be a method name ({list(METHODS)}) or a stepper with init/step/interpolate, "
                    f"got {type(method).__name__}")


__all__ = ["Stepper", "Controller", "StepRecord", "Adaptive", "FixedGrid", "AdjointConfig", "Problem", "march", "replay", "LinearTwoStep", "RungeKutta", "SymplecticEuler", "Leapfrog", "STEPPERS", "ButcherTableau", "EULER",
           "MIDPOINT", "RK4", "BOSH3", "DOPRI5", "TSIT5", "TABLEAUX", "FIXED_STEP", "ADAPTIVE", "METHODS",
           "get_stepper", "ImplicitRungeKutta", "ImplicitTableau", "IMPLICIT_TABLEAUX", "IMPLICIT_STEPPERS",
           "ImplicitEuler", "ImplicitMidpoint", "Trapezoid", "RadauIIA3", "RadauIIA5", "GaussLegendre4",
           "GaussLegendre6", "SDIRK2", "TRBDF2", "Kvaerno3", "Kvaerno5"]
__all__ += ["HEUN2", "HEUN3", "ADAPTIVE_HEUN", "FEHLBERG2", "DOPRI8", "Adams"]
