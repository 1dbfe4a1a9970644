"""MNIST classifiers built from contdepth fields: image -> stem -> ODE block -> head.

* ``pde1`` / ``pde2``: seed 000 ch. 4. The 1x28x28 image evolves through ``depth`` layers of
  the PDE-stencil operator D (eq. 39 / eq. 40), ``depth`` control knots on [0, depth], forward
  Euler with h = 1 (one step per knot = one layer); then a 3-layer linear head (784-128-64-10,
  ReLU between the layers) and softmax (in the cross-entropy loss). ``block`` chooses the layer:

  - ``"seed"`` (default): seed 000's block psi <- ReLU(psi + D psi) (eq. 26, sec. 4.1: the skip
    inside the ReLU), a projected Euler step: the linear field D (identity activation), Euler,
    then ``project=torch.relu`` (the projection onto psi >= 0). h enters as ReLU(psi + h D psi);
    on the default state grid h = 1 (seed 000 eq. 24 sets dt = 1), so each layer is exactly
    ReLU(psi + D_l psi); :meth:`ODEClassifier.set_solver` with more steps makes h = depth/steps.
  - ``"ode"``: the ODE form psi <- psi + h ReLU(D psi), Euler on the field ReLU(D psi).
* ``resnet``: seed 000 control "c_ResNet": the same with the 3x3 convolution K psi + b: the
  seed block ReLU(psi + K_l psi + b_l) (linear ConvResidual field, projected Euler), or the ODE
  form psi + ReLU(K_l psi + b_l). Both start from the ``Conv2d``-style initial K, b divided by
  ``depth`` (at depth 50 the unscaled initial ODE-form network amplifies its input ~10^3-fold).
* ``cubic``: seed 002 sec. 5.2: input zero-augmented to 10 channels, ConvCubicFriction (eq. 75)
  with 20 knots on [0, 20], 20 Euler steps (h = 1, so eq. 110's scaled parameters are the
  parameters), global max pool -> 10 logits; all parameters (gamma too) start at zero;
  gamma is kept in [0, ``CUBIC_GAMMA_MAX``] = [0, 1e-3]: friction, never anti-friction, and
  explicit Euler stays stable on the friction term for states |x| < sqrt(2 / (3 * 1e-3)) ~ 26
  (seed 002's trained value, 4.8e-4, lies inside; unbounded, Adam drove it to 0.018 in one epoch
  with states ~19 and the solve went non-finite in epoch 2).
  (3*3*10*10 + 10) * 20 + 1 = 18,201 parameters. The state is kept channels-last (faster on CPU).
* ``odenet``: Chen et al. 2018's ODE-Net: a downsampling stem (3x3 conv, two 4x4 stride-2
  convs, GroupNorm with 8 channels per group, ReLU) to ``width`` x 7 x 7, their two-convolution
  field (:class:`~contdepth.fields.ConvNormResidual`) on [0, 1] (``depth`` knots, 1 =
  autonomous) solved by dopri5 with the adjoint, then GroupNorm, ReLU, global average pool, linear.

Every model is a :class:`ODEClassifier`; :meth:`ODEClassifier.set_solver` re-evaluates the same
trained field with another integrator or number of steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..block import ODEBlock
from ..errors import check_choice, check_positive_int
from ..fields import ConvCubicFriction, ConvNormResidual, ConvResidual, PDEStencil
from ..grid import ControlGrid
from ..lift import ZeroAugment
from ..solvers import METHODS

__all__ = ["ODEClassifier", "build_mnist_model", "MNIST_MODELS", "DEFAULT_DEPTH", "BLOCKS"]

MNIST_MODELS = ("pde1", "pde2", "resnet", "cubic", "odenet")
"""The model names of :func:`build_mnist_model`: seed 000's pde1, pde2 and conv ResNet, seed 002's cubic net, Chen et al.'s ODE-Net."""
BLOCKS = ("seed", "ode")
"""The ``block=`` choices of pde1, pde2 and resnet: seed 000's ReLU(psi + h f(psi)), or psi + h ReLU(f(psi))."""
CUBIC_GAMMA_MAX = 1e-3
"""The upper bound on the cubic net's learned friction gamma (its range is [0, 1e-3])."""
DEFAULT_DEPTH = {"pde1": 15, "pde2": 15, "resnet": 15, "cubic": 20, "odenet": 1}
"""Control knots (= Euler layers) of each model when ``depth`` is not given."""


class GlobalMaxPool(nn.Module):
    """(B, C, H, W) -> (B, C): the maximum over each channel map."""

    def forward(self, x: Tensor) -> Tensor:
        """max over the two spatial axes: (B, C, H, W) -> (B, C)."""
        return x.amax(dim=(-2, -1))


class ChannelsLast(nn.Module):
    """The identity, with the result in channels-last memory layout: the cubic net's 10-channel
    convolutions then run 1.4x faster per training step on CPU (docs/PERFORMANCE.md)."""

    def forward(self, x: Tensor) -> Tensor:
        """``x`` in channels-last memory format (same values and shape)."""
        return x.contiguous(memory_format=torch.channels_last)


class ODEClassifier(nn.Module):
    """``head(block(stem(x)))`` with a continuous-depth :class:`~contdepth.ODEBlock` in the middle.

    The block counts function evaluations: ``nfe_totals()`` returns the forward and backward
    evaluations summed over every training call (``forward`` in training mode) so far.
    """

    def __init__(self, stem: nn.Module, block: ODEBlock, head: nn.Module, *, name: str) -> None:
        super().__init__()
        self.stem, self.block, self.head, self.name = stem, block, head, name
        self._stats: list = []

    def forward(self, x: Tensor) -> Tensor:
        """head(block(stem(x))): logits (B, 10); in training, records the block's solver statistics for :meth:`nfe_totals`."""
        z = self.block(self.stem(x))
        if self.training and torch.is_grad_enabled():
            self._record(self.block.stats)
        return self.head(z)

    @torch.compiler.disable
    def _record(self, stats) -> None:
        """Run eagerly under torch.compile: traced, the growing list would recompile every call."""
        self._stats.append(stats)

    def set_solver(self, method: str, steps: int | None = None) -> None:
        """Evaluate the same field with ``method`` and ``steps`` (None: adaptive, or one per knot)."""
        check_choice("method", method, METHODS)
        if method == "dopri5" and steps is not None:
            raise ValueError(f"steps must be None for method='dopri5', got {steps}")
        if steps is not None:
            check_positive_int("steps", steps)
        self.block.method, self.block.steps = method, steps

    def nfe_totals(self) -> dict[str, int]:
        """Function evaluations summed over the recorded training calls (forward and backward)."""
        return {
            "calls": len(self._stats),
            "nfe_forward": sum(s.forward.nfe for s in self._stats),
            "nfe_backward": sum(s.backward.nfe for s in self._stats),
        }


def _mlp_head(features: int) -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(features, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(),
                         nn.Linear(64, 10))


def build_mnist_model(name: str, depth: int | None = None, *, width: int = 64, rtol: float = 1e-3,
                      atol: float = 1e-3, block: str = "seed") -> ODEClassifier:
    """The MNIST model ``name`` (one of ``MNIST_MODELS``) with ``depth`` control knots.

    ``depth`` defaults to ``DEFAULT_DEPTH[name]``; ``cubic`` requires 20 (its 18,201 parameters
    assume it). ``width``, ``rtol`` and ``atol`` apply to ``odenet`` only. ``block`` (one of
    ``BLOCKS``, for ``pde1``, ``pde2``, ``resnet``): ``"seed"``, seed 000's layer
    ReLU(psi + h f(psi)) with f linear (eq. 26: Euler, then ``project=torch.relu``), or
    ``"ode"``, psi + h ReLU(f(psi)); h = 1 on the default state grid (module docstring).

    Raises ``ValueError`` for an unknown ``name`` or ``block``, a ``block`` other than "seed" for
    cubic or odenet, a cubic ``depth`` other than 20 or a ``width`` that is not a multiple of 8;
    ``TypeError``/``ValueError`` for a ``depth`` or ``width`` that is not an int >= 1.

    Example: ``model = build_mnist_model("resnet", 15)``; ``model(torch.rand(8, 1, 28, 28))`` is (8, 10).
    """
    check_choice("model", name, MNIST_MODELS)
    check_choice("block", block, BLOCKS)
    depth = DEFAULT_DEPTH[name] if depth is None else check_positive_int("depth", depth)
    if name in ("pde1", "pde2", "resnet"):
        grid = ControlGrid(0.0, float(depth), n=depth)
        activation = "identity" if block == "seed" else "relu"
        if name == "resnet":
            field = ConvResidual(1, grid, activation=activation)
            with torch.no_grad():  # (K x + b) / depth: the flow's total growth stays O(1) at any depth
                field.weight.div_(depth)
                field.bias.div_(depth)
        else:
            field = PDEStencil(1, grid, variant=name, activation=activation)
        ode = ODEBlock(field, method="euler", steps=depth, gradient="backprop",
                       project=torch.relu if block == "seed" else None)
        return ODEClassifier(nn.Identity(), ode, _mlp_head(28 * 28), name=name)
    if block != "seed":
        raise ValueError(f"block={block!r} is for the models pde1, pde2, resnet; model {name!r} has its own field")
    if name == "cubic":
        if depth != 20:
            raise ValueError(f"depth for model 'cubic' is fixed at 20 by seed 002 sec. 5.2, got {depth}")
        field = ConvCubicFriction(10, ControlGrid(0.0, 20.0, n=20), gamma=0.0, learn_gamma=True,
                                  gamma_min=0.0, gamma_max=CUBIC_GAMMA_MAX)
        block = ODEBlock(field, method="euler", steps=20, gradient="backprop")
        return ODEClassifier(nn.Sequential(ZeroAugment(10), ChannelsLast()), block, GlobalMaxPool(), name=name)
    check_positive_int("width", width)
    if width % 8:
        raise ValueError(f"width must be a multiple of 8 (GroupNorm with 8 channels per group), got {width}")
    # 8 channels per group: with one channel per group the head's norm + average pool keeps
    # almost nothing of a channel but the shape of its distribution, and training crawls
    groups = width // 8
    stem = nn.Sequential(
        nn.Conv2d(1, width, 3, 1), nn.GroupNorm(groups, width), nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1), nn.GroupNorm(groups, width), nn.ReLU(),
        nn.Conv2d(width, width, 4, 2, 1),
    )
    field = ConvNormResidual(width, ControlGrid(0.0, 1.0, n=depth), groups=groups)
    block = ODEBlock(field, method="dopri5", gradient="adjoint", rtol=rtol, atol=atol)
    head = nn.Sequential(nn.GroupNorm(groups, width), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(width, 10))
    return ODEClassifier(stem, block, head, name=name)
