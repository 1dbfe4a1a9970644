"""LinearTwoStep's contract, case by case: its errors in full, k's shape, initial value and cell
in either direction, one step of the recurrence by hand (a tuple state, float32 k on a float64
state), the previous state carried, the side f is evaluated from, and linear dense output."""
import pytest
import torch

import contdepth as cd
from conftest import RecordingTerm as Recording

DT = torch.float64




def test_errors_name_the_argument_in_full():
    with pytest.raises(TypeError) as info:
        cd.LinearTwoStep([0.0, 1.0])
    assert str(info.value) == "grid must be a contdepth.ControlGrid, got list"
    with pytest.raises(ValueError) as info:
        cd.LinearTwoStep(cd.ControlGrid(0.0, 1.0, n=3, interp="linear"))
    assert str(info.value) == "LinearTwoStep holds k_l per step: grid.interp must be 'constant', got 'linear'"


def test_k_is_one_trainable_value_per_cell():
    grid = cd.ControlGrid(0.0, 1.0, n=4)
    lm = cd.LinearTwoStep(grid, k_init=1)
    assert isinstance(lm.k, torch.nn.Parameter) and lm.k.requires_grad
    assert lm.k.shape == (4,) and lm.k.dtype == torch.float32 and lm.k.tolist() == [1.0] * 4
    assert cd.LinearTwoStep(grid).k.tolist() == [0.0] * 4
    assert lm.grid is grid and lm.extra_repr() == "n=4"
    assert (lm.name, lm.order, lm.adaptive, lm.fsal) == ("linear_two_step", 1, False, False)


def _stepper(ks):
    lm = cd.LinearTwoStep(cd.ControlGrid(0.0, 1.0, n=len(ks)))
    with torch.no_grad():
        lm.k.copy_(torch.tensor(ks))
    return lm


@pytest.mark.parametrize("h,cell", [(0.25, 2), (-0.25, 1)])
def test_one_step_is_the_recurrence_with_k_of_the_cell_ahead(h, cell):
    """At t = 0.5, a knot: forward steps read cell 2's k, backward steps cell 1's."""
    lm = _stepper([0.1, 0.2, 0.3, 0.4])
    term = Recording()
    y = torch.tensor([0.3, -1.2], dtype=DT)
    prev = torch.tensor([0.5, 0.25], dtype=DT)
    y1, state1, error, dense = lm.step(term, 0.5, h, y, (prev,))
    k = float(torch.tensor([0.1, 0.2, 0.3, 0.4])[cell])  # float32's value, in float64
    want = y + h * (0.5 - y * y) + k * (prev - y)
    assert y1.dtype == DT and torch.allclose(y1, want, rtol=1e-15, atol=1e-15)
    assert state1 == (y,) and state1[0] is y and error is None and dense is None
    assert term.calls == [(0.5, 1 if h > 0 else -1)]


def test_a_pair_state_steps_each_tensor_with_its_own_previous():
    lm = _stepper([0.5])
    y = (torch.tensor([1.0], dtype=DT), torch.tensor([2.0, 3.0], dtype=DT))
    prev = (torch.tensor([0.0], dtype=DT), torch.tensor([1.0, 1.0], dtype=DT))
    (q1, p1), (kept,), _, _ = lm.step(Recording(), 0.0, 0.5, y, (prev,))
    assert kept is y
    assert q1.tolist() == [1.0 + 0.5 * -1.0 + 0.5 * -1.0]
    assert p1.tolist() == [2.0 + 0.5 * -4.0 + 0.5 * -1.0, 3.0 + 0.5 * -9.0 + 0.5 * -2.0]


def test_init_takes_the_start_as_the_previous_state_and_k_zero_is_euler():
    lm = _stepper([0.0, 0.0])
    y0 = torch.tensor([0.7], dtype=DT)
    state = lm.init(Recording(), 0.0, y0, 1)
    assert len(state) == 1 and state[0] is y0
    y1, *_ = lm.step(Recording(), 0.0, 0.5, y0, state)
    assert torch.equal(y1, y0 + 0.5 * (0.0 - y0 * y0))


def test_dense_output_is_the_chord():
    lm = _stepper([0.3])
    y0, y1 = torch.tensor([1.0, 2.0], dtype=DT), torch.tensor([3.0, -2.0], dtype=DT)
    assert torch.equal(lm.interpolate(y0, y1, None, 0.5, 0.25), torch.tensor([1.5, 1.0], dtype=DT))
