"""The explicit methods ported from torchdiffeq: heun2, heun3 (fixed step), adaptive_heun, fehlberg2,
dopri8 (embedded pairs), explicit_adams, implicit_adams and fixed_adams (Adams on a fixed grid).

Their Runge-Kutta tableaux are in ``TABLEAUX``, so tests/test_core_order.py fits their orders, the
local order of the pairs' error estimates and dense outputs. Here, each is checked for: the Adams
methods' fitted convergence orders against the declared ones (float64, a non-autonomous problem
with a closed form); agreement with the installed torchdiffeq 0.2.5 on the same problem and
steps, to round-off where the algorithms are the same; for the pairs, a true local error within the
tolerance on every accepted step, and the step counts against torchdiffeq's; backprop and
checkpoint gradients equal to 1e-10, and the adjoint's close to them; the tableau validator
rejecting mistyped coefficients; the options and their errors.
"""
import math
import warnings

import numpy as np
import pytest
import torch
import torchdiffeq
from torchdiffeq._impl import fixed_adams as tdq_adams

import contdepth as cd
from contdepth.solution import StepCounts
from contdepth.solvers import (ADAPTIVE_HEUN, DOPRI8, FEHLBERG2, HEUN2, HEUN3, STEPPERS, TABLEAUX, Adams,
                               Adaptive, ButcherTableau, FixedGrid, RungeKutta, march)
from contdepth.solvers.adams import bashforth, moulton
from contdepth.solvers.tableau import RK38, rooted_trees
from contdepth.terms import FuncTerm

DT = torch.float64
W = 2.0
Y0 = torch.tensor([0.7, -1.3], dtype=DT)
PAIRS = ["adaptive_heun", "fehlberg2", "dopri8"]
FIXED_RK = ["heun2", "heun3"]
ADAMS = ["explicit_adams", "implicit_adams", "fixed_adams"]


def func(t, y):
    """y' = W cos(W t) y + 2 t exp(sin W t), solved by :func:`exact`."""
    return W * torch.cos(W * t) * y + 2 * t * torch.exp(torch.sin(W * t))


def exact(t, y0=Y0, t0=0.0):
    """y(t) = exp(sin W t) (y0 exp(-sin W t0) + t^2 - t0^2)."""
    return math.exp(math.sin(W * t)) * (y0 * math.exp(-math.sin(W * t0)) + t * t - t0 * t0)


def slope(hs, errs):
    return np.polyfit(np.log(hs), np.log(errs), 1)[0]


def global_error(stepper, t0, t1, steps):
    y0 = exact(t0)
    grid = FixedGrid.uniform(t0, t1, steps)
    _, y1 = march(FuncTerm(func, y0), stepper, grid.controller(t0, t1), y0, t0, t1, (), StepCounts())
    return (y1 - exact(t1, y0, t0)).abs().max().item()


# (method, options, declared order, steps): the Adams orders on uniform grids of [0, 1.5].
ADAMS_ORDERS = [("explicit_adams", dict(max_order=4), 3, [64, 128, 256, 512]),
                ("explicit_adams", dict(max_order=5), 4, [64, 128, 256, 512]),
                ("explicit_adams", {}, 4, [64, 128, 256, 512]),  # the default: max_order=5
                ("explicit_adams", dict(max_order=12), 4, [1024, 2048, 4096, 8192]),  # AB11: stable only for tiny h
                ("implicit_adams", dict(max_order=4, max_iters=10), 4, [32, 64, 128, 256]),
                ("implicit_adams", {}, 5, [32, 64, 128, 256]),
                ("fixed_adams", dict(max_order=6), 5, [32, 64, 128, 256])]
# (max_order=4 with 32 steps: 4 corrector iterations do not always reach rtol 1e-7, which drops a
# history entry and warns; the declared order is that of the converged corrector.)


@pytest.mark.parametrize("name,options,order,steps", ADAMS_ORDERS)
def test_adams_global_order_matches_declared(name, options, order, steps):
    stepper = STEPPERS[name]().with_options(**options)
    assert stepper.order == order
    for t0, t1 in [(0.0, 1.5), (1.5, 0.0)]:
        errs = [global_error(stepper, t0, t1, n) for n in steps]
        assert abs(slope([1 / n for n in steps], errs) - order) < 0.3, (name, options, t0, errs)


def one_step(tableau, h, t=0.3):
    stepper, y = RungeKutta(tableau), exact(t)
    term = FuncTerm(func, y)
    state = stepper.init(term, t, y, 1 if h > 0 else -1)
    return stepper, stepper.step(term, t, h, y, state), y, t


def test_dense_output_ends_on_the_step():
    for tableau in (ADAPTIVE_HEUN, FEHLBERG2):
        stepper, (y1, _, _, ks), y, _ = one_step(tableau, 0.1)
        assert torch.allclose(stepper.interpolate(y, y1, ks, 0.1, 1.0), y1, rtol=0, atol=1e-15)
        assert torch.equal(stepper.interpolate(y, y1, ks, 0.1, 0.0), y)


# --------------------------------------------------------------------------- against torchdiffeq


class Oscillator(torch.nn.Module):
    """y'' = -(1 + sin(t)/2) y, as a first-order system; counts its evaluations."""

    def __init__(self):
        super().__init__()
        self.nfe = 0

    def forward(self, t, y):
        self.nfe += 1
        return torch.stack([y[1], -y[0] * (1 + 0.5 * torch.sin(t))])


OSC_Y0 = torch.tensor([1.0, 0.0], dtype=DT)


@pytest.mark.parametrize("method", FIXED_RK + ADAMS)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("options", [None, dict(step_size=0.07)])
def test_fixed_step_equals_torchdiffeq(method, reverse, options):
    """Same algorithm, same grid (t itself, or steps of 0.07 with the last shortened): every output to
    1e-13 (float64 round-off over 100+ steps of the same arithmetic in another order). explicit_adams
    with max_order=5 on both sides (contdepth's default; at torchdiffeq's 12, AB11 steps are unstable at these
    steps: both grow to 1e17)."""
    t = torch.linspace(0.0, 6.0, 101, dtype=DT)
    t = t.flip(0) if reverse else t
    y0 = OSC_Y0
    if method == "explicit_adams":
        options = dict(options or {}, max_order=5)
    ref = torchdiffeq.odeint(Oscillator(), y0, t, method=method, options=options)
    ours = cd.odeint(Oscillator(), y0, t, method=method, options=options)
    if method in ADAMS and (options or {}).get("step_size"):
        # the last step (0.05 after 85 of 0.07) is unequal: torchdiffeq applies the equal-step
        # weights to it, contdepth restarts the history (a 3/8-rule step), more accurately
        last = t < 0.05 - 1e-9 if reverse else t > 5.95 + 1e-9
        assert (ours[~last] - ref[~last]).abs().max() < 1e-13
        exact = cd.odeint(Oscillator(), y0, t[last | (torch.arange(len(t)) == 0)], method="dopri5", rtol=1e-12,
                          atol=1e-12)[1:]
        assert ((ours[last] - exact).abs().max() < 0.2 * (ref[last] - exact).abs().max())
        return
    assert (ours - ref).abs().max() < 1e-13


@pytest.mark.parametrize("options", [dict(max_order=6), dict(max_order=5, max_iters=1), dict(max_iters=2)])
def test_implicit_adams_options_equal_torchdiffeq(options):
    """max_order and max_iters as torchdiffeq reads them; with max_iters=1 and rtol=atol=1e-14 the
    corrector never converges: both warn at the same steps and drop the oldest history entry."""
    t = torch.linspace(0.0, 4.0, 41, dtype=DT)
    tol = dict(rtol=1e-14, atol=1e-14) if options.get("max_iters") == 1 else {}
    with warnings.catch_warnings(record=True) as theirs:
        warnings.simplefilter("always")
        ref = torchdiffeq.odeint(Oscillator(), OSC_Y0, t, method="implicit_adams", options=options, **tol)
    with warnings.catch_warnings(record=True) as ours_w:
        warnings.simplefilter("always")
        ours = cd.odeint(Oscillator(), OSC_Y0, t, method="implicit_adams", options=options, **tol)
    assert (ours - ref).abs().max() < 1e-13
    count = lambda ws: sum("converge" in str(w.message) for w in ws)
    assert count(ours_w) == count(theirs)
    if tol:
        assert count(ours_w) == 38  # every Adams step: 40 steps, 2 of them the start


def test_explicit_adams_max_order_equals_torchdiffeq():
    t = torch.linspace(0.0, 4.0, 41, dtype=DT)
    for max_order in (4, 7, 12):
        ref = torchdiffeq.odeint(Oscillator(), OSC_Y0, t, method="explicit_adams", options=dict(max_order=max_order))
        ours = cd.odeint(Oscillator(), OSC_Y0, t, method="explicit_adams", options=dict(max_order=max_order))
        assert (ours - ref).abs().max() < 1e-13, max_order


def test_adams_coefficients_equal_torchdiffeq_tables():
    """Our weights, integrated Lagrange polynomials in exact fractions, are torchdiffeq's tabulated ones
    (all it uses: its one-value Moulton entry reads 1/11, a typo it never reaches; the weight is 1)."""
    for k in range(1, 13):
        assert bashforth(k) == tuple(tdq_adams._BASHFORTH_DIVISOR[k].tolist()), k
    for k in range(2, 13):
        assert moulton(k) == tuple(tdq_adams._MOULTON_DIVISOR[k].tolist()), k
    assert moulton(1) == (1.0,)


@pytest.mark.filterwarnings("ignore:implicit_adams. the corrector did not converge")  # max_iters=3: some steps
@pytest.mark.filterwarnings("ignore:Functional iteration did not converge")  # torchdiffeq's warning, same steps
def test_adams_evaluations_per_step():
    """explicit: one per step after two 3/8-rule steps (4 each); implicit: one more per corrector
    iteration, at most max_iters."""
    t = torch.linspace(0.0, 2.0, 21, dtype=DT)
    sol = cd.solve(Oscillator(), OSC_Y0, t0=0.0, t1=2.0, steps=20, method="explicit_adams")
    assert sol.stats.forward.nfe == 2 * 4 + 18
    f = Oscillator()
    cd.odeint(f, OSC_Y0, t, method="implicit_adams", options=dict(max_iters=3))
    ours = f.nfe
    f = Oscillator()
    torchdiffeq.odeint(f, OSC_Y0, t, method="implicit_adams", options=dict(max_iters=3))
    assert ours == f.nfe and 2 * 4 + 18 * 2 <= ours <= 2 * 4 + 18 * 4


@pytest.mark.parametrize("method", PAIRS)
def test_pair_steps_equal_torchdiffeq_on_a_constant_step(method):
    """With first_step = 1/4, ifactor = 1 and tolerances no step fails, both take steps of exactly 1/4
    (t_k = k/4 exact in floats): the step ends agree to round-off. dopri8 is FSAL in both, so all
    twelve steps and the outputs inside them (the same quartic) agree; adaptive_heun and fehlberg2
    differ after the first step (torchdiffeq starts a step with the last stage of the previous one,
    taken at a predictor, not at y1), so only that step is compared."""
    opts = dict(first_step=0.25, ifactor=1.0)
    t = torch.tensor([0.0, 0.1, 0.25, 1.3, 3.0] if method == "dopri8" else [0.0, 0.25], dtype=DT)
    ref = torchdiffeq.odeint(Oscillator(), OSC_Y0, t, method=method, rtol=1e3, atol=1e3, options=opts)
    sol = cd.solve(Oscillator(), OSC_Y0, t0=0.0, t1=float(t[-1]), t_eval=t, method=method, rtol=1e3, atol=1e3,
                   options=opts)
    assert sol.stats.forward.accepted_steps == round(float(t[-1]) * 4)
    assert (sol.ys - ref).abs().max() < 1e-14


PAIR_RTOLS = [(m, r) for m, rtols in (("adaptive_heun", (1e-3, 1e-5)), ("fehlberg2", (1e-4, 1e-7)),
                                      ("dopri8", (1e-5, 1e-9))) for r in rtols]


@pytest.mark.parametrize("method,rtol", PAIR_RTOLS)
def test_pair_step_counts_against_torchdiffeq(method, rtol):
    """Attempted steps within 5 % of torchdiffeq's (the same controller; dopri8's steps agree but for
    round-off in h, which can shift a rejection: 36 against 38 at rtol 1e-9). torchdiffeq's nfe is
    2 (f(t0, y0), the initial-step probe) + (stages - 1) per attempted step: it starts each step
    with the previous one's last stage, which for adaptive_heun and fehlberg2 is not f(t, y1);
    here they cost one evaluation more per step. The global error is within 3x of torchdiffeq's."""
    t = torch.linspace(0.0, 10.0, 3, dtype=DT)
    f = Oscillator()
    ref = torchdiffeq.odeint(f, OSC_Y0, t, method=method, rtol=rtol, atol=rtol / 100)
    tdq_nfe = f.nfe
    sol = cd.solve(Oscillator(), OSC_Y0, t0=0.0, t1=10.0, t_eval=t, method=method, rtol=rtol, atol=rtol / 100)
    truth = torchdiffeq.odeint(Oscillator(), OSC_Y0, t, method="dopri8", rtol=1e-13, atol=1e-13)
    stats = sol.stats.forward
    attempted = stats.accepted_steps + stats.rejected_steps
    tableau = TABLEAUX[method]
    assert abs(attempted / ((tdq_nfe - 2) / (tableau.stages - 1)) - 1) < 0.06
    assert stats.nfe == 2 + (tableau.stages - tableau.fsal) * attempted
    ours_err, their_err = (sol.ys - truth).abs().max(), (ref - truth).abs().max()
    assert ours_err < 3 * their_err


def worst_local_error(method, rtol):
    """The largest RMS of err / (atol + rtol max(|y0|, |y1|)) over the accepted steps of an adaptive
    solve of [0, 3] (atol = rtol / 100), err the step's true local error (closed form from its start)."""
    atol = rtol / 100
    t0, t1, y0 = 0.0, 3.0, exact(0.0)
    steps = []
    controller = Adaptive(rtol, atol).controller(t0, t1, order=TABLEAUX[method].order)
    _, y_end = march(FuncTerm(func, y0), STEPPERS[method](), controller, y0, t0, t1, (), StepCounts(),
                     on_step=lambda rec, y, state: steps.append((rec, y)))
    assert len(steps) > 3
    worst = 0.0
    for (rec, y), y_next in zip(steps, [y for _, y in steps[1:]] + [y_end]):
        err = y_next - exact(rec.t_next, y, rec.t)
        scale = atol + rtol * torch.maximum(y.abs(), y_next.abs())
        worst = max(worst, (err / scale).pow(2).mean().sqrt().item())
    return worst


@pytest.mark.parametrize("method,rtol", [pr for pr in PAIR_RTOLS if pr[0] != "fehlberg2"])
def test_accepted_steps_meet_the_tolerance(method, rtol):
    """The estimate is the error of the lower-order solution, so it bounds the propagated one's:
    every accepted step is within its tolerance."""
    assert worst_local_error(method, rtol) <= 1


def test_fehlberg2_meets_the_tolerance_only_when_tight():
    """fehlberg2's estimate h (k_2 - k_0) / 512 is the error of its first-order solution, whose error
    constant is tiny: the propagated second-order step's local error C h^3 exceeds it unless h is
    small (measured worst ratios 36, 4.7, 0.49 at rtol 1e-3, 1e-6, 1e-8; torchdiffeq's fehlberg2
    has the same estimate)."""
    assert worst_local_error("fehlberg2", 1e-3) > 10
    assert worst_local_error("fehlberg2", 1e-8) <= 1


# --------------------------------------------------------------------------- gradients


class Field(torch.nn.Module):
    """f(t, y) = tanh(A y + b t): parameters A, b."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.A = torch.nn.Parameter(0.5 * torch.randn(3, 3, generator=g, dtype=DT))
        self.b = torch.nn.Parameter(torch.randn(3, generator=g, dtype=DT))

    def forward(self, t, y):
        return torch.tanh(y @ self.A.T + self.b * t)


ALL = FIXED_RK + PAIRS + ADAMS
GRAD_RTOL = {"adaptive_heun": 1e-5, "fehlberg2": 1e-6, "dopri8": 1e-8}


def gradients(method, gradient, t_eval=None):
    """(dL/dy0, dL/dA, dL/db) for L = sum of squares of the outputs (y(2), or those at ``t_eval``);
    explicit_adams at its default max_order=5 (AB11 would be unstable at 40 steps)."""
    field = Field()
    y0 = torch.tensor([[0.3, -0.2, 0.5], [0.1, 0.4, -0.6]], dtype=DT, requires_grad=True)
    if method in PAIRS:
        kw = dict(rtol=GRAD_RTOL[method], atol=GRAD_RTOL[method] / 100)
    else:
        kw = dict(steps=40)
    sol = cd.solve(field, y0, t0=0.0, t1=2.0, method=method, gradient=gradient, t_eval=t_eval, **kw)
    loss = (sol.ys if t_eval is not None else sol.y1).pow(2).sum()
    loss.backward()
    return [y0.grad, field.A.grad, field.b.grad]


@pytest.mark.parametrize("method", ALL)
def test_backprop_and_checkpoint_agree(method):
    t_eval = [0.0, 0.55, 1.0, 2.0]
    for t in (None, t_eval):
        back, check = gradients(method, "backprop", t), gradients(method, "checkpoint", t)
        for a, b in zip(back, check):
            assert torch.allclose(a, b, rtol=1e-10, atol=1e-12), (method, t, (a - b).abs().max())


# Measured adjoint-vs-backprop gaps (relative, max over the three gradients; y(t1) only / with outputs):
# heun2 8.8e-5 / 9.7e-5, heun3 2.1e-5 / 1.6e-5, adaptive_heun 3.9e-6 / 3.3e-6, fehlberg2 1.1e-4 / 5.0e-5,
# dopri8 4.8e-10 / 2.6e-6 (outputs inside its long steps: backprop differentiates the quartic),
# explicit_adams 3.5e-5 / 2.3e-5, implicit_adams 3.1e-7 / 5.2e-7: the discretisation errors of the
# backward solve (40 steps of [0, 2]) or of the tolerances (GRAD_RTOL). Bounds about 10x those.
ADJOINT_TOL = {"heun2": 1e-3, "heun3": 2e-4, "adaptive_heun": 4e-5, "fehlberg2": 1e-3, "dopri8": 3e-5,
               "explicit_adams": 4e-4, "implicit_adams": 5e-6, "fixed_adams": 5e-6}


@pytest.mark.parametrize("method", ALL)
def test_adjoint_agrees_with_backprop(method):
    """gradient="adjoint" works for every new method: with the loss on y(t1) only, and on outputs
    inside [t0, t1] (there the adjoint state jumps and an Adams history restarts)."""
    for t in (None, [0.0, 0.55, 1.0, 2.0]):
        back, adj = gradients(method, "backprop", t), gradients(method, "adjoint", t)
        gap = max(((a - b).abs().max() / b.abs().max()).item() for a, b in zip(adj, back))
        assert gap < ADJOINT_TOL[method], (method, t, gap)


@pytest.mark.parametrize("method", FIXED_RK)
def test_hand_written_backward_of_a_built_in_field(method):
    """heun2 and heun3 are fixed-step tableaux without FSAL, so a built-in field takes the fused
    discrete adjoint (checkpoint) and the quadrature adjoint: equal to backprop to 1e-10, and the
    continuous adjoint to its discretisation error (64 steps of [0, 2], relative)."""
    grid = cd.ControlGrid(t0=0.0, t1=2.0, n=8)
    torch.manual_seed(0)
    field = cd.fields.DenseResidual(3, grid, activation="tanh").double()
    y0 = torch.randn(4, 3, dtype=DT)
    grads = {}
    for gradient in ("backprop", "checkpoint", "adjoint"):
        field.zero_grad()
        y = y0.clone().requires_grad_()
        cd.odesolve(field, y, method=method, steps=64, gradient=gradient).pow(2).sum().backward()
        grads[gradient] = [y.grad] + [p.grad for p in field.parameters()]
    for a, b in zip(grads["checkpoint"], grads["backprop"]):
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-12)
    for a, b in zip(grads["adjoint"], grads["backprop"]):
        assert ((a - b).abs().max() / b.abs().max()).item() < 1e-5  # measured 1.3e-6 (heun2), 5.8e-7 (heun3)


def test_adams_history_restarts_where_the_state_is_changed():
    """A march that changes the state between steps (inject) restarts the Adams history: the step
    after it is a 3/8-rule step again, so it costs 4 evaluations."""
    y0 = exact(0.0)
    counts = StepCounts()
    term = FuncTerm(func, y0)
    term.counts = counts
    stepper = Adams(False)
    grid = FixedGrid.uniform(0.0, 1.0, 10)
    nfe = []
    march(term, stepper, grid.controller(0.0, 1.0), y0, 0.0, 1.0, (), StepCounts(),
          on_step=lambda rec, y, state: nfe.append(counts.nfe),
          inject=lambda t, y: y + 1e-3 if abs(t - 0.5) < 1e-12 else y)
    per_step = np.diff([0] + nfe).tolist()
    assert per_step == [4, 4, 1, 1, 1, 4, 4, 1, 1, 1]


# --------------------------------------------------------------------------- validation and options


def test_rooted_tree_counts():
    """1, 1, 2, 4, 9, 20, 48, 115 rooted trees with 1..8 nodes (OEIS A000081)."""
    assert [len(rooted_trees(n)) for n in range(1, 9)] == [1, 1, 2, 4, 9, 20, 48, 115]


def _fields(t):
    return dict(name="bad", order=t.order, c=t.c, a=t.a, b=t.b, b_error=t.b_error, mid=t.mid, dense=t.dense)


def _nudge(values, i, j, eps):
    """values with eps added at i and taken at j (their sum unchanged: only the order conditions see it)."""
    out = list(values)
    out[i] += eps
    out[j] -= eps
    return tuple(out)


@pytest.mark.parametrize("tableau", [HEUN2, HEUN3, ADAPTIVE_HEUN, FEHLBERG2, DOPRI8, RK38])
def test_mistyped_weight_raises(tableau):
    """One weight of b mistyped by 1e-7 (another compensating, so b still sums to 1) breaks an order condition."""
    nz = [i for i, x in enumerate(tableau.b) if x]
    fields = _fields(tableau)
    fields["b"] = _nudge(tableau.b, nz[0], nz[-1], 1e-7)
    if tableau.fsal:  # keep the FSAL row equal to b, as a copied typo would
        fields["a"] = tableau.a[:-1] + (fields["b"][:-1],)
    if tableau.dense is not None:  # and the dense rows ending on b
        fields["dense"] = tuple(row[:-1] + (row[-1] + nb - b,) for row, b, nb in zip(tableau.dense, tableau.b,
                                                                                   fields["b"]))
    with pytest.raises(ValueError, match="bad: b fails the order-"):
        ButcherTableau(**fields)


def test_mistyped_dopri8_entries_raise():
    """A digit changed in A (with c, so the row sum still holds), in b_error, in mid, and dopri8's
    declared order too high."""
    fields = _fields(DOPRI8)
    row = list(DOPRI8.a[7])
    row[3] += 1e-6
    fields_a = dict(fields, a=DOPRI8.a[:7] + (tuple(row),) + DOPRI8.a[8:],
                    c=DOPRI8.c[:7] + (DOPRI8.c[7] + 1e-6,) + DOPRI8.c[8:])
    with pytest.raises(ValueError, match="bad: b fails the order-"):
        ButcherTableau(**fields_a)
    with pytest.raises(ValueError, match=r"bad: b - b_error fails the order-"):
        ButcherTableau(**dict(fields, b_error=_nudge(DOPRI8.b_error, 0, 5, 1e-7)))
    with pytest.raises(ValueError, match="bad: mid fails the order-"):
        ButcherTableau(**dict(fields, mid=_nudge(DOPRI8.mid, 0, 5, 1e-7)))
    with pytest.raises(ValueError, match="bad: b fails the order-9 condition"):
        ButcherTableau(**dict(fields, order=9))


@pytest.mark.parametrize("change,words", [
    (dict(dense=None), "an embedded pair needs dense output"),
    (dict(dense=((1.0, -0.5), (0.0,))), "dense needs 2 rows of the same positive length"),
    (dict(dense=((1.0, -0.5), (0.0, 0.6))), "dense row 1 sums to 0.6, but b_1 = 0.5"),
    (dict(dense=((0.9, -0.4), (0.1, 0.4))), r"dense \(coefficients of s\^1\) fails the order-2 condition"),
    (dict(mid=(0.25, 0.25)), "dense output needs f at the step's end"),
    (dict(b_error=None), "dense weights are for embedded pairs that are not FSAL"),
])
def test_dense_weights_validation(change, words):
    with pytest.raises(ValueError, match=words):
        ButcherTableau(**dict(_fields(ADAPTIVE_HEUN), **change))


def test_fsal_pair_with_dense_weights_raises():
    fields = dict(_fields(DOPRI8), dense=tuple((b,) for b in DOPRI8.b), mid=None)
    with pytest.raises(ValueError, match="dense weights are for embedded pairs that are not FSAL"):
        ButcherTableau(**fields)


@pytest.mark.parametrize("method,options,words", [
    ("explicit_adams", dict(max_iters=2), r"unknown options for method '.*' key\(s\) \['max_iters'\]"),
    ("implicit_adams", dict(max_order=13), r"options\['max_order'\] must be an int in \[4, 12\], got 13"),
    ("implicit_adams", dict(max_order=3), r"options\['max_order'\] must be an int in \[4, 12\], got 3"),
    ("fixed_adams", dict(max_iters=0), r"options\['max_iters'\] must be an int >= 1, got 0"),
    ("implicit_adams", dict(max_order=5.0), r"options\['max_order'\] must be an int"),
    ("implicit_adams", dict(first_step=0.1), r"unknown options for method '.*' key\(s\) \['first_step'\]"),
    ("heun3", dict(max_order=5), r"unknown options for method '.*' key\(s\) \['max_order'\]"),
    ("dopri8", dict(max_iters=5), r"unknown options for method '.*' key\(s\) \['max_iters'\]"),
])
def test_bad_options_raise(method, options, words):
    t = torch.linspace(0.0, 1.0, 5, dtype=DT)
    with pytest.raises(ValueError, match=words):
        cd.odeint(Oscillator(), OSC_Y0, t, method=method, options=options)


@pytest.mark.filterwarnings("ignore:implicit_adams. the corrector did not converge")  # rtol 1e-12: some steps
def test_tolerances_of_the_adams_methods():
    """implicit_adams's rtol/atol are its corrector's (solve accepts them; odeint passes its own);
    explicit_adams has none, so solve refuses them as for any fixed-step method."""
    with pytest.raises(ValueError, match="rtol is for adaptive methods; method='explicit_adams'"):
        cd.solve(Oscillator(), OSC_Y0, t0=0.0, t1=1.0, steps=10, method="explicit_adams", rtol=1e-3)
    loose = cd.solve(Oscillator(), OSC_Y0, t0=0.0, t1=1.0, steps=10, method="implicit_adams", rtol=1e-2, atol=1e-2)
    tight = cd.solve(Oscillator(), OSC_Y0, t0=0.0, t1=1.0, steps=10, method="implicit_adams", rtol=1e-12, atol=1e-14)
    assert loose.stats.forward.nfe < tight.stats.forward.nfe
    with pytest.raises(ValueError, match="rtol .the corrector's tolerance. must be a positive finite float"):
        Adams(True, rtol=0.0)


def test_registered_names():
    for name in FIXED_RK + PAIRS + ADAMS:
        assert name in cd.solvers.METHODS
        stepper = cd.solvers.get_stepper(name)
        assert stepper.name == name
    assert [cd.solvers.get_stepper(n).adaptive for n in PAIRS] == [True, True, True]
    assert [cd.solvers.get_stepper(n).fsal for n in PAIRS] == [False, False, True]
    assert cd.solvers.get_stepper("fixed_adams").implicit and not cd.solvers.get_stepper("explicit_adams").implicit
