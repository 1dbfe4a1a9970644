"""Gauss-Newton with variable projection (contdepth.control.classifier_fit, GaussNewtonVarPro).

Oracles: autograd of the written-out objective, torch.autograd.functional.jacobian, central
differences, and a two-class case solved by hand. float64 except where stated.
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import contdepth as cd
from contdepth.control import GaussNewtonVarPro, classifier_fit, ridge


def _net(seed: int = 0, method: str = "rk4"):
    torch.manual_seed(seed)
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.5, n=3))
    features = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), cd.ODEBlock(field, method=method, steps=3)).double()
    head = nn.Linear(3, 3).double()
    x = torch.randn(12, 2, dtype=torch.float64)
    labels = torch.arange(12) % 3
    return features, head, x, labels


def _phi(w, y, labels, alpha):
    yt = torch.cat([y, torch.ones(len(y), 1, dtype=y.dtype)], 1)
    return F.cross_entropy(yt @ w.T, labels) + ridge(w, alpha=alpha)


def test_classifier_fit_satisfies_kkt_and_is_independent_of_the_start():
    torch.manual_seed(0)
    y = torch.randn(40, 4, dtype=torch.float64)
    labels = torch.randint(0, 3, (40,))
    w, iters = classifier_fit(y, labels, 3, alpha=1e-2)
    assert 1 <= iters <= 20
    w = w.clone().requires_grad_()
    (grad,) = torch.autograd.grad(_phi(w, y, labels, 1e-2), w)
    assert grad.norm() < 1e-10  # KKT: the convex sub-problem's gradient vanishes at W*
    w2, _ = classifier_fit(y, labels, 3, alpha=1e-2, start=torch.randn(3, 5, dtype=torch.float64) * 3)
    assert (w2 - w.detach()).abs().max() < 1e-9  # strictly convex: one minimiser


def test_classifier_fit_two_class_bias_only_closed_form():
    """No features, two classes, 3 of 4 samples in class 0: by symmetry W* = (beta, -beta) with
    sigmoid(2 beta) - 3/4 + alpha beta = 0; choose beta = 1/2 and solve for alpha."""
    beta = 0.5
    alpha = (0.75 - 1 / (1 + math.exp(-2 * beta))) / beta
    w, _ = classifier_fit(torch.zeros(4, 0, dtype=torch.float64), torch.tensor([0, 0, 0, 1]), 2, alpha=alpha)
    assert w.shape == (2, 1)
    assert (w.flatten() - torch.tensor([beta, -beta], dtype=torch.float64)).abs().max() < 1e-12


def test_reduced_gradient_is_the_full_gradient_at_w_star_and_the_derivative_of_J():
    features, head, x, labels = _net()
    opt = GaussNewtonVarPro(features, head, alpha_theta=0.1, alpha_w=0.05, newton_tol=1e-13)
    value = opt.evaluate(x, labels)
    g = opt.gradient(x, labels)
    # the full objective L(theta, W) with W frozen at W*(theta), differentiated in theta by autograd
    w_star = value.weight
    y = features(x)
    full = _phi(w_star, y, labels, 0.05) + sum(cd.control.time_smoothness(m, alpha=0.1)
                                              for m in features.modules() if isinstance(m, cd.fields.ControlledField))
    grads = torch.autograd.grad(full, [p for p in features.parameters()])
    g_full = torch.cat([q.reshape(-1) for q in grads])
    assert value.objective.item() == pytest.approx(full.item(), rel=1e-13)
    assert (g - g_full).abs().max() < 1e-11
    # and it is the derivative of the reduced J(theta) = min_W L(theta, W): central differences
    theta = opt.theta()
    torch.manual_seed(5)
    for _ in range(3):
        v = torch.randn_like(theta)
        eps = 1e-5
        fd = (opt.evaluate(x, labels, theta + eps * v).objective - opt.evaluate(x, labels, theta - eps * v).objective) / (2 * eps)
        assert fd.item() == pytest.approx(g.dot(v).item(), rel=1e-7, abs=1e-9)


def _by_hand(theta, x, method):
    """features(x) of _net written out: tanh(W0 x + b0), then 3 steps h = 0.5 of F = tanh(K_k z + b_k)."""
    w0, b0 = theta[:6].view(3, 2), theta[6:9]
    ks, bs = theta[9:36].view(3, 3, 3), theta[36:45].view(3, 3)
    z, h = torch.tanh(x @ w0.T + b0), 0.5
    for k in range(3):
        f = lambda z: torch.tanh(z @ ks[k].T + bs[k])
        if method == "euler":
            z = z + h * f(z)
        else:
            k1 = f(z)
            k2 = f(z + h / 2 * k1)
            k3 = f(z + h / 2 * k2)
            k4 = f(z + h * k3)
            z = z + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return z


def _jacobian(opt, x, method="rk4"):
    theta = opt.theta()
    assert (_by_hand(theta, x, method) - opt.features(x)).abs().max() < 1e-14
    return torch.autograd.functional.jacobian(lambda th: _by_hand(th, x, method), theta).reshape(-1, theta.numel())


@pytest.mark.parametrize("method, gradient", [("euler", "backprop"), ("rk4", "backprop"), ("rk4", "checkpoint")])
def test_jvp_and_vjp_agree_with_the_jacobian(method, gradient):
    features, head, x, _ = _net(1, method)
    features[2].gradient = gradient
    opt = GaussNewtonVarPro(features, head)
    jac = _jacobian(opt, x, method)
    assert jac.shape == (12 * 3, sum(p.numel() for p in features.parameters()))
    torch.manual_seed(3)
    v = torch.randn(jac.shape[1], dtype=torch.float64)
    w = torch.randn(12, 3, dtype=torch.float64)
    y, jvp, vjp = opt.linearise(x)
    assert torch.equal(y, features(x).detach())
    for _ in range(2):  # the graph is reused
        assert (jvp(v).reshape(-1) - jac @ v).abs().max() < 1e-12
        assert (vjp(w) - jac.T @ w.reshape(-1)).abs().max() < 1e-12


def test_gauss_newton_matrix_is_j_transpose_d_j_plus_the_regulariser_hessian():
    features, head, x, labels = _net(2)
    opt = GaussNewtonVarPro(features, head, alpha_theta=0.2, alpha_w=0.1)
    value = opt.evaluate(x, labels)
    jac = _jacobian(opt, x).reshape(12, 3, -1)
    p = torch.softmax(value.logits, 1)
    wt = value.weight[:, :3]
    blocks = torch.stack([wt.T @ (torch.diag(pn) - torch.outer(pn, pn)) @ wt for pn in p]) / 12  # (B, d, d)
    a = torch.autograd.functional.hessian(opt.regulariser, opt.theta())
    gn = torch.einsum("nip,nij,njq->pq", jac, blocks, jac) + a
    torch.manual_seed(4)
    for _ in range(2):
        v = torch.randn(gn.shape[0], dtype=torch.float64)
        assert (opt.gn_matvec(x, labels, v) - gn @ v).abs().max() < 1e-12
    assert torch.linalg.eigvalsh(gn).min() > -1e-12  # positive semi-definite


def test_damping_adds_a_multiple_of_the_identity():
    features, head, x, labels = _net(2)
    plain = GaussNewtonVarPro(features, head).gn_matvec(x, labels, v := torch.randn(45, dtype=torch.float64))
    damped = GaussNewtonVarPro(features, head, damping=0.5).gn_matvec(x, labels, v)
    assert (damped - plain - 0.5 * v).abs().max() < 1e-15


def test_gauss_newton_decreases_the_objective_monotonically():
    features, head, x, labels = _net(3)
    opt = GaussNewtonVarPro(features, head, alpha_theta=1e-3, alpha_w=1e-3, cg_iters=15)
    values = [opt.evaluate(x, labels).objective.item()]
    for _ in range(6):
        before = opt.step(x, labels).objective.item()
        assert before == pytest.approx(values[-1], rel=1e-12)
        assert opt.last["step_size"] > 0
        values.append(opt.evaluate(x, labels).objective.item())
        assert values[-1] == pytest.approx(opt.last["objective_after"], rel=1e-10)
        assert values[-1] < values[-2]
    assert values[-1] < 0.6 * values[0]  # measured 0.957 -> 0.523
    # the head holds W*(theta): the network's own logits are those of the reduced objective
    assert (head(features(x)) - opt.evaluate(x, labels).logits).abs().max() < 1e-8


@pytest.mark.parametrize("kwargs, match", [
    ({"alpha_w": 0.0}, "alpha_w must be"),
    ({"alpha_theta": -1.0}, "alpha_theta must be"),
    ({"cg_tol": 2.0}, "cg_tol must be"),
    ({"cg_iters": 0}, "cg_iters must be"),
    ({"armijo": 0.7}, "armijo must be"),
    ({"newton_tol": 0.0}, "newton_tol must be"),
    ({"newton_iters": 0}, "newton_iters must be"),
    ({"damping": -1.0}, "damping must be"),
])
def test_bad_settings_are_clear_errors(kwargs, match):
    features, head, _, _ = _net()
    with pytest.raises((ValueError, TypeError), match=match):
        GaussNewtonVarPro(features, head, **kwargs)


def test_bad_models_and_labels_are_clear_errors():
    features, head, x, labels = _net()
    with pytest.raises(TypeError, match="head must be a torch.nn.Linear"):
        GaussNewtonVarPro(features, nn.Sequential(head))
    with pytest.raises(ValueError, match="also parameters of features"):
        GaussNewtonVarPro(nn.Sequential(features, head), head)
    opt = GaussNewtonVarPro(features, head)
    with pytest.raises(TypeError, match="labels must be an int64"):
        opt.step(x, labels.double())
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        opt.step(x, labels + 1)
    with pytest.raises(ValueError, match="features\\(x\\) must be"):
        GaussNewtonVarPro(features, nn.Linear(4, 3).double()).evaluate(x, labels)
    with pytest.raises(ValueError, match="alpha must be"):
        classifier_fit(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long), 2, alpha=0.0)
    with pytest.raises(cd.SolverError, match="max_iter"):
        classifier_fit(torch.randn(20, 2, dtype=torch.float64) * 5, torch.arange(20) % 2, 2, alpha=1e-3, max_iter=1)
