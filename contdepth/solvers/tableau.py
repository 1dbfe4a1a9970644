"""Explicit Runge-Kutta methods as validated data: a Butcher tableau (c, A, b) per method.

Adaptive pairs add the error weights ``b_error`` = b - b_hat (b_hat the embedded solution of
the other order) and dense output: ``mid``, the weights of y(t + h/2) (the 4th-order
interpolant through y0, y1, y(t + h/2), f0, f1 that torchdiffeq also uses; FSAL pairs), or
``dense``, polynomial weights b_i(s) of a continuous extension (pairs that are not FSAL). The
checks below run on import, so a mistyped coefficient fails at once, not as a lost order of
accuracy: besides the shape and the row sums, b must satisfy Butcher's order conditions
sum_i b_i Phi_i(tau) = 1/gamma(tau) for every rooted tree tau of order <= ``order``, b_hat for
order - 1, ``mid`` those of y(t + h/2) for min(order - 1, 4) (the quartic through it is 4th
order), and ``dense`` those of y(t + s h) up to its
degree (at most ``order``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

# Sums and order conditions hold to this, relative (the worst of the tableaux below: 1.1e-14, the
# order-4 conditions of tsit5's mid); a mistyped digit breaks them by far more.
_TOL = 1e-12


@functools.lru_cache(maxsize=None)
def rooted_trees(order: int) -> tuple[tuple, ...]:
    """The rooted trees with ``order`` nodes, each as the sorted tuple of its root's subtrees."""
    if order == 1:
        return ((),)
    grown = set()
    for tree in rooted_trees(order - 1):
        grown.update(_grow(tree))
    return tuple(sorted(grown))


def _grow(tree: tuple) -> set[tuple]:
    """Every tree made from ``tree`` by attaching one new leaf to one of its nodes."""
    out = {tuple(sorted(tree + ((),)))}
    for i, child in enumerate(tree):
        for bigger in _grow(child):
            out.add(tuple(sorted(tree[:i] + (bigger,) + tree[i + 1:])))
    return out


def _size(tree: tuple) -> int:
    return 1 + sum(_size(t) for t in tree)


def _density(tree: tuple) -> int:
    """gamma(tau) = |tau| prod gamma(subtrees): y's Taylor term of tau is h^|tau| / gamma."""
    out = _size(tree)
    for t in tree:
        out *= _density(t)
    return out


def _weights(tree: tuple, a: tuple[tuple[float, ...], ...]) -> list[float]:
    """Phi_i(tau) = prod over subtrees sigma of sum_j a_ij Phi_j(sigma) (1 for the single node)."""
    phi = [1.0] * len(a)
    for sub in tree:
        inner = _weights(sub, a)
        phi = [p * sum(aij * inner[j] for j, aij in enumerate(row)) for p, row in zip(phi, a)]
    return phi


def _order_failure(a: tuple[tuple[float, ...], ...], weights: tuple[float, ...], order: int,
                   scale=lambda n: 1.0) -> str | None:
    """The first order condition sum_i w_i Phi_i(tau) = scale(|tau|) / gamma(tau), |tau| <= order,
    that ``weights`` violate (relative to max(1/gamma, sum_i |w_i Phi_i|)), or None. ``scale``:
    1 for a step's weights, s^n for y(t + s h), [n = p] for the s^p coefficients of a dense output."""
    for n in range(1, order + 1):
        for tree in rooted_trees(n):
            terms = [w * p for w, p in zip(weights, _weights(tree, a))]
            want = scale(n) / _density(tree)
            if abs(sum(terms) - want) > _TOL * max(want, sum(abs(x) for x in terms)):
                return f"the order-{n} condition of tree {tree} (sum = {sum(terms)!r}, want {want!r})"
    return None


class TableauShape:
    """What every tableau (explicit or implicit) answers from its coefficients ``c`` and ``b_error``."""

    c: tuple[float, ...]
    b_error: tuple[float, ...] | None

    @property
    def stages(self) -> int:
        return len(self.c)

    @property
    def adaptive(self) -> bool:
        """True for an embedded pair (it has an error estimate)."""
        return self.b_error is not None


@dataclass(frozen=True)
class ButcherTableau(TableauShape):
    """Stage i evaluates f at t + c_i h on y + h sum_j a_ij k_j; the step is y + h sum_i b_i k_i.

    ``order`` is the convergence order of the propagated solution (read by the order tests).
    ``dense[i]`` = (w_i1, w_i2, ...): the dense output y(t + s h) = y + h sum_i b_i(s) k_i with
    b_i(s) = sum_p w_ip s^p, for embedded pairs that are not FSAL (FSAL pairs use ``mid``).
    """

    name: str
    order: int
    c: tuple[float, ...]
    a: tuple[tuple[float, ...], ...]
    b: tuple[float, ...]
    b_error: tuple[float, ...] | None = None
    mid: tuple[float, ...] | None = None
    dense: tuple[tuple[float, ...], ...] | None = None

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
        self._check_dense()
        self._check_orders()

    def _check_dense(self) -> None:
        if self.dense is None:
            if self.adaptive and self.mid is None:
                raise ValueError(f"{self.name}: an embedded pair needs dense output: mid (FSAL) or dense weights")
            return
        if self.mid is not None or not self.adaptive or self.fsal:
            raise ValueError(f"{self.name}: dense weights are for embedded pairs that are not FSAL "
                             "(FSAL pairs use mid; fixed-step methods interpolate linearly)")
        degree = len(self.dense[0]) if self.dense else 0
        if len(self.dense) != len(self.c) or degree == 0 or any(len(row) != degree for row in self.dense):
            raise ValueError(f"{self.name}: dense needs {len(self.c)} rows of the same positive length (the "
                             f"coefficients of s, s^2, ...), got {self.dense}")
        for i, (row, bi) in enumerate(zip(self.dense, self.b)):
            if abs(sum(row) - bi) > _TOL * max(1.0, sum(abs(x) for x in row)):
                raise ValueError(f"{self.name}: dense row {i} sums to {sum(row)}, but b_{i} = {bi} "
                                 "(the dense output must end on y1)")

    def _check_orders(self) -> None:
        checks = [("b", self.b, self.order, lambda n: 1.0)]
        if self.b_error is not None:
            b_hat = tuple(b - e for b, e in zip(self.b, self.b_error))
            checks.append(("b - b_error", b_hat, self.order - 1, lambda n: 1.0))
        if self.mid is not None:
            checks.append(("mid", self.mid, min(self.order - 1, 4), lambda n: 0.5 ** n))
        if self.dense is not None:
            degree = len(self.dense[0])
            for p in range(1, degree + 1):
                checks.append((f"dense (coefficients of s^{p})", tuple(row[p - 1] for row in self.dense),
                               min(degree, self.order), lambda n, p=p: float(n == p)))
        for name, weights, order, scale in checks:
            failure = _order_failure(self.a, weights, order, scale)
            if failure is not None:
                raise ValueError(f"{self.name}: {name} fails {failure}: a mistyped coefficient, or the "
                                 f"declared order {self.order} is too high")

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

# The explicit methods of torchdiffeq (fixed_grid.py, adaptive_heun.py, fehlberg2.py, dopri8.py).
HEUN2 = ButcherTableau("heun2", 2, c=(0.0, 1.0), a=((), (1.0,)), b=(1 / 2, 1 / 2))
HEUN3 = ButcherTableau("heun3", 3, c=(0.0, 1 / 3, 2 / 3), a=((), (1 / 3,), (0.0, 2 / 3)), b=(1 / 4, 0.0, 3 / 4))
# The 3/8 rule (Kutta 1901), torchdiffeq's rk4 step, which its Adams methods start with.
RK38 = ButcherTableau("rk38", 4, c=(0.0, 1 / 3, 2 / 3, 1.0), a=((), (1 / 3,), (-1 / 3, 1.0), (1.0, -1.0, 1.0)),
                      b=(1 / 8, 3 / 8, 3 / 8, 1 / 8))

# Heun 2(1) and Fehlberg 1(2) are not FSAL. Their dense output is the quadratic with
# p(0) = y0, p'(0) = h f0, p(1) = y1: b_i(s) = [i = 0] s + (b_i - [i = 0]) s^2, second order like the
# methods (torchdiffeq's quartic there takes the last stage, evaluated at the Euler or first-order
# predictor, as f1, and a first-order y(t + h/2)).
ADAPTIVE_HEUN = ButcherTableau(
    "adaptive_heun", 2, c=(0.0, 1.0), a=((), (1.0,)), b=(1 / 2, 1 / 2), b_error=(1 / 2, -1 / 2),
    dense=((1.0, -1 / 2), (0.0, 1 / 2)))
_FE_B = (1 / 512, 255 / 256, 1 / 512)
FEHLBERG2 = ButcherTableau(
    "fehlberg2", 2, c=(0.0, 1 / 2, 1.0), a=((), (1 / 2,), (1 / 256, 255 / 256)), b=_FE_B,
    b_error=(-1 / 512, 0.0, 1 / 512), dense=((1.0, _FE_B[0] - 1), (0.0, _FE_B[1]), (0.0, _FE_B[2])))


# Dormand-Prince 8(7) (Prince & Dormand 1981, RK8(7)13M, as torchdiffeq dopri8.py): 13 stages, the
# 8th-order solution propagated, plus f(t + h, y1) as a 14th, FSAL stage.
def _dopri8_mid() -> tuple[float, ...]:
    """The weights of y(t + h/2): the 7th-order continuous extension b_i(x) at x = 1/2."""
    polys = {0: (-6.3448349392860401388, 22.1396504998094068976, -30.0610568289666450593, 19.9990069333683970610,
                 -6.6910181737837595697, 1.0),
             5: (-39.6107919852202505218, 116.4422149550342161651, -121.4999627731334642623,
                 52.2273532792945524050, -7.6142658045872677172, 0.0),
             6: (20.3761213808791436958, -67.1451318825957197185, 83.1721004639847717481, -46.8919164181093621583,
                 10.7281392630428866124, 0.0),
             7: (7.3347098826795362023, -16.5672243527496524646, 9.5724507555993664382, -0.1890893225010595467,
                 0.5526637063753648783, 0.0),
             8: (32.8801774352459155182, -89.9916014847245016028, 87.8406057677205645007, -35.7075975946222072821,
                 4.2186562625665153803, 0.0),
             9: (-10.1588990526426760954, 22.6237489648532849093, -17.4152107770762969005, 6.2736448083240352160,
                 -0.6627209125361597559, 0.0),
             10: (-12.5401268098782561200, 32.2362340167355370113, -28.5903289514790976966,
                  10.3160881272450748458, -1.2636789001135462218, 0.0),
             11: (29.5553001484516038033, -82.1020315488359848644, 81.6630950584341412934, -34.7650769866611817349,
                  5.4106037898590422230, 0.0),
             12: (-41.7923486424390588923, 116.2662185791119533462, -114.9375291377009418170,
                  47.7457971078225540396, -7.0321379067945741781, 0.0),
             13: (20.3006925822100825485, -53.9020777466385396792, 50.2558364226176017553, -19.0082099341608028453,
                  2.3537586759714983486, 0.0)}
    x = 0.5  # b_i(x) = x (p5 x^5 + p4 x^4 + p3 x^3 + p2 x^2 + p1 x + p0)
    return tuple(x * sum(coef * x ** (5 - k) for k, coef in enumerate(polys[i])) if i in polys else 0.0
                 for i in range(14))


_D8_B = (14005451 / 335480064, 0.0, 0.0, 0.0, 0.0, -59238493 / 1068277825, 181606767 / 758867731,
         561292985 / 797845732, -1041891430 / 1371343529, 760417239 / 1151165299, 118820643 / 751138087,
         -528747749 / 2220607170, 1 / 4, 0.0)
_D8_B_HAT = (13451932 / 455176623, 0.0, 0.0, 0.0, 0.0, -808719846 / 976000145, 1757004468 / 5645159321,
             656045339 / 265891186, -3867574721 / 1518517206, 465885868 / 322736535, 53011238 / 667516719, 2 / 45,
             0.0, 0.0)
DOPRI8 = ButcherTableau(
    "dopri8", 8,
    c=(0.0, 1 / 18, 1 / 12, 1 / 8, 5 / 16, 3 / 8, 59 / 400, 93 / 200, 5490023248 / 9719169821, 13 / 20,
       1201146811 / 1299019798, 1.0, 1.0, 1.0),
    a=((), (1 / 18,), (1 / 48, 1 / 16), (1 / 32, 0.0, 3 / 32), (5 / 16, 0.0, -75 / 64, 75 / 64),
       (3 / 80, 0.0, 0.0, 3 / 16, 3 / 20),
       (29443841 / 614563906, 0.0, 0.0, 77736538 / 692538347, -28693883 / 1125000000, 23124283 / 1800000000),
       (16016141 / 946692911, 0.0, 0.0, 61564180 / 158732637, 22789713 / 633445777, 545815736 / 2771057229,
        -180193667 / 1043307555),
       (39632708 / 573591083, 0.0, 0.0, -433636366 / 683701615, -421739975 / 2616292301, 100302831 / 723423059,
        790204164 / 839813087, 800635310 / 3783071287),
       (246121993 / 1340847787, 0.0, 0.0, -37695042795 / 15268766246, -309121744 / 1061227803,
        -12992083 / 490766935, 6005943493 / 2108947869, 393006217 / 1396673457, 123872331 / 1001029789),
       (-1028468189 / 846180014, 0.0, 0.0, 8478235783 / 508512852, 1311729495 / 1432422823,
        -10304129995 / 1701304382, -48777925059 / 3047939560, 15336726248 / 1032824649,
        -45442868181 / 3398467696, 3065993473 / 597172653),
       (185892177 / 718116043, 0.0, 0.0, -3185094517 / 667107341, -477755414 / 1098053517,
        -703635378 / 230739211, 5731566787 / 1027545527, 5232866602 / 850066563, -4093664535 / 808688257,
        3962137247 / 1805957418, 65686358 / 487910083),
       (403863854 / 491063109, 0.0, 0.0, -5068492393 / 434740067, -411421997 / 543043805, 652783627 / 914296604,
        11173962825 / 925320556, -13158990841 / 6184727034, 3936647629 / 1978049680, -160528059 / 685178525,
        248638103 / 1413531060, 0.0),
       _D8_B[:13]),
    b=_D8_B, b_error=tuple(b - bh for b, bh in zip(_D8_B, _D8_B_HAT)), mid=_dopri8_mid())

# Every registered Runge-Kutta method (RK38 is only the Adams methods' starter).
TABLEAUX = {t.name: t for t in (EULER, MIDPOINT, RK4, BOSH3, DOPRI5, TSIT5, HEUN2, HEUN3, ADAPTIVE_HEUN, FEHLBERG2,
                                DOPRI8)}
