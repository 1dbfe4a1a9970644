"""A reproducible Brownian path: ``bm(s, t) = W(t) - W(s)``, and every increment of a grid at once.

W on [t0, t1], T = t1 - t0, u = (t - t0) / T, is the Levy-Ciesielski (Brownian bridge) series to
depth L = ``levels`` (default 20, at most 32), its last level replaced by the bridge's standard
deviation:

    W(t) = sqrt(T) Z_0 u + sum_{l<L} sqrt(T 2^-l) / 2 tent(r_l) Z_(2^l + k_l)
                         + sqrt(T 2^-L) sqrt(r_L (1 - r_L)) Z_(2^L + k_L),

k_l = floor(2^l u) the node of level l holding t, r_l = 2^l u - k_l its place in the node,
tent(r) = 1 - |2 r - 1|. The first two terms are the dyadic bridge construction (W(t1) =
sqrt(T) Z_0; the midpoint of a node [a, b] of level l is (W(a) + W(b)) / 2 + sqrt(T 2^-l) / 2 Z),
exact Brownian motion on the grid t0 + k T 2^-L and linear between its points. The last term
is the Brownian bridge left inside the cell of width T 2^-L: at one time it has the bridge's
law, so every W(t) has variance t - t0, and W is exact Brownian motion (joint law included) on
any set of times no two of which share a cell, in particular on every grid of at most 2^L equal
steps (2^20 = 1,048,576 by default). Two times inside one cell get the same Z_(2^L + k): below
T 2^-L the path is continuous but not Brownian (a finer grid needs a larger ``levels``). A time
within 8 ulps of max(|t0|, |t1|) of a grid point is that point (a grid time up to rounding).

The normals are a pure function of (seed, node, component): Philox4x32-10 (Salmon et al.,
"Parallel random numbers: as easy as 1, 2, 3", SC 2011) keyed by the 64 bits of ``seed`` (low
word first): counter (node mod 2^32, b, node div 2^32, 0), b < B = ceil(numel / 4), gives
components b, B + b, 2B + b, 3B + b, by Box-Muller in float64 on its output words: r0 cos(2 pi v0),
r1 cos(2 pi v1), r0 sin(2 pi v0), r1 sin(2 pi v1) with r0 = sqrt(-2 ln((w0 + 1/2) 2^-32)),
v0 = w1 2^-32 and r1, v1 the same from (w2, w3) (|Z| <= 6.66: the tail beyond has probability
3e-11). Counter-based, the generator gives the normals of any set of
nodes in one vectorised call, in torch integer operations (int64 products wrap modulo 2^64,
which the known-answer tests check). W is summed in float64 for every dtype and rounded once
to the path's dtype: a float32 path is the float64 path to float32 rounding.

Cost: W at P times is one vectorised pass, about 180 tensor operations per 2^16 normals, over
the nodes of the top levels (fewer than 2P) and one node per time for each deeper level that a
time needs (a dyadic time t0 + k T 2^-j, k odd, needs none below level j): on a grid of N equal
steps, about L + 2 - log2(N) normals per component and step. :meth:`BrownianPath.increments`
takes all increments of a grid in one such pass; ``sdesolve`` calls it once per solve.

W is one function of t: the same (seed, levels, times) give the same values whatever else was
queried, in which order or in which batch (on CPU bit for bit: each W(t) adds the same products
in the same order), so the increments of a fine grid sum to those of a coarser grid on the same
times to float rounding (of the sum).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch

from .timetol import slack

MAX_LEVELS = 32
DEFAULT_LEVELS = 20
_MASK32 = 0xFFFFFFFF
_PHILOX_M = (0xD2511F53, 0xCD9E8D57)   # multipliers of counter words 0 and 2
_PHILOX_W = (0x9E3779B9, 0xBB67AE85)   # the key's increments (Weyl sequence) between rounds
_PHILOX_ROUNDS = 10
# normals per pass: bounds a batch's memory (512 KB per float64 tensor); measured at 100 steps of a
# 64 x 2 path, one thread, 9 interleaved rounds: 2^16 took 0.72 of torchsde's time, 2^14 1.02, 2^18 0.99
_CHUNK = 1 << 16


def philox4x32(counter: torch.Tensor, key: tuple[int, int],
               rounds: int = _PHILOX_ROUNDS) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Philox4x32-``rounds`` of ``counter`` (int64, shape (4, n), words in [0, 2^32)) under ``key``
    (two 32-bit words); returns the four output words, each of shape (n,). Round: (c0, c1, c2, c3) ->
    (hi(M1 c2) ^ c1 ^ k0, lo(M1 c2), hi(M0 c0) ^ c3 ^ k1, lo(M0 c0)), then k += (W0, W1) mod 2^32."""
    if counter.dtype != torch.int64 or counter.dim() != 2 or counter.shape[0] != 4:
        raise TypeError(f"counter must be an int64 tensor of shape (4, n), got {counter.dtype} {tuple(counter.shape)}")
    c0, c1, c2, c3 = (word.clone() for word in counter)
    p0, p2 = torch.empty_like(c0), torch.empty_like(c2)
    k0, k1 = key
    for _ in range(rounds):
        torch.mul(c0, _PHILOX_M[0], out=p0)                 # products wrap modulo 2^64: low 64 bits exact
        torch.mul(c2, _PHILOX_M[1], out=p2)
        torch.bitwise_right_shift(p2, 32, out=c0).bitwise_and_(_MASK32).bitwise_xor_(c1).bitwise_xor_(k0)
        torch.bitwise_right_shift(p0, 32, out=c2).bitwise_and_(_MASK32).bitwise_xor_(c3).bitwise_xor_(k1)
        c1, p2 = p2.bitwise_and_(_MASK32), c1
        c3, p0 = p0.bitwise_and_(_MASK32), c3
        k0, k1 = (k0 + _PHILOX_W[0]) & _MASK32, (k1 + _PHILOX_W[1]) & _MASK32
    return c0, c1, c2, c3


def philox_normals(nodes: torch.Tensor, blocks: int, key: tuple[int, int]) -> torch.Tensor:
    """Standard normals of shape (4, len(nodes), blocks), float64: [:, i, b] come from counter
    (nodes[i] mod 2^32, b, nodes[i] div 2^32, 0) of Philox4x32-10 under ``key``: r0 cos, r1 cos,
    r0 sin, r1 sin of Box-Muller on its words (w0, w1) and (w2, w3) (module docstring)."""
    count = nodes.numel() * blocks
    counter = torch.zeros(4, nodes.numel(), blocks, dtype=torch.int64, device=nodes.device)
    counter[0] = (nodes & _MASK32)[:, None]
    counter[1] = torch.arange(blocks, dtype=torch.int64, device=nodes.device)
    counter[2] = (nodes >> 32)[:, None]
    c0, c1, c2, c3 = philox4x32(counter.view(4, count), key)
    words = torch.cat((c0, c2, c1, c3)).to(torch.float64).view(4, count)
    radius = words[:2].mul_(2.0 ** -32).add_(2.0 ** -33).log_().mul_(-2.0).sqrt_()      # from w0, w2
    angle = words[2:].mul_(2 * math.pi * 2.0 ** -32)                                   # from w1, w3
    return torch.cat((torch.cos(angle).mul_(radius), torch.sin(angle).mul_(radius))).view(4, nodes.numel(), blocks)


def levels_for(steps: int) -> int:
    """The ``levels`` that make W exact Brownian motion on a uniform grid of ``steps`` steps: the
    default, or more for grids finer than 2^DEFAULT_LEVELS (at most MAX_LEVELS)."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    return min(MAX_LEVELS, max(DEFAULT_LEVELS, (steps - 1).bit_length()))


class BrownianPath:
    """W(t) on [t0, t1] of shape ``shape`` (independent components), fixed by ``seed``.

    ``bm(s, t)`` is W(t) - W(s) for any s, t in [t0, t1] (either order); ``bm(t)`` is W(t),
    W(t0) = 0; ``bm.increments(times)`` all W(times[i+1]) - W(times[i]) in one vectorised call.
    ``seed``: an int in [-2^63, 2^64), taken modulo 2^64 as ``torch.manual_seed`` does (all 64 bits
    key the generator); ``None`` draws one from torch's global generator (so ``torch.manual_seed``
    makes it reproducible). ``levels``: the depth L of the series, 1 to 32; W is exact Brownian
    motion on any times in distinct cells of width (t1 - t0) 2^-L, every grid of up to 2^L equal
    steps (module docstring). The same seed gives the same path on every call, whatever the query
    times.
    """

    def __init__(self, t0: float, t1: float, shape: torch.Size | tuple[int, ...], *, seed: int | None = None,
                 dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
                 levels: int = DEFAULT_LEVELS) -> None:
        t0, t1 = float(t0), float(t1)
        if not (math.isfinite(t0) and math.isfinite(t1) and t1 > t0):
            raise ValueError(f"BrownianPath needs finite t0 < t1, got t0={t0}, t1={t1}")
        if not isinstance(shape, (tuple, list, torch.Size)) or not all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape):
            raise TypeError(f"shape must be a tuple of non-negative ints, got {shape!r}")
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating dtype, got {dtype}")
        if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_LEVELS:
            raise ValueError(f"levels must be an int in [1, {MAX_LEVELS}], got {levels!r}")
        if seed is None:
            seed = int(torch.randint(0, 2 ** 62, ()).item())
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__}")
        if not -2 ** 63 <= seed < 2 ** 64:
            raise ValueError(f"seed must be in [-2^63, 2^64) (as for torch.manual_seed), got {seed}")
        self.t0, self.t1, self.shape = t0, t1, torch.Size(shape)
        self.seed, self.dtype, self.levels = seed, dtype, levels
        self.device = torch.device("cpu" if device is None else device)
        unsigned = seed % 2 ** 64
        self._key = (unsigned & _MASK32, unsigned >> 32)
        self._width = self.shape.numel()
        self._top = float(1 << levels)
        self._snap = 8 * 2.0 ** -52 * max(abs(t0), abs(t1)) / (t1 - t0) * self._top
        f64 = dict(dtype=torch.float64, device=self.device)
        level = torch.arange(levels + 1, dtype=torch.int64, device=self.device)
        self._shift = levels - level                                   # level-L cells per node of level l
        self._first = torch.ones_like(level) << level                  # node number of (l, 0): 2^l
        self._cells = torch.ldexp(torch.ones(levels + 1, **f64), -self._shift)   # 2^-(L - l)
        self._scale = torch.tensor([math.sqrt((t1 - t0) / 2 ** j) / 2 for j in range(levels + 1)], **f64)
        self._blocks = max(1, -(-self._width // 4))                    # counters per node
        root = philox_normals(torch.zeros(1, dtype=torch.int64, device=self.device), self._blocks, self._key)
        self._w1 = math.sqrt(t1 - t0) * root.reshape(-1)[:self._width]
        self._last: tuple[float, torch.Tensor | None] = (math.nan, None)

    def __repr__(self) -> str:
        return (f"BrownianPath(t0={self.t0}, t1={self.t1}, shape={tuple(self.shape)}, seed={self.seed}, "
                f"dtype={self.dtype}, device={self.device}, levels={self.levels})")

    def _positions(self, times: Sequence[float]) -> torch.Tensor:
        """(t - t0) / T 2^L for each time (float64), a time within the snap of a grid point made
        that point; a ValueError names a time outside [t0, t1] (beyond the time tolerance)."""
        lo, hi = self.t0 - slack(self.t0), self.t1 + slack(self.t1)
        for t in times:
            if not lo <= t <= hi:
                raise ValueError(f"BrownianPath is defined on [{self.t0}, {self.t1}]; queried at t = {t}")
        x = torch.tensor(times, dtype=torch.float64, device=self.device)
        x = x.sub_(self.t0).div_(self.t1 - self.t0).clamp_(0.0, 1.0).mul_(self._top)
        nearest = (x + 0.5).to(torch.int64).to(torch.float64)
        return torch.where((x - nearest).abs() <= self._snap, nearest, x)

    def _values(self, x: torch.Tensor) -> torch.Tensor:
        """W (float64, shape (len(x), numel)) at positions x in [0, 2^L] (units of T 2^-L): the
        series of the module docstring, its terms added level by level in order, the root last.
        The nodes of the top d levels (2^d - 1 < 2 len(x) of them, the last one needed by some
        time) are drawn once as a table; below, each level that some time needs (a nonzero
        weight) gets one node per time."""
        points, levels, blocks = x.numel(), self.levels + 1, self._blocks
        cell = x.to(torch.int64).clamp_(0, int(self._top) - 1)       # floor (x >= 0)
        frac = x - cell                                                 # in [0, 1]; 1 only at t1
        node = cell[:, None] >> self._shift                             # k_l, shape (P, L + 1)
        inside = (cell[:, None] - (node << self._shift)).double().add_(frac[:, None]).mul_(self._cells)
        weight = (1.0 - (2.0 * inside - 1.0).abs()).mul_(self._scale)  # sqrt(T 2^-l)/2 tent
        weight[:, -1] = (frac * (1.0 - frac)).pow_(0.5).mul_(2 * self._scale[-1])   # sqrt(T 2^-L theta (1 - theta))
        node += self._first                                             # node numbers 2^l + k_l
        active = weight.any(0).tolist()                                # levels some time needs
        dense = min(levels, points.bit_length())
        while dense and not active[dense - 1]:
            dense -= 1                                                  # e.g. the level a dyadic grid ends on
        table = philox_normals(torch.arange(1, 1 << dense, device=self.device), blocks, self._key)
        w = torch.zeros(4, points, blocks, dtype=torch.float64, device=self.device)
        for level in range(dense):
            w += table.index_select(1, node[:, level] - 1).mul_(weight[None, :, level, None])
        deep = [level for level in range(dense, levels) if active[level]]
        if deep:
            node, weight = node[:, deep], weight[:, deep]
            step = max(1, _CHUNK // (len(deep) * 4 * blocks))
            for start in range(0, points, step):
                rows = slice(start, start + step)
                z = philox_normals(node[rows].flatten(), blocks, self._key).view(4, -1, len(deep), blocks)
                z.mul_(weight[None, rows, :, None])
                for i in range(len(deep)):
                    w[:, rows] += z[:, :, i]
        w = w.permute(1, 0, 2).reshape(points, 4 * blocks)[:, :self._width]
        return w.add_(x.div(self._top)[:, None] * self._w1)

    def _one(self, t: float) -> torch.Tensor:
        """W(t) in float64, flat; the last one kept (along a grid, a step's start is the previous end)."""
        if self._last[0] != t:
            self._last = (t, self._values(self._positions([t]))[0])
        return self._last[1]

    def __call__(self, s: float, t: float | None = None) -> torch.Tensor:
        """W(t) - W(s); with one argument, W(s) - W(t0)."""
        if t is None:
            return self._one(float(s)).to(self.dtype, copy=True).reshape(self.shape)
        s, t = float(s), float(t)
        ws = self._one(s).clone()
        return (self._one(t) - ws).to(self.dtype).reshape(self.shape)

    def increments(self, times: Sequence[float] | torch.Tensor) -> torch.Tensor:
        """W(times[i+1]) - W(times[i]) for every i, shape (len(times) - 1, *shape), from one
        evaluation of W at all the times (differences taken in float64, then rounded to the
        path's dtype); ``times`` in [t0, t1], any order."""
        if isinstance(times, torch.Tensor):
            if times.dim() != 1 or not times.dtype.is_floating_point:
                raise TypeError(f"times must be a 1-D sequence of floats, got a tensor of shape "
                                f"{tuple(times.shape)} and dtype {times.dtype}")
            times = times.tolist()
        elif not isinstance(times, (list, tuple)) or not all(
                isinstance(t, (int, float)) and not isinstance(t, bool) for t in times):
            raise TypeError(f"times must be a 1-D sequence of floats, got {type(times).__name__}")
        if len(times) < 2:
            raise ValueError(f"times must hold at least 2 times (one increment), got {len(times)}")
        w = self._values(self._positions([float(t) for t in times]))
        return (w[1:] - w[:-1]).to(self.dtype).reshape(len(times) - 1, *self.shape)

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
