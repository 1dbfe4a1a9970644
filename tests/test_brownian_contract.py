"""BrownianPath's contract, case by case: the path pinned against a reference implementation of
the documented construction (on intervals off the origin, at several depths), the seed scrambles
against published test vectors, the [t0, t1] bounds and their 1e-12 tolerance, snapping to the
grid within 8 ulps, every validation and check_fits error by its message, and the cache (bounded,
results bit for bit the same after evictions).

The reference (``_Reference``) is written from the docstrings, not from the implementation:
W(t0) = 0, W(t1) = sqrt(T) Z_0, the midpoint of [a, b] of level l is (W(a) + W(b)) / 2 +
sqrt(T 2^-l) / 2 Z_(2^l + k), linear between the points of the grid t0 + k T 2^-L. Z_node is a
float32 standard normal of the path's shape from ``torch.Generator().manual_seed(s)``, with
s = fmix32(node ^ lo32(key)) ^ hi32(key), key = splitmix64's finaliser of (seed mod 2^64), both
scrambles written here with numpy's wrapping uint64 / uint32 arithmetic.
"""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import contdepth as cd
from contdepth import brownian

F64 = torch.float64
F32 = torch.float32


# ---------------------------------------------------------------- independent reference

def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function for state x (the state already advanced by the golden ratio
    increment inside): uint64 arrays wrap on overflow."""
    z = x.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's fmix32, uint32 arrays."""
    h = h.astype(np.uint32)
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def _node_seed(seed: int, node: int) -> int:
    key = int(_splitmix64(np.array([seed % 2 ** 64], dtype=np.uint64))[0])
    lo, hi = key % 2 ** 32, key // 2 ** 32
    return int(_fmix32(np.array([node ^ lo], dtype=np.uint32))[0]) ^ hi


class _Reference:
    """W of the documented construction, grid point by grid point (float64)."""

    def __init__(self, t0: float, t1: float, shape: tuple[int, ...], seed: int, levels: int = 32):
        self.t0, self.t1, self.shape, self.seed, self.levels = t0, t1, shape, seed, levels
        self.T = t1 - t0
        self.n = 2 ** levels
        # W(t1) is sqrt(T) Z_0 rounded to float32 (the product is taken in the normals' float32);
        # every midpoint adds its float32 Z scaled in the path's dtype
        self.w = {0: torch.zeros(shape, dtype=F64), self.n: (math.sqrt(self.T) * self._z32(0)).to(F64)}

    def _z32(self, node: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(_node_seed(self.seed, node))
        return torch.randn(self.shape, generator=g, dtype=F32)

    def _z(self, node: int) -> torch.Tensor:
        return self._z32(node).to(F64)

    def grid(self, k: int) -> torch.Tensor:
        """W(t0 + k T 2^-L)."""
        if k in self.w:
            return self.w[k]
        a, b, level = 0, self.n, 0
        while True:
            m = (a + b) // 2
            if m not in self.w:
                node = 2 ** level + a // (b - a)  # node k' = a / width of level `level`
                self.w[m] = (self.w[a] + self.w[b]) / 2 + math.sqrt(self.T * 2.0 ** -level) / 2 * self._z(node)
            if k == m:
                return self.w[m]
            a, b = (a, m) if k < m else (m, b)
            level += 1

    def __call__(self, t: float) -> torch.Tensor:
        x = (t - self.t0) / self.T * self.n
        k = math.floor(x)
        if abs(x - round(x)) < 1e-6:  # the test's grid times are exact; others are far from the grid
            return self.grid(round(x))
        return self.grid(k) + (x - k) * (self.grid(k + 1) - self.grid(k))


def test_scrambles_match_published_vectors():
    """splitmix64 seeded 0 outputs 0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F (Vigna's
    reference): _mix of the states before each increment. murmur3_32 of the empty input with seed s
    is fmix32(s): 0x514E28B7 for s = 1, 0x81F16F39 for s = 0xFFFFFFFF (SMHasher's vectors)."""
    golden = 0x9E3779B97F4A7C15
    assert brownian._mix(0) == 0xE220A8397B1DCDAF
    assert brownian._mix(golden) == 0x6E789E6AA1B965F4
    assert brownian._mix(2 * golden % 2 ** 64) == 0x06C45D188009454F
    assert brownian._mix32(0) == 0
    assert brownian._mix32(1) == 0x514E28B7
    assert brownian._mix32(0xFFFFFFFF) == 0x81F16F39
    # the numpy references agree with the vectors
    assert int(_splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF
    assert int(_fmix32(np.array([1], dtype=np.uint32))[0]) == 0x514E28B7


def test_scrambles_match_numpy_references_everywhere():
    """_mix and _mix32 against the numpy implementations on edge values and 2,000 random inputs."""
    rng = np.random.default_rng(0)
    x64 = np.concatenate([np.array([0, 1, 2 ** 63, 2 ** 64 - 1, 2 ** 32 - 1, 2 ** 32], dtype=np.uint64),
                          rng.integers(0, 2 ** 64 - 1, size=1000, dtype=np.uint64, endpoint=True)])
    want64 = _splitmix64(x64)
    assert [brownian._mix(int(v)) for v in x64] == [int(v) for v in want64]
    x32 = np.concatenate([np.array([1, 2, 2 ** 31, 2 ** 32 - 1, 0x10000, 0x2000], dtype=np.uint32),
                          rng.integers(0, 2 ** 32 - 1, size=1000, dtype=np.uint32, endpoint=True)])
    want32 = _fmix32(x32)
    assert [brownian._mix32(int(v)) for v in x32] == [int(v) for v in want32]
    assert all(0 <= brownian._mix(int(v)) < 2 ** 64 for v in x64[:50])


# ---------------------------------------------------------------- the path itself

def _fractions(levels: int) -> list[float]:
    """Where on [t0, t1] to query, as fractions of T: the ends, dyadic points of levels 1 and 3,
    non-dyadic points, the middle of the first cell and a quarter into the last cell of the grid."""
    cell = 2.0 ** -levels
    return [0.0, 1.0, 0.5, 0.375, 0.3, 1 / 3, 0.7, 0.9, cell / 2, 1 - 3 * cell / 4]


@pytest.mark.parametrize("t0,t1,shape,seed,levels", [
    (0.0, 1.0, (3,), 0, 32),
    (-1.5, 2.5, (2,), 2 ** 64 - 5, 32),      # t0 != 0, T = 4, a seed with high bits set
    (2.0, 5.0, (2, 2), -7, 32),              # T = 3, negative seed (mod 2^64)
    (2.0, 5.0, (2, 2), 2 ** 64 - 7, 5),      # the same seed taken modulo 2^64; a shallow tree
    (-0.25, 0.5, (4,), 12345, 1),            # one level: W(t0), W(mid), W(t1), linear between
])
def test_path_matches_the_documented_construction(t0, t1, shape, seed, levels):
    bm = cd.BrownianPath(t0, t1, shape, seed=seed, dtype=F64, levels=levels)
    ref = _Reference(t0, t1, shape, seed, levels)
    for f in _fractions(levels):
        t = t0 + (t1 - t0) * f
        got = bm(t)
        assert got.dtype == F64 and got.shape == torch.Size(shape)
        torch.testing.assert_close(got, ref(t), rtol=0, atol=1e-12, msg=lambda m: f"t={t!r}: {m}")
    assert torch.equal(bm(t0), torch.zeros(shape, dtype=F64))
    torch.testing.assert_close(bm(t1), math.sqrt(t1 - t0) * ref._z(0), rtol=1e-7, atol=0)
    s, t = t0 + 0.3 * (t1 - t0), t0 + 0.9 * (t1 - t0)
    torch.testing.assert_close(bm(s, t), ref(t) - ref(s), rtol=0, atol=1e-12)
    torch.testing.assert_close(bm(t, s), ref(s) - ref(t), rtol=0, atol=1e-12)


def test_float32_path_is_the_float64_path_rounded():
    """The normals are float32 for every dtype: a float32 path is the float64 one to float32
    rounding, both from the reference's float32 normals."""
    t0, t1 = -1.5, 2.5
    bm = cd.BrownianPath(t0, t1, (3,), seed=9, dtype=F32)
    ref = _Reference(t0, t1, (3,), 9)
    for f in (1.0, 0.5, 0.3, 1 / 3):
        t = t0 + (t1 - t0) * f
        got = bm(t)
        assert got.dtype == F32
        torch.testing.assert_close(got.to(F64), ref(t), rtol=0, atol=2e-5)


def test_normals_are_float32_whatever_the_default_dtype():
    """The path does not change when torch's default dtype is float64 (the normals are drawn in
    float32 explicitly, not in the default dtype)."""
    want = [cd.BrownianPath(0.0, 1.0, (3,), seed=2, dtype=F64)(t) for t in (1.0, 0.5, 0.3)]
    old = torch.get_default_dtype()
    torch.set_default_dtype(F64)
    try:
        got = [cd.BrownianPath(0.0, 1.0, (3,), seed=2, dtype=F64)(t) for t in (1.0, 0.5, 0.3)]
    finally:
        torch.set_default_dtype(old)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_ends_have_the_path_dtype_and_w_t0_is_zero():
    bm = cd.BrownianPath(1.0, 3.0, (2, 3), seed=4, dtype=F64)
    for t in (1.0, 3.0, 2.0):
        assert bm(t).dtype == F64
    assert torch.equal(bm(1.0), torch.zeros(2, 3, dtype=F64))
    assert bm(1.0, 3.0).dtype == F64
    w = bm(2.0)
    w.add_(1.0)  # the result is the caller's: the path is not changed through it
    assert not torch.equal(bm(2.0), w)


@pytest.mark.parametrize("shape", [(0,), (3, 0)])
def test_empty_shapes_are_paths_too(shape):
    bm = cd.BrownianPath(0.0, 1.0, shape, seed=1)
    assert bm(0.3, 0.7).shape == torch.Size(shape) and bm.shape == torch.Size(shape)


def test_list_shape_is_a_size():
    assert cd.BrownianPath(0.0, 1.0, [2, 3], seed=1).shape == torch.Size([2, 3])


def test_repr_names_every_argument():
    bm = cd.BrownianPath(-1.5, 2.5, (2, 3), seed=7, dtype=F64, levels=5)
    assert repr(bm) == ("BrownianPath(t0=-1.5, t1=2.5, shape=(2, 3), seed=7, dtype=torch.float64, "
                        "device=cpu, levels=5)")


# ---------------------------------------------------------------- seeds

def test_seed_none_is_drawn_from_torchs_global_generator():
    """seed=None takes int(torch.randint(0, 2^62, ())) of the global generator: torch.manual_seed
    reproduces it (pinned: the paths users reproduce with torch.manual_seed stay the same)."""
    torch.manual_seed(1234)
    a = cd.BrownianPath(0.0, 1.0, (2,))
    b = cd.BrownianPath(0.0, 1.0, (2,))
    torch.manual_seed(1234)
    want = int(torch.randint(0, 2 ** 62, ()).item())
    assert a.seed == want and isinstance(a.seed, int)
    assert b.seed != a.seed  # the draw advances the global generator
    torch.manual_seed(1234)
    assert torch.equal(cd.BrownianPath(0.0, 1.0, (2,))(0.3), a(0.3))
    seeds = []
    for k in range(16):
        torch.manual_seed(k)
        seeds.append(cd.BrownianPath(0.0, 1.0, (1,)).seed)
    assert all(0 <= s < 2 ** 62 for s in seeds) and max(seeds) > 2 ** 50


@pytest.mark.parametrize("seed,same_as", [(-2 ** 63, 2 ** 63), (-127, 2 ** 64 - 127), (2 ** 64 - 1, -1)])
def test_seeds_at_the_ends_of_the_range_are_taken_modulo_2_64(seed, same_as):
    a = cd.BrownianPath(0.0, 1.0, (2,), seed=seed, dtype=F64)
    b = cd.BrownianPath(0.0, 1.0, (2,), seed=same_as, dtype=F64)
    assert a.seed == seed
    for t in (1.0, 0.3):
        assert torch.equal(a(t), b(t))


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("kwargs,error,message", [
    (dict(t0=1.0, t1=1.0), ValueError, "BrownianPath needs finite t0 < t1, got t0=1.0, t1=1.0"),
    (dict(t0=2.0, t1=1.0), ValueError, "BrownianPath needs finite t0 < t1, got t0=2.0, t1=1.0"),
    (dict(t0=0.0, t1=math.inf), ValueError, "BrownianPath needs finite t0 < t1, got t0=0.0, t1=inf"),
    (dict(t0=-math.inf, t1=0.0), ValueError, "BrownianPath needs finite t0 < t1, got t0=-inf, t1=0.0"),
    (dict(t0=math.nan, t1=1.0), ValueError, "BrownianPath needs finite t0 < t1, got t0=nan, t1=1.0"),
    (dict(shape=3), TypeError, "shape must be a tuple of non-negative ints, got 3"),
    (dict(shape=(2, -1)), TypeError, "shape must be a tuple of non-negative ints, got (2, -1)"),
    (dict(shape=(2.0,)), TypeError, "shape must be a tuple of non-negative ints, got (2.0,)"),
    (dict(shape=(True,)), TypeError, "shape must be a tuple of non-negative ints, got (True,)"),
    (dict(dtype=torch.int64), TypeError, "dtype must be a floating dtype, got torch.int64"),
    (dict(levels=0), ValueError, "levels must be an int in [1, 32] (torch's CPU generator takes 32-bit "
                                 "seeds: 2^32 tree nodes is the most that get one each), got 0"),
    (dict(levels=33), ValueError, "levels must be an int in [1, 32]"),
    (dict(levels=True), ValueError, "levels must be an int in [1, 32]"),
    (dict(levels=2.0), ValueError, "levels must be an int in [1, 32]"),
    (dict(seed=True), TypeError, "seed must be an int or None, got bool"),
    (dict(seed=1.5), TypeError, "seed must be an int or None, got float"),
    (dict(seed=2 ** 64), ValueError,
     "seed must be in [-2^63, 2^64) (as for torch.manual_seed), got 18446744073709551616"),
    (dict(seed=-2 ** 63 - 1), ValueError,
     "seed must be in [-2^63, 2^64) (as for torch.manual_seed), got -9223372036854775809"),
])
def test_bad_arguments_are_refused_by_name(kwargs, error, message):
    args = dict(t0=0.0, t1=1.0, shape=(2,), seed=0) | kwargs
    t0, t1, shape = args.pop("t0"), args.pop("t1"), args.pop("shape")
    anchored = "^" + re.escape(message) + ("$" if "got" in message else "")
    with pytest.raises(error, match=anchored):
        cd.BrownianPath(t0, t1, shape, **args)


def test_one_level_is_allowed():
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=0, levels=1, dtype=F64)
    assert bm.levels == 1
    torch.testing.assert_close(bm(0.25), bm(0.5) / 2, rtol=0, atol=1e-15)  # linear below T / 2


# ---------------------------------------------------------------- the interval and its tolerance

def _tol(v: float) -> float:
    return 1e-12 * max(1.0, abs(v))


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (-1000.0, 0.0), (0.5, 1000.0), (-3.0, -2.0)])
def test_queries_within_the_tolerance_are_the_ends(t0, t1):
    """Times up to 1e-12 max(1, |t0|) below t0 and 1e-12 max(1, |t1|) above t1 (ends included)
    are accepted and give W(t0) and W(t1) exactly."""
    bm = cd.BrownianPath(t0, t1, (2,), seed=3, dtype=F64)
    w1 = bm(t1)
    for t in (t0 - _tol(t0), t0 - 0.9 * _tol(t0)):
        assert torch.equal(bm(t), torch.zeros(2, dtype=F64)), t
    for t in (t1 + _tol(t1), t1 + 0.9 * _tol(t1)):
        assert torch.equal(bm(t), w1), t
    assert torch.equal(bm(t0 - _tol(t0), t1 + _tol(t1)), w1)


@pytest.mark.parametrize("t0,t1", [(0.0, 1.0), (-1000.0, 0.0), (0.5, 1000.0), (-3.0, -2.0)])
def test_queries_beyond_the_tolerance_name_the_interval_and_the_time(t0, t1):
    bm = cd.BrownianPath(t0, t1, (2,), seed=3)
    for t in (t0 - 1.5 * _tol(t0), t1 + 1.5 * _tol(t1), t0 - 0.5, t1 + 0.5):
        with pytest.raises(ValueError, match="^" + re.escape(
                f"BrownianPath is defined on [{float(t0)}, {float(t1)}]; queried at t = {t}") + "$"):
            bm(t)
        with pytest.raises(ValueError, match="queried at t = "):
            bm((t0 + t1) / 2, t)


# ---------------------------------------------------------------- snapping to the grid

@pytest.mark.parametrize("t0,t1,g,u", [
    (0.0, 1.0, 0.5, 2.0 ** -52),      # u: an ulp of max(|t0|, |t1|) = 1
    (0.0, 4.0, 3.0, 2.0 ** -50),      # max = 4 = T: the snap is 8 u / T cells of T 2^-32
    (-4.0, 4.0, -2.0, 2.0 ** -50),    # t0 != 0, max = 4, T = 8
])
def test_times_within_8_ulps_of_a_grid_point_are_that_point(t0, t1, g, u):
    """|t - g| <= 8 ulps of max(|t0|, |t1|) (all arithmetic exact here: powers of two) gives W(g)
    bit for bit; 8.5 ulps away is the linear interpolation inside the cell, another value."""
    bm = cd.BrownianPath(t0, t1, (3,), seed=5, dtype=F64)
    wg = bm(g)
    for k in (1, 4, 6, 8):
        assert torch.equal(bm(g + k * u), wg), k
        assert torch.equal(bm(g - k * u), wg), -k
    cell = (t1 - t0) * 2.0 ** -32
    for k in (8.5, 9, 64):
        t = g + k * u
        assert t - g == k * u  # exact
        w_next = bm(g + cell)
        want = wg + (k * u / cell) * (w_next - wg)
        got = bm(t)
        assert not torch.equal(got, wg), k
        torch.testing.assert_close(got, want, rtol=0, atol=1e-15)
        got_below = bm(g - k * u)
        assert not torch.equal(got_below, wg), -k


# ---------------------------------------------------------------- check_fits

def test_check_fits_accepts_the_interval_in_either_order_and_subintervals():
    bm = cd.BrownianPath(-1.0, 2.0, (2, 3), seed=0, dtype=F64)
    for t0, t1 in [(-1.0, 2.0), (2.0, -1.0), (0.0, 1.0), (1.0, 0.0)]:
        bm.check_fits(t0, t1, torch.Size([2, 3]), F64, torch.device("cpu"))
    bm.check_fits(-1.0, 2.0, (2, 3), F64, torch.device("cpu"), name="noise")


@pytest.mark.parametrize("t0,t1,message", [
    (-0.1, 1.0, "bm covers [0.0, 1.0], but the solve needs [-0.1, 1.0]"),
    (0.0, 1.1, "bm covers [0.0, 1.0], but the solve needs [0.0, 1.1]"),
    (1.1, 0.0, "bm covers [0.0, 1.0], but the solve needs [0.0, 1.1]"),
    (-1.5e-12, 1.0, "bm covers [0.0, 1.0], but the solve needs [-1.5e-12, 1.0]"),
    (0.0, 1 + 1.5e-12, f"bm covers [0.0, 1.0], but the solve needs [0.0, {1 + 1.5e-12}]"),
])
def test_check_fits_names_a_short_interval(t0, t1, message):
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=0)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        bm.check_fits(t0, t1, (2,), F32, torch.device("cpu"))


@pytest.mark.parametrize("path,need", [
    ((0.0, 1000.0), (0.0, 1000.0 + 5e-10)),      # tolerance 1e-12 max(1, |lo|, |hi|) = 1e-9
    ((-1000.0, 0.0), (-1000.0 - 5e-10, 0.0)),    # ... scaled by |lo|
    ((-1000.0, 0.0), (0.0, -1000.0 - 5e-10)),
    ((0.0, 1e-3), (0.0, 1e-3 + 5e-13)),          # ... and by 1 at least
    ((0.0, 1e-3), (-5e-13, 1e-3)),
])
def test_check_fits_tolerates_rounding_of_the_ends(path, need):
    cd.BrownianPath(*path, (2,), seed=0).check_fits(*need, (2,), F32, torch.device("cpu"))


def test_check_fits_at_exactly_the_tolerance():
    lo, hi = -1.5, 2.5
    tol = 1e-12 * max(1.0, abs(lo), abs(hi))
    bm = cd.BrownianPath(lo + tol, hi - tol, (2,), seed=0)
    bm.check_fits(lo, hi, (2,), F32, torch.device("cpu"))
    with pytest.raises(ValueError, match="covers"):
        bm.check_fits(lo - tol / 2, hi, (2,), F32, torch.device("cpu"))
    with pytest.raises(ValueError, match="covers"):
        bm.check_fits(lo, hi + tol / 2, (2,), F32, torch.device("cpu"))


@pytest.mark.parametrize("shape,dtype,device,name,message", [
    ((3,), F32, "cpu", "bm", "bm has shape (2, 3), but the state y0 has shape (3,)"),
    ((3, 2), F32, "cpu", "noise", "noise has shape (2, 3), but the state y0 has shape (3, 2)"),
    ((2, 3), F64, "cpu", "bm", "bm has dtype torch.float32, but the state y0 has dtype torch.float64"),
    ((2, 3), F32, "cuda", "bm", "bm is on cpu, but the state y0 is on cuda"),
    ((2, 3), F32, "cuda:0", "noise", "noise is on cpu, but the state y0 is on cuda:0"),
])
def test_check_fits_names_the_mismatch(shape, dtype, device, name, message):
    bm = cd.BrownianPath(0.0, 1.0, (2, 3), seed=0)
    kw = {} if name == "bm" else {"name": name}
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        bm.check_fits(0.0, 1.0, torch.Size(shape), dtype, torch.device(device), **kw)


def test_check_fits_compares_device_indices_only_when_both_have_one():
    anywhere = cd.BrownianPath(0.0, 1.0, (2,), seed=0)
    assert anywhere.device == torch.device("cpu")
    for device in ("cpu", "cpu:0", "cpu:1"):
        anywhere.check_fits(0.0, 1.0, (2,), F32, torch.device(device))
    pinned = cd.BrownianPath(0.0, 1.0, (2,), seed=0, device="cpu:0")
    assert pinned.device == torch.device("cpu", 0)
    pinned.check_fits(0.0, 1.0, (2,), F32, torch.device("cpu"))
    pinned.check_fits(0.0, 1.0, (2,), F32, torch.device("cpu:0"))
    with pytest.raises(ValueError, match=r"^bm is on cpu:0, but the state y0 is on cpu:1$"):
        pinned.check_fits(0.0, 1.0, (2,), F32, torch.device("cpu:1"))
    assert torch.equal(pinned(0.3), anywhere(0.3))  # the same CPU generator


def test_the_paths_device_wins_over_torchs_default_device():
    """Every tensor of a path is made on its ``device``, not torch's default device (here the
    tensor-less "meta" device: a tensor made there would be visible, and break the arithmetic)."""
    want = {t: cd.BrownianPath(-1.0, 1.0, (2,), seed=1, dtype=F64)(t) for t in (-1.0, 1.0, 0.3)}
    with torch.device("meta"):
        bm = cd.BrownianPath(-1.0, 1.0, (2,), seed=1, dtype=F64, device="cpu")
        got = {t: bm(t) for t in want}
    for t, w in want.items():
        assert got[t].device == torch.device("cpu") and torch.equal(got[t], w), t


# ---------------------------------------------------------------- cost and cache
# How many points a path keeps is observable only through the private dict ``_points`` (grid
# index -> W); these tests read its size, nothing else of the implementation.

def test_a_dyadic_time_costs_only_the_nodes_above_it():
    """W at t0 + k T 2^-j (k odd) costs the uncached nodes on the way down to it, at most j: the
    midpoint one node, then t0 + 3T/8 two more (T/4 and 3T/8); the ends none."""
    bm = cd.BrownianPath(-1.0, 3.0, (2,), seed=1, dtype=F64)
    bm(1.0)
    assert len(bm._points) == 1
    bm(0.5)
    assert len(bm._points) == 3
    bm(-1.0), bm(3.0), bm(1.0)
    assert len(bm._points) == 3


def _query_many(bm: cd.BrownianPath, n: int = 12) -> list[float]:
    ts = [bm.t0 + (bm.t1 - bm.t0) * f for f in torch.rand(n, generator=torch.Generator().manual_seed(3)).tolist()]
    for t in ts:
        bm(t)
    return ts


@pytest.mark.parametrize("dtype", [F64, F32])
def test_cache_holds_as_many_points_as_cache_bytes_pays_for(dtype):
    """cache_bytes / (data bytes + the per-point overhead) points, no more: filled, never exceeded."""
    per_point = 100 * torch.finfo(dtype).bits // 8 + brownian._POINT_OVERHEAD_BYTES
    cache_bytes = 70 * 1460 + 5  # 70 float64 points of 100 elements
    bm = cd.BrownianPath(0.5, 2.0, (100,), seed=2, dtype=dtype, cache_bytes=cache_bytes)
    _query_many(bm)
    assert len(bm._points) == cache_bytes // per_point


def test_cache_keeps_at_least_64_points():
    bm = cd.BrownianPath(0.5, 2.0, (3,), seed=2, cache_bytes=0)
    _query_many(bm, 6)
    assert len(bm._points) == 64


def test_values_are_bit_identical_after_evictions():
    """With the smallest cache every point is evicted and recomputed many times: W is the same
    function of t (and the reference's) whatever the cache and the query order."""
    t0, t1, shape = -1.5, 2.5, (3,)
    small = cd.BrownianPath(t0, t1, shape, seed=6, dtype=F64, cache_bytes=0)
    ts = _query_many(small, 8) + [t0 + 0.5 * (t1 - t0), t1, t0 + 0.3 * (t1 - t0)]
    order = torch.randperm(len(ts), generator=torch.Generator().manual_seed(4)).tolist()
    got = {i: small(ts[i]) for i in order}
    ref = _Reference(t0, t1, shape, 6)
    for i, t in enumerate(ts):
        fresh = cd.BrownianPath(t0, t1, shape, seed=6, dtype=F64)(t)
        assert torch.equal(got[i], fresh), t
        torch.testing.assert_close(got[i], ref(t), rtol=0, atol=1e-12)
    assert len(small._points) <= 64
