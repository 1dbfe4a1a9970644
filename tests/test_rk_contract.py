"""RungeKutta's contract, case by case: the step against a plain loop over the Butcher tableau
(y1, the error estimate, the stages, the FSAL state), the time and side of every stage in both
directions, step_from, the discrete adjoint (taped_step / step_vjp) against autograd through the
step, and dense output exact on polynomial solutions of the interpolant's degree."""
import math

import pytest
import torch

from contdepth.solvers import TABLEAUX, ButcherTableau, RungeKutta
from contdepth.solvers.tableau import RK38
from contdepth.terms import Term

DT = torch.float64


class Recording(Term):
    """f(t, y) = sin(t) y^2 - p t (or ``g(t)`` alone), recording every (t, side) it is called at; a
    hand-written vjp through autograd, counted."""

    def __init__(self, p: torch.Tensor | None = None, g=None) -> None:
        self.p = torch.tensor(0.7, dtype=torch.float64) if p is None else p
        self.g = g
        self.calls: list[tuple[float, int]] = []
        self.vjps: list[tuple[float, int]] = []

    def __call__(self, t, y, side):
        self.calls.append((t, side))
        if self.g is not None:
            return torch.full_like(y, self.g(t))
        return math.sin(t) * y * y - self.p * t

    @property
    def has_vjp(self) -> bool:
        return True

    def params(self):
        return [self.p]

    def vjp(self, t, y, side, f, cotangent, grads, scale=1.0):
        self.vjps.append((t, side))
        y = y.detach().requires_grad_()
        p = self.p.detach().requires_grad_()
        out = math.sin(t) * y * y - p * t
        gy, gp = torch.autograd.grad(out, (y, p), cotangent)
        grads[0].add_(scale * gp)
        return gy


def _reference(tab: ButcherTableau, f, t: float, h: float, y: torch.Tensor):
    """A plain loop over (c, A, b): the stages, y1 and the error estimate."""
    ks = []
    for i, row in enumerate(tab.a):
        yi = y + h * sum((aij * kj for aij, kj in zip(row, ks)), torch.zeros_like(y))
        ks.append(f(t + tab.c[i] * h, yi))
    y1 = y + h * sum(bi * ki for bi, ki in zip(tab.b, ks))
    err = None if tab.b_error is None else h * sum(ei * ki for ei, ki in zip(tab.b_error, ks))
    return y1, err, ks


def _f(t, y):
    return math.sin(t) * y * y - 0.7 * t


Y = torch.tensor([0.3, -0.5, 1.1], dtype=torch.float64)


@pytest.mark.parametrize("name", sorted(TABLEAUX) + ["rk38"])
@pytest.mark.parametrize("h", [0.1, -0.1])
def test_a_step_is_the_butcher_loop(name, h):
    tab = RK38 if name == "rk38" else TABLEAUX[name]
    stepper = RungeKutta(tab)
    term = Recording()
    t = 0.4
    state = stepper.init(term, t, Y, 1 if h > 0 else -1)
    y1, state1, error, ks = stepper.step(term, t, h, Y, state)
    ry1, rerr, rks = _reference(tab, _f, t, h, Y)
    torch.testing.assert_close(y1, ry1, rtol=1e-14, atol=1e-15)
    assert len(ks) == tab.stages
    for k, rk in zip(ks, rks):
        torch.testing.assert_close(k, rk, rtol=1e-14, atol=1e-15)
    if tab.adaptive:
        torch.testing.assert_close(error, rerr, rtol=1e-13, atol=1e-16)
    else:
        assert error is None
    if tab.fsal:
        assert len(state) == 1 and len(state1) == 1 and state1[0] is ks[-1]
        torch.testing.assert_close(state1[0], _f(t + h, y1), rtol=1e-14, atol=1e-15)
    else:
        assert state == () and state1 == ()
    # each stage evaluated once (an FSAL pair's first comes from the state: one more in init)
    assert len(term.calls) == tab.stages


@pytest.mark.parametrize("h", [0.25, -0.25])
def test_stage_times_and_sides(h):
    """A stage inside the step sees the side ahead (direction), the stage at c = 1 the side behind."""
    d = 1 if h > 0 else -1
    term = Recording()
    RungeKutta(TABLEAUX["rk4"]).step(term, 1.0, h, Y, ())
    assert term.calls == [(1.0, d), (1.0 + h / 2, d), (1.0 + h / 2, d), (1.0 + h, -d)]
    term = Recording()
    dopri5 = RungeKutta(TABLEAUX["dopri5"])
    state = dopri5.init(term, 1.0, Y, d)
    dopri5.step(term, 1.0, h, Y, state)
    c = TABLEAUX["dopri5"].c
    assert term.calls == [(1.0, d)] + [(1.0 + ci * h, d) for ci in c[1:5]] + [(1.0 + h, -d)] * 2


def test_the_stepper_mirrors_its_tableau():
    for tab in list(TABLEAUX.values()) + [RK38]:
        s = RungeKutta(tab)
        assert (s.tableau, s.name, s.order, s.adaptive, s.fsal) == (tab, tab.name, tab.order, tab.adaptive, tab.fsal)
        assert repr(s) == f"RungeKutta({tab.name!r})"
        assert s.has_vjp == (not tab.adaptive and not tab.fsal)
    assert [n for n in TABLEAUX if RungeKutta(TABLEAUX[n]).has_vjp] == [
        "euler", "midpoint", "rk4", "heun2", "heun3"]


def test_init_is_the_derivative_seen_from_the_side_of_travel_for_fsal_only():
    term = Recording()
    (f0,) = RungeKutta(TABLEAUX["bosh3"]).init(term, 0.5, Y, -1)
    torch.testing.assert_close(f0, _f(0.5, Y), rtol=0, atol=0)
    assert term.calls == [(0.5, -1)]
    assert RungeKutta(TABLEAUX["rk4"]).init(term, 0.5, Y, 1) == () and len(term.calls) == 1


def test_step_from_reuses_the_first_stage():
    stepper = RungeKutta(RK38)
    term = Recording()
    f0 = _f(0.2, Y)
    y1 = stepper.step_from(term, 0.2, -0.1, Y, f0)
    assert term.calls == [(0.2 - 0.1 / 3, -1), (0.2 - 0.2 / 3, -1), (0.2 - 0.1, 1)]
    torch.testing.assert_close(y1, _reference(RK38, _f, 0.2, -0.1, Y)[0], rtol=1e-14, atol=1e-15)
    # the given f0 is the one used
    y1_other = stepper.step_from(Recording(), 0.2, -0.1, Y, f0 + 1.0)
    assert not torch.allclose(y1, y1_other)


# midpoint with a last stage at c = 1 that no weight reads (not FSAL: its row is not b)
IDLE_LAST = ButcherTableau("idle_last", 2, c=(0.0, 0.5, 1.0), a=((), (0.5,), (1.0, 0.0)), b=(0.0, 1.0, 0.0))


@pytest.mark.parametrize("tab", [TABLEAUX["euler"], TABLEAUX["midpoint"], TABLEAUX["rk4"], TABLEAUX["heun3"], RK38,
                                 IDLE_LAST], ids=lambda t: t.name)
@pytest.mark.parametrize("h", [0.3, -0.3])
def test_the_discrete_adjoint_is_autograd_through_the_step(tab, h):
    stepper = RungeKutta(tab)
    assert stepper.has_vjp
    p = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    y = Y.clone().requires_grad_()
    y1_bar = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    y1, *_ = stepper.step(Recording(p), 0.4, h, y, ())
    want_y, want_p = torch.autograd.grad(y1, (y, p), y1_bar)

    term = Recording(p.detach())
    y1_taped, tape = stepper.taped_step(term, 0.4, h, Y)
    torch.testing.assert_close(y1_taped, y1.detach(), rtol=0, atol=0)
    grads = [torch.zeros((), dtype=torch.float64)]
    got_y = stepper.step_vjp(term, h, tape, y1_bar, grads)
    torch.testing.assert_close(got_y, want_y, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grads[0], want_p, rtol=1e-13, atol=1e-15)
    # one vjp per stage some weight reads, at the stage's time and side
    d = 1 if h > 0 else -1
    read = [i for i in range(tab.stages)
            if tab.b[i] or any(tab.a[l][i] for l in range(i + 1, tab.stages))]
    assert sorted(term.vjps) == sorted(stepper._stage_time(0.4, h, i) for i in read)
    assert stepper._stage_time(0.4, h, 0) == (0.4, d)


def test_an_unread_last_stage_is_skipped_by_the_adjoint():
    term = Recording()
    stepper = RungeKutta(IDLE_LAST)
    _, tape = stepper.taped_step(term, 0.0, 0.5, Y)
    stepper.step_vjp(term, 0.5, tape, torch.ones(3, dtype=torch.float64), [torch.zeros((), dtype=torch.float64)])
    assert term.vjps == [(0.25, 1), (0.0, 1)]


@pytest.mark.parametrize("name,degree", [("dopri5", 4), ("tsit5", 4), ("dopri8", 4), ("bosh3", 3),
                                         ("adaptive_heun", 2), ("fehlberg2", 2)])
@pytest.mark.parametrize("h", [0.5, -0.5])
def test_dense_output_is_exact_on_a_polynomial_of_its_degree(name, degree, h):
    """y' = n t^(n-1), y = t^n, n the interpolant's degree: every pair's dense output is t^n exactly."""
    stepper = RungeKutta(TABLEAUX[name])
    term = Recording(g=lambda t: degree * t ** (degree - 1))
    t = 0.75
    y0 = torch.full((2,), t ** degree, dtype=torch.float64)
    state = stepper.init(term, t, y0, 1 if h > 0 else -1)
    y1, _, _, ks = stepper.step(term, t, h, y0, state)
    for s in (0.0, 0.2, 0.5, 0.7, 1.0):
        got = stepper.interpolate(y0, y1, ks, h, s)
        torch.testing.assert_close(got, torch.full((2,), (t + s * h) ** degree, dtype=torch.float64),
                                   rtol=1e-12, atol=1e-13)


def test_fixed_step_dense_output_is_the_chord():
    stepper = RungeKutta(TABLEAUX["midpoint"])
    y1, _, _, ks = stepper.step(Recording(), 0.0, 0.5, Y, ())
    assert torch.equal(stepper.interpolate(Y, y1, ks, 0.5, 0.3), torch.lerp(Y, y1, 0.3))


def test_the_quartic_meets_its_five_conditions():
    """p(0) = y0, p(1) = y1, p(1/2) = y_mid, p'(0) = h f0, p'(1) = h f1 (dopri5 on a nonpolynomial f)."""
    stepper = RungeKutta(TABLEAUX["dopri5"])
    term = Recording()
    h = 0.4
    y1, _, _, ks = stepper.step(term, 0.3, h, Y, stepper.init(term, 0.3, Y, 1))
    p = lambda s: stepper.interpolate(Y, y1, ks, h, s)  # noqa: E731
    mid = Y + h * sum(w * k for w, k in zip(TABLEAUX["dopri5"].mid, ks))
    torch.testing.assert_close(p(0.0), Y, rtol=0, atol=0)
    torch.testing.assert_close(p(1.0), y1, rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(p(0.5), mid, rtol=1e-14, atol=1e-14)
    e = 1e-6  # central differences of a quartic: error e^2 p''' / 6
    torch.testing.assert_close((p(e) - p(-e)) / (2 * e), h * ks[0], rtol=1e-8, atol=1e-9)
    torch.testing.assert_close((p(1 + e) - p(1 - e)) / (2 * e), h * ks[-1], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", ["bosh3", "dopri5", "tsit5", "dopri8"])
def test_an_fsal_step_ends_on_the_state_its_last_stage_saw(name):
    """y1 is the last stage's input itself, so the carried derivative is f(t + h, y1) bit for bit."""
    stepper = RungeKutta(TABLEAUX[name])
    term = Recording()
    state = stepper.init(term, 0.4, Y, 1)
    y1, (f1,), _, _ = stepper.step(term, 0.4, 0.3, Y, state)
    assert torch.equal(f1, _f(0.4 + 0.3, y1))


class Saturating(Term):
    """f(t, y) = tanh(p y): its vjp reads f, cotangent * p (1 - f^2), and dp: cotangent * y (1 - f^2)."""

    def __init__(self, p: torch.Tensor) -> None:
        self.p = p

    def __call__(self, t, y, side):
        return torch.tanh(self.p * y)

    @property
    def has_vjp(self) -> bool:
        return True

    def params(self):
        return [self.p]

    def vjp(self, t, y, side, f, cotangent, grads, scale=1.0):
        slope = 1 - f * f
        grads[0].add_(scale * (cotangent * y * slope).sum())
        return cotangent * self.p * slope


@pytest.mark.parametrize("name", ["midpoint", "rk4", "heun3"])
def test_the_adjoint_hands_each_stage_its_own_derivative(name):
    stepper = RungeKutta(TABLEAUX[name])
    p = torch.tensor(1.3, dtype=DT, requires_grad=True)
    y = Y.clone().requires_grad_()
    y1_bar = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    y1, *_ = stepper.step(Saturating(p), 0.0, 0.4, y, ())
    want_y, want_p = torch.autograd.grad(y1, (y, p), y1_bar)
    term = Saturating(p.detach())
    _, tape = stepper.taped_step(term, 0.0, 0.4, Y)
    grads = [torch.zeros((), dtype=DT)]
    got_y = stepper.step_vjp(term, 0.4, tape, y1_bar, grads)
    torch.testing.assert_close(got_y, want_y, rtol=1e-13, atol=1e-15)
    torch.testing.assert_close(grads[0], want_p, rtol=1e-13, atol=1e-15)


def test_quadrature_weights_are_b_for_fixed_steps_without_fsal_state():
    for name, tab in TABLEAUX.items():
        expected = None if tab.adaptive or tab.fsal else tab.b
        assert RungeKutta(tab).quadrature_weights == expected, name
    assert RungeKutta(TABLEAUX["rk4"]).quadrature_weights == (1 / 6, 1 / 3, 1 / 3, 1 / 6)


def test_the_adjoint_quadrature_follows_the_declared_weights():
    """The adjoint takes dL/dtheta by quadrature only where a stepper declares quadrature_weights: its backward
    state is then (y, a); with the weights removed it integrates (y, a, dL/dtheta) together. Both equal backprop
    to 1e-12 (y' = tanh(W y + b) cos t, rk4, 8 steps)."""
    import contdepth as cd

    class Field(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3).double()
            self.seen = []

        def forward(self, t, y):
            return torch.tanh(self.lin(y)) * torch.cos(t)

        def callback_step_adjoint(self, t0, y0, dt):
            self.seen.append(len(y0))

    torch.manual_seed(0)
    field, y0 = Field(), torch.randn(2, 3, dtype=DT)

    def grads(gradient, method):
        field.zero_grad()
        field.seen.clear()
        cd.solve(field, y0, method=method, steps=8, t0=0.0, t1=1.0, gradient=gradient).y1.pow(2).sum().backward()
        return [p.grad.clone() for p in field.parameters()], set(field.seen)

    without = RungeKutta(TABLEAUX["rk4"])
    without.quadrature_weights = None
    (reference, _), (quadrature, by_quadrature), (augmented, by_augmented) = (
        grads("backprop", "rk4"), grads("adjoint", RungeKutta(TABLEAUX["rk4"])), grads("adjoint", without))
    assert by_quadrature == {2} and by_augmented == {3}
    for r, q, a in zip(reference, quadrature, augmented):
        assert torch.allclose(q, r, atol=1e-12) and torch.allclose(a, r, atol=1e-12)
