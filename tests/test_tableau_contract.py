"""tableau's contract, case by case: rooted trees with their sizes, densities gamma and elementary
weights Phi in closed form, the first failed order condition named exactly, every validation error
with its full message and its tolerance, the registered tableaux rebuilt from their fields, and the
continuous extensions' mid weights (tsit5, dopri8) meeting the order conditions of y(t + h/2)."""
import math

import pytest

from contdepth.solvers import tableau as tb
from contdepth.solvers.tableau import (ADAPTIVE_HEUN, BOSH3, DOPRI5, DOPRI8, MIDPOINT, RK4, RK38, TABLEAUX,
                                       TSIT5, ButcherTableau, rooted_trees)

BUSHY = {n: ((),) * (n - 1) for n in range(1, 7)}  # the root with n - 1 leaves: gamma = n


def _chain(n: int) -> tuple:
    return () if n == 1 else (_chain(n - 1),)


def test_every_tree_has_its_order_of_nodes_and_the_two_extreme_densities():
    for n in range(1, 7):
        trees = rooted_trees(n)
        assert all(tb._size(t) == n for t in trees)
        assert len(set(trees)) == len(trees) and BUSHY[n] in trees and _chain(n) in trees
        assert tb._density(BUSHY[n]) == n and tb._density(_chain(n)) == math.factorial(n)


def test_the_order_four_trees_and_their_densities():
    assert {t: tb._density(t) for t in rooted_trees(4)} == {
        ((), (), ()): 4, ((), ((),)): 8, (((), ()),): 12, ((((),),),): 24}
    assert rooted_trees(1) == ((),) and rooted_trees(2) == (((),),)
    assert tb._grow(((),)) == {((), ()), (((),),)}
    assert tb._grow(((), ())) == {((), (), ()), ((), ((),))}
    assert tb._grow(((), ((),))) == {((), (), ((),)), ((), ((), ())), (((),), ((),)), ((), (((),),))}


def test_growing_every_tree_by_one_leaf_counts_the_rooted_trees():
    """1, 1, 2, 4, 9, 20, 48, 115 rooted trees with 1..8 nodes (OEIS A000081), by _grow alone (rooted_trees
    is cached from the import-time checks)."""
    trees, counts = {()}, [1]
    for _ in range(7):
        trees = set().union(*(tb._grow(t) for t in trees))
        counts.append(len(trees))
    assert counts == [1, 1, 2, 4, 9, 20, 48, 115]
    assert trees == set(rooted_trees(8))


def test_elementary_weights_are_powers_of_c_and_products_with_a():
    a = ((), (0.5,), (0.25, 0.5), (0.0, 0.0, 1.0))  # c = (0, 1/2, 3/4, 1), exact in binary
    c = [sum(row) for row in a]
    assert tb._weights((), a) == [1.0] * 4
    assert tb._weights(((),), a) == c
    assert tb._weights(((), ()), a) == [x * x for x in c]
    assert tb._weights((((),),), a) == [sum(aij * c[j] for j, aij in enumerate(row)) for row in a]
    assert tb._weights(((), ((),)), a) == [ci * sum(aij * c[j] for j, aij in enumerate(row)) for ci, row in zip(c, a)]


def test_the_first_failed_condition_is_named_with_its_sum_and_target():
    assert tb._order_failure(MIDPOINT.a, MIDPOINT.b, 2) is None
    assert tb._order_failure(MIDPOINT.a, MIDPOINT.b, 3) == (
        "the order-3 condition of tree ((), ()) (sum = 0.25, want 0.3333333333333333)")
    assert tb._order_failure(RK4.a, RK4.b, 4) is None
    assert tb._order_failure(RK4.a, (0.0, 1.0, 0.0, 0.0), 1) is None
    assert tb._order_failure(RK4.a, (0.5, 0.5, 0.0, 0.0), 2) == (
        "the order-2 condition of tree ((),) (sum = 0.25, want 0.5)")
    # y(t + h/2): scale s^n with s = 1/2
    assert tb._order_failure(RK4.a, (0.25, 0.25, 0.0, 0.0), 2, lambda n: 0.5 ** n) is None


def test_an_order_condition_holds_to_one_part_in_1e12_of_its_terms():
    # midpoint's b_1 c_1 = 1/2 exactly; moved by 1.5e-12 relative it fails, by 0.5e-12 it holds
    for eps, fails in ((1.5e-12, True), (0.5e-12, False), (-1.5e-12, True)):
        b = (-eps, 1.0 + eps)
        failure = tb._order_failure(MIDPOINT.a, b, 2)
        assert (failure is not None) == fails, (eps, failure)
    # a zero target (a dense coefficient's [n = p]) is held to the size of the terms, not to 1
    a = ((), (1.0,))
    assert tb._order_failure(a, (0.5, -0.5), 1, lambda n: 0.0) is None
    assert tb._order_failure(a, (1e-13, 0.0), 1, lambda n: 0.0) is not None


def _fields(t, **change):
    return dict(dict(name="bad", order=t.order, c=t.c, a=t.a, b=t.b, b_error=t.b_error, mid=t.mid, dense=t.dense),
                **change)


@pytest.mark.parametrize("tableau", list(TABLEAUX.values()) + [RK38], ids=lambda t: t.name)
def test_every_registered_tableau_passes_its_own_checks_again(tableau):
    again = ButcherTableau(**_fields(tableau, name=tableau.name))
    assert again == tableau
    assert again.stages == len(tableau.c) and again.adaptive == (tableau.b_error is not None)


def test_stages_adaptive_and_fsal_of_the_registered_tableaux():
    got = {t.name: (t.stages, t.adaptive, t.fsal) for t in TABLEAUX.values()}
    assert got == {"euler": (1, False, False), "midpoint": (2, False, False), "rk4": (4, False, False),
                   "bosh3": (4, True, True), "dopri5": (7, True, True), "tsit5": (7, True, True),
                   "heun2": (2, False, False), "heun3": (3, False, False), "adaptive_heun": (2, True, False),
                   "fehlberg2": (3, True, False), "dopri8": (14, True, True)}


def test_fsal_needs_all_three_of_its_conditions():
    # heun2 with a zero third stage at c = 1 whose row is b: FSAL
    base = dict(name="x", order=2, c=(0.0, 1.0, 1.0), a=((), (1.0,), (0.5, 0.5)), b=(0.5, 0.5, 0.0))
    assert ButcherTableau(**base).fsal
    # the last row not b (but the order conditions still met)
    assert not ButcherTableau(**dict(base, a=((), (1.0,), (0.0, 1.0)))).fsal
    # the last weight not zero
    assert not ButcherTableau(**dict(base, b=(0.5, 0.25, 0.25), a=((), (1.0,), (0.5, 0.5)))).fsal
    # the last stage not at c = 1
    assert not ButcherTableau(**dict(base, c=(0.0, 1.0, 0.5), a=((), (1.0,), (0.25, 0.25)))).fsal


def test_the_mid_weights_meet_the_order_conditions_of_the_half_step():
    half = lambda n: 0.5 ** n  # noqa: E731
    assert tb._tsit5_mid() == TSIT5.mid and tb._dopri8_mid() == DOPRI8.mid
    assert tb._order_failure(TSIT5.a, tb._tsit5_mid(), 4, half) is None
    assert tb._order_failure(DOPRI8.a, tb._dopri8_mid(), 5, half) is None
    assert tb._order_failure(DOPRI5.a, DOPRI5.mid, 4, half) is None
    assert tb._order_failure(BOSH3.a, BOSH3.mid, 3, half) is None
    assert len(tb._dopri8_mid()) == 14 and [i for i, w in enumerate(tb._dopri8_mid()) if w == 0] == [1, 2, 3, 4]


_MID = dict(c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0))


@pytest.mark.parametrize("kwargs,message", [
    (dict(c=(0.0, 0.5), a=((), ()), b=(0.0, 1.0)), "bad: A must be strictly lower triangular with 2 rows (row i has i entries)"),
    (dict(c=(0.0, 0.5), a=((),), b=(0.0, 1.0)), "bad: A must be strictly lower triangular with 2 rows (row i has i entries)"),
    (dict(c=(0.5,), a=((),), b=(1.0,)), "bad: an explicit method has c_0 = 0, got 0.5"),
    (dict(c=(0.0, 1.0), a=((), (0.5,)), b=(0.0, 1.0)), "bad: row 1 of A sums to 0.5, but c_1 = 1.0"),
    (dict(_MID, b=(0.5, 0.6)), "bad: b needs 2 weights summing to 1, got (0.5, 0.6)"),
    (dict(_MID, b=(1.0,)), "bad: b needs 2 weights summing to 1, got (1.0,)"),
    (dict(_MID, b_error=(0.1, 0.0)), "bad: b_error needs 2 weights summing to 0.0, got (0.1, 0.0)"),
    (dict(_MID, b_error=(0.0,)), "bad: b_error needs 2 weights summing to 0.0, got (0.0,)"),
    (dict(_MID, mid=(0.25, 0.5)), "bad: mid needs 2 weights summing to 0.5, got (0.25, 0.5)"),
    (dict(_MID, mid=(0.5,)), "bad: mid needs 2 weights summing to 0.5, got (0.5,)"),
    (dict(_MID, mid=(0.25, 0.25)), "bad: dense output needs f at the step's end, i.e. an FSAL tableau"),
    (dict(_MID, b_error=(0.5, -0.5)), "bad: an embedded pair needs dense output: mid (FSAL) or dense weights"),
    (dict(_MID, dense=((0.0,), (1.0,))), "bad: dense weights are for embedded pairs that are not FSAL "
                                          "(FSAL pairs use mid; fixed-step methods interpolate linearly)"),
])
def test_each_invalid_tableau_says_what_is_wrong_in_full(kwargs, message):
    with pytest.raises(ValueError) as info:
        ButcherTableau("bad", 2, **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize("dense,message", [
    ((), "bad: dense needs 2 rows of the same positive length (the coefficients of s, s^2, ...), got ()"),
    (((), ()), "bad: dense needs 2 rows of the same positive length (the coefficients of s, s^2, ...), got ((), ())"),
    (((1.0, -0.5),), "bad: dense needs 2 rows of the same positive length (the coefficients of s, s^2, ...), "
                     "got ((1.0, -0.5),)"),
    (((1.0, -0.5), (0.5,)), "bad: dense needs 2 rows of the same positive length (the coefficients of s, s^2, ...), "
                            "got ((1.0, -0.5), (0.5,))"),
    (((1.0, -0.5), (0.0, 0.6)), "bad: dense row 1 sums to 0.6, but b_1 = 0.5 (the dense output must end on y1)"),
    (((1.0, -0.25), (0.0, 0.5)), "bad: dense row 0 sums to 0.75, but b_0 = 0.5 (the dense output must end on y1)"),
    (((0.9, -0.4), (0.1, 0.4)), "bad: dense (coefficients of s^1) fails the order-2 condition of tree ((),) "
                                "(sum = 0.1, want 0.0): a mistyped coefficient, or the declared order 2 is too high"),
])
def test_invalid_dense_weights_say_what_is_wrong_in_full(dense, message):
    with pytest.raises(ValueError) as info:
        ButcherTableau(**_fields(ADAPTIVE_HEUN, dense=dense))
    assert str(info.value) == message


def test_each_weight_set_is_checked_to_its_own_order():
    heun = _fields(ADAPTIVE_HEUN)
    with pytest.raises(ValueError) as info:  # b_hat = (1, 0): Euler, first order only
        ButcherTableau(**dict(heun, order=3, dense=((1.0, -0.5, 0.0), (0.0, 0.5, 0.0))))
    assert str(info.value).startswith("bad: b fails the order-3 condition")
    # the embedded solution b - b_error is held to order - 1: bosh3's b_hat moved off its order-2 condition
    e = BOSH3.b_error
    b_error = (e[0] + 1e-3, e[1], e[2] - 1e-3, e[3])
    b_hat = tuple(b - x for b, x in zip(BOSH3.b, b_error))
    failure = tb._order_failure(BOSH3.a, b_hat, 2)
    assert failure.startswith("the order-2 condition of tree ((),) (sum = 0.50075")
    with pytest.raises(ValueError) as info:
        ButcherTableau(**_fields(BOSH3, b_error=b_error))
    assert str(info.value) == f"bad: b - b_error fails {failure}: a mistyped coefficient, or the declared order 3 is too high"
    # dense of degree 2 is checked to min(degree, order) = 2; a degree-3 row set to order 2 too
    ok = ButcherTableau(**dict(heun, dense=((1.0, -0.5, 0.0), (0.0, 0.5, 0.0))))
    assert ok.dense == ((1.0, -0.5, 0.0), (0.0, 0.5, 0.0))
    # mid is checked to min(order - 1, 4): bosh3 (order 3) with a mid that is only first order fails at 2
    with pytest.raises(ValueError) as info:
        ButcherTableau(**_fields(BOSH3, mid=(0.5, 0.0, 0.0, 0.0)))
    assert str(info.value).startswith("bad: mid fails the order-2 condition of tree ((),)")


def test_sums_hold_to_the_tolerance_and_no_further():
    # a row of A off its c by 1.5e-12 fails, by 0.5e-12 passes (the tolerance is 1e-12 relative to max(1, row))
    for eps, fails in ((1.5e-12, True), (0.5e-12, False)):
        kwargs = dict(c=(0.0, 0.5), a=((), (0.5 + eps,)), b=(0.0, 1.0))
        if fails:
            with pytest.raises(ValueError, match="row 1 of A sums to"):
                ButcherTableau("bad", 1, **kwargs)
        else:
            ButcherTableau("bad", 1, **kwargs)
    with pytest.raises(ValueError, match="b needs 2 weights summing to 1"):
        ButcherTableau("bad", 1, c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0 + 1.5e-12))
    ButcherTableau("bad", 1, c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0 + 0.5e-12))
    with pytest.raises(ValueError, match="b_error needs 2 weights summing to 0.0"):
        ButcherTableau(**_fields(ADAPTIVE_HEUN, b_error=(0.5, -0.5 + 1.5e-12)))
    with pytest.raises(ValueError, match="mid needs 4 weights summing to 0.5"):
        ButcherTableau(**_fields(BOSH3, mid=BOSH3.mid[:3] + (BOSH3.mid[3] + 1.5e-12,)))
    # a large row is held relative to its size: 8 + 4e-12 against c = 8 passes
    ButcherTableau("bad", 1, c=(0.0, 8.0), a=((), (8.0 + 4e-12,)), b=(1.0, 0.0))
    with pytest.raises(ValueError, match="dense row 0 sums to"):
        ButcherTableau(**_fields(ADAPTIVE_HEUN, dense=((1.0, -0.5 + 1.5e-12), (0.0, 0.5))))
    ButcherTableau(**_fields(ADAPTIVE_HEUN, dense=((1.0, -0.5 + 0.4e-12), (0.0, 0.5))))


def test_a_deviation_of_exactly_the_tolerance_passes():
    """Every sum is checked with > _TOL: a row of A (c_1 = 0) and the error weights off by exactly 1e-12 pass."""
    ButcherTableau("edge", 1, c=(0.0, 0.0), a=((), (1e-12,)), b=(1.0, 0.0))
    ButcherTableau(**_fields(ADAPTIVE_HEUN, name="edge", b_error=(1e-12, 0.0)))


# midpoint with an Euler error estimate and a third stage at c = 1 no weight reads (not FSAL: its row is not b)
_IDLE = dict(name="idle", order=2, c=(0.0, 0.5, 1.0), a=((), (0.5,), (1.0, 0.0)), b=(0.0, 1.0, 0.0),
             b_error=(-1.0, 1.0, 0.0), dense=((1.0, -1.0), (0.0, 1.0), (0.0, 0.0)))


def test_a_dense_row_off_by_exactly_the_tolerance_reaches_the_order_conditions():
    assert not ButcherTableau(**_IDLE).fsal
    with pytest.raises(ValueError) as info:
        ButcherTableau(**dict(_IDLE, dense=((1.0, -1.0), (0.0, 1.0), (0.0, 1e-12))))
    assert str(info.value).startswith("idle: dense (coefficients of s^2) fails the order-2 condition")


def test_dense_row_sums_are_held_relative_to_the_rows_size():
    """Row 0 of adaptive_heun's dense weights, (1, -1/2): sum |w| = 1.5, so 0.8e-12 off its b_0 passes."""
    ButcherTableau(**_fields(ADAPTIVE_HEUN, dense=((1.0, -0.5 + 0.8e-12), (0.0, 0.5))))


def test_mid_is_held_to_order_four_only():
    """A dopri8 mid moved along the null space of the order <= 4 conditions passes (the quartic through it
    is 4th order), although it breaks an order-5 condition the unmoved one meets."""
    import numpy as np
    a = DOPRI8.a
    low = np.array([tb._weights(t, a) for n in range(1, 5) for t in rooted_trees(n)])
    _, sv, vt = np.linalg.svd(low)
    null = vt[int((sv > 1e-10 * sv[0]).sum()):]  # a basis of the null space, as rows
    five = np.array(tb._weights(rooted_trees(5)[0], a))
    v = null.T @ (null @ five)
    mid = tuple(float(m) for m in np.array(DOPRI8.mid) + 1e-6 * v / np.abs(v).max())
    half = lambda n: 0.5 ** n  # noqa: E731
    assert tb._order_failure(a, mid, 4, half) is None and tb._order_failure(a, mid, 5, half) is not None
    assert tb._order_failure(a, DOPRI8.mid, 5, half) is None
    assert ButcherTableau(**_fields(DOPRI8, mid=mid)).mid == mid
