"""timetol's contract: the slack is TIME_RTOL * max(1, |t|) over the times given, and two times are
close when their distance is at most that slack (the boundary included), for floats and tensors."""
import math

import torch

from contdepth.timetol import TIME_RTOL, close, close_tensors, slack


def test_the_tolerance_is_one_part_in_a_trillion():
    assert TIME_RTOL == 1e-12


def test_slack_is_rtol_times_the_largest_magnitude_but_at_least_rtol():
    assert slack(0.0) == slack(0.5) == slack(-1.0) == 1e-12
    assert slack(-4.0) == 4e-12
    assert slack(2.0, -3.0) == slack(-3.0, 2.0) == 3e-12
    assert slack(0.25, 0.5, 8.0) == 8e-12


def test_close_includes_the_boundary_and_is_symmetric():
    assert close(0.0, 1e-12) and close(1e-12, 0.0) and close(0.0, -1e-12)
    assert not close(0.0, 2e-12) and not close(-2e-12, 0.0)
    assert close(1e6, 1e6 + 5e-7) and not close(1e6, 1e6 + 2e-6)
    assert close(-1e6, -1e6 - 5e-7) and not close(-1e6, -1e6 - 2e-6)


def test_close_uses_the_slack_of_the_larger_time_in_either_order():
    gap = 4504 * 2.0 ** -52  # a representable distance just above TIME_RTOL
    a = math.nextafter(gap / TIME_RTOL, 0.0)  # the largest time whose own slack is below gap
    b = a + gap
    assert b - a == gap and slack(a) < gap <= slack(b)
    assert close(a, b) and close(b, a) and close(-a, -b) and close(-b, -a)


def test_close_tensors_matches_close_elementwise_and_broadcasts():
    a = torch.tensor([0.0, 0.0, 1.5e-12, 1e6, -1e6, 1e6, 0.5], dtype=torch.float64)
    b = torch.tensor([1e-12, 1.5e-12, 0.0, 1e6 + 5e-7, -1e6 - 2e-6, 0.0, 0.5 + 0.9e-12], dtype=torch.float64)
    expected = [close(x, y) for x, y in zip(a.tolist(), b.tolist())]
    assert expected == [True, False, False, True, False, False, True]
    assert close_tensors(a, b).tolist() == expected
    assert close_tensors(b, a).tolist() == expected
    grid = torch.tensor([[0.0], [1.0], [4.0]], dtype=torch.float64)
    times = torch.tensor([3e-12, 1.0 + 2e-12, 4.0 + 3e-12], dtype=torch.float64)
    got = close_tensors(grid, times)
    assert got.shape == (3, 3)
    assert got.tolist() == [[close(g, t) for t in times.tolist()] for g in grid[:, 0].tolist()]
