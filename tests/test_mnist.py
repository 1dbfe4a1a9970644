"""MNIST: data loading and its errors, the five models, and the runner end to end (no network)."""

from __future__ import annotations

import functools
import gzip
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from contdepth.data.mnist import MNIST_FILES, load_mnist, mnist_root, random_shift
from contdepth.models import BLOCKS, MNIST_MODELS, build_mnist_model

from conftest import MNIST_DIR as DATA
from conftest import need_mnist

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", autouse=True)
def _mnist():
    need_mnist()  # before the module-scoped data fixtures


@pytest.fixture(scope="module", autouse=True)
def _cache(tmp_path_factory):
    old = os.environ.get("CONTDEPTH_CACHE")
    os.environ["CONTDEPTH_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("CONTDEPTH_CACHE")
    else:
        os.environ["CONTDEPTH_CACHE"] = old


@pytest.fixture(scope="module")
def small():
    return load_mnist(DATA, limit=256, seed=1)


def _load_runner():
    if str(REPO / "examples") not in sys.path:  # the examples import their sibling _cli.py
        sys.path.insert(0, str(REPO / "examples"))
    spec = importlib.util.spec_from_file_location("mnist_example", REPO / "examples" / "mnist.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- data ---------------------------------------------------------------------------------


def test_load_mnist_matches_the_published_content():
    X, y = load_mnist(DATA, normalize=False)
    assert X.shape == (60000, 1, 28, 28) and X.dtype == torch.float32 and y.dtype == torch.int64
    assert y[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert torch.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert int((X * 255).round().sum(dtype=torch.float64)) == 1567298545  # SOURCE.md pixel sum
    Xt, yt = load_mnist(DATA, train=False)
    assert Xt.shape == (10000, 1, 28, 28) and yt[:5].tolist() == [7, 2, 1, 0, 4]
    assert abs(float(X.mean()) - 0.1307) < 1e-3  # the normalisation constants are this set's
    sub, sub_y = load_mnist(DATA, train=False, limit=100, seed=3)
    assert sub.shape == (100, 1, 28, 28)
    assert torch.equal(sub_y, load_mnist(DATA, train=False, limit=100, seed=3)[1])


def test_torchvision_raw_layout_is_used_directly():
    root = mnist_root(DATA)  # the cache: <root>/MNIST/raw/ with the uncompressed files
    assert sorted(p.name for p in (root / "MNIST" / "raw").iterdir() if "." not in p.name) == sorted(MNIST_FILES)
    assert mnist_root(root) == root
    assert torch.equal(load_mnist(root, train=False, limit=50)[1], load_mnist(DATA, train=False, limit=50)[1])


def _copy_good(dst: Path) -> None:
    dst.mkdir()
    for name in MNIST_FILES:
        os.symlink(DATA / f"{name}.gz", dst / f"{name}.gz")


def test_truncated_file_names_the_file(tmp_path):
    bad = tmp_path / "bad"
    _copy_good(bad)
    victim = bad / "t10k-labels-idx1-ubyte.gz"
    victim.unlink()
    victim.write_bytes((DATA / victim.name).read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"t10k-labels-idx1-ubyte\.gz.*truncated"):
        load_mnist(bad, train=False)


def test_wrong_file_names_the_file(tmp_path):
    bad = tmp_path / "wrong"
    _copy_good(bad)
    victim = bad / "train-labels-idx1-ubyte.gz"
    victim.unlink()
    shutil.copy(DATA / "t10k-labels-idx1-ubyte.gz", victim)  # a valid IDX file, but the wrong one
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte"):
        load_mnist(bad)
    # an uncompressed file in MNIST/raw is checked too
    raw = tmp_path / "rawlayout" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in MNIST_FILES:
        with gzip.open(DATA / f"{name}.gz") as src:
            data = src.read()
        (raw / name).write_bytes(data[:-8] if name == "t10k-images-idx3-ubyte" else data)
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path / "rawlayout")


def test_missing_files_and_bad_arguments(tmp_path):
    (tmp_path / "part").mkdir()
    os.symlink(DATA / "train-images-idx3-ubyte.gz", tmp_path / "part" / "train-images-idx3-ubyte.gz")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist(tmp_path / "part")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="limit"):
        load_mnist(DATA, limit=0)


# ---- models -------------------------------------------------------------------------------


@pytest.mark.parametrize("name,depth", [("pde1", 5), ("pde2", 5), ("resnet", 5), ("cubic", 20), ("odenet", 1)])
def test_models_shapes_and_gradients(name, depth, small):
    X, y = small
    model = build_mnist_model(name, depth, width=8)
    out = model(X[:16])
    assert out.shape == (16, 10) and torch.isfinite(out).all()
    F.cross_entropy(out, y[:16]).backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    assert any(p.grad.abs().sum() > 0 for p in model.block.field.parameters())


def test_cubic_net_is_the_seed_002_network():
    model = build_mnist_model("cubic")
    assert sum(p.numel() for p in model.parameters()) == 18201  # (3*3*10*10 + 10) * 20 + 1
    assert all(torch.count_nonzero(p) == 0 for p in model.parameters())  # zero init, gamma included
    assert model.block.method == "euler" and model.block.steps == 20
    assert (model.block.field.gamma_min, model.block.field.gamma_max) == (0.0, 1e-3)  # seed's 4.8e-4 inside
    with pytest.raises(ValueError, match="depth"):
        build_mnist_model("cubic", 10)
    with pytest.raises(ValueError, match="width"):
        build_mnist_model("odenet", width=12)
    with pytest.raises(ValueError, match="model"):
        build_mnist_model("vgg")


def test_resnet_model_is_exactly_a_resnet(small):
    """Euler with h = 1 on the ConvResidual field == the discrete ResNet x <- x + relu(K_l x + b_l)
    (the ODE form; the seed block ReLU(x + K_l x + b_l): tests/test_projection.py), in float64 to
    the rounding of the convolution's sums (the field sums them as one depthwise convolution)."""
    X, _ = small
    model = build_mnist_model("resnet", 4, block="ode").double()
    f = model.block.field
    x = X[:8].double()
    for l in range(4):
        x = x + F.relu(F.conv2d(x, f.weight[l], f.bias[l], padding=1))
    torch.testing.assert_close(model.block(X[:8].double()), x, rtol=1e-13, atol=1e-13)
    assert model.block.field.grid.t1 == 4.0


def test_pde_model_uses_the_seed_000_stencil(small):
    X, _ = small
    model = build_mnist_model("pde2", 3, block="ode")  # the seed block: tests/test_projection.py
    f = model.block.field
    with torch.no_grad():
        for name in ("alpha", "beta", "sigma", "rho", "gamma"):
            getattr(f, name).uniform_(-1, 1)
    x = X[:4]
    for l in range(3):
        a, b, s, r, g = (getattr(f, n)[l].view(-1, 1, 1) for n in ("alpha", "beta", "sigma", "rho", "gamma"))
        p = F.pad(x, (1, 1, 1, 1))
        c, right, left, down, up = p[..., 1:-1, 1:-1], p[..., 1:-1, 2:], p[..., 1:-1, :-2], p[..., 2:, 1:-1], p[..., :-2, 1:-1]
        pde = (a**2 / 2 * (right - 2 * c + left) - b / 8 * (right - left) / 2
               + s**2 / 2 * (down - 2 * c + up) - r / 8 * (down - up) / 2 + g * c)  # eq. 40
        x = x + F.relu(pde)
    torch.testing.assert_close(model.block(X[:4]), x)


def test_reevaluation_at_other_depths_and_methods(small):
    X, _ = small
    model = build_mnist_model("resnet", 5).eval()
    with torch.no_grad():
        base = model(X[:8])
        model.set_solver("euler", 5)
        assert torch.equal(model(X[:8]), base)
        model.set_solver("rk4", 20)
        fine = model(X[:8])
        model.set_solver("rk4", 40)
        finer = model(X[:8])
    assert not torch.equal(fine, base)
    assert (finer - fine).abs().max() < (fine - base).abs().max()  # converging in the step count
    with pytest.raises(ValueError, match="method"):
        model.set_solver("heun")
    with pytest.raises(ValueError, match="steps"):
        model.set_solver("dopri5", 10)


def test_odenet_counts_function_evaluations(small):
    X, y = small
    model = build_mnist_model("odenet", width=8)
    assert model.block.method == "dopri5" and model.block.gradient == "adjoint"
    for _ in range(2):
        F.cross_entropy(model(X[:8]), y[:8]).backward()
    with torch.no_grad():
        model(X[:8])  # not a training call: not counted
    nfe = model.nfe_totals()
    assert nfe["calls"] == 2 and nfe["nfe_forward"] >= 2 * 6 and nfe["nfe_backward"] >= 2 * 6


def _offsets(X, Z, k):
    """For every image the (dy, dx) with Z[i] == X[i] translated by it (torchvision's pad + crop as oracle)."""
    import torchvision.transforms.v2.functional as TF
    padded = TF.pad(X, [k], fill=float(X.min()))
    h, w = X.shape[-2:]
    found = []
    for x, z in zip(padded, Z):
        hits = [(k - top, k - left) for top in range(2 * k + 1) for left in range(2 * k + 1)
                if torch.equal(TF.crop(x, top, left, h, w), z)]
        assert len(hits) == 1, hits
        found.append(hits[0])
    return found


def test_random_shift_translates_each_image_within_the_bound():
    """Every output is its input shifted by one (dy, dx) in [-k, k]^2, background shifted in; all
    (2k+1)^2 offsets occur; labels, dtype and the RNG-stream determinism are kept."""
    X = torch.rand(450, 2, 7, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) + 0.5
    y = torch.arange(450)
    Z, y2 = random_shift(X, y, max_shift=2, generator=torch.Generator().manual_seed(1))
    assert y2 is y and Z.shape == X.shape and Z.dtype == X.dtype
    offsets = _offsets(X, Z, 2)
    assert set(offsets) == {(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)}
    again, _ = random_shift(X, y, max_shift=2, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, Z)
    filled, _ = random_shift(X, y, max_shift=3, fill=-7.0, generator=torch.Generator().manual_seed(2))
    background = torch.where(filled == -7.0, X.min(), filled)
    shifted = [i for i, (dy, dx) in enumerate(_offsets(X, background, 3)) if (dy, dx) != (0, 0)]
    assert shifted and all((filled[i] == -7.0).any() for i in shifted)
    assert random_shift(X, y, max_shift=0)[0] is X
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="max_shift"):
            random_shift(X, y, max_shift=bad)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        random_shift(X[0], y)


# ---- runner -------------------------------------------------------------------------------


REQUIRED = {"model", "depth", "params", "epochs", "train_images", "test_acc", "wall_s"}


def test_quick_run_end_to_end(tmp_path):
    runner = _load_runner()
    out = tmp_path / "quick"
    m = runner.main(["--model", "resnet", "--depth", "5", "--quick", "--train-images", "1000", "--no-progress",
                     "--data", str(DATA), "--out", str(out), "--eval-method", "euler", "rk4", "--eval-steps", "10"])
    saved = json.loads((out / "metrics.json").read_text())
    assert REQUIRED <= set(saved) and saved["status"] == "done"
    quick = runner.QUICK["resnet"]
    assert saved["train_images"] == 1000 and saved["test_images"] == quick["test_images"]
    assert saved["epochs"] == quick["epochs"]
    assert saved["params"] == sum(p.numel() for p in build_mnist_model("resnet", 5).parameters())
    assert saved["test_acc"] > 0.5  # 1000 images: far above chance (0.1)
    assert len(saved["history"]["eval_acc"]) == quick["epochs"] and saved["wall_s"] > 0
    assert {(e["method"], e["steps"]) for e in saved["eval"]} == {("euler", 10), ("rk4", 10)}
    assert m["test_acc"] == saved["test_acc"]
    assert (out / "activations.png").stat().st_size > 1000 and (out / "controls.png").stat().st_size > 1000
    assert len(saved["mass_budget"]["mass"]) == 6 and saved["mass_budget"]["images"] == runner.MASS_IMAGES


@pytest.mark.parametrize("name", MNIST_MODELS)
def test_quick_run_of_every_model_learns(name, tmp_path):
    """``--quick`` (CI) with each model's defaults: above the example's QUICK_MIN_ACCURACY (85 %; the
    cubic net, on 8,000 images, 60 %; chance: 10 %)."""
    runner = _load_runner()
    m = runner.main(["--model", name, "--quick", "--no-progress", "--data", str(DATA), "--out", str(tmp_path / name)])
    assert m["test_acc"] > runner.QUICK_MIN_ACCURACY[name], f"{name}: {m['test_acc']:.4f}"


def test_quick_without_a_model_runs_the_default_model(tmp_path):
    """``python examples/mnist.py --quick`` needs no ``--model``: it trains the documented default."""
    runner = _load_runner()
    args = runner.parse_args(["--quick", "--data", str(DATA), "--out", str(tmp_path)])
    assert args.model == runner.DEFAULT_MODEL == "resnet" and args.train_images == runner.QUICK["resnet"]["train_images"]
    assert (runner.MODELS, runner.BLOCKS) == (MNIST_MODELS, BLOCKS)  # spelled out in the example: the same names


def test_runner_resume_equals_uninterrupted(tmp_path):
    runner = _load_runner()
    common = ["--model", "pde1", "--depth", "3", "--train-images", "600", "--test-images", "200",
              "--batch-size", "100", "--shift", "2", "--no-progress", "--data", str(DATA)]
    runner.main([*common, "--epochs", "2", "--out", str(tmp_path / "straight")])
    runner.main([*common, "--epochs", "1", "--out", str(tmp_path / "resumed")])
    m = runner.main([*common, "--epochs", "2", "--out", str(tmp_path / "resumed")])
    assert m["resumed_from_epoch"] == 1
    a = torch.load(tmp_path / "straight" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_runner_compile_resumes_an_eager_checkpoint(tmp_path, monkeypatch):
    """``--compile`` compiles in place: its checkpoint is the eager model's, an eager run resumes
    compiled, and the weights agree with an all-eager run to float32 rounding. Dynamo traces the
    model with its eager backend here (inductor's code generation takes minutes on two cores and is
    covered by tests/test_compile.py)."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    runner = _load_runner()
    common = ["--model", "pde1", "--depth", "2", "--train-images", "400", "--test-images", "100",
              "--batch-size", "100", "--no-progress", "--data", str(DATA)]
    runner.main([*common, "--epochs", "2", "--out", str(tmp_path / "eager")])
    runner.main([*common, "--epochs", "1", "--out", str(tmp_path / "mixed")])
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    m = runner.main([*common, "--epochs", "2", "--compile", "--out", str(tmp_path / "mixed")])
    assert m["resumed_from_epoch"] == 1 and m["compile"] is True
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # dynamo did trace the model
    a = torch.load(tmp_path / "eager" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "mixed" / "checkpoint.pt", weights_only=False)["model"]
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-4, atol=1e-5)


def test_runner_rejects_bad_arguments(capsys):
    runner = _load_runner()
    with pytest.raises(SystemExit):
        runner.parse_args(["--model", "vgg"])
    with pytest.raises(SystemExit):
        runner.parse_args(["--model", "resnet", "--batch-size", "0"])
    assert "--batch-size" in capsys.readouterr().err


def test_runner_block_option(tmp_path):
    """``--block`` reaches the model; ode is refused for models without the choice; a checkpoint of
    the other block (same parameter shapes, it would load) is refused, an old run's counting as ode."""
    runner = _load_runner()
    args = runner.parse_args(["--model", "pde1", "--data", str(DATA)])
    assert args.block == "seed" and args.out == Path("runs/mnist/pde1-d15")
    ode = runner.parse_args(["--model", "resnet", "--block", "ode", "--data", str(DATA)])
    assert ode.block == "ode" and ode.out == Path("runs/mnist/resnet-d15-ode")
    with pytest.raises(SystemExit):
        runner.parse_args(["--model", "cubic", "--block", "ode", "--data", str(DATA)])
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "pde1"}))  # before --block: the ODE form
    runner.check_resume_block(tmp_path, "pde1", "ode")
    with pytest.raises(SystemExit, match="'ode' block"):
        runner.check_resume_block(tmp_path, "pde1", "seed")
    (tmp_path / "metrics.json").write_text(json.dumps({"model": "pde1", "block": "seed"}))
    runner.check_resume_block(tmp_path, "pde1", "seed")


def test_cubic_gamma_has_its_own_learning_rate(capsys):
    """gamma's range is [0, 1e-3]: Adam moves every parameter by about lr per step, so gamma gets
    lr x 1e-3 by default, in its own group that the schedule scales like the rest."""
    runner = _load_runner()
    args = runner.parse_args(["--model", "cubic", "--lr", "2e-3", "--data", str(DATA)])
    model = build_mnist_model("cubic")
    opt = runner.make_optimizer(model, args)
    (rest, gamma) = opt.param_groups
    assert rest["lr"] == 2e-3 and gamma["lr"] == pytest.approx(2e-6)
    assert gamma["params"] == [model.block.field.gamma] and len(rest["params"]) == 2
    sched = runner.make_scheduler(opt, "warmup-cosine", epochs=1, steps_per_epoch=10, warmup=0.5)
    assert gamma["lr"] / rest["lr"] == pytest.approx(1e-3) and sched.get_last_lr()[0] < 2e-3
    explicit = runner.parse_args(["--model", "cubic", "--gamma-lr", "1e-5", "--data", str(DATA)])
    assert runner.make_optimizer(build_mnist_model("cubic"), explicit).param_groups[1]["lr"] == 1e-5
    pde = runner.parse_args(["--model", "pde1", "--data", str(DATA)])  # its gamma is a stencil weight
    assert [g["lr"] for g in runner.make_optimizer(build_mnist_model("pde1"), pde).param_groups] == [1e-3]
    with pytest.raises(SystemExit):
        runner.parse_args(["--model", "resnet", "--gamma-lr", "1e-5", "--data", str(DATA)])
    assert "--gamma-lr" in capsys.readouterr().err


def test_sweep_writes_table_and_plot(tmp_path):
    _load_runner()
    spec = importlib.util.spec_from_file_location("mnist_sweep", REPO / "examples" / "mnist_sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    out = tmp_path / "sweep"
    summary = sweep.main(["--models", "pde1", "--depths", "5", "--train-images", "300", "--test-images", "100",
                          "--data", str(DATA), "--out", str(out)])
    assert set(summary) == {"pde1-d5"} and summary["pde1-d5"]["train_images"] == 300
    md = (out / "table.md").read_text()
    # our number beside seed 000's pde1 at depth 5
    assert f"| 5 | {100 * summary['pde1-d5']['test_acc']:.2f} | 97.4 |" in md
    assert (out / "accuracy_vs_depth.png").stat().st_size > 1000
    assert (out / "pde1-d5" / "activations.png").exists() and not (out / "fig45.png").exists()  # no pde2 run
    assert json.loads((out / "metrics.json").read_text()) == summary
    table_only = sweep.main(["--models", "pde1", "pde2", "--depths", "5", "--table-only", "--out", str(out)])
    assert set(table_only) == {"pde1-d5"} and "not run" in (out / "table.md").read_text()
