"""Explicit Runge-Kutta methods as validated data: a Butcher tableau (c, A, b) per method.

Adaptive pairs add the error weights ``b_error`` = b - b_hat (b_hat the embedded solution of
the other order) and ``mid``, the weights of y(t + h/2) used for dense output (the 4th-order
interpolant through y0, y1, y(t + h/2), f0, f1 that torchdiffeq also uses). The checks below
run on import, so a mistyped coefficient fails at once, not as a lost order of accuracy.
"""
from __future__ import annotations

from dataclasses import dataclass

_TOL = 1e-12


@dataclass(frozen=True)
class ButcherTableau:
    """Stage i evaluates f at t + c_i h on y + h sum_j a_ij k_j; the step is y + h sum_i b_i k_i.

    ``order`` is the convergence order of the propagated solution (read by the order tests).
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None
    mid: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        s = len(self.c)
        if len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"{self.name}: A must be strictly lower triangular with {s} rows (row i has i entries)")
        if self.c[0] != 0:
            raise ValueError(f"{self.name}: an explicit method has c_0 = 0, got {self.c[0]}")
        for i, (ci, row) in enumerate(zip(self.c, self.a)):
            if abs(sum(row) - ci) > _TOL * max(1.0, sum(abs(x) for x in row)):
                raise ValueError(f"{self.name}: row {i} of A sums to {sum(row)}, but c_{i} = {ci}")
        if len(self.b) != s or abs(sum(self.b) - 1) > _TOL:
            raise ValueError(f"{self.name}: b needs {s} weights summing to 1, got {self.b}")
        for name, weights, total in (("b_error", self.b_error, 0.0), ("mid", self.mid, 0.5)):
            if weights is not None and (len(weights) != s or abs(sum(weights) - total) > _TOL):
                raise ValueError(f"{self.name}: {name} needs {s} weights summing to {total}, got {weights}")
        if self.mid is not None and not self.fsal:
            raise ValueError(f"{self.name}: dense output needs f at the step's end, i.e. an FSAL tableau")

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        """True for an embedded pair (it has an error estimate)."""
        return self.b_error is not None

    @property
    def fsal(self) -> bool:
        """First same as last: the last stage is f(t + h, y1), reused as the next step's first."""
        return self.c[-1] == 1 and self.a[-1] == self.b[:-1] and self.b[-1] == 0


EULER = ButcherTableau("euler", 1, c=(0.0,), a=((),), b=(1.0,))
MIDPOINT = ButcherTableau("midpoint", 2, c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0))
# Classical RK4, seed 004 eq. 2.17-2.21.
RK4 = ButcherTableau("rk4", 4, c=(0.0, 0.5, 0.5, 1.0), a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
                     b=(1 / 6, 1 / 3, 1 / 3, 1 / 6))

# Bogacki-Shampine 3(2) (torchdiffeq bosh3.py). Its mid value is the cubic Hermite one,
# (y0 + y1)/2 + h (f0 - f1)/8, so dense output is third order like the method (torchdiffeq's
# (0, 1/2, 0, 0) is a second-order midpoint estimate, 50x less accurate between steps).
_BS_B = (2 / 9, 1 / 3, 4 / 9, 0.0)
BOSH3 = ButcherTableau(
    "bosh3", 3, c=(0.0, 1 / 2, 3 / 4, 1.0), a=((), (1 / 2,), (0.0, 3 / 4), _BS_B[:3]), b=_BS_B,
    b_error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8), mid=(17 / 72, 1 / 6, 2 / 9, -1 / 8))

# Dormand-Prince 5(4) (torchdiffeq dopri5.py; Hairer, Norsett & Wanner, Table II.5.2).
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
DOPRI5 = ButcherTableau(
    "dopri5", 5, c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=((), (1 / 5,), (3 / 40, 9 / 40), (44 / 45, -56 / 15, 32 / 9),
       (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
       (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656), _DP_B[:6]),
    b=_DP_B,
    b_error=(35 / 384 - 1951 / 21600, 0.0, 500 / 1113 - 22642 / 50085, 125 / 192 - 451 / 720,
             -2187 / 6784 + 12231 / 42400, 11 / 84 - 649 / 6300, -1 / 60),
    mid=(6025192743 / 30085553152 / 2, 0.0, 51252292925 / 65400821598 / 2, -2691868925 / 45128329728 / 2,
         187940372067 / 1594534317056 / 2, -1776094331 / 19743644256 / 2, 11237099 / 235043384 / 2))


# Tsitouras 5(4) (Tsitouras 2011; coefficients as in diffrax tsit5.py and torchdiffeq tsit5.py).
# Like diffrax (and unlike torchdiffeq 0.2.5, which propagates the embedded solution), the
# 5th-order solution b is propagated and f(t + h, y1) is the FSAL stage.
def _tsit5_mid() -> tuple[float, ...]:
    x = 0.5  # the continuous extension b_i(x) at x = 1/2
    return (-1.0530884977290216 * x * (x - 1.329989018975412) * (x * x - 1.4364028541716351 * x + 0.7139816917074209),
            0.1017 * x * x * (x * x - 2.1966568338249754 * x + 1.2949852507374631),
            2.490627285651252793 * x * x * (x * x - 2.38535645472061657 * x + 1.57803468208092486),
            -16.54810288924490272 * (x - 1.21712927295533244) * (x - 0.61620406037800089) * x * x,
            47.37952196281928122 * (x - 1.203071208372362603) * (x - 0.658047292653547382) * x * x,
            -34.87065786149660974 * (x - 1.2) * (x - 2 / 3) * x * x,
            2.5 * (x - 1) * (x - 0.6) * x * x)


_TS_B = (0.09646076681806522951816731316512876333711995238157997181903319145764851595234062815396,
         1 / 100, 0.4798896504144995747752495322905965199130404621990332488332634944254542060153074523509,
         1.379008574103741893192274821856872770756462643091360525934940067397245698027561293331,
         -3.290069515436080679901047585711363850115683290894936158531296799594813811049925401677,
         2.324710524099773982415355918398765796109060233222962411944060046314465391054716027841, 0.0)
_TS_B_HAT = (0.09468075576583945807478876255758922856117527357724631226139574065785592789071067303271,
             0.009183565540343253096776363936645313759813746240984095238905939532922955247253608687270,
             0.4877705284247615707855642599631228241516691959761363774365216240304071651579571959813,
             1.234297566930478985655109673884237654035539930748192848315425833500484878378061439761,
             -2.707712349983525454881109975059321670689605166938197378763992255714444407154902012702,
             1.866628418170587035753719399566211498666255505244122593996591602841258328965767580089, 1 / 66)
TSIT5 = ButcherTableau(
    "tsit5", 5,
    c=(0.0, 161 / 1000, 327 / 1000, 9 / 10, 0.9800255409045096857298102862870245954942137979563024768854764293221195950761080302604,
       1.0, 1.0),
    a=((), (161 / 1000,),
       (-0.008480655492356988544426874250230774675121177393430391537369234245294192976164141156943,
        0.3354806554923569885444268742502307746751211773934303915373692342452941929761641411569),
       (2.897153057105493432130432594192938764924887287701866490314866693455023795137503079289,
        -6.359448489975074843148159912383825625952700647415626703305928850207288721235210244366,
        4.362295432869581411017727318190886861027813359713760212991062156752264926097707165077),
       (5.325864828439256604428877920840511317836476253097040101202360397727981648835607691791,
        -11.74888356406282787774717033978577296188744178259862899288666928009020615663593781589,
        7.495539342889836208304604784564358155658679161518186721010132816213648793440552049753,
        -0.09249506636175524925650207933207191611349983406029535244034750452930469056411389539635),
       (5.861455442946420028659251486982647890394337666164814434818157239052507339770711679748,
        -12.92096931784710929170611868178335939541780751955743459166312250439928519268343184452,
        8.159367898576158643180400794539253485181918321135053305748355423955009222648673734986,
        -0.07158497328140099722453054252582973869127213147363544882721139659546372402303777878835,
        -0.02826905039406838290900305721271224146717633626879770007617876201276764571291579142206),
       _TS_B[:6]),
    b=_TS_B, b_error=tuple(b - bh for b, bh in zip(_TS_B, _TS_B_HAT)), mid=_tsit5_mid())

TABLEAUX = {t.name: t for t in (EULER, MIDPOINT, RK4, BOSH3, DOPRI5, TSIT5)}
