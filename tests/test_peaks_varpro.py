"""examples/peaks.py --optimizer gn-varpro: seed 004's Gauss-Newton with variable projection and its
regularisers on the peaks experiments. The trained head is the minimiser W*(theta) of its convex
sub-problem, the nets beat chance by a wide margin, the two optimizers never share a checkpoint,
and every experiment runs end to end with the optimizer recorded in metrics.json."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from contdepth.control import ridge

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "peaks.py"


@pytest.fixture(scope="module")
def example():
    if str(EXAMPLE.parent) not in sys.path:  # the examples import their sibling _cli.py
        sys.path.insert(0, str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location("peaks_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def data(example):
    return example.peaks(n_train_per_class=200, n_test_per_class=40, seed=0)


def test_bad_optimizer_is_a_one_line_error_before_any_work(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(EXAMPLE.parents[1]),
                                                                      os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(EXAMPLE), "--optimizer", "sgd"], env=env, cwd=tmp_path, timeout=120,
                          capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith("peaks.py: error: argument --optimizer: invalid choice: 'sgd'"), lines[0]
    assert list(tmp_path.iterdir()) == [] and not done.stdout


def test_options_and_config(example, tmp_path):
    assert example.parse_args([]).out == Path("out/peaks")
    assert example.parse_args(["--optimizer", "gn-varpro"]).out == Path("out/peaks-varpro")
    assert example.parse_args(["--optimizer", "gn-varpro", "--out", str(tmp_path)]).out == tmp_path
    adam = example.config("adam", quick=True, seed=0)
    gn = example.config("gn-varpro", quick=True, seed=0)
    assert adam == {**example.QUICK, "optimizer": "adam", "seed": 0}  # Adam's settings are unchanged
    assert gn["optimizer"] == "gn-varpro" and gn["batch_size"] is None and "lr" not in gn
    assert (gn["alpha_theta"], gn["alpha_w"], gn["epochs"]) == (1e-3, 1e-3, 15)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        example.config("sgd", quick=True, seed=0)


def test_gn_varpro_head_solves_its_subproblem_and_checkpoints_stay_apart(example, data, tmp_path):
    train_data, test_data = data
    cfg = example.config("gn-varpro", quick=True, seed=0)
    net = example.make_net(0, T=20.0, control=16, steps=8)
    info = example.train(net, train_data, cfg, tmp_path, "probe", progress=False)
    assert len(info["train_loss"]) == 15 and info["train_loss"][-1] < 0.5 * info["train_loss"][0]
    assert info["final_train_reg"] > 0  # pRegTh + pRegW are part of the objective
    # the head is W*(theta): the gradient of CE + alpha_w/2 ||W||^2 in (W, bias) vanishes at the trained theta
    with torch.no_grad():
        feats = net.block(net.duplicate(train_data[0]))
    w = torch.cat([net.head.weight, net.head.bias[:, None]], 1).detach().requires_grad_()
    phi = F.cross_entropy(torch.cat([feats, torch.ones(len(feats), 1)], 1) @ w.T, train_data[1]) \
        + ridge(w, alpha=cfg["alpha_w"])
    (grad,) = torch.autograd.grad(phi, w)
    assert grad.norm() < 1e-4
    assert example.evaluate(net, test_data) > 0.8  # chance is 0.2 (0.935 measured)

    gn_file = tmp_path / "checkpoints" / "quick-gn-varpro-probe-seed0.pt"
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [gn_file.name]
    adam_net = example.make_net(0, T=20.0, control=16, steps=8)
    example.train(adam_net, train_data, example.config("adam", quick=True, seed=0), tmp_path, "probe", progress=False)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["quick-gn-varpro-probe-seed0.pt",
                                                                             "quick-probe-seed0.pt"]
    again = example.make_net(0, T=20.0, control=16, steps=8)
    resumed = example.train(again, train_data, cfg, tmp_path, "probe", progress=False)  # finished: no training
    assert resumed["train_loss"] == info["train_loss"]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), net.state_dict().values()))
    assert not torch.equal(adam_net.head.weight, net.head.weight)


def test_every_experiment_runs_with_gn_varpro(example, monkeypatch, tmp_path):
    monkeypatch.setitem(example.QUICK, "per_class", 60)
    monkeypatch.setitem(example.QUICK, "state_layers", [8, 16])
    monkeypatch.setitem(example.QUICK, "eig_layers", [8])
    monkeypatch.setitem(example.QUICK, "landscape_points", 5)
    monkeypatch.setitem(example.QUICK, "dopri5", False)
    monkeypatch.setitem(example.GN_VARPRO_QUICK, "epochs", 4)
    example.main(example.parse_args(["--optimizer", "gn-varpro", "--quick", "--no-progress", "--out", str(tmp_path)]))
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["config"]["optimizer"] == "gn-varpro" and m["config"]["epochs"] == 4 and m["n_train"] == 300
    cross = m["cross_eval"]
    assert len(cross["test_acc"]) == 2 and all(len(row) == 2 for row in cross["test_acc"])
    assert all(r > 0 for r in cross["final_train_reg"])
    assert all(cross["test_acc"][i][i] > 0.4 for i in range(2))  # chance is 0.2
    assert set(m["stability"]["nets"]) == set(m["stability"]["nets_antisymmetric"]) == {"8"}
    assert m["stability"]["nets_antisymmetric"]["8"]["max_real_lambda"] <= 1e-6
    assert set(m["landscape"]["nets"]) == {"8", "20"}
    for method in ("euler", "rk4"):
        r = m["euler_vs_rk4"][f"trained_{method}"]
        assert len(r["train_loss"]) == len(r["test_loss"]) == 4 and r["final_train_reg"] > 0
    assert len(m["two_step_vs_resnet"]["linear_two_step"]["learned_k"]) == 16
    checkpoints = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert len(checkpoints) == 10 and all(name.startswith("quick-gn-varpro-") for name in checkpoints)
