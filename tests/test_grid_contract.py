"""ControlGrid's contract, case by case: validation (each error names its argument), knot times
off the origin, the cell and interpolation weights at knots and ends, breaks, refine, prolong."""
import math

import pytest
import torch

from contdepth import ControlGrid


@pytest.mark.parametrize("kwargs,error,match", [
    (dict(t0=math.inf, t1=1.0), TypeError, "ControlGrid t0 must be a finite float, got inf"),
    (dict(t0=True, t1=2.0), TypeError, "ControlGrid t0 must be a finite float, got True"),
    (dict(t0=0.0, t1="1"), TypeError, "ControlGrid t1 must be a finite float"),
    (dict(t0=1.0, t1=1.0), ValueError, r"ControlGrid needs t1 > t0, got t0=1.0, t1=1.0"),
    (dict(n=0), ValueError, "^ControlGrid n must be >= 1, got 0"),
    (dict(interp="cubic"), ValueError, "^ControlGrid interp must be one of"),
    (dict(n=1, interp="linear"), ValueError, r"ControlGrid n must be >= 2 for interp='linear', got 1"),
])
def test_bad_arguments_name_themselves(kwargs, error, match):
    with pytest.raises(error, match=match):
        ControlGrid(**kwargs)


def test_two_linear_knots_are_enough():
    grid = ControlGrid(0.0, 1.0, n=2, interp="linear")
    assert grid.intervals == 1 and grid.knot_times() == [0.0, 1.0] and grid.breaks() == []


def test_knot_times_off_the_origin():
    grid = ControlGrid(t0=2.0, t1=5.0, n=3)
    assert grid.knot_times() == [2.0, 3.0, 4.0] and grid.dt == 1.0
    lin = ControlGrid(t0=-1.0, t1=1.0, n=5, interp="linear")
    assert lin.knot_times() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert lin.breaks() == [-0.5, 0.0, 0.5] and lin.jumps() == []
    assert grid.breaks() == grid.jumps() == [3.0, 4.0]


def test_cell_without_snapping():
    grid = ControlGrid(0.0, 1.0, n=10)
    assert grid.cell(0.3, side=0) == 3      # exactly on a knot: the cell to its right
    assert grid.cell(0.35, side=0) == 3
    assert grid.cell(-1.0, side=0) == 0     # before t0: clamped
    assert grid.cell(0.0, side=0) == 0
    assert grid.cell(1.0, side=0) == 9      # t1 closes the last cell
    lin = ControlGrid(0.0, 1.0, n=5, interp="linear")
    assert lin.cell(1.0, side=0) == 3 and lin.cell(2.0, side=0) == 3


def test_cell_snaps_to_knots_by_side():
    grid = ControlGrid(0.0, 1.0, n=10)
    near = 0.30000000000000004               # 0.1 * 3: one ulp off the knot 0.3
    assert grid.cell(near, side=1) == 3 and grid.cell(near, side=-1) == 2 and grid.cell(near) == 3
    assert grid.cell(0.0, side=-1) == 0 and grid.cell(1.0, side=1) == 9  # clamped at both ends


def test_weights_at_knots_and_ends():
    lin = ControlGrid(0.0, 2.0, n=3, interp="linear")
    assert lin.weights(0.5) == (0, 1, 0.5)
    assert lin.weights(1.0, side=1) == (1, 2, 0.0) and lin.weights(1.0, side=-1) == (0, 1, 1.0)
    assert lin.weights(1.0) == (1, 2, 0.0)
    l, r, w = lin.weights(2.0 * (1 + 1e-13))
    assert (l, r) == (1, 2) and w == 1.0     # clamped, never past the last knot
    const = ControlGrid(0.0, 1.0, n=4)
    assert const.weights(0.9)[:2] == (3, 3)  # the right neighbour never leaves the grid


def test_refine_keeps_the_interval():
    grid = ControlGrid(t0=2.0, t1=6.0, n=3, interp="linear")
    fine = grid.refine(2)
    assert (fine.t0, fine.t1, fine.n, fine.interp) == (2.0, 6.0, 5, "linear")
    with pytest.raises(ValueError, match="^factor must be >= 1"):
        grid.refine(0)


def test_prolong_checks_and_keeps_theta():
    grid = ControlGrid(0.0, 1.0, n=4, interp="linear")
    with pytest.raises(ValueError, match=r"values must have a leading control axis of length 4, got \(3, 2\)"):
        grid.prolong(torch.zeros(3, 2), 2)
    meta = grid.prolong(torch.zeros(4, 2, device="meta"), 3)  # device-agnostic: nothing made on the CPU
    assert meta.device.type == "meta" and meta.shape == (10, 2)
    values = torch.arange(8.0).view(4, 2) ** 2
    fine = grid.prolong(values, 3)
    assert fine.shape == (10, 2)
    fine_grid = grid.refine(3)
    for t in (0.0, 0.1, 0.5, 0.77, 1.0):
        l, r, w = grid.weights(t)
        fl, fr, fw = fine_grid.weights(t)
        assert torch.allclose(torch.lerp(values[l], values[r], w), torch.lerp(fine[fl], fine[fr], fw), atol=1e-12)
