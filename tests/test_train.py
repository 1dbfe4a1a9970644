"""contdepth.train: fit/evaluate semantics, bit-exact resume, atomic JSON."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from contdepth.io import write_json_atomic
from contdepth.train import count_correct, evaluate, fit


def _data(n: int = 96, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, 4, generator=g)
    y = (X[:, 0] * X[:, 1] > 0).long()
    return X, y


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    # dropout makes the run depend on the global RNG, so resume must restore it
    return nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 2))


def _params(m: nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in m.parameters()]


def _run(epochs, ckpt=None, fail_at_step=None, seed=3, transform=None, every=1):
    m = _model()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    calls = {"n": 0}

    def loss_fn(out, y):
        calls["n"] += 1
        if fail_at_step is not None and calls["n"] == fail_at_step:
            raise KeyboardInterrupt  # simulated kill in the middle of an epoch
        return nn.functional.cross_entropy(out, y)

    res = fit(
        m, loss_fn, _data(), optimizer=opt, epochs=epochs, batch_size=20, checkpoint=ckpt, checkpoint_every=every,
        seed=seed, progress=False, eval_data=_data(40, 2), scheduler=sched,
        regularizer=lambda: 1e-3 * sum((p**2).sum() for p in m.parameters()), transform=transform,
    )
    return m, res


def test_resume_after_interrupt_is_bit_identical(tmp_path):
    ref, ref_res = _run(5)
    ckpt = tmp_path / "run.pt"
    # 5 batches per epoch: step 13 is in the middle of epoch 3
    with pytest.raises(KeyboardInterrupt):
        _run(5, ckpt, fail_at_step=13)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 2
    resumed, res = _run(5, ckpt)
    assert res["resumed_from_epoch"] == 2 and res["epochs_run_now"] == 3
    for a, b in zip(_params(ref), _params(resumed)):
        assert torch.equal(a, b)
    assert res["train_loss"] == ref_res["train_loss"]
    assert res["eval_acc"] == ref_res["eval_acc"]
    assert res["steps"] == ref_res["steps"] == 25
    # a different seed gives different weights (the check above is not vacuous)
    other, _ = _run(5, seed=4)
    assert not all(torch.equal(a, b) for a, b in zip(_params(ref), _params(other)))


def _jitter(x, y):
    return x + 0.1 * torch.randn_like(x), y


def test_random_transform_resumes_bit_identically(tmp_path):
    ref, _ = _run(4, transform=_jitter)
    plain, _ = _run(4)
    assert not all(torch.equal(a, b) for a, b in zip(_params(ref), _params(plain)))
    ckpt = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        _run(4, ckpt, fail_at_step=13, transform=_jitter)
    resumed, _ = _run(4, ckpt, transform=_jitter)
    for a, b in zip(_params(ref), _params(resumed)):
        assert torch.equal(a, b)


def test_transform_is_applied_to_training_batches_only():
    X, y = _data()
    seen = []

    def shift(xb, yb):
        seen.append(len(xb))
        return xb + 3.0, yb

    def train(data, transform):
        torch.manual_seed(0)
        m = nn.Linear(4, 2)
        hist = fit(m, nn.functional.cross_entropy, data, optimizer=torch.optim.SGD(m.parameters(), lr=0.1), epochs=2,
                   batch_size=32, progress=False, transform=transform, eval_data=(X, y))
        return m, hist
    a, hist_a = train((X, y), shift)
    b, hist_b = train((X + 3.0, y), None)
    assert seen == [32, 32, 32] * 2
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert hist_a["train_loss"] == hist_b["train_loss"]
    # evaluation sees the data untransformed
    assert hist_a["eval_acc"][-1] == evaluate(a, (X, y)) != evaluate(a, (X + 3.0, y))
    with torch.no_grad():
        assert hist_a["eval_loss"][-1] == pytest.approx(float(nn.functional.cross_entropy(a(X), y)), rel=1e-6)
    with pytest.raises(TypeError, match="transform"):
        fit(a, nn.functional.cross_entropy, (X, y), optimizer=torch.optim.SGD(a.parameters(), lr=0.1), epochs=1,
            transform="rotate")


def test_resume_with_wrong_seed_or_fewer_epochs_is_refused(tmp_path):
    ckpt = tmp_path / "run.pt"
    _run(2, ckpt)
    with pytest.raises(ValueError, match="seed"):
        _run(3, ckpt, seed=99)
    with pytest.raises(ValueError, match="epochs=1"):
        _run(1, ckpt)


def test_checkpoint_every_n_epochs_and_the_last(tmp_path):
    ref, ref_res = _run(5)
    ckpt = tmp_path / "run.pt"
    # 5 batches per epoch: step 23 is in epoch 5; with every=3 the last checkpoint is after epoch 3
    with pytest.raises(KeyboardInterrupt):
        _run(5, ckpt, fail_at_step=23, every=3)
    assert torch.load(ckpt, weights_only=False)["epoch"] == 3
    resumed, res = _run(5, ckpt, every=3)
    assert res["resumed_from_epoch"] == 3 and torch.load(ckpt, weights_only=False)["epoch"] == 5
    for a, b in zip(_params(ref), _params(resumed)):
        assert torch.equal(a, b)
    assert res["eval_loss"] == ref_res["eval_loss"] and len(res["eval_loss"]) == 5
    with pytest.raises(ValueError, match="checkpoint_every"):
        _run(1, tmp_path / "other.pt", every=0)


def test_full_batch_is_gradient_descent_on_whole_set():
    X, y = _data()
    torch.manual_seed(0)
    m = nn.Linear(4, 2)
    m2 = nn.Linear(4, 2)
    m2.load_state_dict(m.state_dict())
    res = fit(m, nn.functional.cross_entropy, (X, y), optimizer=torch.optim.SGD(m.parameters(), lr=0.5),
              epochs=3, progress=False)
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.5)
    losses = []
    for _ in range(3):
        opt2.zero_grad()
        loss = nn.functional.cross_entropy(m2(X), y)
        losses.append(loss.item())
        loss.backward()
        opt2.step()
    assert res["steps"] == 3
    assert res["train_loss"] == pytest.approx(losses, rel=1e-6)
    for a, b in zip(m.parameters(), m2.parameters()):
        torch.testing.assert_close(a, b)


def test_dataset_and_tensor_tuple_give_same_training():
    X, y = _data()
    out = []
    for data in ((X, y), TensorDataset(X, y)):
        m = _model()
        fit(m, nn.functional.cross_entropy, data, optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
            epochs=2, batch_size=32, progress=False)
        out.append(_params(m))
    for a, b in zip(*out):
        assert torch.equal(a, b)


def test_evaluate_and_count_correct():
    X = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 3.0]])
    y = torch.tensor([0, 1, 1, 1])
    ident = nn.Identity()
    ident.register_parameter("dummy", nn.Parameter(torch.zeros(1)))
    assert evaluate(ident, (X, y), batch_size=3) == 0.75
    assert int(count_correct(torch.tensor([0.3, -1.0]), torch.tensor([1.0, 1.0]))) == 1
    with pytest.raises(ValueError, match="shape"):
        count_correct(torch.zeros(3, 2, 2), torch.zeros(2))


def test_argument_errors():
    m = nn.Linear(4, 2)
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    X, y = _data()
    ce = nn.functional.cross_entropy
    with pytest.raises(ValueError, match="epochs"):
        fit(m, ce, (X, y), optimizer=opt, epochs=-1)
    with pytest.raises(ValueError, match="batch_size"):
        fit(m, ce, (X, y), optimizer=opt, epochs=1, batch_size=0)
    with pytest.raises(TypeError, match="optimizer"):
        fit(m, ce, (X, y), optimizer="adam", epochs=1)
    with pytest.raises(ValueError, match="train_data"):
        fit(m, ce, (X, y[:5]), optimizer=opt, epochs=1)
    with pytest.raises(TypeError, match="train_data"):
        fit(m, ce, [X, y], optimizer=opt, epochs=1)


def test_nonfinite_loss_raises():
    m = nn.Linear(4, 2)
    X, y = _data()
    with pytest.raises(FloatingPointError, match="epoch 1"):
        fit(m, lambda o, t: o.sum() * math.inf, (X, y), optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
            epochs=1, progress=False)


def test_write_json_atomic(tmp_path):
    p = tmp_path / "sub" / "metrics.json"
    write_json_atomic(p, {"a": 1, "b": [0.5]})
    assert json.loads(p.read_text()) == {"a": 1, "b": [0.5]}
    with pytest.raises(ValueError):
        write_json_atomic(p, {"a": float("nan")})
    with pytest.raises(TypeError):
        write_json_atomic(p, {"a": object()})
    assert json.loads(p.read_text()) == {"a": 1, "b": [0.5]}  # failed writes leave the old file
    assert [q.name for q in p.parent.iterdir()] == ["metrics.json"]  # and no temp files


def test_clip_grad_norm_bounds_each_sgd_step():
    X, y = _data()
    m = nn.Linear(4, 2)
    before = torch.cat([p.detach().flatten() for p in m.parameters()])
    fit(m, nn.functional.cross_entropy, (X, y), optimizer=torch.optim.SGD(m.parameters(), lr=1.0), epochs=1,
        progress=False, clip_grad_norm=1e-3)
    after = torch.cat([p.detach().flatten() for p in m.parameters()])
    assert 0 < float((after - before).norm()) <= 1e-3 * (1 + 1e-5)
    with pytest.raises(ValueError, match="clip_grad_norm"):
        fit(m, nn.functional.cross_entropy, (X, y), optimizer=torch.optim.SGD(m.parameters(), lr=1.0), epochs=1,
            clip_grad_norm=0)


def test_batch_scheduler_steps_after_every_optimizer_step():
    X, y = _data()
    m = nn.Linear(4, 2)
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    res = fit(m, nn.functional.cross_entropy, (X, y), optimizer=opt, epochs=2, batch_size=20, progress=False,
              scheduler=sched, scheduler_interval="batch")
    assert res["steps"] == 10 and sched.last_epoch == 10 and opt.param_groups[0]["lr"] == 0.5 ** 10
    opt = torch.optim.SGD(m.parameters(), lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5 ** step)
    fit(m, nn.functional.cross_entropy, (X, y), optimizer=opt, epochs=2, batch_size=20, progress=False,
        scheduler=sched)
    assert sched.last_epoch == 2  # the default: once per epoch
    with pytest.raises(ValueError, match="scheduler_interval"):
        fit(m, nn.functional.cross_entropy, (X, y), optimizer=opt, epochs=1, scheduler_interval="step")


def test_fit_projects_bounded_gamma_after_every_step():
    """A friction field with gamma_min: plain SGD pushes gamma below the bound, fit projects it back."""
    import contdepth as cd

    torch.manual_seed(0)
    field = cd.fields.CubicFriction(2, cd.ControlGrid(0.0, 1.0, n=1), gamma=0.0, gamma_min=0.0)
    block = cd.ODEBlock(field, method="euler", steps=2)
    X = torch.randn(32, 2)
    seen = []

    def loss_fn(out, _):
        seen.append(float(field.gamma.detach()))
        return -(out ** 2).mean()  # rewards growth: the gradient asks for gamma < 0

    fit(block, loss_fn, (X, torch.zeros(32)), optimizer=torch.optim.SGD([field.gamma], lr=0.01), epochs=1,
        batch_size=8, progress=False)
    assert seen == [0.0] * 4 and float(field.gamma.detach()) == 0.0
    free = cd.fields.CubicFriction(2, cd.ControlGrid(0.0, 1.0, n=1), gamma=0.0)
    fit(cd.ODEBlock(free, method="euler", steps=2), lambda out, y: -(out ** 2).mean(), (X, torch.zeros(32)),
        optimizer=torch.optim.SGD([free.gamma], lr=0.01), epochs=1, batch_size=8, progress=False)
    assert float(free.gamma.detach()) < 0  # without the bound the same training leaves it
