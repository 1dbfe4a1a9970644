"""examples/circles.py --learn-depth: the depth T moves against dL/dT, the per-epoch records are exact
and survive the checkpoint, a fixed T does not move, and T is kept above t0 (the block refuses T <= t0)."""
import math
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import circles as ex  # noqa: E402

SMALL = {"knots": 4, "epochs": 3, "lr": 1e-2, "rtol": 1e-4, "atol": 1e-6, "t_min": 0.05}
DATA, TEST = ex.circles(64, seed=0), ex.circles(64, seed=1)


def run(T0, learn, path, **kw):
    return ex.depth_run(T0, learn, DATA, TEST, path, seed=0, progress=False, **{**SMALL, **kw})


def test_learned_depth_moves_against_its_gradient_and_is_recorded(tmp_path):
    r = run(2.0, True, tmp_path / "learned.pt")
    T, g = r["T_per_epoch"], r["dL_dT_per_epoch"]
    assert len(T) == len(g) == len(r["nfe_per_epoch"]) == SMALL["epochs"] and T[0] == 2.0
    assert all(math.isfinite(x) and x != 0.0 for x in g)
    # Adam's first step is lr * sign of the gradient, against it
    assert T[1] - T[0] == pytest.approx(-SMALL["lr"] * math.copysign(1.0, g[0]), rel=1e-3)
    assert r["T_final"] != T[-1]
    assert all(n >= 6 * SMALL["knots"] for n in r["nfe_per_epoch"])  # at least one dopri5 step per interval
    fixed = run(2.0, False, tmp_path / "fixed.pt")
    assert fixed["T_per_epoch"] == [2.0] * SMALL["epochs"] and fixed["T_final"] == 2.0
    assert fixed["dL_dT_per_epoch"] is None
    # the same initial parameters: the first epoch is the same forward solve
    assert fixed["nfe_per_epoch"][0] == r["nfe_per_epoch"][0]
    assert fixed["train_loss_per_epoch"][0] == r["train_loss_per_epoch"][0]


def test_records_survive_the_checkpoint(tmp_path):
    first = run(0.5, True, tmp_path / "run.pt")
    again = run(0.5, True, tmp_path / "run.pt")  # finished checkpoint: nothing trained, records restored
    for key in ("T_per_epoch", "dL_dT_per_epoch", "nfe_per_epoch", "T_final", "test_acc"):
        assert again[key] == first[key], key


def test_depth_is_projected_above_t_min():
    model = ex.DepthModel(0.5, True, knots=4, rtol=1e-4, atol=1e-6, t_min=0.05, epochs=2)
    with torch.no_grad():
        model.block.t1.fill_(-0.5)  # what a large step against a positive dL/dT does
    with pytest.raises(ValueError, match="the learned depth T = -0.5 is not above t0 = 0.0"):
        model(DATA[0])
    model.project_()
    assert model.block.t1.item() == pytest.approx(0.05) and int(model.projected) == 1
    assert torch.isfinite(model(DATA[0])).all()
