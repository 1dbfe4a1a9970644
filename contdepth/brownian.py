"""A reproducible Brownian path queried by interval: ``bm(s, t) = W(t) - W(s)``.

W on [t0, t1] is built by the Levy-Ciesielski (Brownian bridge) construction on the dyadic
tree of the interval: with u = (t - t0) / T, T = t1 - t0,

    W(t) = u sqrt(T) Z_root + sum_{l < L} sum_k tent_lk(u) sqrt(T 2^-l) / 2 Z_lk,

where tent_lk is the hat function of the k-th dyadic interval of level l (1 at its midpoint,
0 at its ends) and every Z is a standard normal drawn from a generator seeded by
(seed, l, k) alone. So W is one fixed function of t for a given seed: the increments of any
grid sum to those of a coarser one, a refined solve converges pathwise to the same solution,
and the backward pass of a gradient method sees exactly the forward pass's noise. W is exact
Brownian motion at the dyadic points of level <= L (every point of a uniform grid of 2^m <= 2^L
steps) and piecewise linear between them (the series truncated at ``levels`` = L).

torchsde 0.2.6's default ``BrownianInterval`` is not such a path (it splits at the query
times: 256-step increments summed to 16 steps differ from the 16-step ones by 1.7 on a 64 x 2
path); with ``halfway_tree=True`` it is, at 58-270 us per query. This one costs a seeded normal
per new tree node: 16 us per increment along a grid of 2^m steps, 230 us along 100 steps (whose
points are not tree nodes: each needs its level-L neighbours), against torchsde's 66 and 64 us
(64 x 2 state, ``python benchmarks/sde.py``, this project's 2-core CPU). Power-of-two step counts
are exact and cheapest.
"""
from __future__ import annotations

import math

import torch

_MASK = (1 << 64) - 1


def _mix(x: int) -> int:
    """splitmix64's finaliser: a bijective scramble of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


class BrownianPath:
    """W(t) on [t0, t1] of shape ``shape`` (independent components), fixed by ``seed``.

    ``bm(s, t)`` is W(t) - W(s) for any s, t in [t0, t1] (either order); ``bm(t)`` is W(t),
    W(t0) = 0. ``seed=None`` draws one from torch's global generator (so ``torch.manual_seed``
    makes it reproducible). ``levels``: depth of the dyadic tree (resolution (t1 - t0) 2^-levels).
    The same seed gives the same path on every call and whatever the query times; paths on
    different devices are different draws.
    """

    def __init__(self, t0: float, t1: float, shape: torch.Size | tuple[int, ...], *, seed: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 levels: int = 16, cache_bytes: int = 1 << 26) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise ValueError(f"BrownianPath needs finite t0 < t1, got t0={t0}, t1={t1}")
        if not isinstance(shape, (tuple, list, torch.Size)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise TypeError(f"shape must be a tuple of non-negative ints, got {shape!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= 48:
            raise ValueError(f"levels must be an int in [1, 48], got {levels!r}")
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()).item())
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        self.t0, self.t1, self.shape = t0, t1, torch.Size(shape)
        self.seed, self.dtype, self.levels = seed, dtype, levels
        self.device = torch.device("cpu" if device is None else device)
        self._generator = torch.Generator(device=self.device)
        self._key = _mix(seed & _MASK)
        node_bytes = max(1, self.shape.numel() * torch.finfo(dtype).bits // 8)
        self._cache_points = max(64, cache_bytes // node_bytes)
        self._points: dict[int, torch.Tensor] = {}
        self._last: tuple[float, torch.Tensor | None] = (math.nan, None)
        self._w0 = torch.zeros(self.shape, dtype=dtype, device=self.device)
        self._w1 = (math.sqrt(t1 - t0) * self._normal(0)).to(dtype)

    def __repr__(self) -> str:
        return (f"BrownianPath(t0={self.t0}, t1={self.t1}, shape={tuple(self.shape)}, seed={self.seed}, "
                f"dtype={self.dtype}, device={self.device}, levels={self.levels})")

    def _normal(self, node: int) -> torch.Tensor:
        """Z of tree node ``node`` (0: the root's W(t1); 2^l + k: node k of level l), in float32
        for every dtype of the path (3-5x faster to draw than float64 on CPU, the same path for
        every dtype); the bridge adds it to the path's dtype."""
        self._generator.manual_seed(_mix(self._key ^ node) >> 1)
        return torch.randn(self.shape, generator=self._generator, dtype=torch.float32, device=self.device)

    def _at(self, x: int) -> torch.Tensor:
        """W at the dyadic point x 2^-L of [0, 1] (L = levels), descending the tree from the root:
        each midpoint m of a node [a, b] of level l is the bridge (W(a) + W(b)) / 2 + sqrt(T 2^-l) / 2 Z
        (points cached; an evicted one is recomputed, the same, on the next descent through it)."""
        w = self._points.get(x)
        if w is not None:
            return w
        T, levels = self.t1 - self.t0, self.levels
        a, b, wa, wb = 0, 1 << levels, self._w0, self._w1
        if x in (a, b):
            return wa if x == a else wb
        for level in range(levels):
            m = (a + b) >> 1
            wm = self._points.get(m)
            if wm is None:
                node = (1 << level) + (a >> (levels - level))
                wm = torch.lerp(wa, wb, 0.5).add_(self._normal(node), alpha=math.sqrt(T / 2 ** level) / 2)
                self._points[m] = wm
                if len(self._points) > self._cache_points:
                    del self._points[next(iter(self._points))]
            if m == x:
                return wm
            if x < m:
                b, wb = m, wm
            else:
                a, wa = m, wm
        raise AssertionError(f"{x} is not a dyadic point of level <= {levels}")

    def _value(self, t: float) -> torch.Tensor:
        """W(t): exact at dyadic points of level <= L, linear between neighbouring ones."""
        if not (self.t0 - 1e-12 * max(1.0, abs(self.t0)) <= t <= self.t1 + 1e-12 * max(1.0, abs(self.t1))):
            raise ValueError(f"BrownianPath is defined on [{self.t0}, {self.t1}]; queried at t = {t}")
        top = 1 << self.levels
        x = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0) * top
        i = round(x)
        if abs(x - i) <= 1e-6:  # a dyadic point up to the rounding of t
            return self._at(i)
        if self._last[0] != t:
            i = int(math.floor(x))
            self._last = (t, torch.lerp(self._at(i), self._at(i + 1), x - i))
        return self._last[1]  # the end of one step is the start of the next

    def __call__(self, s: float, t: float | None = None) -> torch.Tensor:
        """W(t) - W(s); with one argument, W(s) - W(t0)."""
        if t is None:
            return self._value(float(s)).clone()
        s, t = float(s), float(t)
        return self._value(t) - self._value(s)

    def check_fits(self, t0: float, t1: float, shape: torch.Size, dtype: torch.dtype, device: torch.device,
                   name: str = "bm") -> None:
        """Raise ``ValueError`` unless this path covers [t0, t1] (either order) with this shape, dtype and device."""
        lo, hi = min(t0, t1), max(t0, t1)
        tol = 1e-12 * max(1.0, abs(lo), abs(hi))
        if self.t0 > lo + tol or self.t1 < hi - tol:
            raise ValueError(f"{name} covers [{self.t0}, {self.t1}], but the solve needs [{lo}, {hi}]")
        if self.shape != shape:
            raise ValueError(f"{name} has shape {tuple(self.shape)}, but the state y0 has shape {tuple(shape)}")
        if self.dtype != dtype:
            raise ValueError(f"{name} has dtype {self.dtype}, but the state y0 has dtype {dtype}")
        if self.device.type != device.type or None not in (self.device.index, device.index) and \
                self.device.index != device.index:
            raise ValueError(f"{name} is on {self.device}, but the state y0 is on {device}")
