"""The base class of every vector field: dpsi/dt = F(psi, theta(t)) with theta on a control grid."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice
from ..grid import ControlGrid
from ..solution import StepCounts
from ..terms import Term, check_params_match, time_tensor
from ..timetol import slack
from ..tree import leaves

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "identity": lambda x: x}
"""The ``activation=`` names of the fields: relu, tanh, identity (act(x) = x)."""
# d act / dx applied to a cotangent, from the activation's output (what the hand-written VJPs keep)
ACTIVATION_VJPS = {"relu": lambda g, out: torch.ops.aten.threshold_backward(g, out, 0),
                   "tanh": torch.ops.aten.tanh_backward, "identity": lambda g, out: g}
"""name -> (g, out) -> g * act'(x), computed from out = act(x) (what the hand-written VJPs keep)."""


def activation_fn(name: str):
    """The activation called ``name`` (one of ``ACTIVATIONS``)."""
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


class ControlledField(nn.Module):
    """A vector field whose parameters theta(t) live on a :class:`ControlGrid`.

    Subclasses register their time-dependent parameters with :meth:`add_control` (a leading
    control axis of length ``grid.n``; a field may have none) and implement
    :meth:`vector_field` and :meth:`check_state`. ``forward(t, psi)`` makes the field a
    torchdiffeq-compatible function; :meth:`make_term` is what contdepth's engine integrates.
    """

    def __init__(self, grid: ControlGrid) -> None:
        super().__init__()
        if not isinstance(grid, ControlGrid):
            raise TypeError(f"grid must be a contdepth.ControlGrid, got {type(grid).__name__}")
        self.grid = grid
        self.control_names: tuple[str, ...] = ()

    def add_control(self, name: str, values: torch.Tensor) -> None:
        """Register ``values`` (n, ...) as the knot values of the parameter ``name``."""
        if values.shape[0] != self.grid.n:
            raise ValueError(f"{name} needs a leading control axis of length {self.grid.n}, got {tuple(values.shape)}")
        self.register_parameter(name, nn.Parameter(values))
        self.control_names = self.control_names + (name,)

    def knot_thetas(self) -> list[dict[str, torch.Tensor]]:
        """theta at every knot, as views (one ``unbind`` per parameter, cheap to differentiate)."""
        columns = [getattr(self, name).unbind(0) for name in self.control_names]
        return [dict(zip(self.control_names, values)) for values in zip(*columns)]

    def theta_at(self, t: float, cell: int | None = None, knots: list[dict[str, torch.Tensor]] | None = None,
                 *, side: int = 1) -> dict[str, torch.Tensor]:
        """theta(t) from the knot values ``knots`` (default: this field's parameters).

        ``side``: at a knot of piecewise-constant theta, the value from the right (+1) or the
        left (-1); ``cell`` (if given) overrides the cell altogether.
        """
        grid = self.grid
        if not self.control_names:
            return {}
        if grid.interp == "constant":
            l = grid.cell(t, side) if cell is None else cell
            if knots is None:
                return {name: getattr(self, name)[l] for name in self.control_names}
            return knots[l]
        l, r, w = grid.weights(t, side)
        if knots is None:
            return {name: torch.lerp(getattr(self, name)[l], getattr(self, name)[r], w) for name in self.control_names}
        return {name: torch.lerp(knots[l][name], knots[r][name], w) for name in self.control_names}

    def forward(self, t: float | torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """dpsi/dt at time ``t`` (torchdiffeq's signature). A tensor t stays in the graph of
        linearly interpolated theta (the weight is computed from it, not from a float copy)."""
        tt = t if isinstance(t, torch.Tensor) else torch.tensor(float(t), dtype=psi.dtype, device=psi.device)
        grid, t_float = self.grid, float(tt.detach())
        if grid.interp == "constant":
            theta = self.theta_at(t_float, side=0)
        else:
            l, r, _ = grid.weights(t_float, side=0)
            w = ((tt - grid.t0) / grid.dt - l).clamp(0.0, 1.0)
            theta = {name: getattr(self, name)[l] + w * (getattr(self, name)[r] - getattr(self, name)[l])
                     for name in self.control_names}
        return self.vector_field(tt, psi, theta)

    def vector_field(self, t: torch.Tensor, psi: torch.Tensor, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        """F(t, psi, theta) for the knot values ``theta`` at time ``t`` (a 0-dim tensor of psi's
        dtype and device; the built-in fields do not depend on t other than through theta)."""
        raise NotImplementedError

    def vector_field_vjp(self, t: torch.Tensor, psi: torch.Tensor, theta: dict[str, torch.Tensor], out: torch.Tensor,
                         cotangent: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Optional, hand-written: (cotangent^T dF/dpsi, {name: cotangent^T dF/d name}) at
        out = F(t, psi, theta), for the knot values of ``theta`` and the field's other parameters (a
        name left out has gradient zero). A field that defines it is integrated by fixed-step
        gradients without an autograd graph; tests/test_fused.py checks it against autograd."""
        raise NotImplementedError

    @property
    def vjp_uses_output(self) -> bool:
        """False when :meth:`vector_field_vjp` ignores ``out`` (a gradient tape then keeps only the
        stage states, not the stage derivatives)."""
        return True

    @property
    def has_vjp(self) -> bool:
        """True when :meth:`vector_field_vjp` belongs to the same class as :meth:`vector_field` (a
        subclass that changes the field but not its VJP falls back to autograd)."""
        owner = lambda name: next(c for c in type(self).__mro__ if name in vars(c))
        return owner("vector_field_vjp") is not ControlledField and owner("vector_field_vjp") is owner("vector_field")

    def make_term(self, *, params=None, jump_t=(), declare_jumps: bool = True) -> "ControlTerm":
        """This field as a term of the engine (see :class:`ControlTerm`)."""
        return ControlTerm(self, params=params, jump_t=jump_t, declare_jumps=declare_jumps)

    def check_state(self, psi: torch.Tensor) -> None:
        """Raise ``ValueError`` if ``psi`` does not have a shape this field accepts."""
        raise NotImplementedError

    def refine_control(self, factor: int) -> "ControlledField":
        """A copy on ``grid.refine(factor)`` that represents the same function theta(t)."""
        grid = self.grid.refine(factor)
        new = copy.deepcopy(self)
        new.grid = grid
        for name in self.control_names:
            old = getattr(self, name)
            setattr(new, name, nn.Parameter(self.grid.prolong(old.detach(), factor).clone(),
                                            requires_grad=old.requires_grad))
        return new


def trainable(field: nn.Module) -> list[torch.Tensor]:
    """Trainable parameters: control parameters (in ``control_names`` order), then the others."""
    names = getattr(field, "control_names", ())
    control = [getattr(field, n) for n in names if getattr(field, n).requires_grad]
    ids = {id(p) for p in control}
    return control + [p for p in field.parameters() if p.requires_grad and id(p) not in ids]


class ControlTerm(Term):
    """A :class:`ControlledField` for the engine: each stage reads theta at its time from the
    side the solver gives (the exact knot choice), and the interior knots, where theta jumps
    (constant) or bends (linear), are forced step ends of adaptive solves unless
    ``declare_jumps=False``: a step across a kink of linear theta loses the pair's order and its
    error estimate does not see it (dopri5 at rtol 1e-6 was 1.5e-3 off, tests/test_core_open.py)."""

    def __init__(self, field: ControlledField, *, params=None, jump_t=(), declare_jumps: bool = True) -> None:
        self.field = field
        self.params_explicit = params is not None
        self._params = trainable(field) if params is None else list(params)
        self._jumps = tuple(sorted(set(field.grid.breaks() if declare_jumps else []) | {float(t) for t in jump_t}))
        self.counts = StepCounts()
        self._knots: list[dict[str, torch.Tensor]] = []
        self._knots_grad: bool | None = None
        self._slots: dict[str, int] | None = None

    def __call__(self, t: float, y, side: int):
        self.counts.nfe += 1
        first = y if isinstance(y, torch.Tensor) else leaves(y)[0]
        return self.field.vector_field(time_tensor(t, first.dtype, first.device), y,
                                       self.field.theta_at(t, knots=self.knots(), side=side))

    def half(self, t: float, y, side: int, i: int):
        """Component ``i`` of a pair-state field, alone when the field defines ``vector_field_half``."""
        compute = getattr(self.field, "vector_field_half", None)
        if compute is None:
            return self(t, y, side)[i]
        self.counts.nfe += 1
        first = leaves(y)[0]
        return compute(time_tensor(t, first.dtype, first.device), y, self.field.theta_at(t, knots=self.knots(), side=side), i)

    @property
    def has_vjp(self) -> bool:
        own = {id(p) for p in self.field.parameters()}
        return self.field.has_vjp and all(id(p) in own for p in self._params)

    @property
    def vjp_uses_output(self) -> bool:
        return self.field.vjp_uses_output

    def vjp(self, t: float, y, side: int, f, cotangent, grads: list[torch.Tensor], scale: float = 1.0):
        """The field's :meth:`~ControlledField.vector_field_vjp`; a knot value's gradient goes to its
        knot (to both neighbours, weighted 1 - w and w, for linear theta)."""
        grid, field = self.field.grid, self.field
        l, r, w = (grid.cell(t, side), 0, 0.0) if grid.interp == "constant" else grid.weights(t, side)
        theta = field.theta_at(t, knots=self.knots(), cell=l, side=side)  # cell: used by constant theta only
        y_bar, named = field.vector_field_vjp(time_tensor(t, y.dtype, y.device), y, theta, f, cotangent)
        slots = self._grad_slots()
        for name, g in named.items():
            i = slots.get(name)
            if i is None:
                continue
            if name not in field.control_names:
                grads[i].add_(g, alpha=scale)
            elif not w:
                grads[i][l].add_(g, alpha=scale)
            else:
                grads[i][l].add_(g, alpha=scale * (1 - w))
                grads[i][r].add_(g, alpha=scale * w)
        return y_bar

    def _grad_slots(self) -> dict[str, int]:
        """Parameter name -> position in :meth:`params` (names of the field's own parameters)."""
        if self._slots is None:
            where = {id(p): i for i, p in enumerate(self._params)}
            self._slots = {name: where[id(p)] for name, p in self.field.named_parameters(recurse=False)
                           if id(p) in where}
        return self._slots

    def knots(self) -> list[dict[str, torch.Tensor]]:
        """The field's knot values as views, made once per term and grad mode (one ``unbind`` per
        parameter, and one node in the autograd graph, instead of an index per stage)."""
        mode = torch.is_grad_enabled()
        if self._knots_grad is not mode:
            self._knots, self._knots_grad = self.field.knot_thetas(), mode
        return self._knots

    def jumps(self) -> tuple[float, ...]:
        return self._jumps

    def params(self) -> list[torch.Tensor]:
        return self._params

    def module(self) -> torch.nn.Module:
        return self.field

    def param_pieces(self) -> list[tuple[tuple[torch.Tensor, ...], bool]]:
        """A control parameter as its knot views (the ones :meth:`knots` gives the stages)."""
        knots = self.knots()
        names = {id(getattr(self.field, name)): name for name in self.field.control_names}
        return [(tuple(k[names[id(p)]] for k in knots), True) if id(p) in names else ((p,), False)
                for p in self._params]

    def check_interval(self, t0: float, t1: float) -> None:
        grid = self.field.grid
        lo, hi = min(t0, t1), max(t0, t1)
        if lo < grid.t0 - slack(grid.t0) or hi > grid.t1 + slack(grid.t1):
            raise ValueError(f"[t0, t1] = [{t0}, {t1}] must lie inside the control grid [{grid.t0}, {grid.t1}]")

    def check_state(self, y0) -> None:
        self.field.check_state(y0)
        check_params_match(self.field.parameters(), y0, type(self.field).__name__)


def smoothness(field: ControlledField) -> torch.Tensor:
    """Seed 002 eq. 82: R = 1/(2 D) sum_l ||theta_l - theta_{l-1}||^2 over all control parameters."""
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a ControlledField, got {type(field).__name__}")
    total = sum(getattr(field, name).diff(dim=0).pow(2).sum() for name in field.control_names)
    return total / (2 * field.grid.dt)


def check_dims(name: str, psi: torch.Tensor, ndim: int, axis: int, size: int, layout: str) -> None:
    """Raise ``ValueError`` unless ``psi`` is ``ndim``-D with ``size`` entries on ``axis``."""
    if not isinstance(psi, torch.Tensor):
        raise TypeError(f"{name} state must be a torch.Tensor, got {type(psi).__name__}")
    if psi.dim() != ndim or psi.shape[axis] != size:
        raise ValueError(f"{name} expects a state of shape {layout} with {size} on axis {axis}, "
                         f"got shape {tuple(psi.shape)}")
