"""fit(optimizer="gn") and fit(optimizer="msa"): the control-theoretic optimizers inside the shared
training loop, on two circles (seed 002 sec. 5.1) lifted to R^3 by zeros; resumed runs end
bit-identical; unsupported combinations are errors naming the option."""
import pytest
import torch
import torch._dynamo  # noqa: F401 (imported at collection: see tests/test_control.py)
import torch.nn.functional as F
from torch import nn

import contdepth as cd
from contdepth.train import evaluate, fit


def _data():
    return cd.data.circles(200, seed=0), cd.data.circles(400, seed=100)


def _gn_model(seed=0):
    torch.manual_seed(seed)
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 5.0, n=8))
    return nn.Sequential(cd.lift.ZeroAugment(3), cd.ODEBlock(field, method="euler"), nn.Linear(3, 2))


def _msa_model(seed=0, method="euler"):
    """Only the field's knots train: the readout (psi_3, -psi_3) is fixed."""
    torch.manual_seed(seed)
    field = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 5.0, n=8))
    readout = nn.Linear(3, 2).requires_grad_(False)
    with torch.no_grad():
        readout.weight.copy_(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]))
        readout.bias.zero_()
    return nn.Sequential(cd.lift.ZeroAugment(3), cd.ODEBlock(field, method=method), readout)


def test_fit_gn_trains_lifted_circles():
    """6 full-batch Gauss-Newton steps: >= 0.95 test accuracy (0.99 measured), train loss 0.53 -> < 0.1."""
    (X, y), test = _data()
    model = _gn_model()
    history = fit(model, F.cross_entropy, (X, y), optimizer="gn", epochs=6, progress=False)
    assert evaluate(model, test) >= 0.95
    assert history["train_loss"][-1] < 0.1 < history["train_loss"][0]
    assert all(b < a for a, b in zip(history["train_loss"], history["train_loss"][1:]))
    assert all(r > 0 for r in history["train_reg"])  # pRegTh + pRegW of the default GaussNewtonVarPro


def test_fit_msa_trains_lifted_circles():
    """20 E-MSA iterations through fit (the EMSA settings of tests/test_control.py): >= 0.9 test accuracy."""
    (X, y), test = _data()
    model = _msa_model()
    opt = cd.control.EMSA(model[1].field, lr=0.05, rho=1.0, inner_steps=2, method="euler")
    history = fit(model, F.cross_entropy, (X, y), optimizer=opt, epochs=20, progress=False)
    assert evaluate(model, test) >= 0.9
    assert history["train_loss"][-1] < 0.5 * history["train_loss"][0]


@pytest.mark.parametrize("kind", ["gn", "msa"])
def test_resumed_runs_end_bit_identical(kind, tmp_path):
    (X, y), _ = _data()
    make = _gn_model if kind == "gn" else _msa_model
    straight = make()
    fit(straight, F.cross_entropy, (X, y), optimizer=kind, epochs=3, batch_size=100, progress=False)
    resumed = make()
    ckpt = tmp_path / "run.pt"
    fit(resumed, F.cross_entropy, (X, y), optimizer=kind, epochs=1, batch_size=100, progress=False, checkpoint=ckpt)
    resumed2 = make(seed=7)  # other initial weights: the checkpoint must restore them
    fit(resumed2, F.cross_entropy, (X, y), optimizer=kind, epochs=3, batch_size=100, progress=False, checkpoint=ckpt)
    for a, b in zip(straight.state_dict().values(), resumed2.state_dict().values()):
        assert torch.equal(a, b)


def test_unsupported_combinations_are_errors_naming_the_option():
    (X, y), _ = _data()
    gn, msa = _gn_model(), _msa_model()
    run = lambda model, **kw: fit(model, kw.pop("loss_fn", F.cross_entropy), (X, y), epochs=1, progress=False, **kw)
    with pytest.raises(TypeError, match=r"optimizer must be a torch.optim.Optimizer, one of \['gn', 'msa'\].*'lbfgs'"):
        run(gn, optimizer="lbfgs")
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, one of"):
        run(gn, optimizer=3)
    with pytest.raises(ValueError, match="loss_fn must be torch.nn.functional.cross_entropy"):
        run(gn, optimizer="gn", loss_fn=lambda out, t: (out ** 2).mean())
    with pytest.raises(ValueError, match="loss_fn must be torch.nn.functional.cross_entropy"):
        run(gn, optimizer="gn", loss_fn=nn.CrossEntropyLoss(label_smoothing=0.1))
    run(gn, optimizer="gn", loss_fn=nn.CrossEntropyLoss())  # the default module is the same loss
    with pytest.raises(ValueError, match=r"regularizer is not supported with optimizer='gn'.*alpha_theta"):
        run(gn, optimizer="gn", regularizer=lambda: torch.zeros(()))
    with pytest.raises(ValueError, match="clip_grad_norm is not supported with optimizer='msa'"):
        run(msa, optimizer="msa", clip_grad_norm=1.0)
    with pytest.raises(ValueError, match="scheduler is not supported with optimizer='gn'"):
        run(gn, optimizer="gn", scheduler=object())
    with pytest.raises(ValueError, match=r"nn.Sequential\(\*features, nn.Linear head\)"):
        run(nn.Sequential(*gn[:-1]), optimizer="gn")
    with pytest.raises(ValueError, match=r"other trainable parameters \['2.weight', '2.bias'\]"):
        run(gn, optimizer="msa")
    with pytest.raises(ValueError, match="one ODEBlock of a ControlledField"):
        run(nn.Sequential(nn.Linear(2, 2)), optimizer="msa")
    with pytest.raises(ValueError, match="method to be one of"):
        run(_msa_model(method="dopri5"), optimizer="msa")
    other = _gn_model(seed=1)
    with pytest.raises(ValueError, match="must be built on this model"):
        run(gn, optimizer=cd.control.GaussNewtonVarPro(other[:-1], other[-1]))
    with pytest.raises(ValueError, match="must be built on this model's field"):
        run(msa, optimizer=cd.control.EMSA(msa[1].field, method="rk4"))


def test_emsa_state_dict_round_trip_and_mismatch():
    field = _msa_model()[1].field
    opt = cd.control.EMSA(field, lr=0.05, rho=2.0, inner_steps=2, method="euler")
    (X, y), _ = _data()
    lift = cd.lift.ZeroAugment(3)
    opt.step(lift(X), lambda psi: F.softplus(psi[:, 2]).mean())
    state = opt.state_dict()
    again = cd.control.EMSA(field, lr=0.05, rho=2.0, inner_steps=2, method="euler")
    again.load_state_dict(state)
    exp_avg = lambda o: [o.inner.state[p]["exp_avg"] for p in o.inner.param_groups[0]["params"]]
    assert all(torch.equal(a, b) for a, b in zip(exp_avg(opt), exp_avg(again)))
    with pytest.raises(ValueError, match="rho=2.0, inner_steps=2; this EMSA has rho=1.0"):
        cd.control.EMSA(field, rho=1.0, inner_steps=2, method="euler").load_state_dict(state)
    with pytest.raises(ValueError, match="state must be an EMSA.state_dict"):
        again.load_state_dict({"inner": {}})
