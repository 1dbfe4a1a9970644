"""Terms: what the engine integrates, dy/dt = f(t, y), evaluated as ``term(t, y, side)``.

``t`` is a Python float (the engine keeps times on the host: no device sync per evaluation) and
``side`` says from which side the stage sees a discontinuity of f in t: +1 from the right (a
stage inside a step going forward), -1 from the left (the stage at the end of that step). A
field with piecewise-constant theta (a :class:`~contdepth.fields.ControlledField`) uses it to
pick the control knot exactly; a plain f(t, y) is evaluated one float-ulp to that side of a
declared jump, as torchdiffeq does.

Objects that know their own term (``ControlledField``) provide ``make_term()``; anything else
callable as ``func(t, y)`` is wrapped in a :class:`FuncTerm`. The engine sees only terms.
"""
from __future__ import annotations

import bisect
import functools
from typing import Callable, Iterable, Sequence

import torch

from .solution import StepCounts
from .timetol import close, slack
from .tree import State, detach, leaves


def tensor_cache(maxsize: int):
    """``functools.lru_cache`` for functions that build constant tensors, with a separate cache
    for inference mode: a tensor made under ``torch.inference_mode()`` cannot be saved for
    backward, so it must never be handed to a later solve that trains. Under ``torch.compile``
    the function is traced directly (its tensors become graph constants; asking for inference
    mode would break the graph)."""
    def decorate(fn):
        plain, inference = functools.lru_cache(maxsize=maxsize)(fn), functools.lru_cache(maxsize=maxsize)(fn)

        @functools.wraps(fn)
        def wrapper(*args):
            if torch.compiler.is_compiling():
                return fn(*args)
            return (inference if torch.is_inference_mode_enabled() else plain)(*args)

        wrapper.cache_clear = lambda: (plain.cache_clear(), inference.cache_clear())
        return wrapper
    return decorate


@tensor_cache(maxsize=4096)
def time_tensor(t: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """t as a 0-dim tensor, cached: fixed grids evaluate the same times at every training step.
    (The cached tensor is shared: a field must not modify t in place.)"""
    return torch.tensor(t, dtype=dtype, device=device)


class Term:
    """Base class: a right-hand side for the engine.

    ``counts`` receives one ``nfe`` per evaluation (the gradient methods point it at the
    forward or the backward counters).
    """

    counts: StepCounts
    params_explicit: bool = False  # True when the user named the parameters (adjoint_params)

    def __call__(self, t: float, y: State, side: int) -> State:
        raise NotImplementedError

    def half(self, t: float, y: State, side: int, i: int) -> State:
        """Component ``i`` of f(t, y) for a pair state y = (q, p) (split steppers use one half at
        a time). Default: the whole f, then its component; a term that can compute one half
        alone overrides this."""
        return self(t, y, side)[i]

    def jumps(self) -> tuple[float, ...]:
        """Times in the interior of the solve where f(t, y) jumps (forced step ends)."""
        return ()

    @property
    def has_vjp(self) -> bool:
        """True when :meth:`vjp` is implemented (then fixed-step gradients skip autograd's graph)."""
        return False

    @property
    def vjp_uses_output(self) -> bool:
        """False when :meth:`vjp` ignores its ``f`` (then a tape need not keep the stage derivatives)."""
        return True

    def vjp(self, t: float, y: State, side: int, f: State, cotangent: State, grads: list[torch.Tensor],
            scale: float = 1.0) -> State:
        """cotangent^T df/dy at (t, y), where f = term(t, y, side); adds scale * cotangent^T df/dp
        into ``grads`` (one buffer per tensor of :meth:`params`, in place). Only if :attr:`has_vjp`."""
        raise NotImplementedError(f"{type(self).__name__} has no hand-written vector-Jacobian product")

    def params(self) -> list[torch.Tensor]:
        """The tensors that checkpoint and adjoint differentiate with respect to."""
        return []

    def module(self) -> torch.nn.Module | None:
        """The module whose parameters and buffers f reads when called (None: none known). A
        backward pass that recomputes f checks they are still the tensors of the forward pass."""
        return None

    def param_pieces(self) -> list[tuple[tuple[torch.Tensor, ...], bool]]:
        """Per tensor of :meth:`params`, what a backward step differentiates: ``((p,), False)``, or
        ``(views, True)`` whose gradients stack into p's (a control parameter's knots: a step then
        touches only the knots it used). Called in the grad mode of the evaluations it serves."""
        return [((p,), False) for p in self.params()]

    def check_interval(self, t0: float, t1: float) -> None:
        """Raise ``ValueError`` if the term cannot be integrated between t0 and t1."""

    def check_state(self, y0: State) -> None:
        """Raise if ``y0`` is not a state this term accepts (shape, dtype, device)."""

    def adjoint_term(self, augmented: Term) -> Term:
        """What the adjoint integrates backward, given the augmented drift (y, a, g) of this term:
        that drift itself; an SDE adds its noise to y."""
        return augmented


def check_returned(f: State, y: State, what: str) -> None:
    """Raise ``ValueError`` unless ``f`` has the structure of ``y``, and per tensor its shape, dtype
    and device (``what`` names the callable: a field's ``func``, a noise, a ``project``)."""
    if isinstance(y, torch.Tensor) != isinstance(f, torch.Tensor) or (
            not isinstance(y, torch.Tensor) and (not isinstance(f, tuple) or len(f) != len(y))):
        raise ValueError(f"{what} must return the structure of the state y: got {type(f).__name__}"
                         f"{'' if isinstance(f, torch.Tensor) else f' of length {len(f)}' if isinstance(f, tuple) else ''}"
                         f" for a state of type {type(y).__name__}")
    for i, (fi, yi) in enumerate(zip(leaves(f), leaves(y))):
        name = what if isinstance(y, torch.Tensor) else f"{what} component {i}"
        if fi.shape != yi.shape:
            raise ValueError(f"{name} returned shape {tuple(fi.shape)}, but the state has shape {tuple(yi.shape)}")
        if fi.dtype != yi.dtype:
            raise ValueError(f"{name} returned dtype {fi.dtype}, but the state has dtype {yi.dtype}")
        if fi.device != yi.device:
            raise ValueError(f"{name} returned a tensor on {fi.device}, but the state is on {yi.device}")


def check_params_match(params: Iterable[torch.Tensor], y0: State, owner: str) -> None:
    """Raise ``ValueError`` if a floating parameter's dtype or device differs from the state's."""
    first = leaves(y0)[0]
    for p in params:
        if p.is_floating_point() and (p.dtype != first.dtype or p.device != first.device):
            raise ValueError(f"{owner} has parameters of dtype {p.dtype} on {p.device}, but the state y0 is "
                             f"{first.dtype} on {first.device}; move one to the other (e.g. func.to(y0.dtype))")


def trainable_leaves(out: State) -> list[torch.Tensor]:
    """The leaf tensors requiring grad that ``out`` was computed from (a walk of its autograd graph)."""
    found: dict[int, torch.Tensor] = {}
    stack, seen = [], set()
    for x in leaves(out):
        if x.grad_fn is not None:
            stack.append(x.grad_fn)
        elif x.requires_grad:
            found[id(x)] = x
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        var = getattr(node, "variable", None)  # an AccumulateGrad node: a leaf
        if var is not None:
            found.setdefault(id(var), var)
        stack.extend(n for n, _ in node.next_functions if n is not None)
    return list(found.values())


def owning_module(func: Callable) -> torch.nn.Module | None:
    """``func`` itself if it is an ``nn.Module``, the module of a bound method, else None."""
    owner = func if isinstance(func, torch.nn.Module) else getattr(func, "__self__", None)
    return owner if isinstance(owner, torch.nn.Module) else None


def default_params(func: Callable, y0: State, t0: float | None) -> list[torch.Tensor]:
    """What checkpoint/adjoint differentiate when the user names nothing: the trainable
    parameters of ``func`` if it is an ``nn.Module`` or a method of one (torchsde's ``sde.f``);
    for any other callable, every trainable tensor one evaluation f(t0, y0) is computed from
    (closures, globals, modules it calls), found by walking that evaluation's autograd graph.
    ``t0`` None: no probe evaluation (backprop, or no gradient wanted), so no parameters."""
    owner = owning_module(func)
    if owner is not None:
        return [p for p in owner.parameters() if p.requires_grad]
    if t0 is None or not torch.is_grad_enabled():
        return []
    first = leaves(y0)[0]
    with torch.enable_grad():
        out = func(time_tensor(t0, first.dtype, first.device), detach(y0))
    return trainable_leaves(out) if isinstance(out, (torch.Tensor, tuple)) else []


class FuncTerm(Term):
    """Any callable ``func(t, y)`` with t a 0-dim tensor of y's dtype and device.

    ``params``: what checkpoint/adjoint differentiate (default: :func:`default_params`, probing
    f(probe_t, y0) when func is not a module or a module's method and ``probe_t`` is given).
    ``jump_t``: user-declared times where func jumps.
    """

    def __init__(self, func: Callable, y0: State, *, params: Sequence[torch.Tensor] | None = None,
                 jump_t: Sequence[float] = (), probe_t: float | None = None) -> None:
        if not callable(func):
            raise TypeError(f"func must be callable as func(t, y), got {type(func).__name__}")
        self.func = func
        first = leaves(y0)[0]
        self.dtype, self.device = first.dtype, first.device
        self.params_explicit = params is not None
        if params is None:
            params = default_params(func, y0, probe_t)
        self._params = list(params)
        self._jumps = tuple(sorted(float(t) for t in jump_t))
        self._checked = False
        self.counts = StepCounts()

    def __call__(self, t: float, y: State, side: int) -> State:
        self.counts.nfe += 1
        tt = time_tensor(t, self.dtype, self.device)
        if side and self._jumps and self._on_jump(t):
            tt = torch.nextafter(tt, tt + side)
        out = self.func(tt, y)
        if not self._checked:
            check_returned(out, y, "func")
            self._checked = True
        return out

    def _on_jump(self, t: float) -> bool:
        i = bisect.bisect_left(self._jumps, t - slack(t))
        return i < len(self._jumps) and close(self._jumps[i], t)

    def jumps(self) -> tuple[float, ...]:
        return self._jumps

    def params(self) -> list[torch.Tensor]:
        return self._params

    def module(self) -> torch.nn.Module | None:
        return owning_module(self.func)

    def check_state(self, y0: State) -> None:
        owner = owning_module(self.func)
        if owner is not None:
            check_params_match(owner.parameters(), y0, f"func ({type(owner).__name__})")


def as_term(func: object, y0: State, *, params: Sequence[torch.Tensor] | None = None,
            jump_t: Sequence[float] = (), declare_jumps: bool = True, probe_t: float | None = None) -> Term:
    """The term of ``func``: its own (``func.make_term``) or a :class:`FuncTerm`.
    ``declare_jumps=False`` asks a term with built-in jumps (a control grid's knots) to hide them;
    ``probe_t``: where to probe a plain callable for its trainable tensors (:func:`default_params`)."""
    make = getattr(func, "make_term", None)
    if make is not None:
        return make(params=params, jump_t=jump_t, declare_jumps=declare_jumps)
    return FuncTerm(func, y0, params=params, jump_t=jump_t, probe_t=probe_t)


class SDETerm(Term):
    """dX = f(t, X) dt + g(t, X) dW for the stochastic steppers (seed 003): the drift ``drift``
    (any term), the diagonal diffusion ``noise`` (a float nu >= 0: additive noise nu dW; or a
    callable g(t, y) returning one coefficient per component of y) and the Brownian path ``bm``
    (queried by interval, so every replay of a step sees the same increment).
    Called as a term, it is the drift; steppers ask for ``diffusion`` and ``increment``.
    """

    def __init__(self, drift: Term, noise: float | Callable, bm, y0: State,
                 params: Sequence[torch.Tensor] | None = None, probe_t: float | None = None) -> None:
        self.drift, self.noise, self.bm = drift, noise, bm
        self.additive = not callable(noise)
        first = leaves(y0)[0]
        self.dtype, self.device = first.dtype, first.device
        if params is None and not self.additive:
            params = default_params(noise, y0, probe_t)
        self._noise_params = list(params or [])
        self._checked = False

    @property
    def counts(self) -> StepCounts:
        return self.drift.counts

    @counts.setter
    def counts(self, value: StepCounts) -> None:
        self.drift.counts = value

    def __call__(self, t: float, y: State, side: int) -> State:
        return self.drift(t, y, side)

    def half(self, t: float, y: State, side: int, i: int) -> State:
        return self.drift.half(t, y, side, i)

    def jumps(self) -> tuple[float, ...]:
        return self.drift.jumps()

    @property
    def params_explicit(self) -> bool:
        return self.drift.params_explicit

    def params(self) -> list[torch.Tensor]:
        return self.drift.params() + self._own_params()

    def param_pieces(self) -> list[tuple[tuple[torch.Tensor, ...], bool]]:
        return self.drift.param_pieces() + [((p,), False) for p in self._own_params()]

    def _own_params(self) -> list[torch.Tensor]:
        return [p for p in self._noise_params if all(p is not q for q in self.drift.params())]

    def check_interval(self, t0: float, t1: float) -> None:
        self.drift.check_interval(t0, t1)

    def check_state(self, y0: State) -> None:
        self.drift.check_state(y0)
        if isinstance(self.noise, torch.nn.Module):
            check_params_match(self.noise.parameters(), y0, f"noise ({type(self.noise).__name__})")

    def diffusion(self, t: float, y: State) -> State | float | None:
        """g(t, y): nu for additive noise (None when nu = 0), else the callable's value."""
        if self.additive:
            return self.noise if self.noise else None
        g = self.noise(time_tensor(t, self.dtype, self.device), y)
        if not self._checked:
            check_returned(g, y, "noise g(t, y) (one diffusion coefficient per component of y: diagonal noise)")
            self._checked = True
        return g

    def diffusion_derivative(self, t: float, y: torch.Tensor) -> tuple[State | float | None, State | None]:
        """(g, g * dg/dy) with dg_i/dy_i by autograd: the Milstein correction of diagonal noise
        (g_i must depend on y_i alone). None when g does not depend on y (additive, or a function
        of t and the parameters only), whose derivative is zero: Milstein is then Euler-Maruyama."""
        if self.additive:
            return self.diffusion(t, y), None
        outer = torch.is_grad_enabled()
        with torch.enable_grad():
            y_in = y if y.requires_grad else y.detach().requires_grad_()
            g = self.diffusion(t, y_in)
            if not g.requires_grad:
                return g, None
            dg, = torch.autograd.grad(g, y_in, torch.ones_like(g), create_graph=outer, allow_unused=True)
        return g, None if dg is None else g * dg

    def increment(self, t: float, h: float) -> State | None:
        """W(t + h) - W(t) (None when there is no noise)."""
        return None if self.additive and not self.noise else self.bm(t, t + h)

    def adjoint_term(self, augmented: Term) -> Term:
        """The backward solve of the adjoint for additive noise: (y, a, g) with nu dW on y only
        (the adjoint equations of a and g carry no noise when g does not depend on y)."""
        return _AugmentedSDETerm(augmented, self)


class _AugmentedSDETerm(Term):
    """The adjoint's augmented drift, with the SDE's additive noise on the y component."""

    def __init__(self, augmented: Term, sde: SDETerm) -> None:
        self.augmented, self.sde = augmented, sde

    def __call__(self, t: float, y: State, side: int) -> State:
        return self.augmented(t, y, side)

    def jumps(self) -> tuple[float, ...]:
        return self.augmented.jumps()

    def diffusion(self, t: float, y: State):
        return (self.sde.diffusion(t, y[0]), None, None)

    def diffusion_derivative(self, t: float, y: State):
        return self.diffusion(t, y), None

    def increment(self, t: float, h: float):
        return (self.sde.increment(t, h), None, None)
