"""Stochastic continuous-depth models (seed 003): the Brownian path, the SDE steppers against
closed forms and torchsde on the same path, gradients, SDEBlock, Fokker-Planck, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import contdepth as cd
from contdepth.physics import fokker_planck_1d

F64 = torch.float64
METHODS = ("euler_maruyama", "milstein", "heun")


def _path(bm: cd.BrownianPath, n: int) -> torch.Tensor:
    ts = np.linspace(bm.t0, bm.t1, n + 1)
    return torch.stack([bm(a, b) for a, b in zip(ts, ts[1:])])


# ---------------------------------------------------------------- BrownianPath

@pytest.mark.parametrize("coarse,fine", [(16, 256), (10, 100), (3, 21)])
def test_brownian_refined_increments_sum_to_coarse(coarse, fine):
    bm = cd.BrownianPath(0.5, 2.0, (7, 3), seed=4, dtype=F64)
    c, f = _path(bm, coarse), _path(bm, fine)
    torch.testing.assert_close(f.reshape(coarse, fine // coarse, 7, 3).sum(1), c, rtol=0, atol=1e-12)


def test_brownian_is_a_function_of_the_seed_alone():
    a = cd.BrownianPath(0.0, 1.0, (5,), seed=11, dtype=F64)
    b = cd.BrownianPath(0.0, 1.0, (5,), seed=11, dtype=F64)
    _path(b, 37)  # other queries first, in another order
    for s, t in [(0.2, 0.7), (0.7, 0.2), (0.0, 1.0), (0.3, 0.3)]:
        assert torch.equal(a(s, t), b(s, t))
    assert torch.equal(a(0.7, 0.2), -a(0.2, 0.7))
    assert torch.equal(a(0.0), torch.zeros(5, dtype=F64))
    assert not torch.equal(a(0.0, 1.0), cd.BrownianPath(0.0, 1.0, (5,), seed=12, dtype=F64)(0.0, 1.0))
    torch.manual_seed(3)
    c = cd.BrownianPath(0.0, 1.0, (5,), dtype=F64)
    torch.manual_seed(3)
    assert torch.equal(c(0.0, 0.5), cd.BrownianPath(0.0, 1.0, (5,), dtype=F64)(0.0, 0.5))


@pytest.mark.parametrize("n", [64, 100])
def test_brownian_increments_are_independent_normals(n):
    """dW_k / sqrt(h) over 20,000 components: mean 0, variance 1, uncorrelated neighbours (5 SE)."""
    bm = cd.BrownianPath(0.0, 3.0, (20000,), seed=0, dtype=F64)
    z = _path(bm, n) / math.sqrt(3.0 / n)
    m = z.numel()
    assert abs(z.mean().item()) < 5 / math.sqrt(m)
    assert abs(z.var().item() - 1) < 5 * math.sqrt(2 / m)
    assert abs((z[1:] * z[:-1]).mean().item()) < 5 / math.sqrt(z[1:].numel())
    w = bm(0.0, 1.3) / math.sqrt(1.3)  # a non-dyadic point: variance t (the bridge term of its cell)
    assert abs(w.var().item() - 1) < 5 * math.sqrt(2 / 20000)


def test_brownian_path_is_the_same_in_every_dtype():
    """W is computed in float64 whatever the path's dtype and rounded once: a float32 increment is
    the float64 one rounded to float32, bit for bit (and an int seed is all it takes to share a path)."""
    p64 = cd.BrownianPath(0.0, 2.0, (50,), seed=7, dtype=F64)
    p32 = cd.BrownianPath(0.0, 2.0, (50,), seed=7, dtype=torch.float32)
    for s, t in [(0.0, 2.0), (0.25, 1.5), (0.3, 0.31)]:
        assert torch.equal(p32(s, t), p64(s, t).float())


def test_brownian_is_a_bridge_below_its_resolution():
    """With levels = 3, inside a cell of width 1/8 W is the linear interpolation plus
    sqrt(theta (1 - theta) / 8) times the cell's one normal: at 0.3 (theta = 0.4) and 0.35
    (theta = 0.8) of the cell [0.25, 0.375] the residuals are proportional, ratio sqrt(.16 / .24)."""
    bm = cd.BrownianPath(0.0, 1.0, (6,), seed=1, dtype=F64, levels=3)
    r1 = bm(0.3) - (0.6 * bm(0.25) + 0.4 * bm(0.375))
    r2 = bm(0.35) - (0.2 * bm(0.25) + 0.8 * bm(0.375))
    torch.testing.assert_close(r2, r1 * math.sqrt(0.16 / 0.24), rtol=1e-12, atol=1e-15)
    assert (r1.abs() > 1e-3).all() and bm.levels == 3 and not torch.equal(bm(0.25), 2 * bm(0.125))


def test_brownian_bad_input():
    with pytest.raises(ValueError, match="t0 < t1"):
        cd.BrownianPath(1.0, 1.0, (2,))
    with pytest.raises(TypeError, match="shape"):
        cd.BrownianPath(0.0, 1.0, 3)
    with pytest.raises(ValueError, match="levels"):
        cd.BrownianPath(0.0, 1.0, (2,), levels=0)
    with pytest.raises(ValueError, match="queried at t = 1.5"):
        cd.BrownianPath(0.0, 1.0, (2,), seed=0)(0.0, 1.5)


# ---------------------------------------------------------------- closed forms

@pytest.mark.parametrize("method", METHODS)
def test_ornstein_uhlenbeck_moments(method):
    """dX = -a X dt + nu dW, X0 = 2, 20,000 paths: mean and variance at T within 3 standard errors
    of the scheme's own exact moments, and those within the step's bias of the continuous ones."""
    a, nu, x0, T, n, paths = 1.0, 0.5, 2.0, 1.0, 32, 20000
    h = T / n
    x = cd.sdesolve(lambda t, y: -a * y, torch.full((paths,), x0, dtype=F64), noise=nu, method=method,
                    steps=n, t0=0.0, t1=T, seed=1).y1
    # one step is X1 = r X + c dW: Euler-Maruyama/Milstein r = 1 - ah, c = nu; Heun r = 1 - ah + (ah)^2/2, c = nu (1 - ah/2)
    r, c = (1 - a * h, nu) if method != "heun" else (1 - a * h + (a * h) ** 2 / 2, nu * (1 - a * h / 2))
    mean_d, var_d = x0 * r ** n, c * c * h * (1 - r ** (2 * n)) / (1 - r * r)
    mean_c, var_c = x0 * math.exp(-a * T), nu ** 2 / (2 * a) * (1 - math.exp(-2 * a * T))
    se_mean, se_var = math.sqrt(var_d / paths), var_d * math.sqrt(2 / (paths - 1))
    assert abs(x.mean().item() - mean_d) < 3 * se_mean
    assert abs(x.var().item() - var_d) < 3 * se_var
    assert abs(x.mean().item() - mean_c) < 3 * se_mean + abs(mean_d - mean_c)
    assert abs(x.var().item() - var_c) < 3 * se_var + abs(var_d - var_c)


def _strong_errors(method: str, exact_of, steps=(16, 32, 64, 128, 256)) -> list[float]:
    mu, sig = 0.5, 0.8
    y0 = torch.ones(4000, dtype=F64)
    bm = cd.BrownianPath(0.0, 1.0, y0.shape, seed=2, dtype=F64)
    exact = exact_of(mu, sig, bm(0.0, 1.0))
    return [(cd.sdesolve(lambda t, y: mu * y, y0, noise=lambda t, y: sig * y, method=method, steps=n,
                         t0=0.0, t1=1.0, bm=bm).y1 - exact).abs().mean().item() for n in steps]


@pytest.mark.parametrize("method,order,stratonovich", [("euler_maruyama", 0.5, False), ("milstein", 1.0, False),
                                                       ("heun", 1.0, True)])
def test_gbm_strong_order(method, order, stratonovich):
    """Geometric Brownian motion on the same path as its exact solution, X = exp((mu - sig^2/2) t + sig W)
    (Ito) or exp(mu t + sig W) (Stratonovich): the fitted strong order over steps 16..256."""
    exact = (lambda mu, sig, w: torch.exp(mu + sig * w)) if stratonovich else \
        (lambda mu, sig, w: torch.exp(mu - sig ** 2 / 2 + sig * w))
    steps = (16, 32, 64, 128, 256)
    slope = -np.polyfit(np.log(steps), np.log(_strong_errors(method, exact, steps)), 1)[0]
    assert abs(slope - order) < 0.1, slope


def test_milstein_is_euler_maruyama_for_additive_noise():
    y0 = torch.randn(50, 2, dtype=F64)
    run = lambda m: cd.sdesolve(lambda t, y: torch.sin(y), y0, noise=0.4, method=m, steps=20, t0=0.0, t1=1.0,
                                seed=3).y1
    assert torch.equal(run("milstein"), run("euler_maruyama"))


def test_noise_off_is_the_ode_solve():
    grid = cd.ControlGrid(0.0, 2.0, n=8)
    f = cd.fields.DenseResidual(3, grid, activation="tanh").to(F64)
    x = torch.randn(4, 3, dtype=F64)
    assert torch.equal(cd.sdesolve(f, x, noise=0.0, steps=16).y1, cd.odesolve(f, x, method="euler", steps=16))


@pytest.mark.parametrize("method", METHODS)
def test_refinement_converges_pathwise(method):
    """The same seed at 2^k steps: the distance to the finest solution shrinks (the same path is refined)."""
    y0 = torch.randn(200, dtype=F64)
    run = lambda n: cd.sdesolve(lambda t, y: -y + torch.sin(2 * y), y0, noise=lambda t, y: 0.3 + 0.1 * torch.cos(y),
                                method=method, steps=n, t0=0.0, t1=1.0, seed=9).y1
    ref = run(1024)
    d = [(run(n) - ref).abs().mean().item() for n in (16, 64, 256)]
    assert d[0] > 2 * d[1] > 4 * d[2]


# ---------------------------------------------------------------- torchsde on the same path

def _torchsde_bm(bm: cd.BrownianPath):
    torchsde = pytest.importorskip("torchsde")
    base = torchsde.BrownianInterval.__mro__[1]  # torchsde's BaseBrownian

    class SamePath(base):
        levy_area_approximation = "none"
        dtype, device, shape = bm.dtype, bm.device, bm.shape

        def __call__(self, ta, tb=None, return_U=False, return_A=False):
            return bm(float(ta), float(tb)) if tb is not None else bm(float(ta))

        def __repr__(self) -> str:
            return f"SamePath({bm!r})"

    return SamePath()


@pytest.mark.parametrize("method,theirs,sde_type", [("euler_maruyama", "euler", "ito"), ("milstein", "milstein", "ito"),
                                                    ("heun", "heun", "stratonovich")])
def test_same_solution_as_torchsde_on_the_same_path(method, theirs, sde_type):
    """torchsde 0.2.6's sdeint with the same Brownian path: the same states, path by path."""
    torchsde = pytest.importorskip("torchsde")

    class GBMish(torch.nn.Module):
        noise_type = "diagonal"

        def __init__(self):
            super().__init__()
            self.sde_type = sde_type

        def f(self, t, y):
            return 0.5 * y - torch.sin(t) * y ** 3 / 10

        def g(self, t, y):
            return 0.8 * torch.tanh(y)

    sde = GBMish()
    y0 = torch.rand(300, 2, dtype=F64) + 0.5
    bm = cd.BrownianPath(0.0, 1.0, y0.shape, seed=0, dtype=F64)
    ts = torch.linspace(0, 1, 5, dtype=F64)
    expected = torchsde.sdeint(sde, y0, ts, bm=_torchsde_bm(bm), method=theirs, dt=1 / 64)
    ours = cd.sdesolve(sde.f, y0, noise=sde.g, method=method, steps=64, t0=0.0, t1=1.0, bm=bm, t_eval=ts).ys
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------- gradients

def _field():
    torch.manual_seed(1)
    f = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 2.0, n=8), activation="tanh").to(F64)
    for p in f.parameters():
        torch.nn.init.normal_(p, std=0.5)
    return f


def _grads(f, gradient: str, steps: int, method="euler_maruyama", noise=0.3) -> torch.Tensor:
    f.zero_grad()
    x = torch.linspace(-1, 1, 48, dtype=F64).reshape(16, 3).requires_grad_()
    ys = cd.sdesolve(f, x, noise=noise, method=method, steps=steps, seed=5, gradient=gradient, t_eval=[0.0, 1.0, 2.0]).ys
    (ys ** 2).sum().backward()
    return torch.cat([x.grad.flatten()] + [p.grad.flatten() for p in f.parameters()])


class _Diffusion(torch.nn.Module):
    """A trained diagonal diffusion g(t, y) = softplus(w) sigmoid(y + b)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([-1.0, -0.5, 0.2], dtype=F64))
        self.b = torch.nn.Parameter(torch.tensor([0.1, 0.0, -0.3], dtype=F64))

    def forward(self, t, y):
        return torch.nn.functional.softplus(self.w) * torch.sigmoid(y + self.b)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("multiplicative", [False, True])
def test_checkpoint_equals_backprop(method, multiplicative):
    """On the same path, float64: dL/dy0, dL/dtheta and the diffusion's own gradients agree to 1e-12."""
    f = _field()
    g = _Diffusion() if multiplicative else None
    grads = []
    for gradient in ("backprop", "checkpoint"):
        if g is not None:
            g.zero_grad()
        grads.append(torch.cat([_grads(f, gradient, 24, method, 0.3 if g is None else g)]
                               + ([] if g is None else [g.w.grad, g.b.grad])))
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=1e-12)
    assert grads[0].abs().min() > 0  # every gradient is non-trivial


@pytest.mark.parametrize("method,order", [("euler_maruyama", 1.0), ("heun", 2.0)])
def test_adjoint_approaches_backprop(method, order):
    """Additive noise: the adjoint's backward solve on the same path converges to backprop's
    gradient at least at the scheme's deterministic order (relative errors in the closing note)."""
    f = _field()
    steps = (8, 32, 128)
    errs = []
    for n in steps:
        gb, ga = _grads(f, "backprop", n, method), _grads(f, "adjoint", n, method)
        errs.append(((ga - gb).norm() / gb.norm()).item())
    slope = -np.polyfit(np.log(steps), np.log(errs), 1)[0]
    assert slope > order - 0.25 and errs[-1] < (0.02 if order == 1 else 1e-4), (errs, slope)


def test_gradient_matches_finite_differences():
    """Backprop through Milstein with a state-dependent diffusion: dL/dy0 against central differences."""
    y0 = torch.tensor([0.3, -0.2, 0.9], dtype=F64)
    noise = lambda t, y: 0.5 * torch.cos(y)
    loss = lambda y: (cd.sdesolve(lambda t, z: -z ** 3, y, noise=noise, method="milstein", steps=32, t0=0.0,
                                  t1=1.0, seed=8).y1 ** 2).sum()
    x = y0.clone().requires_grad_()
    loss(x).backward()
    eps = 1e-6
    fd = torch.stack([(loss(y0 + eps * e) - loss(y0 - eps * e)) / (2 * eps) for e in torch.eye(3, dtype=F64)])
    torch.testing.assert_close(x.grad, fd, rtol=1e-6, atol=1e-8)


# ---------------------------------------------------------------- SDEBlock

def test_sde_block_noise_modes():
    f = _field()
    block = cd.SDEBlock(f, 0.3, steps=16, eval_noise="sample")
    x = torch.randn(8, 3, dtype=F64)
    assert not torch.equal(block(x), block(x))               # training: fresh noise per call
    torch.manual_seed(5)
    first = block(x)
    torch.manual_seed(5)
    assert torch.equal(block(x), first)                      # ... drawn from torch's generator
    block.eval()
    assert not torch.equal(block(x), block(x))
    block.eval_noise = "fixed"
    assert torch.equal(block(x), block(x))
    assert torch.equal(block(x), cd.sdesolve(f, x, noise=0.3, steps=16, seed=block.eval_seed).y1)
    block.eval_noise = "off"
    assert torch.equal(block(x), cd.odesolve(f, x, method="euler", steps=16))
    assert block.stats.forward.nfe == 16


def test_sde_block_trains_its_diffusion():
    f = _field()
    block = cd.SDEBlock(f, _Diffusion(), steps=8, gradient="checkpoint")
    assert {name for name, _ in block.named_parameters()} >= {"noise.w", "noise.b"}
    block(torch.randn(4, 3, dtype=F64)).square().sum().backward()
    assert block.noise.w.grad.abs().min() > 0 and block.noise.b.grad.abs().min() > 0


# ---------------------------------------------------------------- Fokker-Planck

def _ou_density(x, t, a=1.0, nu=0.5, x0=2.0):
    m, v = x0 * math.exp(-a * t), nu ** 2 / (2 * a) * (1 - math.exp(-2 * a * t))
    return torch.exp(-(x - m) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v)


def test_fokker_planck_ou_against_exact_and_paths():
    """dX = -X dt + 0.5 dW from X0 = 2: the finite-volume density at T = 1 (started from the exact
    density at t = 0.05) against the exact Gaussian, mass conserved; a histogram of 100,000 paths
    against both."""
    x = torch.linspace(-3, 5, 401, dtype=F64)
    dx = (x[1] - x[0]).item()
    p0 = _ou_density(x, 0.05)
    p = fokker_planck_1d(lambda t, z: -z, 0.5, x, p0, 1.0, t0=0.05)
    assert (p - _ou_density(x, 1.0)).abs().sum().item() * dx < 1e-2
    assert abs(p.sum().item() - p0.sum().item()) * dx < 1e-12
    paths = cd.sdesolve(lambda t, y: -y, torch.full((100000,), 2.0, dtype=F64), noise=0.5, method="heun",
                        steps=64, t0=0.0, t1=1.0, seed=0).y1
    edges = x[::5]
    width = edges[1] - edges[0]
    hist = torch.histc(paths, len(edges) - 1, edges[0].item(), edges[-1].item()) / (len(paths) * width)
    centres = (edges[1:] + edges[:-1]) / 2
    assert (hist - _ou_density(centres, 1.0)).abs().sum().item() * width < 0.05
    p_at = torch.from_numpy(np.interp(centres.numpy(), x.numpy(), p.numpy()))
    assert (hist - p_at).abs().sum().item() * width < 0.05


def test_fokker_planck_time_dependent_drift_and_t_eval():
    """A drift F(t) independent of x only shifts the density: p(x, t) = p0(x - int F) spread by the heat kernel."""
    x = torch.linspace(-6, 6, 481, dtype=F64)
    dx = (x[1] - x[0]).item()
    nu, var0 = 0.4, 0.3
    gauss = lambda m, v: torch.exp(-(x - m) ** 2 / (2 * v)) / math.sqrt(2 * math.pi * v)
    drift = lambda t, z: torch.cos(t) * torch.ones_like(z)
    ps = fokker_planck_1d(drift, nu, x, gauss(0.0, var0), 2.0, t_eval=[1.0, 2.0])
    for p, t in zip(ps, (1.0, 2.0)):
        assert (p - gauss(math.sin(t), var0 + nu ** 2 * t)).abs().sum().item() * dx < 2e-3


# ---------------------------------------------------------------- bad input

def test_sdesolve_bad_input():
    y0 = torch.zeros(4, 2, dtype=F64)
    f = lambda t, y: -y
    run = lambda **kw: cd.sdesolve(f, y0, **{"noise": 0.1, "steps": 4, "t0": 0.0, "t1": 1.0, **kw})
    with pytest.raises(ValueError, match="noise must be a finite float >= 0"):
        run(noise=-0.1)
    with pytest.raises(TypeError, match="noise must be a float"):
        run(noise="0.1")
    with pytest.raises(ValueError, match=r"noise g\(t, y\) .* returned shape \(4,\)"):
        run(noise=lambda t, y: y.sum(1))
    with pytest.raises(ValueError, match=r"noise g\(t, y\) .*diagonal noise"):
        run(noise=lambda t, y: torch.ones(4, 2, 2, dtype=F64), method="milstein")
    with pytest.raises(ValueError, match="method must be one of"):
        run(method="rk4")
    with pytest.raises(ValueError, match="gradient must be one of"):
        run(gradient="reversible")
    with pytest.raises(ValueError, match="additive noise"):
        run(noise=lambda t, y: 0.1 * y, gradient="adjoint")
    with pytest.raises(ValueError, match="bm has shape"):
        run(bm=cd.BrownianPath(0.0, 1.0, (4,), dtype=F64))
    with pytest.raises(ValueError, match="bm covers"):
        run(bm=cd.BrownianPath(0.0, 0.5, (4, 2), dtype=F64))
    with pytest.raises(ValueError, match="bm has dtype"):
        run(bm=cd.BrownianPath(0.0, 1.0, (4, 2)))
    with pytest.raises(ValueError, match="not both"):
        run(bm=cd.BrownianPath(0.0, 1.0, (4, 2), dtype=F64), seed=1)
    with pytest.raises(TypeError, match="tensor state"):
        cd.sdesolve(f, (y0, y0), noise=0.1, steps=4, t0=0.0, t1=1.0)
    with pytest.raises(ValueError, match="steps is required"):
        run(steps=None)
    with pytest.raises(TypeError, match="integrates an SDE"):
        cd.solve(f, y0, t0=0.0, t1=1.0, method=cd.solvers.stochastic.EulerMaruyama(), steps=4)
    with pytest.raises(ValueError, match="eval_noise"):
        cd.SDEBlock(_field(), 0.1, eval_noise="mean")


def test_fokker_planck_bad_input():
    x = torch.linspace(-1, 1, 41, dtype=F64)
    p0 = torch.ones_like(x)
    with pytest.raises(ValueError, match="use steps >= "):
        fokker_planck_1d(lambda t, z: -z, 0.5, x, p0, 1.0, steps=3)
    with pytest.raises(ValueError, match="nu must be"):
        fokker_planck_1d(lambda t, z: -z, 0.0, x, p0, 1.0)
    with pytest.raises(ValueError, match="Peclet"):
        fokker_planck_1d(lambda t, z: -100 * z, 0.1, x, p0, 1.0)
    with pytest.raises(ValueError, match="uniform"):
        fokker_planck_1d(lambda t, z: -z, 0.5, x ** 3, p0, 1.0)
    with pytest.raises(ValueError, match="non-negative"):
        fokker_planck_1d(lambda t, z: -z, 0.5, x, -p0, 1.0)


# ---------------------------------------------------------------- predictive uncertainty

def test_calibration_and_entropy_closed_forms():
    from contdepth.analysis import expected_calibration_error, predictive_entropy
    p = torch.tensor([[0.6, 0.4]] * 4 + [[0.05, 0.95]] * 4, dtype=F64)
    y = torch.tensor([0] * 4 + [1, 1, 0, 0])
    # bin of 0.6: accuracy 1, confidence 0.6; bin of 0.95: accuracy 0.5, confidence 0.95
    assert expected_calibration_error(p, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.45, abs=1e-12)
    assert expected_calibration_error(torch.tensor([[0.9, 0.1]] * 10, dtype=F64), torch.tensor([0] * 9 + [1])) \
        == pytest.approx(0.0, abs=1e-12)
    h = predictive_entropy(torch.tensor([[0.25] * 4, [1.0, 0, 0, 0]], dtype=F64))
    torch.testing.assert_close(h, torch.tensor([math.log(4), 0.0], dtype=F64))
    with pytest.raises(ValueError, match="probs must be"):
        expected_calibration_error(p, y[:3])


def test_mc_probabilities_follow_the_block_noise():
    from contdepth.analysis import mc_probabilities
    block = cd.SDEBlock(_field(), 0.5, steps=8, eval_noise="fixed").eval()
    x = torch.randn(5, 3, dtype=F64)
    fixed = mc_probabilities(block, x, 3)
    assert fixed.shape == (3, 5, 3) and torch.equal(fixed[0], fixed[2])
    torch.testing.assert_close(fixed.sum(-1), torch.ones(3, 5, dtype=F64))
    block.eval_noise = "sample"
    sampled = mc_probabilities(block, x, 3)
    assert not torch.equal(sampled[0], sampled[1])
