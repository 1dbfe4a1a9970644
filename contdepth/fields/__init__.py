"""Vector fields dpsi/dt = F(psi, theta(t)): the model. Each is an ``nn.Module`` with ``forward(t, psi)``."""
from .base import ControlledField, smoothness
from .conv import ConvCubicFriction, ConvNormResidual, ConvResidual
from .dense import AntisymmetricResidual, CubicFriction, DenseResidual
from .hamiltonian import Hamiltonian
from .pde import PDEStencil

__all__ = ["ControlledField", "CubicFriction", "DenseResidual", "ConvResidual", "ConvCubicFriction",
           "ConvNormResidual", "PDEStencil", "Hamiltonian", "AntisymmetricResidual", "smoothness"]
