"""The base class of every vector field: dpsi/dt = F(psi, theta(t)) with theta on a control grid."""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import check_choice
from ..grid import ControlGrid

ACTIVATIONS = {"relu": F.relu, "tanh": torch.tanh, "identity": lambda x: x}


def activation_fn(name: str):
    """The activation called ``name`` (one of ``ACTIVATIONS``)."""
    check_choice("activation", name, ACTIVATIONS)
    return ACTIVATIONS[name]


class ControlledField(nn.Module):
    """A vector field whose parameters theta(t) live on a :class:`ControlGrid`.

    Subclasses register their time-dependent parameters with :meth:`add_control` (a leading
    control axis of length ``grid.n``) and implement :meth:`vector_field` and
    :meth:`check_state`. ``forward(t, psi)`` makes the field a torchdiffeq-compatible function.
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

    def theta_at(self, t: float, cell: int | None = None,
                 knots: list[dict[str, torch.Tensor]] | None = None) -> dict[str, torch.Tensor]:
        """theta(t) from the knot values ``knots`` (default: this field's parameters).

        For piecewise-constant theta, ``cell`` (if given) overrides the cell containing ``t``.
        """
        if knots is None:
            params = {name: getattr(self, name) for name in self.control_names}
            if self.grid.interp == "constant":
                l = self.grid.cell(t) if cell is None else cell
                return {name: p[l] for name, p in params.items()}
            knots = self.knot_thetas()
        if self.grid.interp == "constant":
            return knots[self.grid.cell(t) if cell is None else cell]
        l, r, w = self.grid.weights(t)
        return {name: torch.lerp(knots[l][name], knots[r][name], w) for name in self.control_names}

    def forward(self, t: float | torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        """dpsi/dt at time ``t``."""
        t = t.item() if isinstance(t, torch.Tensor) else float(t)
        return self.vector_field(psi, self.theta_at(t))

    def vector_field(self, psi: torch.Tensor, theta: dict[str, torch.Tensor]) -> torch.Tensor:
        """F(psi, theta) for the knot values ``theta``."""
        raise NotImplementedError

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
