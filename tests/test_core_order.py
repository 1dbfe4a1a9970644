"""Every registered Runge-Kutta tableau, read from ``contdepth.solvers.TABLEAUX``, is checked
against the order it declares: global convergence of the propagated solution, local order of
the embedded error estimate, and local order of the dense output, all on a non-autonomous
problem with a closed form (so the stage times c_i matter), forward and backward in time.
The tableau validator rejects inconsistent data at construction."""
import math

import numpy as np
import pytest
import torch

from contdepth.solution import StepCounts
from contdepth.solvers import TABLEAUX, ButcherTableau, FixedGrid, RungeKutta, march
from contdepth.terms import FuncTerm

DT = torch.float64
Y0 = torch.tensor([0.7, -1.3], dtype=DT)


W = 2.0


def func(t, y):
    """y' = W cos(W t) y + 2 t exp(sin(W t)), solved by :func:`exact`."""
    return W * torch.cos(W * t) * y + 2 * t * torch.exp(torch.sin(W * t))


def exact(t, y0=Y0, t0=0.0):
    """y(t) = exp(sin W t) (y0 exp(-sin W t0) + t^2 - t0^2)."""
    return math.exp(math.sin(W * t)) * (y0 * math.exp(-math.sin(W * t0)) + t * t - t0 * t0)


def slope(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


# Step counts 2^k where the errors are asymptotic and above round-off (dopri8: 3e-7, 1e-9, 4e-12,
# 2e-14 with 4, 8, 16, 32 steps of [0, 1.5]; 1e-15 with 64).
STEP_RANGE = {5: range(5, 9), 8: range(2, 6)}


@pytest.mark.parametrize("name", list(TABLEAUX))
@pytest.mark.parametrize("t0,t1", [(0.0, 1.5), (1.5, 0.0)])
def test_global_order_matches_declared(name, t0, t1):
    tableau = TABLEAUX[name]
    stepper = RungeKutta(tableau)
    y0 = exact(t0)
    ks = STEP_RANGE.get(tableau.order, range(4, 8))
    hs, errs = [], []
    for k in ks:
        grid = FixedGrid.uniform(t0, t1, 2 ** k)
        term = FuncTerm(func, y0)
        _, y1 = march(term, stepper, grid.controller(t0, t1), y0, t0, t1, (), StepCounts())
        hs.append(abs(t1 - t0) / 2 ** k)
        errs.append((y1 - exact(t1)).abs().max().item())
    # tsit5's principal error constant is tiny by design: on other intervals its global errors
    # partly cancel and its fitted slope wanders (4.1 on [1, 0], 5.8 on [2.5, 0.5] at these steps).
    assert abs(slope(hs, errs) - tableau.order) < 0.3, (name, errs)


def one_step(tableau, h, t=0.3):
    stepper, y = RungeKutta(tableau), exact(t)
    term = FuncTerm(func, y)
    state = stepper.init(term, t, y, 1 if h > 0 else -1)
    return stepper, stepper.step(term, t, h, y, state), y, t


ADAPTIVE = [name for name, t in TABLEAUX.items() if t.adaptive]


@pytest.mark.parametrize("name", ADAPTIVE)
@pytest.mark.parametrize("sign", [1, -1])
def test_error_estimate_has_local_order_of_the_embedded_pair(name, sign):
    """b_error = b - b_hat with b_hat of order p - 1: the estimate of one step is O(h^p)."""
    tableau = TABLEAUX[name]
    # dopri8: pairwise slopes 8.2 over these steps (7.3 to 7.9 from h = 0.4 down to 0.2 backward; round-off below 0.05)
    hs = [0.2 / 2 ** k for k in range(4)] if tableau.order < 8 else [0.2, 0.15, 0.1, 0.075]
    errs = [one_step(tableau, sign * h)[1][2].abs().max().item() for h in hs]
    assert abs(slope(hs, errs) - tableau.order) < 0.3, (name, errs)


# The degree q of each pair's dense output: bosh3's cubic Hermite; the quartics of dopri5, tsit5 and
# dopri8 (at the steps below dopri8's fitted slope is 5.75 at s = 0.5: its O(h^5) term has a small
# constant, hence a lower bound); the quadratic of the pairs that are not FSAL.
DENSE_ORDER = {"bosh3": 3, "dopri5": 4, "tsit5": 4, "dopri8": 4, "adaptive_heun": 2, "fehlberg2": 2}


def test_every_pair_declares_its_dense_order_here():
    assert sorted(DENSE_ORDER) == sorted(ADAPTIVE)


@pytest.mark.parametrize("name", ADAPTIVE)
def test_dense_output_local_order(name):
    """The interpolant at s = 0.3 and 0.5 of one step from the exact start is O(h^(q+1)) off the exact
    solution, q from :data:`DENSE_ORDER`."""
    tableau = TABLEAUX[name]
    q = DENSE_ORDER[name]
    for s in (0.3, 0.5):
        hs = [0.4 / 2 ** k for k in range(4)]
        errs = []
        for h in hs:
            stepper, (y1, _, _, ks), y, t = one_step(tableau, h)
            errs.append((stepper.interpolate(y, y1, ks, h, s) - exact(t + s * h, y, t)).abs().max().item())
        assert slope(hs, errs) > q + 1 - 0.3, (name, s, errs)


def test_fixed_step_dense_output_is_linear():
    stepper, (y1, _, _, ks), y, t = one_step(TABLEAUX["rk4"], 0.1)
    assert torch.equal(stepper.interpolate(y, y1, ks, 0.1, 0.25), y + 0.25 * (y1 - y))


@pytest.mark.parametrize("kwargs,words", [
    (dict(c=(0.0, 1.0), a=((), (0.5,)), b=(0.0, 1.0)), "row 1 of A sums to 0.5, but c_1 = 1.0"),  # midpoint, c = (0, 1)
    (dict(c=(0.0, 0.5), a=((), (0.5,)), b=(0.5, 0.6)), "summing to 1"),
    (dict(c=(0.5,), a=((),), b=(1.0,)), "c_0 = 0"),
    (dict(c=(0.0, 0.5), a=((), ()), b=(0.0, 1.0)), "lower triangular"),
    (dict(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), b_error=(0.1, 0.0)), "b_error needs 2 weights summing to 0.0"),
    (dict(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), mid=(0.25, 0.25)), "FSAL"),
])
def test_tableau_validation(kwargs, words):
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        ButcherTableau("bad", 2, **kwargs)


def test_registered_tableaux_are_consistent():
    for tableau in TABLEAUX.values():
        assert tableau.adaptive == (tableau.b_error is not None)
        if tableau.adaptive:  # dense output: mid from the FSAL stage, else dense weights
            assert (tableau.mid is not None) == tableau.fsal == (tableau.dense is None)
