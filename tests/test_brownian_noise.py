"""BrownianPath on fine grids (increments keep their variance at any step count and stay
independent, the path is one function of t whether queried by interval or by batch, a seed's
bits all count, nodes never share normals) and the SDE steppers in reverse time (Milstein's Ito
correction uses |h|)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import contdepth as cd

F64 = torch.float64
WIDE = 4096  # components of the statistical path: one increment query gives 4096 samples


def _times(bm: cd.BrownianPath, n: int, first: int, count: int) -> list[float]:
    """Times first..first+count of the n-step grid of the path's interval, t0 + T (k / n): the
    same float for k / n = k' / n' on two grids."""
    return [bm.t0 + (bm.t1 - bm.t0) * (k / n) for k in range(first, first + count + 1)]


def _z(bm: cd.BrownianPath, n: int, count: int) -> torch.Tensor:
    """``count`` consecutive increments of the n-step grid (from a third of the way, no dyadic
    point of low level nearby), divided by sqrt(h): shape (count, WIDE), all N(0, 1) if W is
    Brownian motion."""
    return bm.increments(_times(bm, n, n // 3, count)) / math.sqrt((bm.t1 - bm.t0) / n)


@pytest.fixture(scope="module")
def fine_increments() -> dict[int, torch.Tensor]:
    """100 increments each of the 100-, 1,000-, 3,000-, 10,000- and 100,000-step grids of one wide path."""
    bm = cd.BrownianPath(0.0, 1.0, (WIDE,), seed=20, dtype=F64)
    return {n: _z(bm, n, 100 if n > 100 else 60) for n in (100, 1000, 3000, 10_000, 100_000)}


@pytest.mark.parametrize("n", [100, 1000, 3000, 10_000, 100_000])
def test_increment_variance_is_h_at_any_step_count(fine_increments, n):
    """E[dW^2] / h = 1 over 409,600 samples (245,760 at 100 steps): within 4 standard errors,
    sqrt(2 / m) = 0.0022 (a path linear below T 2^-16 gave 0.986, 0.947, 0.51 at the three
    finest grids)."""
    z = fine_increments[n]
    m = z.numel()
    assert abs(z.square().mean().item() - 1) < 4 * math.sqrt(2 / m)
    assert abs(z.mean().item()) < 4 / math.sqrt(m)


@pytest.mark.parametrize("n", [100, 1000, 3000, 10_000, 100_000])
def test_neighbouring_increments_are_uncorrelated(fine_increments, n):
    """E[dW_k dW_k+1] / h = 0 over 405,504 pairs within 4 standard errors (1 / sqrt(m)); a path
    linear inside cells of T 2^-16 correlates two steps that share a cell."""
    z = fine_increments[n]
    lag1 = z[1:] * z[:-1]
    assert abs(lag1.mean().item()) < 4 / math.sqrt(lag1.numel())


def test_fine_grid_sums_to_coarse_grid():
    """10 increments of the 30,000-step grid sum to one of the 3,000-step grid (the same times,
    float rounding of the sum apart), far below the old resolution T 2^-16."""
    bm = cd.BrownianPath(-1.0, 2.0, (8,), seed=3, dtype=F64)
    fine, coarse = _times(bm, 30_000, 12_340, 200), _times(bm, 3000, 1234, 20)
    assert fine[::10] == coarse
    df, dc = bm.increments(fine), bm.increments(coarse)
    assert (df.reshape(20, 10, 8).sum(1) - dc).abs().max().item() < 1e-13
    assert torch.equal(dc[3], bm(coarse[3], coarse[4]))  # a batch and an interval query: the same bits


def test_path_does_not_depend_on_queries_or_their_order():
    """W(t) bit for bit the same on a fresh path, after other queries in shuffled order, and inside
    batches of any size and order (each W(t) adds the same products in the same order)."""
    times = [0.3 + 1e-4 * k / 7 for k in range(60)] + [0.3 + 1e-9, 0.7, 0.5, 1.0, 0.0, 2.0 ** -20]
    order = torch.randperm(len(times), generator=torch.Generator().manual_seed(1)).tolist()
    make = lambda: cd.BrownianPath(0.0, 1.0, (5,), seed=8, dtype=F64)
    ref = [make()(t) for t in times]  # each from a fresh path: nothing else queried
    bm = make()
    for t in [0.123456, 0.9, 0.30001]:
        bm(t)
    got = {i: bm(times[i]) for i in order}
    for i, w in enumerate(ref):
        assert torch.equal(got[i], w), times[i]
    shuffled = [times[i] for i in order]
    inc = make().increments([0.0] + shuffled)   # W(t) - W(0) = W(t) for the first; telescoping after
    assert torch.equal(inc[0], ref[order[0]])
    for j in range(1, len(order)):
        assert torch.equal(inc[j], ref[order[j]] - ref[order[j - 1]]), shuffled[j]


def test_increments_refuse_bad_times():
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=0)
    for bad, error, message in [(0.5, TypeError, "times must be a 1-D sequence of floats, got float"),
                                ([0.0], ValueError, "times must hold at least 2 times (one increment), got 1"),
                                (["a", 1.0], TypeError, "times must be a 1-D sequence of floats, got list"),
                                (torch.zeros(2, 2), TypeError, "times must be a 1-D sequence of floats, got a "
                                                               "tensor of shape (2, 2)"),
                                ([0.0, 1.5], ValueError, "BrownianPath is defined on [0.0, 1.0]; queried at t = 1.5")]:
        with pytest.raises(error, match="^" + re.escape(message)):
            bm.increments(bad)
    assert torch.equal(bm.increments(torch.tensor([0.0, 0.5], dtype=F64))[0], bm(0.0, 0.5))


def test_seeds_differ_in_every_bit():
    """Seeds that agree in their low 32 bits give different paths; seeds outside torch's range
    [-2^63, 2^64) are refused, not wrapped onto another seed's path."""
    seeds = [1, 1 + 2 ** 32, 1 + 2 ** 40, 1 + 2 ** 63, 2 ** 64 - 1]
    w = [cd.BrownianPath(0.0, 1.0, (3,), seed=s, dtype=F64) for s in seeds]
    for i in range(len(w)):
        for j in range(i):
            for s, t in [(0.0, 1.0), (0.3, 0.31), (0.5, 0.5 + 2.0 ** -30)]:
                assert not torch.equal(w[i](s, t), w[j](s, t)), (seeds[i], seeds[j], s, t)
    assert torch.equal(cd.BrownianPath(0.0, 1.0, (3,), seed=-1)(1.0),
                       cd.BrownianPath(0.0, 1.0, (3,), seed=2 ** 64 - 1)(1.0))  # as torch.manual_seed
    for bad in (2 ** 64 + 1, -2 ** 63 - 1):
        with pytest.raises(ValueError, match="seed"):
            cd.BrownianPath(0.0, 1.0, (3,), seed=bad)


def test_levels_default_to_20_and_stop_at_32():
    """The default depth makes every grid of up to 2^20 steps exact; deeper than 32 is refused."""
    assert cd.BrownianPath(0.0, 1.0, (3,), seed=0).levels == 20
    with pytest.raises(ValueError, match=r"levels must be an int in \[1, 32\]"):
        cd.BrownianPath(0.0, 1.0, (3,), seed=0, levels=33)


def test_nodes_of_a_path_never_share_normals():
    """The bridge residual (W(m) - (W(a) + W(b)) / 2) / (sqrt(T 2^-15) / 2) of every node [a, b] of
    level 15 in [0.5, 0.7] is its own normal Z: no two equal. (With per-node seeds hashed to 64
    bits and truncated to the generator's 32, seed 1 had two such nodes, 49310 and 55452.)"""
    bm = cd.BrownianPath(0.0, 1.0, (2,), seed=1, dtype=F64)
    lo, hi = 2 ** 15, 2 ** 15 * 7 // 5  # level-16 points 32768 .. 45875: t in [0.5, 0.7]
    times = [k / 2 ** 16 for k in range(lo, hi + 1)]
    w = torch.cat([bm(times[0])[None], bm(times[0]) + bm.increments(times).cumsum(0)])
    z = (w[1:-1:2] - (w[:-2:2] + w[2::2]) / 2) / (math.sqrt(2.0 ** -15) / 2)
    assert z.shape[0] == (hi - lo) // 2
    assert torch.unique(torch.round(z * 1e7), dim=0).shape[0] == z.shape[0]
    assert abs(z.var().item() - 1) < 4 * math.sqrt(2 / z.numel())


def test_w_is_continuous_at_float_resolution():
    """Times one ulp apart (a step's t + h and the next grid time) give W within 1e-9: the slope
    inside a cell of T 2^-32 is ~2^16 / sqrt(T), times an ulp of 1.1e-16, ~1e-11 (a path exact to
    float resolution would differ by ~sqrt(ulp) = 1e-8)."""
    bm = cd.BrownianPath(0.0, 1.0, (1000,), seed=6, dtype=F64)
    for t in (0.1, 1 / 3, 0.7 + 1e-7, 0.999):
        assert bm(t, math.nextafter(t, 1.0)).abs().max().item() < 1e-9, t


def test_euler_maruyama_improves_on_fine_steps():
    """GBM by Euler-Maruyama against X0 exp((mu - s^2/2) T + s W_T) on the same path (on [0, 1]),
    solved over T = 0.005: 500 steps of 1e-5 (the step of a 100,000-step grid of the path, 0.65 of
    the old resolution 2^-16) beat 50 of 1e-4 by about sqrt(10) (strong order 1/2); asserted > 2
    (over 1,000 paths the mean error is known to ~3 %). A path linear below 2^-16 made the fine
    steps worse: it has only half the variance there."""
    mu, s, T = 0.5, 1.0, 0.005
    y0 = torch.ones(1000, dtype=F64)
    bm = cd.BrownianPath(0.0, 1.0, y0.shape, seed=5, dtype=F64)
    exact = torch.exp((mu - s * s / 2) * T + s * bm(0.0, T))
    err = {n: (cd.sdesolve(lambda t, y: mu * y, y0, noise=lambda t, y: s * y, method="euler_maruyama", steps=n,
                           t0=0.0, t1=T, bm=bm).y1 - exact).abs().mean().item() for n in (50, 500)}
    assert err[50] > 2 * err[500], err


# ---------------------------------------------------------------- reverse time

@pytest.mark.parametrize("method,order,stratonovich", [("euler_maruyama", 0.5, False), ("milstein", 1.0, False),
                                                       ("heun", 1.0, True)])
def test_gbm_in_reverse_time(method, order, stratonovich):
    """dX = mu X dt + s X dW solved from t0 = 1 to t1 = 0 (h < 0, dW = W(t + h) - W(t) of variance
    |h|): X = X0 exp(mu H - s^2/2 |H| + s (W(t1) - W(t0))) with H = t1 - t0 (Ito; no |H| term for
    Stratonovich). The fitted strong order over 16..256 steps within 0.15; Milstein's correction
    1/2 g g' (dW^2 - h) instead of (dW^2 - |h|) adds s^2 |H| to the exponent and stalls it."""
    mu, s, t0, t1 = 0.5, 0.8, 1.0, 0.0
    y0 = torch.ones(2000, dtype=F64)
    bm = cd.BrownianPath(t1, t0, y0.shape, seed=4, dtype=F64)
    H = t1 - t0
    exact = y0 * torch.exp(mu * H - (0.0 if stratonovich else s * s / 2) * abs(H) + s * bm(t0, t1))
    steps = (16, 32, 64, 128, 256)
    err = [(cd.sdesolve(lambda t, y: mu * y, y0, noise=lambda t, y: s * y, method=method, steps=n, t0=t0, t1=t1,
                        bm=bm).y1 - exact).abs().mean().item() for n in steps]
    slope = -np.polyfit(np.log(steps), np.log(err), 1)[0]
    assert abs(slope - order) < 0.15, (slope, err)


def test_levels_for_gives_every_step_of_a_grid_its_own_cell():
    """sdesolve's own path: 2^levels >= steps, so no two steps of its grid share a cell (where the
    path would not be Brownian); the default depth below that, at most 32."""
    from contdepth.brownian import DEFAULT_LEVELS, MAX_LEVELS, levels_for
    for steps in (1, 7, 100, 2 ** 20, 2 ** 20 + 1, 3 * 2 ** 21, 2 ** 32, 2 ** 40):
        levels = levels_for(steps)
        assert DEFAULT_LEVELS <= levels <= MAX_LEVELS
        assert 2 ** levels >= min(steps, 2 ** MAX_LEVELS) and (levels == DEFAULT_LEVELS or 2 ** (levels - 1) < steps)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        levels_for(0)


def test_a_grid_finer_than_the_cells_loses_variance_and_levels_for_restores_it():
    """On 2^12 steps a path of 10 levels puts 4 steps in each cell (increments of one cell are
    correlated, the variance of each falls); with levels_for(2^12) = 20 every step is Brownian."""
    import contdepth as cd
    from contdepth.brownian import levels_for
    n = 2 ** 12
    times = torch.linspace(0.0, 1.0, n + 1, dtype=torch.float64)
    ratios = {}
    for levels in (10, levels_for(n)):
        bm = cd.BrownianPath(0.0, 1.0, (256,), seed=5, dtype=torch.float64, levels=levels)
        dw = bm.increments(times)
        ratios[levels] = float((dw ** 2).mean() * n)
    assert abs(ratios[levels_for(n)] - 1) < 0.02
    assert ratios[10] < 0.8
