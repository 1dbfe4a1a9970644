"""solve(..., per_sample=True): every sample along dim 0 takes exactly the steps it takes when solved
alone (same accepted and rejected counts, same evaluations, same numbers to rounding), with its own
span and output times; gradients by backprop equal the per-sample solves'; bad input is refused by name.

The reference for sample b is ``cd.solve`` of the batch of one y0[b:b+1]: the shared controller's
RMS over one sample's elements is the per-sample controller's norm for that sample.
"""
import pytest
import torch

import contdepth as cd
from contdepth.errors import SolverError

D = torch.float64
MU = torch.linspace(0.2, 8.0, 12, dtype=D)


def vdp(t, y):
    """Van der Pol with mu carried in the state (mu' = 0), so each row is self-contained."""
    x, v, mu = y[:, 0], y[:, 1], y[:, 2]
    return torch.stack([v, mu * (1 - x ** 2) * v - x, torch.zeros_like(mu)], 1)


def vdp_y0(mu=MU):
    return torch.stack([torch.full_like(mu, 2.0), torch.zeros_like(mu), mu], 1)


def forced(t, y):
    """A non-autonomous field: t enters per sample (shape (batch,) per_sample, () alone)."""
    return -y * (1 + 0.5 * torch.cos(3 * t)).reshape(-1, *([1] * (y.dim() - 1))) + torch.sin(t).reshape(
        -1, *([1] * (y.dim() - 1)))


def alone(func, y0, b, **kw):
    return cd.solve(func, y0[b:b + 1], **kw)


@pytest.mark.parametrize("method", ["dopri5", "tsit5", "bosh3"])
@pytest.mark.parametrize("compact", [False, True])
def test_each_sample_takes_the_steps_it_takes_alone(method, compact):
    y0 = vdp_y0()
    kw = dict(method=method, t0=0.0, t1=6.0, rtol=1e-6, atol=1e-8)
    sol = cd.solve(vdp, y0, per_sample=True, options={"compact": compact}, **kw)
    st = sol.stats.forward
    assert st.accepted_steps.shape == st.rejected_steps.shape == st.nfe.shape == (12,)
    assert sol.ys.shape == (1, 12, 3) and sol.ts.shape == (1, 12)
    for b in range(12):
        ref = alone(vdp, y0, b, **kw)
        assert int(st.accepted_steps[b]) == ref.stats.forward.accepted_steps
        assert int(st.rejected_steps[b]) == ref.stats.forward.rejected_steps
        assert int(st.nfe[b]) == ref.stats.forward.nfe
        torch.testing.assert_close(sol.ys[-1, b], ref.ys[-1, 0], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("options", [{"beta": 0.04}, {"safety": 0.8, "ifactor": 3.0, "dfactor": 0.5},
                                     {"first_step": 0.01, "max_step": 0.2}, {"min_step": 0.05}])
def test_controller_options_act_as_in_the_shared_controller(options):
    """Hairer's PI controller, the safety and growth factors, a given first step and the step
    bounds: per sample, the counts and states of the shared controller on that sample alone."""
    y0 = vdp_y0(MU[::4])
    kw = dict(method="dopri5", t0=0.0, t1=4.0, rtol=1e-5, atol=1e-7)
    sol = cd.solve(vdp, y0, per_sample=True, options=options, **kw)
    for b in range(3):
        ref = alone(vdp, y0, b, options=options, **kw)
        assert int(sol.stats.forward.accepted_steps[b]) == ref.stats.forward.accepted_steps
        assert int(sol.stats.forward.rejected_steps[b]) == ref.stats.forward.rejected_steps
        torch.testing.assert_close(sol.ys[-1, b], ref.ys[-1, 0], rtol=1e-12, atol=1e-12)


def test_a_zero_error_grows_the_step_by_ifactor():
    """y' = 0: every error ratio is exactly 0 and each accepted step grows by ifactor: the counts of
    the shared controller alone."""
    y0 = torch.tensor([[1.0], [2.0], [-3.0]], dtype=D)
    kw = dict(method="dopri5", t0=0.0, t1=50.0, rtol=1e-6, atol=1e-8, options={"beta": 0.04, "first_step": 1e-3})
    sol = cd.solve(lambda t, y: torch.zeros_like(y), y0, per_sample=True, **kw)
    ref = cd.solve(lambda t, y: torch.zeros_like(y), y0[:1], **kw)
    assert ref.stats.forward.accepted_steps == 6  # 1e-3 (1 + 10 + ... + 10^4) < 50 <= 1e-3 (1 + ... + 10^5)
    assert sol.stats.forward.accepted_steps.tolist() == [6, 6, 6]
    assert torch.equal(sol.ys[-1], y0)


@pytest.mark.parametrize("per_sample", [False, True])
def test_a_pi_beta_that_would_stop_the_step_from_growing_is_refused(per_sample):
    """beta >= 4 / (3 p) makes r's exponent -1/p + 3 beta/4 >= 0: with dopri5 (p = 5) at beta = 0.3,
    y' = c (error ~ 1e-17) took 50,000 steps of the first step's 1e-3 on [0, 50]."""
    y0 = torch.ones(2, 1, dtype=D)
    for method, beta in (("dopri5", 0.3), ("dopri5", 4 / 15), ("bosh3", 0.45)):
        with pytest.raises(ValueError, match=r"beta must be < 4 / \(3 p\)"):
            cd.solve(lambda t, y: torch.ones_like(y), y0, method=method, t0=0.0, t1=1.0, per_sample=per_sample,
                     options={"beta": beta})
    with pytest.raises(ValueError, match="beta must be a float >= 0"):
        cd.solve(lambda t, y: y, y0, method="dopri5", t0=0.0, t1=1.0, per_sample=per_sample, options={"beta": -0.01})
    sol = cd.solve(lambda t, y: torch.ones_like(y), y0, method="bosh3", t0=0.0, t1=1.0, per_sample=per_sample,
                   options={"beta": 0.44})  # 4 / 9 = 0.444...: allowed
    torch.testing.assert_close(sol.ys[-1], 2 * y0)


def vdp_mu(mu):
    """Van der Pol x'' = mu (1 - x^2) x' - x as a 2-D state, mu per row from the closure."""
    return lambda t, y: torch.stack([y[:, 1], mu * (1 - y[:, 0] ** 2) * y[:, 1] - y[:, 0]], 1)


def test_van_der_pol_batch_needs_no_more_steps_than_alone():
    """12 Van der Pol problems, mu = 0.2..8, y0 = (2, 0), on [0, 6], dopri5 at rtol = atol = 1e-6:
    the shared step size takes 95 accepted steps for every sample; per sample 23..72, each exactly
    its solve alone."""
    y0 = torch.tensor([[2.0, 0.0]], dtype=D).repeat(12, 1)
    kw = dict(method="dopri5", t0=0.0, t1=6.0, rtol=1e-6, atol=1e-6)
    per = cd.solve(vdp_mu(MU), y0, per_sample=True, **kw)
    shared = cd.solve(vdp_mu(MU), y0, **kw).stats.forward.accepted_steps
    lone = [cd.solve(vdp_mu(MU[b:b + 1]), y0[:1], **kw) for b in range(12)]
    steps = torch.tensor([r.stats.forward.accepted_steps for r in lone])
    assert torch.equal(per.stats.forward.accepted_steps, steps)
    assert bool((per.stats.forward.accepted_steps <= 1.1 * steps).all())
    assert int(per.stats.forward.accepted_steps.max()) < shared and int(per.stats.forward.accepted_steps[0]) < shared / 4
    torch.testing.assert_close(per.ys[-1], torch.cat([r.ys[-1] for r in lone]), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["adaptive_heun", "fehlberg2", "dopri8"])
def test_pairs_without_dense_weights_or_fsal(method):
    """The other adaptive pairs, with outputs inside steps. The shared controller evaluates f(t0, y0)
    twice for a pair without FSAL (its first-step rule, then the first stage): one more than here."""
    y0, ts = vdp_y0(MU[::4]), torch.linspace(0.0, 2.0, 4, dtype=D)
    kw = dict(method=method, t0=0.0, t1=2.0, rtol=1e-5, atol=1e-6)
    sol = cd.solve(vdp, y0, per_sample=True, t_eval=ts, options={"compact": True}, **kw)
    extra = 0 if method == "dopri8" else 1
    for b in range(3):
        ref = alone(vdp, y0, b, t_eval=ts.tolist(), **kw)
        assert int(sol.stats.forward.accepted_steps[b]) == ref.stats.forward.accepted_steps
        assert int(sol.stats.forward.rejected_steps[b]) == ref.stats.forward.rejected_steps
        assert int(sol.stats.forward.nfe[b]) == ref.stats.forward.nfe - extra
        torch.testing.assert_close(sol.ys[:, b], ref.ys[:, 0], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("options", [{}, {"compact": True}, {"sync_every": 4}, {"compact": True, "sync_every": 3}])
@pytest.mark.parametrize("reverse", [False, True])
def test_per_sample_spans_and_output_times_equal_the_alone_solves(reverse, options):
    torch.manual_seed(0)
    B, T = 5, 4
    y0 = torch.randn(B, 3, dtype=D)
    t0 = torch.linspace(0.0, 0.8, B, dtype=D)
    t1 = t0 + torch.linspace(1.0, 3.0, B, dtype=D)
    if reverse:
        t0, t1 = t1, t0
    frac = torch.tensor([0.0, 0.3, 0.55, 1.0], dtype=D)
    t_eval = t0[:, None] + frac[None, :] * (t1 - t0)[:, None]
    sol = cd.solve(forced, y0, method="dopri5", t0=t0, t1=t1, t_eval=t_eval, rtol=1e-7, atol=1e-9, per_sample=True,
                   options=options)
    assert sol.ys.shape == (T, B, 3)
    torch.testing.assert_close(sol.ts, t_eval.T)
    for b in range(B):
        ref = cd.solve(forced, y0[b:b + 1], method="dopri5", t0=float(t0[b]), t1=float(t1[b]),
                       t_eval=t_eval[b].tolist(), rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(sol.ys[:, b], ref.ys[:, 0], rtol=1e-12, atol=1e-12)
        assert int(sol.stats.forward.accepted_steps[b]) == ref.stats.forward.accepted_steps
        assert int(sol.stats.forward.rejected_steps[b]) == ref.stats.forward.rejected_steps


def test_shared_t_eval_and_a_tuple_state():
    torch.manual_seed(1)
    x0, v0 = torch.randn(3, 2, dtype=D), torch.randn(3, 2, dtype=D)
    f = lambda t, s: (s[1], -s[0])  # noqa: E731 (harmonic oscillator: x = x0 cos t + v0 sin t)
    ts = torch.tensor([0.0, 0.5, 2.0], dtype=D)
    sol = cd.solve(f, (x0, v0), method="dopri5", t0=0.0, t1=2.0, t_eval=ts, rtol=1e-10, atol=1e-12, per_sample=True)
    x, v = sol.ys
    exact = x0[None] * torch.cos(ts)[:, None, None] + v0[None] * torch.sin(ts)[:, None, None]
    torch.testing.assert_close(x, exact, rtol=1e-8, atol=1e-8)
    assert v.shape == (3, 3, 2)


@pytest.mark.parametrize("gradient", ["backprop", "checkpoint"])
@pytest.mark.parametrize("compact", [False, True])
def test_gradients_equal_the_alone_solves(compact, gradient):
    torch.manual_seed(2)
    w = torch.tensor([[-1.0, 0.4], [-0.3, -0.8]], dtype=D, requires_grad=True)
    f = lambda t, y: torch.tanh(y @ w) + 0.1 * torch.sin(t)[:, None]  # noqa: E731
    y0 = torch.randn(4, 2, dtype=D, requires_grad=True)
    t1 = torch.tensor([0.5, 1.0, 2.0, 3.0], dtype=D)
    sol = cd.solve(f, y0, method="tsit5", t0=0.0, t1=t1, rtol=1e-8, atol=1e-10, per_sample=True,
                   options={"compact": compact}, gradient=gradient)
    gy, gw = torch.autograd.grad(sol.ys[-1].pow(2).sum(), (y0, w))
    replayed = sol.stats.backward.nfe  # checkpoint: the evaluations the backward pass reran
    if gradient == "checkpoint":
        assert bool((replayed > 0).all()) and bool((replayed <= sol.stats.forward.nfe).all())
    ref_w = torch.zeros_like(w)
    for b in range(4):
        yb = y0[b:b + 1].detach().requires_grad_()
        fb = lambda t, y: torch.tanh(y @ w) + 0.1 * torch.sin(t)  # noqa: E731
        out = cd.solve(fb, yb, method="tsit5", t0=0.0, t1=float(t1[b]), rtol=1e-8, atol=1e-10).ys[-1]
        g_yb, g_wb = torch.autograd.grad(out.pow(2).sum(), (yb, w))
        torch.testing.assert_close(gy[b:b + 1], g_yb, rtol=1e-10, atol=1e-12)
        ref_w += g_wb
    torch.testing.assert_close(gw, ref_w, rtol=1e-10, atol=1e-12)


def test_odeint_with_one_row_of_times_per_sample():
    y0 = vdp_y0(MU[:3])
    t = torch.stack([torch.linspace(0.0, 2.0, 5), torch.linspace(1.0, 4.0, 5), torch.linspace(0.0, 6.0, 5)]).to(D)
    ys = cd.odeint(vdp, y0, t, rtol=1e-7, atol=1e-9)
    assert ys.shape == (5, 3, 3)
    for b in range(3):
        ref = cd.odeint(vdp, y0[b:b + 1], t[b], rtol=1e-7, atol=1e-9)
        torch.testing.assert_close(ys[:, b], ref[:, 0], rtol=1e-12, atol=1e-12)


def test_a_finished_sample_stops_changing_and_counting():
    """Sample 0 ends at t = 0.1, long before sample 1 (t = 10): its counts are those of its own
    short solve, not of the batch's loop."""
    y0 = torch.ones(2, 1, dtype=D)
    f = lambda t, y: -y  # noqa: E731
    sol = cd.solve(f, y0, method="dopri5", t0=0.0, t1=torch.tensor([0.1, 10.0], dtype=D), rtol=1e-9, atol=1e-12,
                   per_sample=True)
    torch.testing.assert_close(sol.ys[-1, :, 0], torch.exp(-torch.tensor([0.1, 10.0], dtype=D)), rtol=1e-8, atol=0)
    short = cd.solve(f, y0[:1], method="dopri5", t0=0.0, t1=0.1, rtol=1e-9, atol=1e-12).stats.forward
    assert int(sol.stats.forward.nfe[0]) == short.nfe < int(sol.stats.forward.nfe[1])


def test_a_blow_up_names_the_sample_and_its_time():
    y0 = torch.tensor([[0.5], [1.0]], dtype=D)  # y' = y^2 blows up at t = 1 / y0: 2 and 1
    with pytest.raises(SolverError, match=r"sample 1 at t=(0\.99|1\.000)"):
        cd.solve(lambda t, y: y ** 2, y0, method="dopri5", t0=0.0, t1=1.5, per_sample=True)


def test_bad_input_is_refused_by_name():
    y0 = torch.zeros(2, 1, dtype=D)
    f = lambda t, y: -y  # noqa: E731
    ok = dict(t0=0.0, t1=1.0, per_sample=True)
    with pytest.raises(ValueError, match="adaptive explicit Runge-Kutta"):
        cd.solve(f, y0, method="rk4", **ok)
    with pytest.raises(ValueError, match="does not support steps"):
        cd.solve(f, y0, method="dopri5", steps=4, **ok)
    with pytest.raises(ValueError, match="adaptive explicit Runge-Kutta"):
        cd.solve(f, y0, method="euler", **ok)
    with pytest.raises(ValueError, match="does not support project"):
        cd.solve(f, y0, method="dopri5", project=lambda y: y, **ok)
    with pytest.raises(NotImplementedError, match="gradient='adjoint'"):
        cd.solve(f, y0, method="dopri5", gradient="adjoint", **ok)
    with pytest.raises(NotImplementedError, match="gradient='adjoint'"):
        cd.odeint_adjoint(f, y0, torch.tensor([[0.0, 1.0], [0.0, 2.0]], dtype=D))
    with pytest.raises(ValueError, match=r"options\['sync_every'\] must be a positive int"):
        cd.solve(f, y0, method="dopri5", options={"sync_every": 0}, **ok)
    with pytest.raises(ValueError, match="unknown options"):
        cd.solve(f, y0, method="dopri5", options={"compactt": True}, **ok)
    with pytest.raises(ValueError, match="t1 must be a float or have shape"):
        cd.solve(f, y0, method="dopri5", t0=0.0, t1=torch.ones(3, dtype=D), per_sample=True)
    with pytest.raises(ValueError, match="t0 and t1 must differ for every sample"):
        cd.solve(f, y0, method="dopri5", t0=0.0, t1=torch.tensor([1.0, 0.0], dtype=D), per_sample=True)
    with pytest.raises(ValueError, match="t_eval must have shape"):
        cd.solve(f, y0, method="dopri5", t_eval=torch.zeros(3, 2, dtype=D), **ok)
    with pytest.raises(ValueError, match="within each sample"):
        cd.solve(f, y0, method="dopri5", t_eval=[0.0, 2.0], **ok)
    with pytest.raises(ValueError, match="same batch size"):
        cd.solve(lambda t, s: s, (torch.zeros(2, 1), torch.zeros(3, 1)), method="dopri5", **ok)
    with pytest.raises(TypeError, match="per_sample must be True or False"):
        cd.solve(f, y0, method="dopri5", t0=0.0, t1=1.0, per_sample="yes")
    field = cd.fields.DenseResidual(1, cd.ControlGrid(0.0, 1.0, n=2))
    with pytest.raises(ValueError, match="plain func"):
        cd.solve(field, y0.float(), method="dopri5", **ok)
    with pytest.raises(ValueError, match="T >= 2"):
        cd.odeint(f, y0, torch.zeros(2, 1, dtype=D))


SYNCS = ("tolist", "item", "__bool__", "__int__", "__float__", "__index__", "nonzero")


@pytest.mark.parametrize("compact", [False, True])
def test_host_syncs_one_per_step_or_one_per_sync_every_steps(monkeypatch, compact):
    """Counts the Python-level reads of a tensor's value (tolist, item, bool, int, float, index,
    nonzero) during a solve: a fixed few per solve (checks of the input, the end) plus one per step,
    or one per sync_every steps (the march then runs up to sync_every - 1 idle steps at the end). On CPU this is what a host sync is; reads inside torch's own
    kernels are not counted."""
    calls = [0]

    def counted(name):
        original = getattr(torch.Tensor, name)

        def wrapper(self, *args, **kwargs):
            calls[0] += 1
            return original(self, *args, **kwargs)
        return wrapper

    y0 = vdp_y0()
    kw = dict(method="dopri5", t0=0.0, t1=6.0, rtol=1e-6, atol=1e-8, per_sample=True)
    counts = {}
    for every in (1, 8, 64):
        with monkeypatch.context() as m:
            for name in SYNCS:
                m.setattr(torch.Tensor, name, counted(name))
            calls[0] = 0
            st = cd.solve(vdp, y0, options={"compact": compact, "sync_every": every}, **kw).stats.forward
            counts[every] = calls[0]
        loop = int((st.accepted_steps + st.rejected_steps).max())  # iterations of the march
        assert loop > 100
        counts[every] -= -(-loop // every)  # minus one per sync_every iterations (ceil)
    fixed = counts[1]
    assert fixed <= 8 and counts[8] == counts[64] == fixed
