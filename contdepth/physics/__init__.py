"""Physics views of continuous-depth networks, as numerical checks on a user's own model.

* adjoint as momentum (seed 002 eq. 10-11, 19-25): :func:`adjoint_trajectory` (checked by
  :func:`autograd_adjoints`),
  :func:`hamiltonian`, :func:`hamiltonian_along`, :func:`hamiltonian_jump`, :func:`hamiltonian_rate`;
* divergence, log-density and entropy (seed 002 eq. 28, 32): :func:`divergence_exact`,
  :func:`divergence_hutchinson`, :func:`log_density_trajectory`, :func:`entropy_rate`;
* path integral of the 1-D stencil block (seed 000 eq. 21-25, 33-38): :mod:`.path_integral`;
* the Fokker-Planck density of a 1-D stochastic ResNet (seed 003): :func:`fokker_planck_1d`;
* energies of the cubic-friction net (seed 002 eq. 33-36, 69-70, 83, 91-94, 103-108):
  :func:`lyapunov_energy`, :func:`energy_balance`, :func:`stationary_state`, :func:`gradient_flow_rate`.
"""

from .adjoint import AdjointTrajectory, adjoint_trajectory, autograd_adjoints
from .divergence import (
    DensityTrajectory,
    divergence_exact,
    divergence_hutchinson,
    entropy_rate,
    log_density_trajectory,
)
from .energy import EnergyBalance, energy_balance, gradient_flow_rate, lyapunov_energy, stationary_state
from .fokker_planck import fokker_planck_1d
from .hamiltonian import hamiltonian, hamiltonian_along, hamiltonian_jump, hamiltonian_rate
from .path_integral import (
    ContinuumError,
    continuum_errors,
    gaussian_kernel,
    lattice_kernel,
    path_sum,
    propagator,
    residual_propagate,
    stencil_kernel,
    step_weights,
    transfer_matrix,
)

__all__ = [
    "AdjointTrajectory",
    "adjoint_trajectory",
    "autograd_adjoints",
    "hamiltonian",
    "hamiltonian_along",
    "hamiltonian_jump",
    "hamiltonian_rate",
    "DensityTrajectory",
    "divergence_exact",
    "divergence_hutchinson",
    "entropy_rate",
    "fokker_planck_1d",
    "EnergyBalance",
    "energy_balance",
    "gradient_flow_rate",
    "lyapunov_energy",
    "stationary_state",
    "log_density_trajectory",
    "ContinuumError",
    "continuum_errors",
    "gaussian_kernel",
    "lattice_kernel",
    "path_sum",
    "propagator",
    "residual_propagate",
    "stencil_kernel",
    "step_weights",
    "transfer_matrix",
]
