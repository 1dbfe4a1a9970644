"""A stand-in ``torchdiffeq`` package that forwards to contdepth, so torchdiffeq's own test
suite can run against contdepth (tools/torchdiffeq_suite.sh puts this directory first on
PYTHONPATH). It adds no behaviour: every call goes to the contdepth function of the same name,
and a name contdepth does not provide is an AttributeError naming it."""
import contdepth

__version__ = "0.2.5+contdepth"
_FORWARDED = ("odeint", "odeint_adjoint", "odeint_event", "odeint_dense")


def __getattr__(name: str):
    if name in _FORWARDED:
        if hasattr(contdepth, name):
            return getattr(contdepth, name)
        raise AttributeError(f"torchdiffeq shim: contdepth has no {name} (yet)")
    raise AttributeError(f"torchdiffeq shim: {name!r} is not forwarded to contdepth; forwarded: {list(_FORWARDED)}")
