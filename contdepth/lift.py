"""Zero augmentation: the lift of an input into a larger state space before the flow."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .errors import check_positive_int


class ZeroAugment(nn.Module):
    """Append zeros along axis 1 so a (B, c, ...) input becomes (B, size, ...).

    The augmentation of Dupont et al. 2019 (augmented neural ODEs) and seed 002 sec. 5.1/5.2:
    a flow cannot cross trajectories in the input space, but can in a larger one. For points
    (B, d) it pads features (x, 0, ..., 0); for images (B, C, H, W) it appends zero channels.
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = check_positive_int("size", size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, d, ...) -> (B, size, ...): x in the first d channels, zeros after (seed 002 sec. 5.1).
        Raises ``ValueError`` if x has fewer than 2 axes or more than ``size`` channels."""
        if x.dim() < 2 or x.shape[1] > self.size:
            raise ValueError(f"ZeroAugment({self.size}) needs an input (B, c, ...) with c <= {self.size}, "
                             f"got shape {tuple(x.shape)}")
        return F.pad(x, (0, 0) * (x.dim() - 2) + (0, self.size - x.shape[1]))

    def extra_repr(self) -> str:
        """``size=N`` in the module's repr."""
        return f"size={self.size}"
