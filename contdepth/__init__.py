"""contdepth: continuous-depth networks. A network is a vector field dpsi/dt = F(psi, theta(t), t);
ResNets, RK4 nets and adaptive dopri5 nets are discretisations of the same field."""
import importlib

from . import fields
from .block import ODEBlock, SDEBlock
from .brownian import BrownianPath
from .errors import SolverError
from .fields.base import smoothness
from .grid import ControlGrid
from .solution import Solution, SolverStats, StepCounts
from .sdesolve import sdesolve
from .solve import odeint, odeint_adjoint, odeint_event, odesolve, solve
from .solvers import LinearTwoStep

# Subpackages imported on first use (``cd.physics``, ``cd.data``, ...), so ``import contdepth`` stays light.
_LAZY = ("analysis", "control", "data", "io", "lift", "models", "physics", "plot", "solvers", "gradients", "train")


def __getattr__(name: str):
    if name in _LAZY:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__version__ = "0.2.0.dev0"
__all__ = ["ControlGrid", "LinearTwoStep", "fields", "odeint", "odeint_adjoint", "odeint_event", "odesolve", "solve", "ODEBlock", "Solution",
           "SolverStats", "StepCounts", "SolverError", "smoothness",
           "BrownianPath", "SDEBlock", "sdesolve"]
