"""examples/physics.py end to end on tiny sizes: every study runs and reports sane numbers."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "physics.py"


@pytest.fixture(scope="module")
def example():
    if str(EXAMPLE.parent) not in sys.path:  # the examples import their sibling _cli.py
        sys.path.insert(0, str(EXAMPLE.parent))
    spec = importlib.util.spec_from_file_location("physics_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_studies_on_a_tiny_model(example, tmp_path):
    field, training = example.train_circles(points=40, layers=2, iters=5, seed=0)
    assert field.weight.dtype == torch.float64 and training["iterations"] == 5
    x, y = example.circles(40, seed=0)
    x = example.LIFT(x).double()
    ham = example.hamiltonian_study(field, x[:8], y[:8], per_cell=4, out=tmp_path)
    assert ham["adjoint_vs_autograd_rel_error"] < 1e-3
    assert ham["H_jump_rel_error"] < 1e-4  # includes the within-cell RK4 drift at h = 0.5
    dens = example.density_study(field, x[:16], per_cell=4, out=tmp_path, seed=0)
    assert dens["entropy_change_vs_simpson_rate_abs_at_T"] < 1e-3
    paths = example.path_study(tmp_path, seed=0)
    assert paths["path_sum_vs_direct_max_abs"] < 1e-12
    cont = example.continuum_study(tmp_path, quick=True)
    assert all(1.8 < order < 2.2 for order in cont["observed_orders"])
    for name in ("hamiltonian", "divergence_entropy", "path_sum", "propagator"):
        assert (tmp_path / f"{name}.png").stat().st_size > 1000
    json.dumps([ham, dens, paths, cont], allow_nan=False)
