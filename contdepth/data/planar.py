"""Planar (2-feature) classification data: concentric circles (seed 002 sec. 5.1), MATLAB peaks
(seed 004 ch. 3) and two interleaved spirals (seed 003).

Every generator is deterministic given ``seed`` (its own ``torch.Generator``; the global RNG is
untouched) and returns ``float32`` features and ``int64`` labels with exactly balanced classes.
"""
from __future__ import annotations

import math

import torch

from ..errors import check_positive_int

PEAKS_BOX = (-3.0, 3.0)
"""The interval [-3, 3] of both axes of :func:`peaks_grid`: the peaks data lie in this square."""


def _check_seed(seed: object) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__} {seed!r}")
    return seed


def _check_positive_float(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, got {value}")
    return float(value)


def circles(n: int = 400, *, noise: float = 0.2, ratio: float = 2.0, radius: float = 1.0,
            seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two concentric noisy circles (seed 002 sec. 5.1): ``n`` points, ``n // 2`` per class.

    Class 0 lies on the inner circle of radius ``radius``, class 1 on the outer circle of radius
    ``ratio * radius``; angles are uniform and isotropic Gaussian noise of standard deviation
    ``noise`` is added to both coordinates. The seed gives no absolute scale; with the default
    ``radius = 1`` the Bayes-optimal accuracy at ``noise = 0.2`` is about 99.3 % (with ``radius =
    0.5``, scikit-learn's scale, it is about 89 %). Returns ``(X, y)``: ``X`` (n, 2) float32, ``y``
    (n,) int64, classes interleaved in a random order.

    Raises ``ValueError`` for an odd or non-positive ``n``, a negative ``noise``, ``ratio`` <= 1, a
    non-positive ``radius``; ``TypeError`` for a non-int ``n`` or ``seed``.

    Example: ``X, y = circles(400, seed=0)``: X (400, 2) float32, y (400,) int64 in {0, 1}.
    """
    n = check_positive_int("n", n)
    if n % 2:
        raise ValueError(f"n must be even (two balanced classes), got {n}")
    noise = _check_positive_float("noise", noise, allow_zero=True)
    ratio = _check_positive_float("ratio", ratio)
    if ratio <= 1.0:
        raise ValueError(f"ratio (outer / inner radius) must be > 1, got {ratio}")
    radius = _check_positive_float("radius", radius)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    y = torch.arange(n, dtype=torch.int64) % 2
    y = y[torch.randperm(n, generator=gen)]
    angle = 2 * math.pi * torch.rand(n, generator=gen, dtype=torch.float64)
    r = radius * torch.where(y == 0, 1.0, ratio).to(torch.float64)
    X = torch.stack([r * angle.cos(), r * angle.sin()], dim=1)
    X = X + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return X.float(), y


def spirals(n: int = 400, *, noise: float = 0.05, turns: float = 1.5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaved spirals (seed 003's toy): ``n`` points, ``n // 2`` per class.

    Class c has points r (cos(a + c pi), sin(a + c pi)) with a = 2 pi turns s, r = s, for s
    uniform in [0.1, 1] (so the arms start off the origin), plus isotropic Gaussian noise of
    standard deviation ``noise``. Returns ``(X, y)``: ``X`` (n, 2) float32, ``y`` (n,) int64,
    classes interleaved in a random order.

    Raises ``ValueError`` for an odd or non-positive ``n``, a negative ``noise`` or non-positive
    ``turns``; ``TypeError`` for a non-int ``n`` or ``seed``.

    Example: ``X, y = spirals(1000, noise=0.05, seed=0)``.
    """
    n = check_positive_int("n", n)
    if n % 2:
        raise ValueError(f"n must be even (two balanced classes), got {n}")
    noise = _check_positive_float("noise", noise, allow_zero=True)
    turns = _check_positive_float("turns", turns)
    gen = torch.Generator().manual_seed(_check_seed(seed))
    y = torch.arange(n, dtype=torch.int64) % 2
    y = y[torch.randperm(n, generator=gen)]
    s = 0.1 + 0.9 * torch.rand(n, generator=gen, dtype=torch.float64)
    angle = 2 * math.pi * turns * s + math.pi * y.to(torch.float64)
    X = torch.stack([s * angle.cos(), s * angle.sin()], dim=1)
    X = X + noise * torch.randn(n, 2, generator=gen, dtype=torch.float64)
    return X.float(), y


def random_rotation(X: torch.Tensor, y: torch.Tensor, *, generator: torch.Generator | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each 2-D point about the origin by its own uniform angle in [0, 2 pi); labels unchanged.

    Data augmentation for rotation-invariant data such as :func:`circles` (seed 002 sec. 4 lists
    augmentation among the regularisers). Made to be passed as ``contdepth.train.fit(...,
    transform=random_rotation)``; angles come from ``generator`` or, by default, the global torch
    RNG (which ``fit`` seeds and checkpoints, so resumed runs stay bit-identical).
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 2 or X.shape[1] != 2:
        raise ValueError(f"X must be a (N, 2) tensor of planar points, got "
                         f"{tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__}")
    angle = 2 * math.pi * torch.rand(len(X), generator=generator, dtype=X.dtype, device=X.device)
    c, s = angle.cos(), angle.sin()
    return torch.stack([c * X[:, 0] - s * X[:, 1], s * X[:, 0] + c * X[:, 1]], dim=1), y


def peaks_function(x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """MATLAB ``peaks`` (seed 004 ch. 3): 3(1-x1)^2 e^{-x1^2-(x2+1)^2} - 10(x1/5 - x1^3 - x2^5) e^{-x1^2-x2^2} - 1/3 e^{-(x1+1)^2-x2^2}."""
    return (3 * (1 - x1) ** 2 * torch.exp(-x1 ** 2 - (x2 + 1) ** 2)
            - 10 * (x1 / 5 - x1 ** 3 - x2 ** 5) * torch.exp(-x1 ** 2 - x2 ** 2)
            - torch.exp(-(x1 + 1) ** 2 - x2 ** 2) / 3)


def peaks_grid(grid_size: int = 256, *, n_classes: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """All ``grid_size**2`` points of the regular grid on [-3, 3]^2 and their class labels.

    Classes are equal-sized level bands of :func:`peaks_function`: the points sorted by function
    value are split into ``n_classes`` consecutive blocks (quantiles; sizes differ by at most one),
    class 0 holding the lowest values. Returns ``(X, y)``: (grid_size**2, 2) float32, int64.
    """
    grid_size = check_positive_int("grid_size", grid_size)
    n_classes = check_positive_int("n_classes", n_classes)
    if grid_size < 2:
        raise ValueError(f"grid_size must be >= 2, got {grid_size}")
    axis = torch.linspace(*PEAKS_BOX, grid_size, dtype=torch.float64)
    x1, x2 = torch.meshgrid(axis, axis, indexing="xy")
    X = torch.stack([x1.reshape(-1), x2.reshape(-1)], dim=1)
    values = peaks_function(X[:, 0], X[:, 1])
    order = torch.argsort(values, stable=True)
    y = torch.empty(len(values), dtype=torch.int64)
    y[order] = torch.arange(len(values)) * n_classes // len(values)
    return X.float(), y


def peaks(*, n_train_per_class: int = 1000, n_test_per_class: int = 40, n_classes: int = 5,
          grid_size: int = 256, seed: int = 0
          ) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """Peaks classification data (seed 004 ch. 3, fig. 3.1): ``((X_train, y_train), (X_test, y_test))``.

    From each class of :func:`peaks_grid` draw ``n_train_per_class + n_test_per_class`` distinct
    grid points without replacement; the first go to training, the rest to test, so the two sets
    are disjoint. Both sets are shuffled. Features (N, 2) float32 in [-3, 3]^2, labels (N,) int64.

    Raises ``TypeError``/``ValueError`` for a count that is not an int >= 1, ``ValueError`` when the
    smallest class has fewer grid points than ``n_train_per_class + n_test_per_class``.

    Example: ``(X, y), (X_test, y_test) = peaks(n_train_per_class=200, seed=0)``.
    """
    n_train_per_class = check_positive_int("n_train_per_class", n_train_per_class)
    n_test_per_class = check_positive_int("n_test_per_class", n_test_per_class)
    X, y = peaks_grid(grid_size, n_classes=n_classes)
    per_class = n_train_per_class + n_test_per_class
    smallest = int(torch.bincount(y, minlength=n_classes).min())
    if per_class > smallest:
        raise ValueError(f"n_train_per_class + n_test_per_class = {per_class} exceeds the {smallest} "
                         f"grid points of the smallest class (grid_size={grid_size}, n_classes={n_classes})")
    gen = torch.Generator().manual_seed(_check_seed(seed))
    train, test = [], []
    for c in range(n_classes):
        members = torch.nonzero(y == c).squeeze(1)
        pick = members[torch.randperm(len(members), generator=gen)[:per_class]]
        train.append(pick[:n_train_per_class])
        test.append(pick[n_train_per_class:])
    splits = []
    for parts in (train, test):
        idx = torch.cat(parts)
        idx = idx[torch.randperm(len(idx), generator=gen)]
        splits.append((X[idx], y[idx]))
    return splits[0], splits[1]
