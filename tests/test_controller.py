"""The adaptive step-size controller (contdepth/solvers/controllers.py) against independent references.

- Evaluation times: bosh3 and dopri5 evaluate f where torchdiffeq 0.2.5's ``odeint`` does; tsit5 (absent from
  torchdiffeq 0.2.5) where torchdiffeq's own adaptive Runge-Kutta solver does when given contdepth's Tsitouras
  tableau. Non-autonomous nonlinear field with rejected steps, both time directions, float64.
- ``judge``: the next step against the PI formula and the RMS error norm computed by hand (exact values).
- The first step: Hairer, Norsett & Wanner II.4 (torchdiffeq's ``_select_initial_step``) computed by hand.
- A solve that cannot go on is a SolverError naming t, h, rtol and atol, in bounded time.
- Fixed grids: the times and step sizes they give, either direction.
"""
import math
import re
import sys
import time

import pytest
import torch
import torchdiffeq
from torchdiffeq._impl.rk_common import RKAdaptiveStepsizeODESolver, _ButcherTableau

import contdepth as cd
from contdepth.solvers import TABLEAUX, TSIT5, RungeKutta
from contdepth.solvers.tableau import ADAPTIVE_HEUN
from contdepth.solvers.controllers import Adaptive, FixedGrid, _AdaptiveController, min_step
from contdepth.timetol import close

F64 = torch.float64
DIRECTIONS = [pytest.param(0.0, 3.0, id="forward"), pytest.param(2.4, -1.0, id="reverse")]


def _recording(log: list):
    """A non-autonomous nonlinear field on 3 components of different sizes; appends each (t, y) it is called at."""
    def f(t, y):
        log.append((float(t), y.detach().clone()))
        return torch.stack([y[1], -torch.sin(y[0]) + 2 * torch.tanh(8 * torch.sin(1.3 * t)),
                            0.3 * y[0] * y[2] * torch.cos(t)])
    return f


def _tsit5_solver() -> type:
    """torchdiffeq's adaptive Runge-Kutta solver with contdepth's tsit5 tableau (its controller, our coefficients)."""
    vec = lambda v: torch.tensor(v, dtype=F64)
    tab = TSIT5

    class Tsit5(RKAdaptiveStepsizeODESolver):
        order = tab.order
        tableau = _ButcherTableau(alpha=vec(tab.c[1:]), beta=[vec(row) for row in tab.a[1:]], c_sol=vec(tab.b),
                                  c_error=vec(tab.b_error))
        mid = vec(tab.mid)

    return Tsit5


@pytest.mark.parametrize("t0,t1", DIRECTIONS)
@pytest.mark.parametrize("method", ["bosh3", "dopri5", "tsit5"])
def test_evaluation_times_equal_torchdiffeq(method, t0, t1, monkeypatch):
    """f is called at torchdiffeq's times: the start, the first-step probe, then every stage of every attempted
    step, up to the first attempt that contdepth cuts to end on t1 (torchdiffeq steps past t1 and interpolates).

    Equal to 1e-6 relative, not bit for bit: the error estimate b - b_hat cancels most of its digits, so the
    two libraries' different summation orders in the stages move later steps (measured: up to 1e-8, tsit5
    reverse; torchdiffeq also evaluates the stage at a step's end one ulp early); the planted controller
    faults move some time by 2e-5 (the probe's state taken forward, bosh3) to 1 relative."""
    if method == "tsit5":
        monkeypatch.setitem(sys.modules["torchdiffeq._impl.odeint"].SOLVERS, "tsit5", _tsit5_solver())
    y0 = torch.tensor([0.7, -0.3, 2.0], dtype=F64)
    t = torch.tensor([t0, t1], dtype=F64)
    ours, theirs = [], []
    cd.odeint(_recording(ours), y0, t, method=method, rtol=1e-6, atol=1e-8)
    torchdiffeq.odeint(_recording(theirs), y0, t, method=method, rtol=1e-6, atol=1e-8)
    ours, theirs = [s for s, _ in ours], [s for s, _ in theirs]
    per_step = TABLEAUX[method].stages - 1  # FSAL: the first stage is the previous step's last
    ends = ours[1 + per_step::per_step]  # the last stage of each attempt is at its end
    cut = next(k for k, end in enumerate(ends) if close(end, t1))
    n = 2 + per_step * cut
    assert cut >= 20 and len(theirs) > n
    rejected = sum((t1 > t0) != (b > a) for a, b in zip(ends[:cut], ends[1:cut]))
    assert rejected >= 5  # a retry ends before the rejected attempt did
    for i, (a, b) in enumerate(zip(ours[:n], theirs[:n])):
        assert abs(a - b) <= 1e-6 * max(1.0, abs(a)), (i, a, b)
    assert (t1 - theirs[n + per_step - 1]) * (t1 - t0) < 0  # torchdiffeq's attempt there passes t1


def _judged(spec: Adaptive, t0: float, t1: float, order: int, verdicts: list, norm_leaves: int | None = None):
    """Start a controller at t0 (spec.first_step given), then for each (error, y0, y1) propose and judge;
    return [(h proposed, accepted)] and the proposal after the last verdict (None at t1)."""
    c = spec.controller(t0, t1, order=order, norm_leaves=norm_leaves)
    c.start(None, None, t0, None, ())
    t, seen = t0, []
    for error, y0, y1 in verdicts:
        h, t_next = c.propose(t)
        accepted = c.judge(error, y0, y1)
        seen.append((h, accepted))
        t = t_next if accepted else t
    return seen, None if t == t1 else c.propose(t)[0]


def _v(*xs) -> torch.Tensor:
    return torch.tensor(xs, dtype=F64)


def _next(h: float, r: float, r_prev: float, spec: Adaptive, p: int) -> float:
    """The step after one of size h with error ratio r, by hand: accepted (r <= 1) or rejected."""
    if r <= 1:
        return h * min(spec.ifactor, max(1.0, spec.safety * r ** (-1 / p + 0.75 * spec.beta) * r_prev ** spec.beta))
    return h * min(1.0, max(spec.dfactor, spec.safety * r ** (-1 / p)))


@pytest.mark.parametrize("direction", [1, -1])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_judge_is_the_pi_formula_on_the_rms_norm(beta, direction):
    """Error ratio r = max over leaves of RMS(e / (atol + rtol max(|y0|, |y1|))); values chosen so every r is
    exact: rtol = atol = 1/2 and max(|y0|, |y1|) = 3 make the tolerance 2 in each component, so e = [2, 14]
    has RMS ratio 5 (its max would be 7, the ratio against |y0| or |y1| alone differs too)."""
    spec = Adaptive(0.5, 0.5, first_step=0.01, beta=beta)
    p, y0, y1 = 5, _v(1.0, -3.0), _v(-3.0, 1.0)
    rs = [2.0 ** -20, 2.0 ** -10, 2.0 ** -4, 5.0, 0.625, 1.0, 5.0, 0.625]
    errors = {r: _v(2 * r, 2 * r) for r in rs}  # RMS ratio r
    errors[5.0], errors[0.625] = _v(2.0, 14.0), _v(0.25, 1.75)  # RMS 5 (max 7) and 0.625 (max 0.875)
    seen, last = _judged(spec, 0.5, 0.5 + direction * 100, p, [(errors[r], y0, y1) for r in rs])
    h, r_prev = direction * 0.01, 1e-4
    for (proposed, accepted), r in zip(seen, rs):
        assert proposed == h and accepted == (r <= 1)
        h = _next(h, r, r_prev, spec, p)
        r_prev = max(r, 1e-4) if r <= 1 else r_prev
    assert last == h
    assert seen[6][0] == seen[5][0]  # after r = 1 the factor is below 1: the step keeps its size


def test_judge_clamps_and_special_ratios():
    """r = 0: ifactor; r tiny: capped at ifactor; r huge or non-finite: dfactor; r just above 1: rejected."""
    spec, p = Adaptive(0.0, 1.0, first_step=0.25, safety=0.8, ifactor=4.0, dfactor=0.5), 3
    one = _v(1.0)
    verdicts = [(_v(0.0), one, one), (_v(1e-30), one, one), (_v(1e30), one, one), (_v(math.nan), one, one),
                (_v(math.inf), one, one), (_v(1.0 + 2 ** -52), one, one)]
    seen, last = _judged(spec, 0.0, 100.0, p, verdicts)
    assert [h for h, _ in seen] == [0.25, 1.0, 4.0, 2.0, 1.0, 0.5]
    assert [a for _, a in seen] == [True, True, False, False, False, False]
    assert last == 0.5 * (0.8 * (1.0 + 2 ** -52) ** (-1 / 3))


@pytest.mark.parametrize("direction", [1, -1])
def test_judge_takes_the_max_over_leaves_and_norm_leaves(direction):
    """Tuple states: r is the largest leaf's RMS ratio; norm_leaves=1 (the adjoint's seminorm) counts only the
    first leaf, so an error that rejects the step in the second leaf alone is accepted."""
    spec, p = Adaptive(0.0, 1.0, first_step=0.01), 5
    ones = (_v(1.0, 1.0), _v(1.0, 1.0, 1.0, 1.0))
    error = (_v(0.125, 0.875), _v(3.0, 3.0, 3.0, 3.0))  # RMS 0.625 and 3
    t1 = direction * 10.0
    seen, last = _judged(spec, 0.0, t1, p, [(error, ones, ones)])
    assert seen == [(direction * 0.01, False)] and last == _next(direction * 0.01, 3.0, 1e-4, spec, p)
    seen, last = _judged(spec, 0.0, t1, p, [(error, ones, ones)], norm_leaves=1)
    assert seen == [(direction * 0.01, True)] and last == _next(direction * 0.01, 0.625, 1e-4, spec, p)
    swapped = (error[1][:2], error[0].repeat(2))  # the large leaf first, RMS 3 and 0.625
    seen, _ = _judged(spec, 0.0, t1, p, [(swapped, (ones[0], ones[1]), (ones[0], ones[1]))], norm_leaves=1)
    assert seen == [(direction * 0.01, False)]


def _rms(xs: list[torch.Tensor]) -> float:
    return max(float(x.pow(2).mean().sqrt()) for x in xs)


def _first_step_by_hand(f, t0: float, t1: float, y0: torch.Tensor, rtol: float, atol: float, p: int) -> dict:
    """Hairer, Norsett & Wanner II.4 as torchdiffeq's _select_initial_step (its order - 1 = p here), taken
    toward t1, with the probe step h0 and the step at most |t1 - t0| (torchdiffeq caps neither):
    the probe's time and state, h0, h1 and the first step h."""
    d, span = (1.0 if t1 > t0 else -1.0), abs(t1 - t0)
    scale = atol + rtol * y0.abs()
    f0 = f(torch.tensor(t0, dtype=F64), y0)
    d0, d1 = _rms([y0 / scale]), _rms([f0 / scale])
    h0 = min(1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1, span)
    t_probe, y_probe = t0 + d * h0, y0 + d * h0 * f0
    d2 = _rms([(f(torch.tensor(t_probe, dtype=F64), y_probe) - f0) / scale]) / h0
    h1 = max(1e-6, h0 * 1e-3) if max(d1, d2) <= 1e-15 else (0.01 / max(d1, d2)) ** (1 / p)
    return dict(t_probe=t_probe, y_probe=y_probe, h0=h0, h1=h1, h=d * min(100 * h0, h1, span))


def _logging(f, log: list):
    def g(t, y):
        log.append((float(t), y.detach().clone()))
        return f(t, y)
    return g


_smooth = lambda t, y: torch.cos(4 * t) * y + 3 * t ** 2
FIRST_STEP_CASES = {  # f, y0, which of 100 h0, h1, |t1 - t0| is the first step
    "h1 decides": (_smooth, _v(0.7, -1.3), "h1"),
    "100 h0 decides": (lambda t, y: 1e4 + 0 * y, _v(0.7, -1.3), "100 h0"),
    "small state (1e-5 < d0 < 1)": (_smooth, _v(3e-8, -5e-8), "100 h0"),
    "slow field (1e-5 < d1 < 1)": (lambda t, y: 1e-7 * torch.cos(4 * t) + 0 * y, _v(0.7, -1.3), "h1"),
    "zero field": (lambda t, y: 0 * y, _v(0.7, -1.3), "h1"),
    "short interval": (lambda t, y: 0 * y, _v(0.7, -1.3), "span"),
}


@pytest.mark.parametrize("t0,t1", [(0.5, 3.0), (0.5, -2.0)])
@pytest.mark.parametrize("case", FIRST_STEP_CASES)
def test_first_step_is_hairers_rule(case, t0, t1):
    """The probe evaluation (time and state, taken in the direction of travel) and the first attempt's end
    equal the hand computation, in cases that reach each branch and each bound of the rule."""
    f, y0, decides = FIRST_STEP_CASES[case]
    rtol, atol, p = 1e-5, 1e-7, 5
    if case == "short interval":
        t1 = t0 + (t1 - t0) * 1e-7
    log = []
    cd.odeint(_logging(f, log), y0, torch.tensor([t0, t1], dtype=F64), method="dopri5", rtol=rtol, atol=atol)
    want = _first_step_by_hand(f, t0, t1, y0, rtol, atol, p)
    h = want["h"]
    assert log[0][0] == t0 and torch.equal(log[0][1], y0)
    assert close(log[1][0], want["t_probe"]) and torch.allclose(log[1][1], want["y_probe"], rtol=1e-14, atol=0)
    assert close(log[2][0], t0 + h / 5) and close(log[6][0], t0 + h)  # dopri5's stages c = 1/5 and c = 1
    assert abs(h) == {"h1": want["h1"], "100 h0": 100 * want["h0"], "span": abs(t1 - t0)}[decides]
    if case == "zero field":
        assert h == math.copysign(1e-6, t1 - t0)


@pytest.mark.parametrize("case", ["d0 = 1e-5", "d1 = 1e-5", "max(d1, d2) = 1e-15"])
def test_first_step_thresholds_are_strict(case):
    """At its thresholds the rule takes the formula (d0 or d1 equal to 1e-5: h0 = 0.01 d0/d1) or the floor
    (max(d1, d2) = 1e-15: h1 = max(1e-6, 1e-3 h0)), as torchdiffeq. atol = 1 and rtol = 1e-300 make the
    tolerance exactly 1, so d0 = RMS(y0) and d1 = RMS(f0) are the exact thresholds."""
    y0, slope = {"d0 = 1e-5": (1e-5, 1.0), "d1 = 1e-5": (1e-3, 1e-5), "max(d1, d2) = 1e-15": (1.0, 1e-15)}[case]
    f = lambda t, y: torch.full_like(y, slope)
    log = []
    cd.odeint(_logging(f, log), _v(y0), _v(0.0, 3.0), method="dopri5", rtol=1e-300, atol=1.0)
    want = _first_step_by_hand(f, 0.0, 3.0, _v(y0), 1e-300, 1.0, 5)
    assert log[1][0] == want["t_probe"] and close(log[6][0], want["h"])
    formula, floor = 0.01 * y0 / slope, 1e-6  # h0 by the formula, or its floor
    assert want["h0"] == {"d0 = 1e-5": formula, "d1 = 1e-5": formula, "max(d1, d2) = 1e-15": floor}[case]
    if case == "max(d1, d2) = 1e-15":
        assert want["h1"] == max(1e-6, 1e-3 * want["h0"])




@pytest.mark.parametrize("t0,t1", [(0.5, 0.51), (0.5, 0.49)])
def test_first_step_of_a_pair_without_fsal_evaluates_f0_itself(t0, t1):
    """Heun-Euler 2(1) carries no derivative between steps: the controller evaluates f0 = f(t0, y0), seen
    from the side of travel (one ulp past a jump declared at t0), before the probe."""
    f, y0 = _smooth, _v(0.7, -1.3)
    log = []
    cd.odeint(_logging(f, log), y0, _v(t0, t1), method=RungeKutta(ADAPTIVE_HEUN), rtol=1e-5, atol=1e-7,
              options={"jump_t": [t0]})
    want = _first_step_by_hand(f, t0, t1, y0, 1e-5, 1e-7, 2)
    side = math.nextafter(t0, t1)
    assert log[0][0] == side and torch.equal(log[0][1], y0)
    assert close(log[1][0], want["t_probe"]) and torch.allclose(log[1][1], want["y_probe"], rtol=1e-14, atol=0)
    assert log[2][0] == side and close(log[3][0], t0 + want["h"])  # the step's stages c = 0 and c = 1


@pytest.mark.parametrize("t1", [3.0, -2.0])
def test_the_probe_sees_a_jump_from_the_side_of_travel(t1):
    """The probe at t0 + 1e-6 (zero field) is evaluated one ulp past a jump declared exactly there."""
    log = []
    probe = 0.5 + math.copysign(1e-6, t1 - 0.5)
    cd.odeint(_logging(lambda t, y: 0 * y, log), _v(1.0), _v(0.5, t1), method="dopri5", options={"jump_t": [probe]})
    assert log[1][0] == math.nextafter(probe, t1)


def test_given_first_step_goes_toward_t1():
    """options["first_step"]: its size toward t1, whatever its sign; a first step past t1 ends on it."""
    seen, last = _judged(Adaptive(0.0, 1.0, first_step=-3.0), 1.0, -1.0, 5, [(_v(0.0), _v(1.0), _v(1.0))])
    assert seen == [(-2.0, True)] and last is None
    seen, last = _judged(Adaptive(0.0, 1.0, first_step=0.5), 1.0, -1.0, 5, [(_v(0.0), _v(1.0), _v(1.0))])
    assert seen == [(-0.5, True)] and last == -1.5  # grown tenfold (r = 0), cut to end on t1


def test_min_step_is_ten_float_spacings_toward_travel():
    assert min_step(1.0, 1) == 10 * 2.0 ** -52 and min_step(1.0, -1) == 10 * 2.0 ** -53
    assert min_step(-1.0, 1) == 10 * 2.0 ** -53 and min_step(-1.0, -1) == 10 * 2.0 ** -52
    assert min_step(0.0, 1) == 10 * math.ulp(0.0) and min_step(3e5, -1) == 10 * math.ulp(3e5)


@pytest.mark.parametrize("t0,direction", [(0.5, 1), (-0.5, -1), (1.0, -1)])
def test_rejections_stop_at_the_min_step(t0, direction):
    """Non-finite errors halve h (dfactor 1/2) from 2^20 min_step(t): 20 rejections leave a retry of exactly
    min_step (allowed); the 21st, whose retry would be shorter, is a SolverError naming t, h, rtol and atol."""
    floor = min_step(t0, direction)
    spec = Adaptive(1e-6, 1e-9, first_step=2.0 ** 20 * floor, dfactor=0.5)
    c = spec.controller(t0, t0 + direction, order=5)
    c.start(None, None, t0, None, ())
    for _ in range(20):
        c.propose(t0)
        assert not c.judge(_v(math.nan), _v(1.0), _v(1.0))
    assert c.propose(t0) == (direction * floor, t0 + direction * floor)
    with pytest.raises(cd.SolverError, match="underflow") as err:
        c.judge(_v(math.nan), _v(1.0), _v(1.0))
    assert f"at t={t0} (h={direction * floor / 2}, rtol=1e-06, atol=1e-09)" in str(err.value)


class _NoShrink(_AdaptiveController):
    """The planted fault that once hung the suite: a rejected step is retried at the same size."""

    def judge(self, error, y0, y1) -> bool:
        h = self.h_used
        accepted = super().judge(error, y0, y1)
        if not accepted:
            self.h = h
        return accepted


@pytest.mark.parametrize("safety,dfactor,span,allowed", [(0.9, 0.2, 1.0, 327), (0.3, 0.5, 1.25, 51)])
def test_a_run_of_rejections_that_does_not_shrink_h_is_a_stall(safety, dfactor, span, allowed):
    """Allowed in a row at t: 1 + log(span / min_step(t)) / log(1 / max(safety, dfactor)) rejections (a working
    controller reaches min_step sooner): 327.8 for the defaults at t = 0.5 over [0.5, 1.5]; exactly 51 when
    span / min_step = 2^50 and max(safety, dfactor) = 1/2. One more is a SolverError naming t, h, rtol, atol;
    an accepted step starts a new run."""
    spec = Adaptive(0.5, 0.5, first_step=0.1, safety=safety, dfactor=dfactor)
    c = _NoShrink(spec, 0.5, 0.5 + span, 5, (), None)
    c.start(None, None, 0.5, None, ())
    t = 0.5
    for _run in range(2):  # at t = 0.5, then (min_step alike) after an accepted step
        for _ in range(allowed):
            c.propose(t)
            assert not c.judge(_v(5.0), _v(1.0), _v(1.0))  # tolerance 1, ratio 5
        h, _ = c.propose(t)
        with pytest.raises(cd.SolverError, match=f"stalled \\({allowed + 1} rejections in a row\\)") as err:
            c.judge(_v(5.0), _v(1.0), _v(1.0))
        assert f"at t={t} (h={_next(h, 5.0, 1e-4, spec, 5)}, rtol=0.5, atol=0.5)" in str(err.value)
        _, t = c.propose(t)
        assert c.judge(_v(0.0), _v(1.0), _v(1.0)) and min_step(t, 1) == min_step(0.5, 1)


@pytest.mark.parametrize("sign", [1, -1])
def test_blow_up_is_a_quick_solver_error(sign):
    """y' = sign y^2, y(0) = 1 blows up at t = sign; dopri5 from 0 to 2 sign raises there within seconds,
    naming t (at the blow-up), h (below the minimum step there), rtol and atol."""
    start = time.perf_counter()
    with pytest.raises(cd.SolverError) as err:
        cd.odeint(lambda t, y: sign * y ** 2, _v(1.0), _v(0.0, 2.0 * sign), method="dopri5", rtol=1e-7, atol=1e-9)
    assert time.perf_counter() - start < 10
    found = re.search(r"at t=(\S+) \(h=(\S+), rtol=1e-07, atol=1e-09\)", str(err.value))
    t, h = float(found[1]), float(found[2])
    assert abs(t - sign) < 1e-6 and 0 < sign * h < min_step(t, sign)
    assert str(err.value).startswith("step size underflow") and str(err.value).endswith(
        "the error estimate stayed non-finite or too large (a state or field that blows up, or tolerances too "
        "tight for the dtype)")


def test_undeclared_jump_in_the_adjoint_backward_solve_finishes():
    """The solve that hung with the safety factor dropped on rejection (torchdiffeq's jump_t test, f jumping at
    t = 0.5 undeclared, rtol 1e-7, atol 1e-6): forward and adjoint backward finish, within seconds."""
    f = lambda t, x: -0.5 * x if t < 0.5 else x ** 2
    x0 = _v(1.0, 2.0).requires_grad_()
    start = time.perf_counter()
    xs = cd.odeint_adjoint(f, x0, _v(0.0, 1.0), atol=1e-6, method="dopri5", adjoint_params=())
    xs.sum().backward()
    assert time.perf_counter() - start < 10
    assert torch.isfinite(x0.grad).all()


@pytest.mark.parametrize("option,value", [("safety", 1.0), ("safety", 0.0), ("dfactor", 1.0), ("dfactor", -0.2),
                                          ("ifactor", 0.5), ("safety", math.nan)])
def test_factors_that_could_stall_are_rejected(option, value):
    """safety and dfactor in (0, 1) (a rejected step is retried shorter), ifactor >= 1."""
    with pytest.raises(ValueError, match=option):
        cd.solve(lambda t, y: -y, _v(1.0), method="dopri5", t0=0.0, t1=1.0, options={option: value})


def test_valid_factors_at_their_bounds_are_accepted():
    sol = cd.solve(lambda t, y: -y, _v(1.0), method="dopri5", t0=0.0, t1=1.0,
                   options={"safety": 0.999, "dfactor": 0.001, "ifactor": 1.0})
    assert abs(float(sol.ys[-1, 0]) - math.exp(-1)) < 1e-6


@pytest.mark.parametrize("case", ["h below half an ulp of t", "non-finite h"])
def test_a_first_step_that_cannot_advance_t_is_a_solver_error(case):
    """A proposal with t + h == t (first_step 2^-53 at t = 1: 1 - 2^-53 would still differ from 1) fails
    before any step, naming t, h, rtol and atol; f non-finite at t0 (nan or inf) fails naming f(t0, y0)."""
    if case == "non-finite h":
        for bad in (math.nan, math.inf):
            with pytest.raises(cd.SolverError, match=r"^the derivative f\(t0, y0\) at the start \(t0 = 1.0\) is "
                                                      "not finite: no step size can be chosen$"):
                cd.odeint(lambda t, y: y * bad, _v(1.0), _v(1.0, 2.0), method="dopri5", rtol=1e-6, atol=1e-8)
        return
    with pytest.raises(cd.SolverError) as err:
        cd.odeint(lambda t, y: -y, _v(1.0), _v(1.0, 2.0), method="dopri5", rtol=1e-6, atol=1e-8,
                  options={"first_step": 2.0 ** -53})
    assert str(err.value).startswith(f"step size underflow at t=1.0 (h={2.0 ** -53!r}, rtol=1e-06, atol=1e-08): ")


def test_max_num_steps_counts_attempts():
    """max_num_steps = 3: three attempts (accepted or rejected), the fourth is a SolverError."""
    spec = Adaptive(0.5, 0.5, first_step=0.1, max_num_steps=3)
    c = spec.controller(0.0, 10.0, order=5)
    c.start(None, None, 0.0, None, ())
    t = 0.0
    for r in (0.5, 5.0, 0.5):
        _, t_next = c.propose(t)
        t = t_next if c.judge(_v(r), _v(1.0), _v(1.0)) else t
    with pytest.raises(cd.SolverError) as err:
        c.propose(t)
    assert str(err.value) == (f"max_num_steps=3 exceeded at t={t} (h={c.h}); raise options['max_num_steps'], "
                              "loosen rtol/atol, or check the field for stiffness")


@pytest.mark.parametrize("t0,t1,inside", [(0.2, 1.2, [0.3, 0.7, 1.2]), (1.2, 0.2, [0.7, 0.3, 0.2])])
def test_steps_end_on_the_stops_inside_the_interval_in_order(t0, t1, inside):
    """Stops at or outside the ends, repeated or unordered, are dropped or sorted in the direction of travel;
    a step that would pass the next stop ends on it, and the next step starts past it."""
    stops = (0.7, 0.3, 0.2, 1.2, -0.5, 1.5, 0.3, 0.1)
    c = Adaptive(0.5, 0.5, first_step=5.0).controller(t0, t1, order=5, stops=stops)
    c.start(None, None, t0, None, ())
    assert c.stops == frozenset(inside[:2])
    t = t0
    for stop in inside:
        h, t_next = c.propose(t)
        assert (h, t_next) == (stop - t, stop)
        assert c.judge(_v(0.0), _v(1.0), _v(1.0))
        t = t_next


def test_close_is_symmetric_and_relative_to_the_larger_magnitude():
    """|a - b| <= 1e-12 max(1, |a|, |b|), at its exact boundaries: 1e-12 below magnitude 1, and a pair whose
    difference lies between 1e-12 |b| and 1e-12 |a|."""
    assert close(0.0, 1e-12) and close(1e-12, 0.0) and close(0.0, 1e-13)
    assert not close(0.0, 1.5e-12) and not close(0.0, 2e-12)
    assert close(1e6, 1e6 + 1e-7) and not close(1e6, 1e6 + 2e-6)
    a = 5e15 * 2.0 ** -52
    b = a - 5000 * 2.0 ** -52  # a - b = 1e-12 a, more than 1e-12 b
    assert a - b > 1e-12 * b and close(a, b) and close(b, a) and close(-a, -b)


def _walk(controller, t0: float) -> list[tuple[float, float]]:
    """Every (h, t_next) a fixed-grid controller proposes from t0, each step accepted."""
    steps, t = [], t0
    while t != controller.times[-1]:
        h, t = controller.propose(t)
        assert controller.judge(None, None, None)
        steps.append((h, t))
    return steps


def test_uniform_grid_keeps_one_step_size_both_ways():
    """Times rounded once from t0 + j (t1 - t0)/N; every step h = (t1 - t0)/N, though here the rounded times
    differ by 0.19999999999999998, 0.2 and 0.19999999999999996; reversed for the adjoint with -h."""
    g = FixedGrid.uniform(0.1, 0.7, 3)
    h = (0.7 - 0.1) / 3
    assert g.times == (0.1, 0.3, 0.5, 0.7) and g.h == h and g.steps == 3
    assert _walk(g.controller(0.1, 0.7), 0.1) == [(h, 0.3), (h, 0.5), (h, 0.7)]
    assert _walk(g.controller(0.7, 0.1), 0.7) == [(-h, 0.5), (-h, 0.3), (-h, 0.1)]
    assert g.controller(0.1, 0.7).step_sizes() == {0.1: h, 0.3: h, 0.5: h}
    assert g.controller(0.7, 0.1).step_sizes() == {0.7: -h, 0.5: -h, 0.3: -h}


def test_given_grid_steps_between_its_times_both_ways():
    g = FixedGrid((0.0, 0.25, 1.0))
    assert g.h is None and g.steps == 2
    assert _walk(g.controller(0.0, 1.0), 0.0) == [(0.25, 0.25), (0.75, 1.0)]
    assert _walk(g.controller(1.0, 0.0), 1.0) == [(-0.75, 0.25), (-0.25, 0.0)]
    assert g.controller(1.0, 0.0).step_sizes() == {1.0: -0.75, 0.25: -0.25}


@pytest.mark.parametrize("t0,t1", [(0.0, 0.5), (0.25, 1.0), (1.0, 0.25), (0.5, 1.0)])
def test_a_grid_marches_only_between_its_ends(t0, t1):
    with pytest.raises(ValueError) as err:
        FixedGrid((0.0, 0.25, 1.0)).controller(t0, t1)
    assert str(err.value) == f"the fixed grid runs from 0.0 to 1.0, not {t0} to {t1}"


@pytest.mark.parametrize("t0,t1,step,times", [
    (0.0, 1.0, 0.3, (0.0, 0.3, 0.6, 0.8999999999999999, 1.0)),
    (1.0, 0.0, 0.3, (1.0, 0.7, 0.4, 0.10000000000000009, 0.0)),
    (0.0, 1.0, 0.25, (0.0, 0.25, 0.5, 0.75, 1.0)),
    (0.0, 0.9, 0.3, (0.0, 0.3, 0.6, 0.9)),
    (0.0, 0.6000000000000001, 0.1, (0.0, 0.1, 0.2, 0.30000000000000004, 0.4, 0.5, 0.6000000000000001)),
    (0.0, 1.0000000000000004, 1.0, (0.0, 1.0000000000000004)),  # 1.0 dropped: t1 to 1e-12
    (0.0, 1e-13, 1.0, (0.0, 1e-13)),  # t0 is t1 to 1e-12, but a grid keeps its two ends
    (0.0, 1.0, 2.0, (0.0, 1.0)),
    (2.0, -1.0, -5.0, (2.0, -1.0)),
])
def test_step_size_grid_is_torchdiffeqs(t0, t1, step, times):
    """options={"step_size": s}: t0 + j s toward t1 for j < ceil(|t1 - t0|/s + 1), the last replaced by t1
    (torchdiffeq's grid), and a time within 1e-12 of t1 before it dropped."""
    g = FixedGrid.from_step_size(t0, t1, step)
    assert g.times == times and g.h is None
