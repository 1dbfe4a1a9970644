"""Training as optimal control (seed 003; issue 24): the discrete maximum principle of a
Runge-Kutta network.

* :func:`costates`: states psi_k, costates p_k = dL/dpsi_k (the discrete adjoint, the symplectic
  partner of the state's Runge-Kutta method), the Hamiltonians H_k and dL/dtheta = h dH_k/dtheta
  per control knot (:class:`Costates`);
* :class:`EMSA`: training by the extended method of successive approximations (Li, Chen, Tai &
  E 2018), a ``torch.optim``-like object whose ``step(x, loss_fn)`` is one forward-backward
  sweep and a few steps on each knot's augmented Hamiltonian.
"""
from .emsa import EMSA
from .pontryagin import Costates, costates

__all__ = ["Costates", "costates", "EMSA"]
