"""The symplectic steppers' contract, case by case: the pair-state error in full, one step of each
by hand (which half is asked for, at which time, from which side), the inverse undoing the step,
and linear dense output."""
import pytest
import torch

from contdepth.solvers.symplectic import Leapfrog, SymplecticEuler
from contdepth.terms import Term

DT = torch.float64


class Separable(Term):
    """dq/dt = f(t, p) = t + p^2, dp/dt = g(t, q) = -t q^3, recording (t, side, i) of every half."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int, int]] = []

    def half(self, t, y, side, i):
        self.calls.append((t, side, i))
        q, p = y
        return t + p * p if i == 0 else -t * q ** 3


Q = torch.tensor([0.4, -1.1], dtype=DT)
P = torch.tensor([0.9, 0.2], dtype=DT)


def f(t, p):
    return t + p * p


def g(t, q):
    return -t * q ** 3


@pytest.mark.parametrize("stepper", [SymplecticEuler(), Leapfrog()], ids=lambda s: s.name)
def test_a_single_tensor_or_a_triple_is_refused_in_full(stepper):
    start = (f"method={stepper.name!r} needs a pair state y0 = (q, p) with dq/dt depending on p only and dp/dt on "
             "q only, got ")
    for y0, tail in ((Q, "Tensor"), ((Q, P, Q), "tuple of length 3"), ((Q,), "tuple of length 1")):
        with pytest.raises(ValueError) as info:
            stepper.init(Separable(), 0.0, y0, 1)
        assert str(info.value) == start + tail
    assert stepper.init(Separable(), 0.0, (Q, P), 1) == ()


def test_attributes():
    assert [(s.name, s.order, s.adaptive, s.fsal, s.reversible) for s in (SymplecticEuler(), Leapfrog())] == [
        ("symplectic_euler", 1, False, False, True), ("leapfrog", 2, False, False, True)]


@pytest.mark.parametrize("h", [0.25, -0.25])
def test_symplectic_euler_by_hand(h):
    d = 1 if h > 0 else -1
    t = 0.5
    term = Separable()
    (q1, p1), state, error, dense = SymplecticEuler().step(term, t, h, (Q, P), ())
    want_p = P + h * g(t, Q)
    want_q = Q + h * f(t + h, want_p)
    assert torch.equal(p1, want_p) and torch.equal(q1, want_q)
    assert state == () and error is None and dense is None
    assert term.calls == [(t, d, 1), (t + h, -d, 0)]
    term = Separable()
    q0, p0 = SymplecticEuler().inverse(term, t, h, (q1, p1))
    assert term.calls == [(t + h, -d, 0), (t, d, 1)]
    torch.testing.assert_close(q0, Q, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(p0, P, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("h", [0.25, -0.25])
def test_leapfrog_by_hand(h):
    d = 1 if h > 0 else -1
    t = 0.5
    term = Separable()
    (q1, p1), state, error, dense = Leapfrog().step(term, t, h, (Q, P), ())
    p_half = P + h / 2 * g(t, Q)
    want_q = Q + h * f(t + h / 2, p_half)
    want_p = p_half + h / 2 * g(t + h, want_q)
    assert torch.equal(q1, want_q) and torch.equal(p1, want_p)
    assert state == () and error is None and dense is None
    assert term.calls == [(t, d, 1), (t + h / 2, d, 0), (t + h, -d, 1)]
    term = Separable()
    q0, p0 = Leapfrog().inverse(term, t, h, (q1, p1))
    assert term.calls == [(t + h, -d, 1), (t + h / 2, -d, 0), (t, d, 1)]
    torch.testing.assert_close(q0, Q, rtol=1e-15, atol=1e-15)
    torch.testing.assert_close(p0, P, rtol=1e-15, atol=1e-15)


@pytest.mark.parametrize("stepper", [SymplecticEuler(), Leapfrog()], ids=lambda s: s.name)
def test_dense_output_is_the_chord(stepper):
    y1 = (Q + 1.0, P - 2.0)
    q, p = stepper.interpolate((Q, P), y1, None, 0.5, 0.25)
    assert torch.equal(q, Q + 0.25) and torch.equal(p, P - 0.5)
