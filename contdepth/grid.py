"""The control grid: where the weights theta(t) live, independent of the solver's state grid.

Seed 004 ch. 3 (fig. 3.2): theta(t) is held at ``n`` control knots over [t0, t1]; the solver
walks its own state grid. Two interpolations:

* ``"constant"``: knot l holds on [t0 + l*D, t0 + (l+1)*D), D = (t1 - t0)/n (the last cell is
  closed on the right). Refining by r repeats each knot r times: the same function theta(t).
* ``"linear"``: n >= 2 knots at t0 + l*D, D = (t1 - t0)/(n - 1), theta linear in between.
  Refining by r inserts r - 1 interpolated knots per interval: (n - 1)*r + 1 knots.
"""
from __future__ import annotations

import bisect
import math
from fractions import Fraction
from dataclasses import dataclass

import torch

from .errors import check_choice, check_positive_int

INTERPOLATIONS = ("constant", "linear")


@dataclass(frozen=True)
class ControlGrid:
    """``n`` control knots for theta(t) on [t0, t1] with interpolation ``interp``."""

    t0: float = 0.0
    t1: float = 1.0
    n: int = 1
    interp: str = "constant"

    def __post_init__(self) -> None:
        for name in ("t0", "t1"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise TypeError(f"ControlGrid {name} must be a finite float, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.t1 <= self.t0:
            raise ValueError(f"ControlGrid needs t1 > t0, got t0={self.t0}, t1={self.t1}")
        check_positive_int("ControlGrid n", self.n)
        check_choice("ControlGrid interp", self.interp, INTERPOLATIONS)
        if self.interp == "linear" and self.n < 2:
            raise ValueError(f"ControlGrid n must be >= 2 for interp='linear', got {self.n}")
        object.__setattr__(self, "_dt", (self.t1 - self.t0) / self.intervals)
        span = Fraction(self.t1) - Fraction(self.t0)
        object.__setattr__(self, "_knot_times", tuple(float(Fraction(self.t0) + span * l / self.intervals)
                                                       for l in range(self.n)))

    @property
    def intervals(self) -> int:
        """Number of intervals between knot positions: n (constant) or n - 1 (linear)."""
        return self.n if self.interp == "constant" else self.n - 1

    @property
    def dt(self) -> float:
        """Knot spacing D."""
        return self._dt

    def knot_times(self) -> list[float]:
        """Constant: left ends of the cells; linear: knot positions (each rounded once from its exact value)."""
        return list(self._knot_times)

    def jumps(self) -> list[float]:
        """Interior times where theta(t) is discontinuous (none for linear interpolation)."""
        return self.knot_times()[1:] if self.interp == "constant" else []

    def breaks(self) -> list[float]:
        """Interior knots, where theta(t) is not smooth: it jumps (constant) or bends (linear)."""
        return self.knot_times()[1:] if self.interp == "constant" else self.knot_times()[1:-1]

    def cell(self, t: float, side: int = 1) -> int:
        """The interval whose theta holds at ``t``, clamped to [0, intervals - 1].

        Off a knot, the interval containing t. On a knot (a float within 1e-9 intervals of one:
        ``t1=0.4`` on knots at multiples of 0.4 means the knot), the interval to its right for
        ``side=+1`` and to its left for ``side=-1``: a solver stage sees the theta of the step it
        lies in (see :mod:`contdepth.solvers.rk`). ``side=0``: no snapping, the interval
        containing the float t exactly (right-continuous), so a caller that perturbs t by an ulp
        to choose a side (torchdiffeq at ``jump_t``) gets that side.
        """
        if side == 0:
            return min(bisect.bisect_right(self._knot_times, t) - 1, self.intervals - 1) if t >= self.t0 else 0
        p = (t - self.t0) / self._dt
        knot = round(p)
        c = (knot if side > 0 else knot - 1) if abs(p - knot) <= 1e-9 else math.floor(p)
        return min(max(c, 0), self.intervals - 1)

    def weights(self, t: float, side: int = 1) -> tuple[int, int, float]:
        """Linear interpolation (l, l + 1, w) with theta(t) = (1 - w) theta_l + w theta_{l+1}."""
        l = self.cell(t, side)
        w = (t - self.t0) / self.dt - l
        return l, min(l + 1, self.n - 1), min(max(w, 0.0), 1.0)

    def refine(self, factor: int) -> "ControlGrid":
        """The grid with ``factor`` times as many intervals over the same [t0, t1]."""
        check_positive_int("factor", factor)
        n = self.n * factor if self.interp == "constant" else (self.n - 1) * factor + 1
        return ControlGrid(t0=self.t0, t1=self.t1, n=n, interp=self.interp)

    def prolong(self, values: torch.Tensor, factor: int) -> torch.Tensor:
        """Knot values (n, ...) on the grid refined by ``factor``, representing the same theta(t)."""
        if values.shape[0] != self.n:
            raise ValueError(f"values must have a leading control axis of length {self.n}, got {tuple(values.shape)}")
        if self.interp == "constant":
            return values.repeat_interleave(factor, dim=0)
        w = torch.arange(factor, dtype=values.dtype, device=values.device) / factor
        w = w.view(1, factor, *([1] * (values.dim() - 1)))
        left, right = values[:-1].unsqueeze(1), values[1:].unsqueeze(1)
        inner = (left + w * (right - left)).flatten(0, 1)
        return torch.cat([inner, values[-1:]], dim=0)
