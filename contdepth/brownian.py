"""A reproducible Brownian path queried by interval: ``bm(s, t) = W(t) - W(s)``.

W on [t0, t1], T = t1 - t0, is built by the Levy-Ciesielski (Brownian bridge) construction on
the dyadic tree of the interval: W(t0) = 0, W(t1) = sqrt(T) Z, and the midpoint m of a node
[a, b] of level l (width T 2^-l) is W(m) = (W(a) + W(b)) / 2 + sqrt(T 2^-l) / 2 Z_lk, every Z
a standard normal drawn from a generator seeded by (seed, l, k) alone. The tree is grown on
demand, only as deep as a query needs: W at t0 + k T 2^-j (k odd) costs the uncached nodes on
the way down to it, at most j (a uniform grid of 2^m steps: one new node per step); any other
t is the linear interpolation between its two neighbours on the grid t0 + k T 2^-L, L =
``levels`` (default and maximum 32), found by descending the L levels. Each node is computed by
the same arithmetic from its parents whatever was queried before (the cache only saves work),
so W is one fixed function of t for a given seed, bit for bit: the increments of any grid sum
to those of a coarser one, a refined solve converges pathwise, and a gradient method's backward
pass sees exactly the forward pass's noise.

W is exact Brownian motion on the grid t0 + k T 2^-L, and the increment over any [s, t] has
variance t - s - e with 0 <= e <= T 2^-L / 2 (e = 0 when s and t are grid points): on a grid
of N steps at most the fraction N 2^-(L+1) of the step's variance, 1.2e-5 at N = 10^5 with
L = 32 (with L = 16 an increment of that grid loses about half its variance: a lower ``levels``
is cheaper, and right only for steps far above T 2^-L). Why interpolate below T 2^-32 rather
than descend to float64 resolution:

* seeds. torch's CPU generator (mt19937) keeps 32 bits of a seed. The 2^32 normals of the
  depth-32 tree, numbered 2^l + k (the root's: 0), are seeded by a bijection of that number
  keyed by all 64 bits of ``seed``, so no two nodes of a path share normals; a deeper tree would
  have more nodes than seeds.
* continuity. Times that name one grid point up to rounding (a step's t + h and the next grid
  time differ by an ulp) get W within about 1e-11 sqrt(T) of each other; a path exact to float
  resolution would differ by the square root of an ulp, about 1e-8 sqrt(T).
* cost. On a grid of N steps whose points are not of the form t0 + k T 2^-m, a query costs about
  L - log2(N) new nodes, one seeded normal and one bridge update each; float resolution would
  add some 20 more.

The normals are drawn in float32 for every dtype (the same path, to float32 rounding, in float32
and float64). Two different seeds give the same normals to a given pair of nodes with probability
2^-32 (the generator's seed space): draw an ensemble of paths as one path with a batch dimension
in ``shape``, not as many seeds.

torchsde 0.2.6's default ``BrownianInterval`` is not a fixed function of t: two of one entropy,
one queried on 16 steps and one on 256, give 16 increments that differ by up to 1.7 (64 x 2
state); with ``halfway_tree=True`` they agree. ``python benchmarks/sde.py`` times increment
queries against it.
"""
from __future__ import annotations

import math
from collections import deque

import torch

from .timetol import slack

_MASK = (1 << 64) - 1
_MAX_LEVELS = 32
# measured: a cached float32 point of 2 elements costs ~670 bytes of RSS (tensor and storage
# objects, dict entry), nearly all of it on top of its data
_POINT_OVERHEAD_BYTES = 660


def _mix(x: int) -> int:
    """splitmix64's finaliser: a bijective scramble of a 64-bit integer."""
    x = (x + 0x9E3779B97F4A7C15) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def _mix32(x: int) -> int:
    """murmur3's 32-bit finaliser: a bijective scramble of a 32-bit integer."""
    x ^= x >> 16
    x = (x * 0x85EBCA6B) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0xC2B2AE35) & 0xFFFFFFFF
    return x ^ (x >> 16)


class BrownianPath:
    """W(t) on [t0, t1] of shape ``shape`` (independent components), fixed by ``seed``.

    ``bm(s, t)`` is W(t) - W(s) for any s, t in [t0, t1] (either order); ``bm(t)`` is W(t),
    W(t0) = 0. ``seed``: an int in [-2^63, 2^64), taken modulo 2^64 as ``torch.manual_seed``
    does; ``None`` draws one from torch's global generator (so ``torch.manual_seed`` makes it
    reproducible). ``levels``: the depth L of the dyadic tree, 1 to 32; W is exact on the grid
    t0 + k (t1 - t0) 2^-L and linear between its points (see the module docstring for the
    variance this costs an increment). ``cache_bytes`` bounds the memory of the computed points
    kept for reuse. The same seed gives the same path on every call and whatever the query
    times; paths on different devices are different draws.
    """

    def __init__(self, t0: float, t1: float, shape: torch.Size | tuple[int, ...], *, seed: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 levels: int = _MAX_LEVELS, cache_bytes: int = 1 << 26) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise ValueError(f"BrownianPath needs finite t0 < t1, got t0={t0}, t1={t1}")
        if not isinstance(shape, (tuple, list, torch.Size)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise TypeError(f"shape must be a tuple of non-negative ints, got {shape!r}")
        if not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= _MAX_LEVELS:
            raise ValueError(f"levels must be an int in [1, {_MAX_LEVELS}] (torch's CPU generator takes 32-bit "
                             f"seeds: 2^32 tree nodes is the most that get one each), got {levels!r}")
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()).item())
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if not -2 ** 63 <= seed < 2 ** 64:
            raise ValueError(f"seed must be in [-2^63, 2^64) (as for torch.manual_seed), got {seed}")
        self.t0, self.t1, self.shape = t0, t1, torch.Size(shape)
        self.seed, self.dtype, self.levels = seed, dtype, levels
        self.device = torch.device("cpu" if device is None else device)
        self._generator = torch.Generator(device=self.device)
        key = _mix(seed & _MASK)
        self._keys = (key & 0xFFFFFFFF, key >> 32)
        self._top = 1 << levels
        self._scale = [math.sqrt((t1 - t0) / 2 ** level) / 2 for level in range(levels)]
        self._snap = 8 * 2.0 ** -52 * max(abs(t0), abs(t1)) / (t1 - t0) * self._top
        node_bytes = self.shape.numel() * torch.finfo(dtype).bits // 8 + _POINT_OVERHEAD_BYTES
        self._cache_points = max(64, cache_bytes // node_bytes)
        self._points: dict[int, torch.Tensor] = {}
        self._order: list[deque[int]] = [deque() for _ in range(levels)]  # cached points, per level, oldest first
        self._z = torch.empty(self.shape, dtype=torch.float32, device=self.device)
        self._last: tuple[float, torch.Tensor | None] = (math.nan, None)
        self._w0 = torch.zeros(self.shape, dtype=dtype, device=self.device)
        self._w1 = (math.sqrt(t1 - t0) * self._normal(0)).to(dtype)

    def __repr__(self) -> str:
        return (f"BrownianPath(t0={self.t0}, t1={self.t1}, shape={tuple(self.shape)}, seed={self.seed}, "
                f"dtype={self.dtype}, device={self.device}, levels={self.levels})")

    def _normal(self, node: int) -> torch.Tensor:
        """Z of tree node ``node`` (0: the root's W(t1); 2^l + k: node k of level l), seeded by a
        keyed bijection of ``node`` on 32 bits (distinct nodes, distinct seeds). Drawn in float32
        for every dtype of the path (cheaper than float64, the same path for every dtype), into
        a buffer that the next draw overwrites; the bridge adds it to the path's dtype."""
        self._generator.manual_seed(_mix32(node ^ self._keys[0]) ^ self._keys[1])
        return self._z.normal_(generator=self._generator)

    def _descend(self, x2: int) -> tuple[torch.Tensor, torch.Tensor]:
        """W at the ends of the tree interval that stops the descent towards x2 / 2 (in units of
        T 2^-L from t0): the point itself if x2 is even (both ends), the level-L cell around it if
        x2 is odd. Each new midpoint m of a node [a, b] of level l is (W(a) + W(b)) / 2 +
        sqrt(T 2^-l) / 2 Z (points cached; an evicted one is recomputed, the same, on the next
        descent through it)."""
        a, b, wa, wb = 0, self._top, self._w0, self._w1
        if x2 in (0, 2 * b):
            return (wa, wa) if x2 == 0 else (wb, wb)
        points = self._points
        for level in range(self.levels):
            m = (a + b) >> 1
            wm = points.get(m)
            if wm is None:
                wm = torch.lerp(wa, wb, 0.5).add_(self._normal((1 << level) + (a >> (self.levels - level))),
                                                  alpha=self._scale[level])
                points[m] = wm
                self._order[level].append(m)
                if len(points) > self._cache_points:
                    self._evict()
            if x2 == 2 * m:
                return wm, wm
            if x2 < 2 * m:
                b, wb = m, wm
            else:
                a, wa = m, wm
        return wa, wb

    def _evict(self) -> None:
        """Drop the oldest cached point of the deepest level that has one: a point of level l serves
        the queries within T 2^-l of it, so the top of the tree, which every descent crosses, stays."""
        for order in reversed(self._order):
            if order:
                del self._points[order.popleft()]
                return

    def _value(self, t: float) -> torch.Tensor:
        """W(t): exact on the grid t0 + k T 2^-L, linear between its points (a time within 8 ulps of
        max(|t0|, |t1|) of a grid point is that point: a grid time up to rounding)."""
        if not (self.t0 - slack(self.t0) <= t <= self.t1 + slack(self.t1)):
            raise ValueError(f"BrownianPath is defined on [{self.t0}, {self.t1}]; queried at t = {t}")
        x = min(max((t - self.t0) / (self.t1 - self.t0), 0.0), 1.0) * self._top
        i = round(x)
        if abs(x - i) <= self._snap:
            return self._descend(2 * i)[0]
        if self._last[0] != t:
            i = math.floor(x)
            wa, wb = self._descend(2 * i + 1)
            self._last = (t, torch.lerp(wa, wb, x - i))
        return self._last[1]  # the end of one step is the start of the next

    def __call__(self, s: float, t: float | None = None) -> torch.Tensor:
        """W(t) - W(s); with one argument, W(s) - W(t0)."""
        if t is None:
            return self._value(float(s)).clone()
        ws = self._value(float(s))  # s first: along a grid, the previous query's t
        return self._value(float(t)) - ws

    def check_fits(self, t0: float, t1: float, shape: torch.Size, dtype: torch.dtype, device: torch.device,
                   name: str = "bm") -> None:
        """Raise ``ValueError`` unless this path covers [t0, t1] (either order) with this shape, dtype and device."""
        lo, hi = min(t0, t1), max(t0, t1)
        tol = slack(lo, hi)
        if self.t0 > lo + tol or self.t1 < hi - tol:
            raise ValueError(f"{name} covers [{self.t0}, {self.t1}], but the solve needs [{lo}, {hi}]")
        if self.shape != shape:
            raise ValueError(f"{name} has shape {tuple(self.shape)}, but the state y0 has shape {tuple(shape)}")
        if self.dtype != dtype:
            raise ValueError(f"{name} has dtype {self.dtype}, but the state y0 has dtype {dtype}")
        if self.device.type != device.type or None not in (self.device.index, device.index) and \
                self.device.index != device.index:
            raise ValueError(f"{name} is on {self.device}, but the state y0 is on {device}")
