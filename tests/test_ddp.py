"""Two CPU processes with DistributedDataParallel (gloo) take the same step as one process on the
concatenated batch; the runner works under torchrun."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

import contdepth as cd
from contdepth.models import build_mnist_model
from contdepth.train import _epoch_indices, evaluate, fit

from conftest import MNIST_DIR as DATA
from conftest import need_mnist

REPO = Path(__file__).resolve().parents[1]
B = 16  # per-process batch


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def _data() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(5)
    X = torch.rand(2 * B, 1, 28, 28, generator=g, dtype=torch.float64)
    X = X * (torch.rand(2 * B, 1, 28, 28, generator=g, dtype=torch.float64) > 0.7)
    return X, torch.arange(2 * B) % 10


def _train(X, y, batch_size):
    torch.manual_seed(0)
    # SGD on the seed-002 net (data loss + smoothness regulariser), in float64 so that the
    # comparison is not blurred by float32 summation-order rounding
    model = build_mnist_model("cubic").double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    fit(model, F.cross_entropy, (X, y), optimizer=opt, epochs=1, batch_size=batch_size, seed=7,
        progress=False, regularizer=lambda: 0.1 * cd.smoothness(model.block.field))
    return model


def _worker(rank: int, world: int, store: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        X, y = _data()
        model = _train(X, y, B)
        acc = evaluate(model, (X, y), batch_size=5)
        shard = _epoch_indices(len(y), 7, 0, True)
        torch.save({"params": [p.detach() for p in model.parameters()], "acc": acc, "shard": shard},
                   f"{out}/rank{rank}.pt")
        dist.barrier()  # tear gloo down together: a rank leaving early aborts its peer
    finally:
        dist.destroy_process_group()


def test_ddp_step_equals_single_process_step_on_concatenated_batch(tmp_path):
    mp.spawn(_worker, args=(2, str(tmp_path / "store"), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    X, y = _data()
    # the two ranks trained on disjoint halves of the epoch's permutation
    assert sorted(r0["shard"] + r1["shard"]) == list(range(2 * B)) and len(r0["shard"]) == B
    single = _train(X, y, 2 * B)  # one step on all 2B samples
    init = build_mnist_model("cubic")  # zero init: the update is the parameters themselves
    assert all(torch.count_nonzero(p) == 0 for p in init.parameters())
    for a, b, c in zip(r0["params"], r1["params"], single.parameters()):
        assert torch.equal(a, b)  # replicas stay identical
        assert _rel(a, c.detach()) < 1e-12
    # not vacuous: a step on one rank's half alone is a different update
    half = _train(X[r0["shard"]], y[r0["shard"]], B)
    assert max(_rel(a, c.detach()) for a, c in zip(r0["params"], half.parameters())) > 1e-2
    with torch.no_grad():
        assert r0["acc"] == r1["acc"] == evaluate(single, (X, y))


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="needs torchrun")
def test_runner_under_torchrun_matches_single_process(tmp_path):
    need_mnist()
    env = {**os.environ, "PYTHONPATH": str(REPO), "CONTDEPTH_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    common = [str(REPO / "examples" / "mnist.py"), "--model", "cubic", "--train-images", "128",
              "--test-images", "100", "--epochs", "1", "--no-progress", "--data", str(DATA), "--optimizer", "sgd",
              "--lr", "0.5", "--schedule", "constant", "--clip", "1"]
    subprocess.run(["torchrun", "--standalone", "--nproc_per_node=2", *common, "--batch-size", "32",
                    "--out", str(tmp_path / "ddp")], check=True, env=env, timeout=300)
    subprocess.run([sys.executable, *common, "--batch-size", "64", "--out", str(tmp_path / "one")],
                   check=True, env=env, timeout=300)
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    assert ddp["world_size"] == 2 and one["world_size"] == 1 and ddp["steps"] == one["steps"] == 2
    assert ddp["train_images"] == one["train_images"] == 128
    a = torch.load(tmp_path / "ddp" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    worst = max(_rel(a[k], b[k]) for k in a)
    assert worst < 1e-3, worst  # float32: two SGD steps, summation order differs
