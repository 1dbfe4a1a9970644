"""The one tolerance for comparing times: two floats name the same time when they differ by at
most ``TIME_RTOL`` relative to max(1, |t|). Every module that matches a time against a grid, a
jump, an output or an interval end uses :func:`slack` or :func:`close` (a leaf module: the
engine, terms, fields and the Brownian path all import it)."""
from __future__ import annotations

TIME_RTOL = 1e-12


def slack(*times: float) -> float:
    """How far apart two floats may be and still name the same time near ``times``."""
    return TIME_RTOL * max(1.0, *(abs(t) for t in times))


def close(a: float, b: float) -> bool:
    """a == b up to :data:`TIME_RTOL` relative (two floats naming the same time)."""
    return abs(a - b) <= slack(a, b)


def close_tensors(a, b):
    """:func:`close` elementwise, for tensors of times (broadcast against each other)."""
    return (a - b).abs() <= TIME_RTOL * a.abs().maximum(b.abs()).clamp(min=1)
