"""Adaptive dopri5 on piecewise-constant theta: declaring the knots as jumps saves work."""
import pytest
import torch

import contdepth as cd

DT = torch.float64


def jumpy_field():
    field = cd.fields.CubicFriction(2, cd.ControlGrid(t0=0.0, t1=4.0, n=8)).to(DT)
    with torch.no_grad():
        field.weight.normal_()
        field.bias.normal_()
    return field


def test_declared_jumps_save_steps_and_stay_accurate():
    field = jumpy_field()
    y0 = torch.randn(5, 2, dtype=DT)
    reference = cd.odesolve(field, y0, method="rk4", steps=8 * 512)
    with_knots = cd.solve(field, y0, method="dopri5", rtol=1e-6, atol=1e-8)
    blind = cd.solve(field, y0, method="dopri5", rtol=1e-6, atol=1e-8, declare_jumps=False)
    assert with_knots.stats.forward.nfe * 3 < blind.stats.forward.nfe
    assert with_knots.stats.forward.rejected_steps < blind.stats.forward.rejected_steps
    assert torch.allclose(with_knots.y1, reference, atol=1e-5)


def test_step_counts_add_up():
    """torchdiffeq's dopri5: 2 start-up evaluations, 6 per attempted step, 1 restart per declared jump."""
    field = jumpy_field()
    y0 = torch.randn(3, 2, dtype=DT)
    for declare, restarts in ((True, 7), (False, 0)):
        st = cd.solve(field, y0, method="dopri5", rtol=1e-5, atol=1e-7, declare_jumps=declare).stats.forward
        assert st.nfe == 2 + 6 * (st.accepted_steps + st.rejected_steps) + restarts


def test_adjoint_backward_is_counted():
    field = jumpy_field()
    sol = cd.solve(field, torch.randn(3, 2, dtype=DT), method="dopri5", gradient="adjoint")
    assert sol.stats.backward.nfe == 0
    sol.y1.sum().backward()
    assert sol.stats.backward.nfe > 0 and sol.stats.backward.accepted_steps >= 8


def test_t_eval_returns_states_at_times():
    field = jumpy_field()
    y0 = torch.randn(3, 2, dtype=DT)
    ts = [0.5, 1.0, 3.0, 4.0]
    ys = cd.odesolve(field, y0, method="dopri5", rtol=1e-9, atol=1e-11, t_eval=ts)
    assert ys.shape == (4, 3, 2)
    fine = cd.odesolve(field, y0, method="rk4", steps=8 * 128, t_eval=ts)
    assert torch.allclose(ys, fine, atol=1e-7)


def test_adjoint_backward_failure_is_a_solver_error():
    """The forward solve is fine; a NaN loss gradient makes the adjoint state non-finite: the
    backward solve's step size underflows, a SolverError naming the adjoint solve."""
    field = jumpy_field()
    y1 = cd.odesolve(field, torch.randn(3, 2, dtype=DT), method="dopri5", gradient="adjoint")
    with pytest.raises(cd.SolverError, match="adjoint backward solve") as err:
        (y1.sum() * float("nan")).backward()
    assert isinstance(err.value.__cause__, cd.SolverError) and "underflow" in str(err.value)
