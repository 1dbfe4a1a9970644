"""Analysis tools: Jacobian spectra vs stability regions, filter-normalised landscapes, trajectories."""
import math

import pytest
import torch
from torch import nn

import contdepth as cd
from contdepth.analysis import (Landscape, field_jacobian, filter_normalize, in_stability_region, layer_spectra,
                                loss_landscape, random_direction, stability_function, state_times, trajectory)


def linear_field(weights: torch.Tensor, t1: float = 1.0) -> cd.fields.CubicFriction:
    """F(x) = W(t) x (gamma = 0, zero bias): a linear field whose Jacobian is W(t)."""
    n, dim, _ = weights.shape
    f = cd.fields.CubicFriction(dim, cd.ControlGrid(0.0, t1, n=n), gamma=0.0, learn_gamma=False)
    with torch.no_grad():
        f.weight.copy_(weights)
    return f


def spiral(a: float, b: float, c: float) -> torch.Tensor:
    """3x3 matrix with eigenvalues a +- i b and c."""
    return torch.tensor([[a, b, 0.0], [-b, a, 0.0], [0.0, 0.0, c]])


def sort_complex(z: torch.Tensor) -> torch.Tensor:
    key = z.real * 1e6 + z.imag
    return z.gather(-1, key.argsort(dim=-1))


def test_stability_functions():
    z = torch.randn(50, dtype=torch.complex128)
    assert torch.allclose(stability_function(z, "euler"), 1 + z)
    assert torch.allclose(stability_function(z, "midpoint"), 1 + z + z ** 2 / 2)
    assert torch.allclose(stability_function(z, "rk4"), 1 + z + z ** 2 / 2 + z ** 3 / 6 + z ** 4 / 24)
    pts = torch.tensor([-1.0 + 0j, 0.1 + 0j, -2.5 + 0j, 2.5j, -2.0 + 0j, -2.9 + 0j])
    assert in_stability_region(pts, "euler").tolist() == [True, False, False, False, True, False]
    # RK4 reaches -2.785 on the real axis and +-2.828i on the imaginary axis
    assert in_stability_region(pts, "rk4").tolist() == [True, False, True, True, True, False]
    with pytest.raises(ValueError, match="method"):
        stability_function(pts, "dopri5")


def test_jacobian_of_linear_and_nonlinear_fields():
    W = torch.randn(1, 3, 3)
    x = torch.randn(7, 3)
    J = field_jacobian(linear_field(W), 0.0, x)
    assert J.shape == (7, 3, 3) and torch.allclose(J, W.expand(7, 3, 3), atol=1e-6)
    f = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 1.0, n=1), gamma=0.3)
    with torch.no_grad():
        f.weight.copy_(W)
    expected = W - 3 * 0.3 * torch.diag_embed(x ** 2)
    assert torch.allclose(field_jacobian(f, 0.0, x), expected, atol=1e-5)
    g = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.0, n=2), activation="tanh")
    K, b = g.weight[1].detach(), g.bias[1].detach()
    expected = torch.diag_embed(1 - torch.tanh(x @ K.T + b) ** 2) @ K  # seed 004 eq. 2.15
    assert torch.allclose(field_jacobian(g, 0.75, x), expected, atol=1e-6)


def test_jacobian_of_conv_field_matches_autograd():
    f = cd.fields.ConvResidual(2, cd.ControlGrid(0.0, 1.0, n=1), activation="tanh")
    x = torch.randn(2, 2, 3, 3)
    J = field_jacobian(f, 0.0, x)
    theta = f.theta_at(0.0)
    for b in range(2):
        ref = torch.autograd.functional.jacobian(lambda z: f.vector_field(torch.tensor(0.0, dtype=z.dtype), z.unsqueeze(0), theta)[0], x[b])
        assert torch.allclose(J[b], ref.reshape(18, 18), atol=1e-5)


def test_layer_spectra_known_spectrum():
    # four knots with known spectra; 8 Euler steps over [0, 2]: h = 0.25, step j uses knot j // 2
    mats = torch.stack([spiral(-1.0, 2.0, -0.5), spiral(-4.0, 1.0, -9.0), spiral(0.5, 3.0, -1.0), spiral(-2.0, 0.0, -3.0)])
    f = linear_field(mats, t1=2.0)
    x0 = torch.randn(5, 3)
    spec = layer_spectra(f, x0, steps=8)
    assert spec.h == 0.25 and spec.eigenvalues.shape == (8, 5, 3)
    assert torch.allclose(spec.times, torch.arange(8, dtype=torch.float64) * 0.25)
    for j in range(8):
        a = torch.linalg.eigvals(mats[j // 2].double())
        expected = sort_complex(0.25 * a).expand(5, 3)
        assert torch.allclose(sort_complex(spec.eigenvalues[j]), expected, atol=1e-6)
    # |1 + h lambda| <= 1: knot 0 all inside; knot 1: -1 +- 0.25i inside, -2.25 outside;
    # knot 2: 0.125 +- 0.75i outside, -0.25 inside; knot 3 all inside
    assert spec.inside_fraction("euler").tolist() == pytest.approx([1, 1, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 1, 1])
    assert spec.max_real().tolist() == pytest.approx([-0.5, -0.5, -4.0, -4.0, 0.5, 0.5, -2.0, -2.0])


def test_filter_normalize_norms():
    w = torch.randn(4, 5, 3, 3)
    w[1, 2] = 0.0
    d = filter_normalize(torch.randn(4, 5, 3, 3), w, filter_dims=2)
    assert torch.allclose(d.flatten(2).norm(dim=2), w.flatten(2).norm(dim=2), atol=1e-5)
    assert float(d[1, 2].abs().max()) == 0.0
    d = filter_normalize(torch.randn(4, 5), w[:, :, 0, 0], filter_dims=0)
    assert math.isclose(float(d.norm()), float(w[:, :, 0, 0].norm()), rel_tol=1e-5)
    with pytest.raises(ValueError, match="shape"):
        filter_normalize(torch.randn(3), torch.randn(4), filter_dims=1)
    with pytest.raises(ValueError, match="filter_dims"):
        filter_normalize(torch.randn(3), torch.randn(3), filter_dims=2)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.field = cd.fields.CubicFriction(4, cd.ControlGrid(0.0, 1.0, n=3))
        with torch.no_grad():
            self.field.weight.normal_()
            self.field.bias.normal_()
        self.head = nn.Linear(4, 2)


def test_random_direction_is_filter_normalised():
    net = Net()
    gen = torch.Generator().manual_seed(0)
    d = dict(zip([n for n, _ in net.named_parameters()], random_direction(net, generator=gen)))
    w = net.field.weight.detach()
    assert torch.allclose(d["field.weight"].norm(dim=2), w.norm(dim=2), atol=1e-5)  # one filter per (knot, row)
    assert torch.allclose(d["head.weight"].norm(dim=1), net.head.weight.detach().norm(dim=1), atol=1e-5)
    for name in ("field.bias", "field.gamma", "head.bias"):
        assert float(d[name].abs().max()) == 0.0
    d = dict(zip([n for n, _ in net.named_parameters()], random_direction(net, generator=gen, ignore_bias=False)))
    assert torch.allclose(d["field.bias"].norm(dim=1), net.field.bias.detach().norm(dim=1), atol=1e-5)
    assert math.isclose(float(d["head.bias"].norm()), float(net.head.bias.detach().norm()), rel_tol=1e-5)
    assert math.isclose(abs(float(d["field.gamma"])), abs(float(net.field.gamma.detach())), rel_tol=1e-5)


def test_loss_landscape_values_and_restore():
    net = Net()
    before = [p.detach().clone() for p in net.parameters()]
    params = list(net.parameters())
    d1 = [torch.randn_like(p) for p in params]
    d2 = [torch.randn_like(p) for p in params]

    def loss(m):
        return sum(p.pow(2).sum() for p in m.parameters())
    alphas, betas = [-1.0, 0.0, 0.5], [0.0, 2.0]
    land = loss_landscape(net, loss, alphas=alphas, betas=betas, directions=(d1, d2))
    assert land.loss.shape == (3, 2)
    for i, a in enumerate(alphas):
        for j, b in enumerate(betas):
            expected = sum(float((p0 + a * u + b * v).pow(2).sum()) for p0, u, v in zip(before, d1, d2))
            assert math.isclose(float(land.loss[i, j]), expected, rel_tol=1e-5)
    assert all(torch.equal(p, p0) for p, p0 in zip(net.parameters(), before))
    with pytest.raises(RuntimeError):
        loss_landscape(net, lambda m: (_ for _ in ()).throw(RuntimeError("boom")), alphas=[1.0], betas=[1.0])
    assert all(torch.equal(p, p0) for p, p0 in zip(net.parameters(), before))
    seeded = loss_landscape(net, loss, alphas=alphas, betas=betas, seed=5)
    assert torch.equal(seeded.loss, loss_landscape(net, loss, alphas=alphas, betas=betas, seed=5).loss)


def test_nonconvex_fraction():
    g = torch.linspace(-1, 1, 9, dtype=torch.float64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    assert Landscape(g, g, a ** 2 + 0.5 * b ** 2 + 0.3 * a * b).nonconvex_fraction() == 0.0
    assert Landscape(g, g, a ** 2 - b ** 2).nonconvex_fraction() == 1.0


def test_trajectory_matches_solver():
    f = linear_field(torch.stack([spiral(-0.3, 1.0, 0.2)] * 2), t1=2.0)
    x0 = torch.randn(4, 3)
    ts, ys = trajectory(f, x0, method="euler", steps=10)
    assert ts.tolist() == pytest.approx(state_times(0.0, 2.0, 10)) and ys.shape == (11, 4, 3)
    assert torch.equal(ys[0], x0)
    assert torch.allclose(ys[-1], cd.odesolve(f, x0, method="euler", steps=10))
    # each Euler step is x + h W x
    assert torch.allclose(ys[1], x0 + 0.2 * x0 @ f.weight[0].T, atol=1e-6)
    ts, ys = trajectory(f, x0, method="dopri5", n_points=5)
    exact = torch.linalg.matrix_exp(2.0 * f.weight[0].detach()) @ x0.T
    assert ys.shape == (5, 4, 3) and torch.allclose(ys[-1], exact.T, atol=1e-4)
    with pytest.raises(ValueError, match="steps"):
        trajectory(f, x0, method="rk4")


def test_plot_functions_write_pngs(tmp_path):
    import subprocess
    import sys
    code = "import sys, contdepth, contdepth.data, contdepth.analysis; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    import contdepth.plot as cplot
    f = linear_field(torch.stack([spiral(-0.3, 1.0, 0.2)] * 2), t1=2.0)
    x0 = torch.randn(4, 3)
    _, ys = trajectory(f, x0, method="euler", steps=10)
    spec = layer_spectra(f, x0, steps=4)
    g = torch.linspace(-1, 1, 5, dtype=torch.float64)
    a, b = torch.meshgrid(g, g, indexing="ij")
    X, y = torch.randn(30, 2), torch.arange(30) % 3
    figures = {
        "scatter": cplot.scatter_classes(X, y),
        "boundary": cplot.decision_boundary(lambda p: (p[:, 0] > 0).long(), X, y, resolution=20),
        "output": cplot.transformed_points(ys[-1], torch.rand(4)),
        "traj3d": cplot.trajectories(ys, annotate_every=5),
        "traj2d": cplot.trajectories(ys[..., :2], color=torch.rand(4)),
        "params": cplot.params_vs_layer(f),
        "eig": cplot.eigenvalues(spec.eigenvalues, methods=("euler", "rk4")),
        "land": cplot.landscape_contour(Landscape(g, g, 1 + a ** 2 + b ** 2), log=True),
        "grid": cplot.panel_grid(2, 3, lambda ax, i, j: ax.plot([i, j])),
        "curves": cplot.curves({"euler": [1.0, 0.5, 0.2], "rk4": [0.9, 0.4, 0.1]}, log=True),
    }
    for name, fig in figures.items():
        path = cplot.save(fig, tmp_path / f"{name}.png")
        assert path.read_bytes().startswith(b"\x89PNG") and path.stat().st_size > 1000
    with pytest.raises(ValueError, match="names"):
        cplot.params_vs_layer(f, names=("kernel",))
    with pytest.raises(ValueError, match="ys"):
        cplot.trajectories(torch.zeros(3, 2, 5))
    with pytest.raises(ValueError, match="series"):
        cplot.curves({})
    with pytest.raises(ValueError, match="n_rows"):
        cplot.panel_grid(0, 1, lambda ax, i, j: None)
