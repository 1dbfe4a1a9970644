"""Planar datasets: circles (seed 002 sec. 5.1) and peaks (seed 004 ch. 3)."""
import math

import pytest
import torch

from contdepth.data import circles, peaks, peaks_function, peaks_grid, random_rotation


def test_circles_shapes_balance_and_determinism():
    X, y = circles(400, seed=3)
    assert X.shape == (400, 2) and X.dtype == torch.float32
    assert y.shape == (400,) and y.dtype == torch.int64
    assert torch.bincount(y).tolist() == [200, 200]
    X2, y2 = circles(400, seed=3)
    assert torch.equal(X, X2) and torch.equal(y, y2)
    X3, _ = circles(400, seed=4)
    assert not torch.equal(X, X3)


def test_circles_geometry():
    X, y = circles(200, noise=0.0, ratio=2.0, radius=1.5, seed=0)
    r = X.norm(dim=1)
    assert torch.allclose(r[y == 0], torch.full_like(r[y == 0], 1.5), atol=1e-5)
    assert torch.allclose(r[y == 1], torch.full_like(r[y == 1], 3.0), atol=1e-5)
    X, y = circles(4000, noise=0.2, seed=1)
    r = X.norm(dim=1)
    # radial spread of the noise is about the noise's standard deviation
    assert abs(float(r[y == 0].mean()) - 1.0) < 0.05 and abs(float(r[y == 1].mean()) - 2.0) < 0.05
    assert abs(float((r[y == 1] - 2.0).std()) - 0.2) < 0.02


def test_random_rotation_keeps_radii_and_labels():
    X, y = circles(4000, seed=2)
    g = torch.Generator().manual_seed(0)
    Xr, yr = random_rotation(X, y, generator=g)
    assert yr is y and Xr.dtype == X.dtype and Xr.shape == X.shape
    assert torch.allclose(Xr.norm(dim=1), X.norm(dim=1), atol=1e-5)
    # angles are uniform: the rotated points' direction has mean ~0 and the change of angle covers the circle
    change = torch.remainder(torch.atan2(Xr[:, 1], Xr[:, 0]) - torch.atan2(X[:, 1], X[:, 0]), 2 * math.pi)
    assert float(Xr.mean(0).norm()) < 0.1
    assert torch.histc(change, bins=8, min=0, max=2 * math.pi).min() > 400
    Xr2, _ = random_rotation(X, y, generator=torch.Generator().manual_seed(0))
    assert torch.equal(Xr, Xr2)
    with pytest.raises(ValueError, match="X"):
        random_rotation(torch.zeros(5, 3), y[:5])


@pytest.mark.parametrize("kwargs, exc", [({"n": 401}, ValueError), ({"n": 0}, ValueError), ({"n": 4.0}, TypeError),
                                         ({"ratio": 1.0}, ValueError), ({"noise": -0.1}, ValueError),
                                         ({"seed": "0"}, TypeError)])
def test_circles_bad_arguments(kwargs, exc):
    name = next(iter(kwargs))
    with pytest.raises(exc, match=name):
        circles(**kwargs)


def test_peaks_function_matches_matlab():
    # MATLAB: peaks(0, 0) = 0.9810 (= (3 - 1/3) e^-1)
    assert math.isclose(float(peaks_function(torch.tensor(0.0), torch.tensor(0.0))), 8 / 3 / math.e, rel_tol=1e-6)
    x1, x2 = torch.tensor(0.5, dtype=torch.float64), torch.tensor(-1.5, dtype=torch.float64)
    expected = (3 * 0.25 * math.exp(-0.25 - 0.25) - 10 * (0.1 - 0.125 + 1.5 ** 5) * math.exp(-0.25 - 2.25)
                - math.exp(-2.25 - 2.25) / 3)
    assert math.isclose(float(peaks_function(x1, x2)), expected, rel_tol=1e-12)


def test_peaks_grid_quantile_classes():
    X, y = peaks_grid(256)
    assert X.shape == (256 * 256, 2)
    counts = torch.bincount(y, minlength=5)
    assert int(counts.max() - counts.min()) <= 1
    v = peaks_function(X[:, 0].double(), X[:, 1].double())
    for c in range(4):  # level bands: every value of class c is below every value of class c + 1
        assert float(v[y == c].max()) <= float(v[y == c + 1].min())
    assert float(X.min()) == -3.0 and float(X.max()) == 3.0


def test_peaks_split_sizes_disjoint_and_deterministic():
    (Xtr, ytr), (Xte, yte) = peaks(seed=0)
    assert Xtr.shape == (5000, 2) and Xte.shape == (200, 2)
    assert torch.bincount(ytr).tolist() == [1000] * 5 and torch.bincount(yte).tolist() == [40] * 5
    Xg, yg = peaks_grid(256)
    index = {tuple(p): int(c) for p, c in zip(Xg.tolist(), yg.tolist())}
    for X, y in ((Xtr, ytr), (Xte, yte)):  # every point is a grid point with its grid label
        assert all(index[tuple(p)] == int(c) for p, c in zip(X.tolist(), y.tolist()))
    train_points = set(map(tuple, Xtr.tolist()))
    assert len(train_points) == 5000 and not train_points & set(map(tuple, Xte.tolist()))
    (Xtr2, ytr2), (Xte2, yte2) = peaks(seed=0)
    assert torch.equal(Xtr, Xtr2) and torch.equal(yte, yte2)
    (Xtr3, _), _ = peaks(seed=1)
    assert not torch.equal(Xtr, Xtr3)


def test_peaks_bad_arguments():
    with pytest.raises(ValueError, match="n_train_per_class"):
        peaks(n_train_per_class=14000)
    with pytest.raises(TypeError, match="grid_size"):
        peaks(grid_size=256.0)
    with pytest.raises(ValueError, match="n_test_per_class"):
        peaks(n_test_per_class=0)
