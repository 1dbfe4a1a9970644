"""BrownianPath's contract, case by case: the path pinned against a reference implementation of
the documented construction (on intervals off the origin, at several depths), the generator
against Random123's published known-answer vectors, the [t0, t1] bounds and their 1e-12
tolerance, snapping to the grid within 8 ulps, every validation and check_fits error by its message.

The reference (``_Reference``) is written from the docstrings, not from the implementation, in
Python integers and floats: Philox4x32-10 with the key bumped before rounds 2..10 (Random123's
order), Box-Muller with ``math``, and the series W(t) = sqrt(T) Z_0 u + sum_l sqrt(T 2^-l)/2
tent Z_(2^l + k) + sqrt(T 2^-L) sqrt(r (1 - r)) Z_(2^L + k) term by term.
"""
from __future__ import annotations

import math
import re

import pytest
import torch

import contdepth as cd
from contdepth import brownian

F64 = torch.float64
F32 = torch.float32
MASK = 0xFFFFFFFF


# ---------------------------------------------------------------- independent reference

def _philox(counter: tuple[int, int, int, int], key: tuple[int, int], rounds: int = 10) -> tuple[int, ...]:
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(rounds):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & MASK, (k1 + 0xBB67AE85) & MASK
        p0, p2 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p2 >> 32) ^ c1 ^ k0, p2 & MASK, (p0 >> 32) ^ c3 ^ k1, p0 & MASK
    return c0, c1, c2, c3


def _normals(seed: int, node: int, width: int) -> list[float]:
    """Component r B + b (B = ceil(width / 4)) is output r of counter (node mod 2^32, b, node div 2^32, 0):
    r0 cos, r1 cos, r0 sin, r1 sin of Box-Muller on (w0, w1) and (w2, w3)."""
    key = (seed % 2 ** 64 & MASK, seed % 2 ** 64 >> 32)
    blocks = -(-width // 4)
    out = [0.0] * (4 * blocks)
    for b in range(blocks):
        w = _philox((node & MASK, b, node >> 32, 0), key)
        (r0, a0), (r1, a1) = [(math.sqrt(-2 * math.log((u + 0.5) * 2.0 ** -32)), 2 * math.pi * v * 2.0 ** -32)
                              for u, v in ((w[0], w[1]), (w[2], w[3]))]
        for r, value in enumerate((r0 * math.cos(a0), r1 * math.cos(a1), r0 * math.sin(a0), r1 * math.sin(a1))):
            out[r * blocks + b] = value
    return out[:width]


class _Reference:
    """W of the documented series, time by time (float64)."""

    def __init__(self, t0: float, t1: float, shape: tuple[int, ...], seed: int, levels: int = 20):
        self.t0, self.t1, self.shape, self.seed, self.levels = t0, t1, shape, seed, levels
        self.T, self.width = t1 - t0, math.prod(shape)

    def z(self, node: int) -> torch.Tensor:
        return torch.tensor(_normals(self.seed, node, self.width), dtype=F64).reshape(self.shape)

    def __call__(self, t: float) -> torch.Tensor:
        u = (t - self.t0) / self.T
        w = math.sqrt(self.T) * u * self.z(0)
        for level in range(self.levels + 1):
            k = min(math.floor(u * 2 ** level), 2 ** level - 1)
            r = u * 2 ** level - k
            if level < self.levels:
                weight = math.sqrt(self.T * 2.0 ** -level) / 2 * (1 - abs(2 * r - 1))
            else:
                weight = math.sqrt(self.T * 2.0 ** -level) * math.sqrt(max(r * (1 - r), 0.0))
            if weight:
                w = w + weight * self.z(2 ** level + k)
        return w


def test_philox_matches_random123_known_answers():
    """Philox4x32-10 of Random123's kat_vectors (counter, key -> output), in the library's torch
    integer operations (int64 products wrapped modulo 2^64) and in the reference's Python ints."""
    vectors = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
               ((MASK, MASK, MASK, MASK), (MASK, MASK), (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
               ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
                (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    counters = torch.tensor([v[0] for v in vectors], dtype=torch.int64).T.contiguous()
    for i, (counter, key, want) in enumerate(vectors):
        got = brownian.philox4x32(counters[:, i:i + 1], key)
        assert tuple(int(word[0]) for word in got) == want
        assert _philox(counter, key) == want
    batch = brownian.philox4x32(counters, (0, 0))   # a batch: each counter on its own
    assert [int(batch[0][i]) for i in range(3)] == [_philox(v[0], (0, 0))[0] for v in vectors]


def test_philox_refuses_a_counter_of_the_wrong_kind():
    with pytest.raises(TypeError, match=r"counter must be an int64 tensor of shape \(4, n\)"):
        brownian.philox4x32(torch.zeros(3, 2, dtype=torch.int64), (0, 0))
    with pytest.raises(TypeError, match="counter must be an int64 tensor"):
        brownian.philox4x32(torch.zeros(4, 2), (0, 0))


def test_normals_match_the_reference_box_muller():
    nodes = torch.tensor([0, 1, 5, 2 ** 31 + 7, 2 ** 32 + 3], dtype=torch.int64)
    got = brownian.philox_normals(nodes, 2, (123, 2 ** 31 + 5))
    assert got.shape == (4, 5, 2)
    for i, node in enumerate(nodes.tolist()):
        want = _normals(123 + (2 ** 31 + 5) * 2 ** 32, node, 8)
        torch.testing.assert_close(got[:, i].reshape(8), torch.tensor(want, dtype=F64), rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------- the path itself

def _fractions(levels: int) -> list[float]:
    """Where on [t0, t1] to query, as fractions of T: the ends, dyadic points of levels 1 and 3,
    non-dyadic points, the middle of the first cell and a quarter into the last cell of the grid."""
    cell = 2.0 ** -levels
    return [0.0, 1.0, 0.5, 0.375, 0.3, 1 / 3, 0.7, 0.9, cell / 2, 1 - 3 * cell / 4]


@pytest.mark.parametrize("t0,t1,shape,seed,levels", [
    (0.0, 1.0, (3,), 0, 20),
    (-1.5, 2.5, (2,), 2 ** 64 - 5, 32),      # t0 != 0, T = 4, a seed with high bits set, leaf nodes > 2^32
    (2.0, 5.0, (2, 3), -7, 20),              # T = 3, negative seed (mod 2^64), 6 components: 2 counters
    (2.0, 5.0, (2, 3), 2 ** 64 - 7, 5),      # the same seed taken modulo 2^64; a shallow tree
    (-0.25, 0.5, (4,), 12345, 1),            # one level
])
def test_path_matches_the_documented_construction(t0, t1, shape, seed, levels):
    bm = cd.BrownianPath(t0, t1, shape, seed=seed, dtype=F64, levels=levels)
    ref = _Reference(t0, t1, shape, seed, levels)
    times = [t0 + (t1 - t0) * f for f in _fractions(levels)]
    for t in times:
        got = bm(t)
        assert got.dtype == F64 and got.shape == torch.Size(shape)
        torch.testing.assert_close(got, ref(t), rtol=0, atol=1e-12, msg=lambda m: f"t={t!r}: {m}")
    assert torch.equal(bm(t0), torch.zeros(shape, dtype=F64))
    torch.testing.assert_close(bm(t1), math.sqrt(t1 - t0) * ref.z(0), rtol=1e-15, atol=0)
    s, t = t0 + 0.3 * (t1 - t0), t0 + 0.9 * (t1 - t0)
    torch.testing.assert_close(bm(s, t), ref(t) - ref(s), rtol=0, atol=1e-12)
    torch.testing.assert_close(bm(t, s), ref(s) - ref(t), rtol=0, atol=1e-12)
    inc = bm.increments(times)
    assert inc.shape == (len(times) - 1, *shape)
    for i in range(len(times) - 1):
        torch.testing.assert_close(inc[i], ref(times[i + 1]) - ref(times[i]), rtol=0, atol=1e-12)


def test_float32_path_is_the_float64_path_rounded():
    """W is summed in float64 for every dtype and rounded once: a float32 path's values and
    increments are the float64 path's rounded to float32, bit for bit."""
    t0, t1 = -1.5, 2.5
    b32 = cd.BrownianPath(t0, t1, (3,), seed=9, dtype=F32)
    b64 = cd.BrownianPath(t0, t1, (3,), seed=9, dtype=F64)
    times = [t0 + (t1 - t0) * f for f in (0.0, 1 / 3, 0.5, 0.3, 1.0)]
    for t in times:
        assert b32(t).dtype == F32 and torch.equal(b32(t), b64(t).float())
    assert torch.equal(b32.increments(times), b64.increments(times).float())


def test_the_default_dtype_does_not_change_the_path():
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
    (dict(levels=0), ValueError, "levels must be an int in [1, 32], got 0"),
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
    """levels = 1: W(1/2) from the root's bridge; 1/4 is the middle (theta = 1/2) of the cell
    [0, 1/2], so W(1/4) = W(1/2) / 2 + sqrt(1/2) sqrt(1/2 * 1/2) Z_2."""
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=0, levels=1, dtype=F64)
    assert bm.levels == 1
    ref = _Reference(0.0, 1.0, (2,), 0, 1)
    torch.testing.assert_close(bm(0.25), bm(0.5) / 2 + math.sqrt(0.5) / 2 * ref.z(2), rtol=0, atol=1e-15)


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
    (0.0, 4.0, 3.0, 2.0 ** -50),      # max = 4 = T: the snap is 8 u / T cells of T 2^-L
    (-4.0, 4.0, -2.0, 2.0 ** -50),    # t0 != 0, max = 4, T = 8
])
def test_times_within_8_ulps_of_a_grid_point_are_that_point(t0, t1, g, u):
    """|t - g| <= 8 ulps of max(|t0|, |t1|) (all arithmetic exact here: powers of two) gives W(g)
    bit for bit; 8.5 ulps away is inside a cell of T 2^-32: another value, within the bridge's
    sqrt(8.5 u) of it."""
    bm = cd.BrownianPath(t0, t1, (3,), seed=5, dtype=F64, levels=32)
    wg = bm(g)
    for k in (1, 4, 6, 8):
        assert torch.equal(bm(g + k * u), wg), k
        assert torch.equal(bm(g - k * u), wg), -k
    for k in (8.5, 9, 64):
        for t in (g + k * u, g - k * u):
            got = bm(t)
            assert not torch.equal(got, wg), k
            assert (got - wg).abs().max().item() < 10 * math.sqrt(k * u), k


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


@pytest.mark.parametrize("steps,message", [
    (0, "steps must be a positive int, got 0"),
    (True, "steps must be a positive int, got True"),
    (2.0, "steps must be a positive int, got 2.0"),
])
def test_levels_for_refuses_anything_but_a_positive_int(steps, message):
    """levels_for takes an int >= 1 only (not a bool, not a float), a ValueError naming steps."""
    with pytest.raises(ValueError) as info:
        brownian.levels_for(steps)
    assert str(info.value) == message


def _recorded_draws(monkeypatch) -> list[int]:
    """The number of nodes of every philox_normals call from now on."""
    sizes: list[int] = []
    draw = brownian.philox_normals

    def recording(nodes, blocks, key):
        sizes.append(nodes.numel())
        return draw(nodes, blocks, key)

    monkeypatch.setattr(brownian, "philox_normals", recording)
    return sizes


def test_a_dyadic_grid_draws_only_the_nodes_its_times_need(monkeypatch):
    """The increments of 4 equal steps (times k/4 at depth 20): the times lie inside the nodes of
    levels 0 and 1 only (on the ends of every deeper node and cell, where the weights vanish),
    so one table of the 3 nodes of those levels is drawn, and nothing else."""
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=4, dtype=F64)
    sizes = _recorded_draws(monkeypatch)
    bm.increments([k / 4 for k in range(5)])
    assert sizes == [3]


@pytest.mark.parametrize("points,width", [(1500, 2), (2, 4000)])
def test_deep_levels_are_drawn_in_passes_of_at_most_the_chunk(monkeypatch, points, width):
    """Below the table, each pass draws the deep nodes of as many times as fit in _CHUNK normals
    (at least one time per pass): 1500 times of width 2 (10 deep levels, 40 normals per time: 1638
    times per pass) take one pass; 2 times of width 4000 (4000 normals a node) take one pass each."""
    bm = cd.BrownianPath(0.0, 1.0, (width,), seed=4, dtype=F64)
    times = torch.rand(points, generator=torch.Generator().manual_seed(0), dtype=F64).sort().values.tolist()
    sizes = _recorded_draws(monkeypatch)
    bm.increments(times)
    dense = min(21, points.bit_length())
    deep = 21 - dense
    assert sizes[0] == 2 ** dense - 1
    per_time = deep * 4 * -(-width // 4)
    rows = max(1, brownian._CHUNK // per_time)
    assert sizes[1:] == [deep * min(rows, points - start) for start in range(0, points, rows)]
