"""Training as optimal control (seed 003; seed 004 ch. 5): the discrete maximum principle of a
Runge-Kutta network, E-MSA, and Gauss-Newton with variable projection.

* :func:`costates`: states psi_k, costates p_k = dL/dpsi_k (the discrete adjoint, the symplectic
  partner of the state's Runge-Kutta method), the Hamiltonians H_k and dL/dtheta = h dH_k/dtheta
  per control knot (:class:`Costates`);
* :class:`EMSA`: training by the extended method of successive approximations (Li, Chen, Tai &
  E 2018), a ``torch.optim``-like object whose ``step(x, loss_fn)`` is one forward-backward
  sweep and a few steps on each knot's augmented Hamiltonian;
* :func:`time_smoothness` and :func:`ridge`: seed 004's regularisers pRegTh and pRegW;
* :func:`classifier_fit` and :class:`GaussNewtonVarPro`: seed 004's training, the classifier
  eliminated by its convex sub-problem and Gauss-Newton-CG on the network weights.
"""
from .emsa import EMSA
from .pontryagin import Costates, costates
from .regularisers import ridge, time_smoothness
from .varpro import GaussNewtonVarPro, VarProValue, classifier_fit

__all__ = ["Costates", "costates", "EMSA", "time_smoothness", "ridge", "classifier_fit", "GaussNewtonVarPro",
           "VarProValue"]
