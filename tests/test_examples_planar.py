"""End-to-end: the quick examples write a valid metrics.json and non-empty PNG figures; a bad option
is a one-line argparse error (exit 2) before anything runs."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_example(name: str, out: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), "--quick", "--out", str(out)],
                   check=True, env=env, cwd=out, timeout=600, capture_output=True)
    assert not list(out.glob(".*tmp")), "temporary files left behind"
    return json.loads((out / "metrics.json").read_text())


def check_pngs(out: Path, names: list[str]) -> None:
    for name in names:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(PNG_MAGIC), name


def is_accuracy(x) -> bool:
    return isinstance(x, float) and 0.0 <= x <= 1.0


def test_circles_quick(tmp_path):
    m = run_example("circles", tmp_path)
    assert m["quick"] is True
    for key, params in (("model1", 601), ("model2", 240), ("model2_no_augmentation", 240)):
        r = m[key]
        assert {"train_acc", "test_acc", "expected_acc", "gamma", "params"} <= set(r)
        assert r["params"] == params and all(is_accuracy(r[k]) for k in ("train_acc", "test_acc", "expected_acc"))
        assert len(r["train_loss_per_epoch"]) == r["epochs"]
    assert m["model2"]["gamma"] == pytest.approx(0.1)
    # the quick run trains Model 2 exactly as the full run does: the target, >= 99 % on the fresh test set,
    # within half a point of the near-Bayes radial rule in expectation
    assert m["model2"]["augmentation"] == "random_rotation" and m["model2"]["test_acc"] >= 0.99
    assert m["model2"]["expected_acc"] >= m["radial_rule"]["expected_acc"] - 0.005
    # a second run resumes every model from its finished checkpoint: same metrics, no training
    (tmp_path / "metrics.json").unlink()
    again = run_example("circles", tmp_path)
    for key in ("model1", "model2", "model2_no_augmentation"):
        assert again[key] == m[key]
    assert again["wall_s"] < m["wall_s"]
    check_pngs(tmp_path, ["data.png", "training_loss.png"] + [f"model{i}_{f}.png" for i in (1, 2)
                                                              for f in ("output", "trajectory", "params", "boundary")])


def test_peaks_quick(tmp_path):
    m = run_example("peaks", tmp_path)
    cross = m["cross_eval"]
    n = len(cross["state_layers"])
    assert n >= 2 and len(cross["test_acc"]) == n and all(len(row) == n for row in cross["test_acc"])
    assert all(is_accuracy(a) for row in cross["test_acc"] for a in row)
    # each net evaluated at its own training depth beats chance (0.2) clearly
    assert all(cross["test_acc"][i][i] > 0.4 for i in range(n))
    for k in cross["state_layers"]:
        assert set(cross["other_solvers_test_acc"][str(k)]) == {"euler", "rk4_same_steps", "dopri5"}
    for k in m["stability"]["layers"]:
        s = m["stability"]["nets"][str(k)]
        assert 0.0 <= s["fraction_inside_euler"] <= 1.0 and s["h"] == pytest.approx(10.0 / k)
        a = m["stability"]["nets_antisymmetric"][str(k)]
        assert a["max_real_lambda"] <= 1e-6  # the antisymmetric layer has no growing mode
        assert a["fraction_inside_rk4"] >= s["fraction_inside_rk4"] - 1e-9
    e = m["two_step_vs_resnet"]
    assert e["linear_two_step"]["params"] == e["resnet"]["params"] + 16 and len(e["linear_two_step"]["learned_k"]) == 16
    assert all(is_accuracy(e[k]["test_acc"]) for k in ("resnet", "linear_two_step"))
    assert set(m["landscape"]["nets"]) == {"8", "20"}
    for method in ("euler", "rk4"):
        r = m["euler_vs_rk4"][f"trained_{method}"]
        assert len(r["train_loss"]) == len(r["test_loss"]) == m["config"]["epochs"]
    check_pngs(tmp_path, ["peaks_data.png", "peaks_cross_eval.png", "peaks_landscape_8.png", "peaks_landscape_20.png",
                          "peaks_rk4_vs_euler.png", "peaks_rk4_vs_euler_curves.png"] + [f"peaks_eigenvalues_{k}.png" for k in m["stability"]["layers"]]
               + [f"peaks_eigenvalues_antisymmetric_{k}.png" for k in m["stability"]["layers"]])


def test_circles_study_quick(tmp_path):
    m = run_example("circles_study", tmp_path)
    assert len(m["sweep"]) == 1 and len(m["sweep"][0]["runs"]) == 2
    assert set(m["diagnosis"]) == {"adam_full_batch_400_points", "adam_20000_points_lambda_1", "adam_20000_points_lambda_0"}
    for run in [*m["sweep"][0]["runs"], *m["diagnosis"].values()]:
        assert set(run) == {"train_acc", "val_acc", "expected_acc"} and all(is_accuracy(a) for a in run.values())


def test_spirals_quick(tmp_path):
    m = run_example("spirals", tmp_path)
    assert m["quick"] is True
    assert {k: m[k]["params"] for k in ("hamiltonian", "resnet", "linear_two_step")} == {
        "hamiltonian": 1290, "resnet": 1242, "linear_two_step": 1259}
    assert all(is_accuracy(m[k][a]) for k in ("hamiltonian", "resnet", "linear_two_step") for a in ("train_acc", "test_acc"))
    assert m["hamiltonian"]["test_acc"] >= 0.95            # the quick run already learns the spirals (0.985 measured)
    assert len(m["learned_k"]) == 17 and m["learned_k"][0] == 0.0  # k_0 acts on x_0 - x_{-1} = 0: no gradient
    saved = {(r["gradient"], r["steps"]): r["saved_bytes"] for r in m["memory"]}
    assert saved["reversible", 256] == saved["reversible", 16] < saved["backprop", 16] < saved["backprop", 256]
    energy = m["energy_along_trajectories"]
    assert len(energy["leapfrog"]) == len(energy["euler"]) == 33
    check_pngs(tmp_path, ["boundaries.png", "energy.png", "k.png", "memory.png"])


def test_quickstart_quick(tmp_path):
    m = run_example("quickstart", tmp_path)
    assert m["quick"] is True and m["epochs"] == 60
    rows = {(r["method"], r["steps"]): r for r in m["evaluations"]}
    assert set(rows) == {("euler", 8), ("euler", 64), ("rk4", 8), ("rk4", 32), ("dopri5", None)}
    assert rows["rk4", 8]["test_acc"] >= 0.95 and rows["rk4", 8]["nfe"] == 32  # the trained model
    assert abs(rows["rk4", 32]["test_acc"] - rows["rk4", 8]["test_acc"]) <= 0.02  # the field, not the steps
    check_pngs(tmp_path, ["boundary.png"])


EXAMPLES = ["quickstart", "circles", "circles_study", "peaks", "spirals", "physics", "stochastic", "mnist",
            "mnist_sweep", "adjoint_memory"]
BAD = [(["--threads", "0"], "--threads"), (["--seed", "-1"], "--seed"), (["--out", "FILE"], "--out")]
MNIST_BAD = [(["--depth", "0"], "--depth"), (["--train-images", "0"], "--train-images"), (["--lr", "-1"], "--lr"),
             (["--quick", "--epochs", "-1"], "--epochs"), (["--model", "cubic", "--depth", "5"], "--depth")]


@pytest.mark.parametrize("name, bad, option", [(name, *BAD[i % len(BAD)]) for i, name in enumerate(EXAMPLES)]
                         + [("mnist", *case) for case in MNIST_BAD])
def test_bad_options_are_one_line_errors_before_any_work(name, bad, option, tmp_path):
    a_file = tmp_path / "FILE"
    a_file.write_text("not a folder")
    model = ["--model", "resnet"] if name == "mnist" and "--model" not in bad else []
    args = [str(a_file) if a == "FILE" else a for a in bad]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *model, *args],
                          env=env, cwd=tmp_path, timeout=120, capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert lines[0].startswith(f"{name}.py: error: argument {option}"), lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FILE"] and not done.stdout  # nothing run, nothing written


def test_stochastic_quick(tmp_path):
    m = run_example("stochastic", tmp_path)
    assert m["quick"] is True and m["nus"] == [0.0, 0.05, 0.1, 0.3]
    for name in ("circles", "spirals"):
        rows = m[name]
        assert set(rows) == {"0.0", "0.05", "0.1", "0.3"}
        for nu, r in rows.items():
            assert all(is_accuracy(r[k]) for k in ("acc_one_sample", "acc_mc_mean", "acc_noise_off", "ece"))
            assert 0.0 <= r["mean_entropy"] <= 0.6932
        # nu = 0: every noise sample is the same network, so the three accuracies coincide
        assert rows["0.0"]["acc_one_sample"] == rows["0.0"]["acc_mc_mean"] == rows["0.0"]["acc_noise_off"]
    assert m["circles"]["0.0"]["acc_noise_off"] > 0.85  # the quick run learns the circles (0.948 measured)
    for row in m["radius_model"]["density"]:
        assert abs(row["mass"] - 1) < 1e-3
        assert row["l1_fokker_planck_vs_256_steps"] < 0.05  # histogram noise of 100,000 paths is about 0.02
    check_pngs(tmp_path, ["accuracy_uncertainty.png", "density.png", "paths.png"])
