"""The MNIST examples' layer figures without training: examples/mnist.py's activations.png,
controls.png and mass budget on untrained models (an Euler block and odenet's adaptive one), and
examples/mnist_sweep.py's fig45.png (seed 000 fig. 4.5) from the runs' checkpoints."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from contdepth.analysis import layer_states, mass_budget
from contdepth.data.mnist import load_mnist
from contdepth.models import build_mnist_model
from contdepth.train import TrainState, save_checkpoint

from conftest import MNIST_DIR as DATA
from conftest import need_mnist

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module", autouse=True)
def _mnist():
    need_mnist()


def _load(name: str):
    if str(REPO / "examples") not in sys.path:  # the examples import their sibling _cli.py
        sys.path.insert(0, str(REPO / "examples"))
    spec = importlib.util.spec_from_file_location(f"{name}_example", REPO / "examples" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and len(data) > 1000


def _perturbed(name: str, depth: int, seed: int):
    torch.manual_seed(seed)
    model = build_mnist_model(name, depth)
    with torch.no_grad():
        for p in model.block.field.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def test_first_test_image_is_the_first_zero_of_the_full_test_set():
    runner = _load("mnist")
    x = runner.first_test_image(str(DATA), normalize=False)
    X, y = load_mnist(DATA, train=False, normalize=False)
    assert y[:4].tolist() == [7, 2, 1, 0] and torch.equal(x, X[3:4])


def test_layer_figures_of_an_euler_block_and_its_mass_budget(tmp_path):
    runner = _load("mnist")
    model = _perturbed("pde1", 3, 0)
    x = runner.first_test_image(str(DATA), normalize=True)
    images = load_mnist(DATA, train=False, limit=20)[0]
    budget = runner.layer_figures(model, tmp_path, name="pde1", x=x, images=images)
    _png(tmp_path / "activations.png")
    _png(tmp_path / "controls.png")
    expected = mass_budget(model, images).as_dict()
    assert {k: budget[k] for k in expected} == expected and budget["images"] == 20
    assert len(budget["mass"]) == 4 and len(budget["outflow"]) == 3
    states, times = runner.digit_states(model, x)
    assert times is None and torch.equal(states, layer_states(model, x)[:, 0])


def test_layer_figures_of_an_adaptive_block_sample_eleven_times(tmp_path):
    runner = _load("mnist")
    model = build_mnist_model("odenet", width=8).eval()
    x = runner.first_test_image(str(DATA), normalize=True)
    states, times = runner.digit_states(model, x)
    assert times == pytest.approx([i / 10 for i in range(11)]) and states.shape == (11, 8, 6, 6)
    with torch.no_grad():
        stem = model.stem(x)
        torch.testing.assert_close(states[0], stem[0], rtol=0, atol=0)
        torch.testing.assert_close(states[-1], model.block(stem)[0], rtol=1e-3, atol=1e-3)
    assert runner.layer_figures(model, tmp_path, name="odenet", x=x, images=x) is None  # no Euler layers
    _png(tmp_path / "activations.png")
    _png(tmp_path / "controls.png")


def test_sweep_fig45_draws_the_trained_pde1_and_pde2_of_each_depth(tmp_path, monkeypatch):
    _load("mnist")
    sweep = _load("mnist_sweep")
    args = sweep.parse_args(["--models", "pde1", "pde2", "--depths", "2", "3", "--table-only", "--out", str(tmp_path)])
    results = {}
    for i, (m, d) in enumerate([("pde1", 2), ("pde2", 2), ("pde1", 3)]):
        model = _perturbed(m, d, i)
        sweep.run_dir(args, m, d).mkdir()
        save_checkpoint(sweep.run_dir(args, m, d) / "checkpoint.pt", model, torch.optim.SGD(model.parameters()),
                        None, TrainState(), seed=0, epochs=1)  # as fit writes it (numpy RNG state too)
        results[(m, d)] = {"epochs": 1}
        x = torch.randn(1, 1, 28, 28)
        assert torch.equal(sweep.trained_states(args, m, d, x), layer_states(model, x)[:, 0])  # the saved weights
    results[("pde2", 3)] = None  # not run: depth 3 has no pair
    monkeypatch.delenv("CONTDEPTH_DATA", raising=False)
    assert sweep.plot_fig45(results, args, tmp_path / "fig45.png") == []  # no MNIST folder for the digit
    args.data = str(DATA)
    assert sweep.plot_fig45(results, args, tmp_path / "fig45.png") == [2]
    _png(tmp_path / "fig45.png")


def test_sweep_learned_table_reads_each_pde_runs_coefficients_and_mass(tmp_path):
    _load("mnist")
    sweep = _load("mnist_sweep")
    args = sweep.parse_args(["--models", "pde1", "pde2", "resnet", "--depths", "3", "--table-only",
                             "--out", str(tmp_path)])
    results = {("resnet", 3): {"epochs": 1}}  # not a PDE net: no row
    models = {}
    for i, m in enumerate(("pde1", "pde2")):
        models[m] = model = _perturbed(m, 3, i)
        sweep.run_dir(args, m, 3).mkdir()
        save_checkpoint(sweep.run_dir(args, m, 3) / "checkpoint.pt", model, torch.optim.SGD(model.parameters()),
                        None, TrainState(), seed=0, epochs=1)
        results[(m, 3)] = {"mass_budget": {"mass": [1.0, 2.0, 3.0, 8.0], "outflow": [0.5, 0.25, 0.25]}}
    rows = [line for line in sweep.learned_table(results, args).splitlines() if line.startswith("| pde")]
    assert len(rows) == 4
    for m, first, rest in ((m, rows[2 * i], rows[2 * i + 1]) for i, m in enumerate(("pde1", "pde2"))):
        k = models[m].block.field.coefficients()
        drift0 = f"{k['drift_x'][0].abs().item():.1e}, {k['drift_y'][0].abs().item():.1e}"
        drift = f"{k['drift_x'][1:].abs().mean().item():.1e}, {k['drift_y'][1:].abs().mean().item():.1e}"
        assert first.startswith(f"| {m} depth 3 | 0 |") and f"| {drift0} |" in first
        assert first.endswith("| 4 | 0.5 |")  # M_L / M_1 = 8 / 2, outflow 1 / 2
        assert rest.startswith(f"| {m} depth 3 | 1-2 |") and f"| {drift} |" in rest and rest.endswith("|  |  |")
