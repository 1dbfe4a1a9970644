"""The benchmark and the adjoint-memory example run in --quick mode and write what they promise.

No timing assertions: only that the numbers exist, are consistent, and that the baselines compute
the same thing as contdepth.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import contdepth as cd  # noqa: E402
from baselines import Case, hand_loop, make_field, stage_cells  # noqa: E402


def _run(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, *args], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.mark.parametrize("kind, method", [("dense", "euler"), ("dense", "rk4"), ("conv", "rk4")])
def test_hand_loop_is_the_same_computation(kind, method):
    field, x = make_field(kind, batch=3, knots=4)
    case = Case("t", field, x, method, "backprop", steps=6)
    ours = cd.odesolve(field, x, method=method, steps=6)
    assert torch.equal(hand_loop(case, stage_cells(case)), ours)


def test_benchmark_quick_writes_json(tmp_path):
    out = tmp_path / "bench.json"
    done = _run([str(ROOT / "benchmarks" / "run.py"), "--quick", "--reps", "1", "--threads", "1", "--json", str(out)],
                tmp_path)
    assert "ratio" in done.stdout and "1 torch thread(s)" in done.stdout
    result = json.loads(out.read_text())
    machine = result["machine"]
    assert machine["cpu_count"] >= 1 and machine["platform"] and machine["torch"] == torch.__version__
    assert machine["torch_num_threads"] == [1]
    rows = result["cases"]
    assert {r["threads"] for r in rows} == {1}
    assert {r["baseline"] for r in rows} == {"hand", "torchdiffeq", "torchdiffeq+jumps"}
    assert {r["method"] for r in rows} == {"euler", "rk4", "dopri5"}
    assert {r["gradient"] for r in rows} == {"backprop", "adjoint"}
    assert {r["field"] for r in rows} == {"conv", "dense"}
    knots = result["dopri5_knots"]
    assert {k["declare_jumps"] for k in knots} == {True, False} and all(k["nfe"] > 0 for k in knots)
    for r in rows:
        if r["ratio"] is not None:
            assert r["ratio"] == pytest.approx(r["ours_s"] / r["baseline_s"])
        if r["method"] != "dopri5":
            assert r["nfe_ours"] == r["nfe_baseline"]        # same method, same work
        elif r["baseline"] == "torchdiffeq+jumps" and r["gradient"] == "backprop":
            assert abs(r["nfe_ours"] - r["nfe_baseline"]) <= 0.1 * r["nfe_baseline"]  # same jumps, own controller


def test_adjoint_memory_example_quick(tmp_path):
    _run([str(ROOT / "examples" / "adjoint_memory.py"), "--quick", "--out", str(tmp_path / "out")], tmp_path)
    out = tmp_path / "out"
    assert (out / "memory.png").stat().st_size > 0 and (out / "time.png").stat().st_size > 0
    metrics = json.loads((out / "metrics.json").read_text())
    rows = metrics["rows"]
    for field in ("conv", "dense"):
        adjoint = {r["saved_bytes"] for r in rows if r["field"] == field and r["gradient"] == "adjoint"
                   and r["method"] in ("euler", "rk4")}
        assert len(adjoint) == 1                               # constant in depth
        for method in ("euler", "rk4"):
            s = metrics["summary"][f"{field}/{method}"]
            assert s["checkpoint_max_rel_diff_to_backprop"] < 1e-5
            assert s["saved_bytes_growth"]["backprop"] > 1.9     # 8 -> 16 steps
    rss = [r for r in rows if "rss_growth_bytes" in r]
    assert {r["gradient"] for r in rss} == {"backprop", "adjoint", "checkpoint", "torch_checkpoint"}
    assert all(r["rss_growth_bytes"] > 0 for r in rss)


def test_adaptive_benchmark_quick(tmp_path):
    """benchmarks/adaptive.py --quick: every case ran both solvers; the native pairs take
    torchdiffeq's steps (forward evaluations within 10 %) on its problems and on the fields."""
    out = tmp_path / "adaptive.json"
    _run([str(ROOT / "benchmarks" / "adaptive.py"), "--quick", "--reps", "1", "--json", str(out)], tmp_path)
    result = json.loads(out.read_text())
    rows = result["cases"]
    assert {r["mode"] for r in rows} == {"solve", "backprop", "adjoint"}
    assert {r["problem"].split()[0] for r in rows} == {"linear", "sine", "cubic", "peaks", "conv"}
    for r in rows:
        assert r["ratio"] == pytest.approx(r["ours_s"] / r["torchdiffeq_s"])
        if r["mode"] != "adjoint":
            assert abs(r["nfe_ratio"] - 1) <= 0.1, r
    assert set(result["controller_totals"]) == {"0.0", "0.04"}


def test_sde_benchmark_quick(tmp_path):
    """benchmarks/sde.py --quick: every case ran both libraries with the same steps (torchsde's
    sdeint evaluates the drift once more per solve), and the Brownian query costs exist."""
    out = tmp_path / "sde.json"
    _run([str(ROOT / "benchmarks" / "sde.py"), "--quick", "--reps", "1", "--json", str(out)], tmp_path)
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert {(r["case"], r["method"]) for r in rows} >= {("ou solve", "euler_maruyama"), ("gbm solve", "milstein"),
                                                         ("gbm solve", "heun"),
                                                         ("stochastic ResNet training step", "euler_maruyama")}
    for r in rows:
        per_step = 2 if r["method"] == "heun" else 1
        assert r["nfe_ours"] == per_step * r["steps"] and r["nfe_torchsde"] == r["nfe_ours"] + 1, r
        assert r["ratio"] == pytest.approx(r["ours_s"] / r["torchsde_s"])
    assert all(q["ours_us"] > 0 and q["torchsde_us"] > 0 for q in result["brownian_queries"])


def test_fused_and_conv_vjp_benchmarks_write_json(tmp_path):
    """benchmarks/fused.py times a case with the fields' VJPs on and off; benchmarks/conv_vjp.py
    checks its variants against autograd's convolution_backward before timing them."""
    out = tmp_path / "fused.json"
    _run([str(ROOT / "benchmarks" / "fused.py"), "--reps", "1", "--only", "dense(B=64)/euler/checkpoint",
          "--json", str(out)], tmp_path)
    rows = json.loads(out.read_text())["cases"]
    assert [r["case"] for r in rows] == ["dense(B=64)/euler/checkpoint/steps=64"]
    assert rows[0]["ratio"] == pytest.approx(rows[0]["on_s"] / rows[0]["off_s"])
    out = tmp_path / "conv_vjp.json"
    _run([str(ROOT / "benchmarks" / "conv_vjp.py"), "--rounds", "1", "--json", str(out)], tmp_path)
    shapes = json.loads(out.read_text())["shapes"]
    assert len(shapes) == 4 and all(len(s["median_ms"]) == 4 for s in shapes)


def test_channels_last_benchmark_writes_json(tmp_path):
    out = tmp_path / "cl.json"
    _run([str(ROOT / "benchmarks" / "channels_last.py"), "--reps", "1", "--json", str(out)], tmp_path)
    rows = json.loads(out.read_text())["cases"]
    assert {r["case"] for r in rows} >= {"mnist-cubic(B=64)", "conv(B=32)/rk4/steps=32"}
    assert all(r["ratio"] == pytest.approx(r["channels_last_s"] / r["contiguous_s"]) for r in rows)


def test_compile_threads_and_profile_benchmarks_write_json(tmp_path):
    """compile.py (aot_eager here: the inductor's code generation takes tens of seconds), threads.py
    and profile_steps.py on one case each."""
    out = tmp_path / "compile.json"
    _run([str(ROOT / "benchmarks" / "compile.py"), "--reps", "1", "--backend", "aot_eager",
          "--only", "dense(B=64)/euler", "--json", str(out)], tmp_path)
    (row,) = json.loads(out.read_text())["cases"]
    assert row["ratio"] == pytest.approx(row["compiled_s"] / row["eager_s"]) and row["compile_s"] > 0
    assert row["vs_torchdiffeq"] == pytest.approx(row["compiled_s"] / row["torchdiffeq_s"])
    out = tmp_path / "threads.json"
    _run([str(ROOT / "benchmarks" / "threads.py"), "--reps", "1", "--only", "dense(B=64)/euler/backprop",
          "--json", str(out)], tmp_path)
    (row,) = json.loads(out.read_text())["cases"]
    assert row["ratio"] == pytest.approx(row["two_threads_s"] / row["one_thread_s"])
    out = tmp_path / "profile.json"
    _run([str(ROOT / "benchmarks" / "profile_steps.py"), "--steps", "1", "--only", "dense(B=64)/euler",
          "--json", str(out)], tmp_path)
    (row,) = json.loads(out.read_text())["cases"]
    assert row["top"] and all(t["op"].startswith("aten::") for t in row["top"]) and 0 <= row["outside_aten"] <= 1
