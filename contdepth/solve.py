"""The public solve functions: ``solve`` / ``odesolve`` (contdepth's own), and ``odeint`` /
``odeint_adjoint`` (torchdiffeq 0.2.5's signature and semantics). All four build one
:class:`~contdepth.solvers.engine.Problem` and hand it to a gradient method."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from .errors import check_choice, check_positive_int, warn_user
from .fields.base import ControlledField
from .gradients import GRADIENTS
from .gradients.times import TimeTensors, at_event, with_time_grads
from .solution import Solution, SolverStats
from .solvers import Adaptive, FixedGrid, get_stepper
from .solvers.controllers import StepCallbacks
from .solvers import AdjointConfig, Problem
from .solvers.events import EventFn, locate_event
from .solvers.hermite import CubicOutputs
from .solvers.per_sample import odeint_per_sample, solve_per_sample
from .terms import as_term
from .timetol import close, slack
from .tree import State, all_finite, leaves, rebuild

FIXED_OPTIONS = ("step_size", "grid_constructor", "perturb", "interp")
ADAPTIVE_OPTIONS = ("first_step", "max_num_steps", "jump_t", "safety", "ifactor", "dfactor", "beta", "min_step",
                    "max_step", "norm")
NORMS = ("default", "seminorm")
RTOL, ATOL = 1e-6, 1e-8  # solve's tolerances for adaptive methods when none are given


def check_solver(method, *, steps: int | None = None, gradient: str = "backprop", rtol: float | None = None,
                 atol: float | None = None, project: Callable[[State], State] | None = None):
    """Validate a solver configuration as :func:`solve` does and return the method's stepper.

    Raises ``ValueError``/``TypeError`` naming the argument: an unknown ``method`` or
    ``gradient``; ``steps`` not an int >= 1, or given to an adaptive method; ``rtol``/``atol``
    not positive, or given (not None) to a fixed-step method, which would ignore them;
    ``project`` not callable, or given with ``gradient="adjoint"`` or ``"reversible"``.
    """
    stepper = get_stepper(method)
    check_choice("gradient", gradient, GRADIENTS)
    check_project(project, gradient)
    adaptive = getattr(stepper, "adaptive", False)
    name = getattr(stepper, "name", type(stepper).__name__)
    if steps is not None:
        check_positive_int("steps", steps)
        if adaptive:
            raise ValueError(f"steps is for fixed-step methods; method={name!r} chooses its own steps "
                             f"(got steps={steps})")
    for arg, value in (("rtol", rtol), ("atol", atol)):
        if value is None:
            continue
        if not adaptive and not getattr(stepper, "tolerances", False):  # implicit_adams: its corrector's
            raise ValueError(f"{arg} is for adaptive methods; method={name!r} is fixed-step and would ignore it "
                             f"(got {arg}={value!r})")
        _positive(arg, value)
    return stepper


def check_project(project: object, gradient: str) -> None:
    """Raise unless ``project`` is None or a callable that ``gradient`` can differentiate through:
    backprop and checkpoint differentiate the projected steps exactly; the continuous adjoint
    of a projected scheme is not implemented, and a projection (ReLU) cannot be inverted."""
    if project is None:
        return
    if not callable(project):
        raise TypeError(f"project must be callable as project(y) -> y (e.g. torch.relu), got {type(project).__name__}")
    if gradient == "adjoint":
        raise ValueError("project is not supported with gradient='adjoint': the continuous adjoint of a projected "
                         "scheme is not implemented; use gradient='backprop' or 'checkpoint' (exact through the "
                         "projection)")
    if gradient == "reversible":
        raise ValueError("project is not supported with gradient='reversible': a projection (e.g. ReLU) is not "
                         "invertible, so step starts cannot be rebuilt from step ends; use gradient='checkpoint'")


def _positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 or not math.isfinite(value):
        raise ValueError(f"{name} must be a positive finite float, got {value!r}")
    return float(value)


def check_y0(y0: object) -> State:
    """``y0`` if it is a floating, finite tensor or non-empty tuple of such (on a real device), else a
    TypeError/ValueError naming it (and the component of a tuple). Under ``torch.compile`` the
    finiteness check is an assertion inside the graph: a RuntimeError when the graph runs."""
    if not isinstance(y0, (torch.Tensor, tuple)) or (isinstance(y0, tuple) and not y0):
        raise TypeError(f"y0 must be a torch.Tensor or a non-empty tuple of tensors, got {type(y0).__name__}")
    for i, x in enumerate(leaves(y0) if isinstance(y0, tuple) else [y0]):
        name = "y0" if isinstance(y0, torch.Tensor) else f"y0[{i}]"
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
        if x.device.type == "meta":
            raise ValueError(f"{name} is on the meta device: it has a shape but no values to integrate")
        if x.numel() == 0:
            raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): there is nothing to integrate")
    if torch.compiler.is_compiling():  # traced: an assertion inside the graph (RuntimeError), not a graph break
        for x in leaves(y0) if isinstance(y0, tuple) else [y0]:
            torch._assert_async(torch.isfinite(x).all(), "y0 must be finite; it contains NaN or inf")
    elif not all_finite(y0):
        raise ValueError("y0 must be finite; it contains NaN or inf")
    return y0


def _check_options(options: dict | None, allowed: Sequence[str], what: str) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise TypeError(f"{what} must be a dict, got {type(options).__name__}")
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown {what} key(s) {unknown}; allowed here: {sorted(allowed)}")
    return dict(options)


def _constructed_grid(grid_constructor: Callable, func: Callable, y0: State, t: tuple[float, ...], t0: float,
                      t1: float) -> tuple[float, ...]:
    """The step ends ``grid_constructor(func, y0, t)`` returns (t: a float64 tensor of ``t``), checked:
    1-D, strictly monotone from t0 to t1 (its ends within rounding of t0 and t1, then set to them)."""
    if not callable(grid_constructor):
        raise TypeError(f"options['grid_constructor'] must be callable as grid_constructor(func, y0, t) -> times, "
                        f"got {type(grid_constructor).__name__}")
    t_tensor = torch.tensor(t, dtype=torch.float64, device=leaves(y0)[0].device)
    grid = grid_constructor(func, y0, t_tensor)
    if isinstance(grid, torch.Tensor) and grid.dim() != 1:
        raise ValueError(f"options['grid_constructor'] must return a 1-D sequence of times, got shape "
                         f"{tuple(grid.shape)}")
    times = list(_floats(grid))
    d = 1 if t1 > t0 else -1
    if len(times) < 2 or not all(math.isfinite(s) for s in times) or any(
            d * (b - a) <= 0 for a, b in zip(times, times[1:])):
        raise ValueError(f"options['grid_constructor'] must return finite times strictly "
                         f"{'in' if d > 0 else 'de'}creasing from t0 to t1, got {times}")
    if not (close(times[0], t0) and close(times[-1], t1)):
        raise ValueError(f"options['grid_constructor'] must return times from t0 = {t0} to t1 = {t1}, got "
                         f"{times[0]} .. {times[-1]}")
    times[0], times[-1] = t0, t1
    return tuple(times)


def _adjoint_norm(choice: object, forward: Callable | None) -> Callable | None:
    """The norm of the adjoint's backward error control (None: the controller's RMS rule).
    ``choice`` callable: it gets the scaled error of the augmented state as a flat tuple of
    tensors (y, a = dL/dy, dL/dtheta). "default"/"seminorm" with a callable forward ``norm``: as
    torchdiffeq, max(norm(y), norm(a), RMS of each dL/dtheta tensor), the last left out by the seminorm."""
    if callable(choice):
        return lambda augmented: choice(tuple(leaves(augmented)))
    check_choice("adjoint_options['norm']", choice, NORMS)
    if forward is None:
        return None

    def augmented_norm(augmented: State) -> float:
        y, a, *rest = augmented
        sizes = [abs(float(forward(y))), abs(float(forward(a)))]
        if choice != "seminorm":
            sizes += [float(x.pow(2).mean().sqrt()) for x in leaves(tuple(rest))]
        return max(sizes)

    return augmented_norm


def _floats(values) -> list[float]:
    return [float(v) for v in (values.tolist() if isinstance(values, torch.Tensor) else values)]


def check_no_time_grad(name: str, value: object) -> None:
    """Raise if ``value`` is a tensor requiring grad while grad is on, for a solve that does not
    differentiate its times (stochastic ones): returning none would be a silent wrong answer."""
    if wants_grad(value):
        raise NotImplementedError(f"{name} requires grad, but gradients with respect to the times of a stochastic "
                                  f"solve are not computed; pass {name}.detach() (or build it without requires_grad)")


def wants_grad(value: object) -> bool:
    """True for a tensor that requires grad while grad is on (a time to differentiate)."""
    return isinstance(value, torch.Tensor) and value.requires_grad and torch.is_grad_enabled()


def _times(name: str, values, t0: float, t1: float) -> tuple[float, ...]:
    check_no_time_grad(name, values)
    times = tuple(float(t) for t in (values.tolist() if isinstance(values, torch.Tensor) else values))
    if not all(math.isfinite(t) for t in times):
        raise ValueError(f"{name} must hold finite times, got {list(times)}")
    d = 1 if t1 > t0 else -1
    if not times or any(d * (b - a) <= 0 for a, b in zip(times, times[1:])):
        raise ValueError(f"{name} must be a non-empty sequence, strictly {'in' if d > 0 else 'de'}creasing from t0 "
                         f"to t1, got {list(times)}")
    if d * (times[0] - t0) < -slack(t0) or d * (t1 - times[-1]) < -slack(t1):
        raise ValueError(f"{name} must lie in [t0, t1] = [{t0}, {t1}], got {times[0]} .. {times[-1]}")
    return times


def check_interval_args(func: Callable, t0: float | None, t1: float | None) -> tuple[float, float, object]:
    """(t0, t1, control grid or None): the interval of a solve, defaulting to a ControlledField's grid."""
    check_no_time_grad("t0", t0)
    check_no_time_grad("t1", t1)
    control = func.grid if isinstance(func, ControlledField) else None
    if control is None and (t0 is None or t1 is None):
        raise ValueError(f"t0 and t1 are required for a plain func(t, y) ({type(func).__name__}); "
                         "only a ControlledField has a default interval (its control grid)")
    t0 = control.t0 if t0 is None else float(t0)
    t1 = control.t1 if t1 is None else float(t1)
    if not (math.isfinite(t0) and math.isfinite(t1)) or t0 == t1:
        raise ValueError(f"t0 and t1 must be finite and different, got t0={t0}, t1={t1}")
    return t0, t1, control


def output_times(t_eval, t0: float, t1: float) -> tuple[float, ...]:
    """The requested output times: ``t_eval`` checked against [t0, t1], or (t1,)."""
    return (t1,) if t_eval is None else _times("t_eval", t_eval, t0, t1)


def _integrate(func: Callable, y0: State, *, t0: float, t1: float, out_times: tuple[float, ...], method,
               steps: int | None, grid_times: tuple[float, ...] | None, gradient: str, rtol: float, atol: float,
               options: dict | None, adjoint_rtol: float | None, adjoint_atol: float | None, adjoint_method,
               adjoint_options: dict | None, adjoint_params, declare_jumps: bool,
               project: Callable[[State], State] | None = None, times: TimeTensors = TimeTensors(),
               event_fn: EventFn | None = None, event_by_t1: bool = False) -> Solution:
    check_choice("gradient", gradient, GRADIENTS)
    if project is not None and (times.t0 is not None or times.outs is not None):
        raise ValueError("times that require grad are not supported with project=: their gradients follow the flow "
                         "of f, which a projected scheme does not; detach t0/t1/t_eval")
    stepper = get_stepper(method)
    rtol, atol = _positive("rtol", rtol), _positive("atol", atol)
    adaptive = getattr(stepper, "adaptive", False)
    own = tuple(getattr(stepper, "options", ()))  # a stepper's own options (the Adams methods' max_order, ...)
    options = _check_options(options, (ADAPTIVE_OPTIONS if adaptive else FIXED_OPTIONS) + own, f"options for method "
                             f"{getattr(stepper, 'name', method)!r}")
    if own:
        tolerances = dict(rtol=rtol, atol=atol) if getattr(stepper, "tolerances", False) else {}
        stepper = stepper.with_options(**{k: options.pop(k) for k in own if k in options}, **tolerances)
    adjoint_options = _check_options(adjoint_options, ("norm",) + (ADAPTIVE_OPTIONS if adaptive else ()),
                                     "adjoint_options")
    if adjoint_options and gradient != "adjoint":
        raise ValueError(f"adjoint_options are for gradient='adjoint', got gradient={gradient!r}")
    norm = adjoint_options.pop("norm", "default")
    back_norm = _adjoint_norm(norm, options.get("norm"))
    jump_t = _floats(options.pop("jump_t", ()))
    back_jumps = _floats(adjoint_options.pop("jump_t", ()))
    perturb = options.pop("perturb", False)
    if not isinstance(perturb, bool):
        raise TypeError(f"options['perturb'] must be True or False, got {perturb!r}")
    interp = options.pop("interp", "linear")
    if interp not in ("linear", "cubic"):
        raise ValueError(f"options['interp'] must be 'linear' (outputs inside a fixed step interpolate its ends "
                         f"linearly, torchdiffeq's default) or 'cubic' (cubic Hermite through the ends and their "
                         f"slopes), got {interp!r}")
    if interp == "cubic":
        if gradient == "adjoint":
            raise ValueError("options['interp'] = 'cubic' is not available with gradient='adjoint' (its backward "
                             "pass adds an interior output's gradient to the step's ends with the linear weights); "
                             "use gradient='backprop' or 'checkpoint', or interp='linear'")
        stepper = CubicOutputs(stepper)

    def where_steps_end(spec: dict, r: float, a: float):
        if adaptive:
            return Adaptive(r, a, **spec)
        if steps is not None and spec:
            raise ValueError(f"give steps or options['step_size'] / options['grid_constructor'], not both "
                             f"(got steps={steps}, options={spec})")
        if "step_size" in spec and "grid_constructor" in spec:
            raise ValueError("options['step_size'] and options['grid_constructor'] are mutually exclusive")
        if "step_size" in spec:
            return FixedGrid.from_step_size(t0, t1, _positive("options['step_size']", spec["step_size"]))
        if "grid_constructor" in spec:
            return FixedGrid(_constructed_grid(spec["grid_constructor"], func, y0,
                                               (t0, t1) if grid_times is None else grid_times, t0, t1))
        if steps is not None:
            return FixedGrid.uniform(t0, t1, steps)
        return FixedGrid(grid_times)

    if not adaptive and steps is None and grid_times is None and not {"step_size", "grid_constructor"} & set(options):
        raise ValueError(f"method={getattr(stepper, 'name', method)!r} is fixed-step: give steps=N, "
                         "options={'step_size': h} or options={'grid_constructor': fn}")
    fixed_grid = where_steps_end(options, rtol, atol) if perturb else None
    if perturb and isinstance(func, ControlledField):
        raise ValueError("options['perturb'] is for a plain func(t, y); a ControlledField already reads theta from "
                         "the side of the step each stage belongs to")
    params = None if adjoint_params is None else list(adjoint_params)
    # perturb: every step end is a jump of f, so a stage there sees f from inside its step (one ulp in)
    term = as_term(func, y0, params=params, jump_t=jump_t + (list(fixed_grid.times) if perturb else []),
                   declare_jumps=declare_jumps, probe_t=None if gradient == "backprop" else t0)
    term.check_state(y0)
    term.check_interval(t0, t1)
    stats = SolverStats(method=getattr(stepper, "name", type(stepper).__name__), gradient=gradient)
    term.counts = stats.forward
    t_event = None
    if event_fn is not None:  # find the event without a graph, then solve to it under the gradient method
        d = 1 if t1 > t0 else -1
        if adaptive:
            search = Adaptive(rtol, atol, **options)
        elif event_by_t1:  # cd.solve: on its own steps, up to t1
            search = where_steps_end(options, rtol, atol)
        else:  # odeint: by options['step_size'], without end
            search = _positive("options['step_size']", options["step_size"]) if "step_size" in options else None
        t_event, event = locate_event(term, stepper, search, y0, t0, d, event_fn, stats.forward,
                                      t1=t1 if event_by_t1 else None)
        if t_event is not None:
            if isinstance(search, FixedGrid):  # the same steps, the last one ending on t*
                steps, grid_times = None, tuple(s for s in search.times if d * (t_event - s) > slack(t_event)) + (
                    t_event,)
            t1, out_times = t_event, out_times[:-1] + (t_event,)
    grid = (fixed_grid if fixed_grid is not None and fixed_grid.times[-1] == t1
            else where_steps_end(options, rtol, atol)).with_callbacks(StepCallbacks.of(func))
    if gradient == "adjoint" and isinstance(stepper, torch.nn.Module) and any(
            p.requires_grad for p in stepper.parameters()):
        raise ValueError(f"gradient='adjoint' does not differentiate a stepper's own parameters "
                         f"({type(stepper).__name__}); use gradient='checkpoint' or 'backprop'")
    if gradient == "adjoint" and getattr(stepper, "reversible", False):
        raise ValueError(f"gradient='adjoint' integrates (y, a, dL/dtheta) backward, which is not a separable "
                         f"pair for method={stepper.name!r}; use gradient='reversible' (exact, memory constant in "
                         "depth) or 'checkpoint'")
    back_stepper = stepper if adjoint_method is None else get_stepper(adjoint_method)
    if gradient == "adjoint" and getattr(back_stepper, "adaptive", False) != adaptive:
        raise ValueError(f"adjoint_method={adjoint_method!r} must be {'adaptive' if adaptive else 'fixed-step'} "
                         f"like method={getattr(stepper, 'name', method)!r}")
    back_grid = (grid if not adaptive else Adaptive(
        rtol if adjoint_rtol is None else _positive("adjoint_rtol", adjoint_rtol),
        atol if adjoint_atol is None else _positive("adjoint_atol", adjoint_atol),
        **{**adjoint_options, "norm": back_norm})).with_callbacks(StepCallbacks.of(func, "_adjoint"))
    problem = Problem(term, stepper, grid, t0, t1, out_times, stats,
                      AdjointConfig(back_stepper, back_grid, seminorm=norm == "seminorm" and back_norm is None,
                                    jumps=tuple(back_jumps)),
                      project)
    stacked = with_time_grads(GRADIENTS[gradient], problem, y0, times)
    ts = torch.tensor(out_times, dtype=torch.float64, device=leaves(y0)[0].device)
    if t_event is None:
        return Solution(ts, rebuild(y0, stacked), stats)
    t_event, y_event = at_event(term, event, t1, rebuild(y0, [x[-1] for x in stacked]), 1 if t1 > t0 else -1)
    return Solution(ts, rebuild(y0, [torch.cat([x[:-1], e[None]]) for x, e in zip(stacked, leaves(y_event))]),
                    stats, event_t=t_event)


def solve(func: Callable, y0: State, *, method="rk4", steps: int | None = None, t0: float | None = None,
          t1: float | None = None, gradient: str = "backprop", rtol: float | None = None,
          atol: float | None = None, t_eval: Sequence[float] | torch.Tensor | None = None, options: dict | None = None,
          adjoint_options: dict | None = None, adjoint_params: Sequence[torch.Tensor] | None = None,
          declare_jumps: bool = True, project: Callable[[State], State] | None = None,
          event_fn: EventFn | None = None, per_sample: bool = False) -> Solution:
    """Solve dy/dt = f(t, y), y(t0) = y0, from t0 to t1 and return a :class:`Solution`.

    func: a :class:`~contdepth.fields.ControlledField` (theta on a control grid) or any callable
        ``func(t, y)`` (t a 0-dim tensor of y's dtype; y a tensor or tuple of tensors).
    t0, t1: default to the control grid's interval for a ControlledField, required otherwise;
        t1 < t0 integrates backward in time.
    method: ``"euler"``, ``"midpoint"``, ``"rk4"`` (classical, seed 004 eq. 2.17-2.21) with
        ``steps`` equal steps (default for a ControlledField: one per control interval) or
        ``options={"step_size": h}`` or ``{"grid_constructor": fn}`` (``fn(func, y0, t)`` returns
        the step ends), and ``"perturb"``; adaptive ``"bosh3"``, ``"dopri5"``, ``"tsit5"`` with
        ``rtol``/``atol`` and options ``first_step``, ``max_num_steps``, ``jump_t``, ``safety``,
        ``ifactor``, ``dfactor``, ``beta``, ``min_step``, ``max_step``, ``norm``; or a stepper
        object (see docs/extending.md). torchdiffeq's semantics: docs/solvers.md, "Coming from
        torchdiffeq", which also describes ``func.callback_step`` and its kin.
    gradient: ``"backprop"`` (through the solver), ``"checkpoint"`` (exact, stores each step's start
        state and recomputes; fixed and adaptive) or ``"adjoint"`` (continuous adjoint, seed 002
        eq. 10-15; ``adjoint_options={"norm": "seminorm"}``).
    rtol, atol: the adaptive methods' tolerances (default 1e-6, 1e-8); an error with a
        fixed-step method, which would ignore them.
    t_eval: times at which to return states (anywhere in [t0, t1]; inside a step by the method's
        dense output: linear for fixed-step methods). Without it ``Solution.ys`` holds y(t1).
    adjoint_params: the tensors checkpoint/adjoint differentiate (default: the trainable
        parameters of func if it is an ``nn.Module`` or a method of one, as torchsde's ``sde.f``;
        for any other callable, every trainable tensor that one evaluation f(t0, y0) depends on,
        found from its autograd graph: one extra call of func, not counted in the statistics).
    declare_jumps: end adaptive steps on the knots of piecewise-constant theta (leave on; off
        only to measure what it saves).
    project: a map ``project(y) -> y`` (same structure, shapes, dtypes) applied to the state after
        every accepted step: a projected (splitting) scheme, the step of the ODE then the
        projection. Seed 000's block psi <- ReLU(psi + D psi) (eq. 26, sec. 4.1) is
        ``method="euler"`` with ``project=torch.relu``. Outputs at step ends are projected; inside
        a step they are the projected dense output of the unprojected step; y0 is not projected.
        Adaptive methods judge the error of the unprojected step. ``gradient`` ``"backprop"`` or
        ``"checkpoint"`` (exact through the projection); ``"adjoint"`` and ``"reversible"`` raise.
    event_fn: ``event_fn(t, y)`` (a tensor): end the solve at the first time t* in (t0, t1] where
        an entry changes sign (as :func:`odeint`'s, located on the solve's own steps); then
        ``Solution.event_t`` is t* and ``ys`` holds y(t*), both differentiable (implicit function
        theorem); None if no entry changes sign by t1. Not with ``t_eval``, ``project``, or a
        ``t1`` that requires grad.
    per_sample: every sample along dim 0 of y0 keeps its own step size, accept/reject, t0/t1
        (floats or shape (batch,)) and t_eval ((T,) or (batch, T)); adaptive explicit methods,
        gradient ``"backprop"`` or ``"checkpoint"``; func gets t of shape (batch,). See
        :func:`~contdepth.solvers.per_sample.solve_per_sample`.
    """
    y0 = check_y0(y0)
    if not isinstance(per_sample, bool):
        raise TypeError(f"per_sample must be True or False, got {per_sample!r}")
    if per_sample:
        return solve_per_sample(func, y0, method=method, t0=t0, t1=t1, t_eval=t_eval, gradient=gradient, rtol=rtol,
                                atol=atol, options=options, steps=steps,
                                adjoint_options=adjoint_options, adjoint_params=adjoint_params, project=project,
                                event_fn=event_fn)
    if event_fn is not None:
        _check_event_args(event_fn, t1, t_eval, project)
    times = _solve_time_tensors(t0, t1, t_eval)  # their gradients are attached around the float solve
    t0, t1, t_eval = (x.detach() if isinstance(x, torch.Tensor) else x for x in (t0, t1, t_eval))
    t0, t1, control = check_interval_args(func, t0, t1)
    out_times = output_times(t_eval, t0, t1)
    stepper = check_solver(method, steps=steps, gradient=gradient, rtol=rtol, atol=atol, project=project)
    if steps is None and control is not None and not getattr(stepper, "adaptive", False) \
            and not (options and "step_size" in options):
        steps = control.intervals
    return _integrate(func, y0, t0=t0, t1=t1, out_times=out_times, method=stepper, steps=steps, grid_times=None,
                      gradient=gradient, rtol=RTOL if rtol is None else rtol, atol=ATOL if atol is None else atol,
                      options=options, adjoint_rtol=None,
                      adjoint_atol=None, adjoint_method=None, adjoint_options=adjoint_options,
                      adjoint_params=adjoint_params, declare_jumps=declare_jumps, project=project, times=times,
                      event_fn=event_fn, event_by_t1=True)


def _check_event_args(event_fn: object, t1: object, t_eval: object, project: object) -> None:
    """Raise unless ``event_fn`` is callable and comes without t_eval, project, or a t1 requiring grad."""
    if not callable(event_fn):
        raise TypeError(f"event_fn must be callable as event_fn(t, y) -> tensor, got {type(event_fn).__name__}")
    for name, value, why in (("t_eval", t_eval, "the solve ends at the event"),
                             ("project", project, "the event is located on the unprojected ODE")):
        if value is not None:
            raise ValueError(f"event_fn is not supported with {name}: {why}")
    if wants_grad(t1):
        raise ValueError("event_fn with a t1 that requires grad: t1 only bounds the event search; detach it")


def _solve_time_tensors(t0: object, t1: object, t_eval: object) -> TimeTensors:
    """The times of :func:`solve` to differentiate: t0; the output times (t_eval, or t1). With
    t_eval, the outputs do not depend on t1: a t1 that requires grad gets gradient zero."""
    outs = t1.reshape(1) if t_eval is None and wants_grad(t1) else t_eval if wants_grad(t_eval) else None
    if t_eval is not None and wants_grad(t1):
        base = torch.as_tensor(_floats(t_eval), dtype=t1.dtype, device=t1.device) if outs is None else outs
        outs = base + 0 * t1.reshape(())
    return TimeTensors(t0.reshape(()) if wants_grad(t0) else None, outs)


def odesolve(func: Callable, y0: State, **kwargs) -> State:
    """The state at t1 (or the stacked states at ``t_eval``); arguments as :func:`solve`."""
    sol = solve(func, y0, **kwargs)
    return sol.ys if kwargs.get("t_eval") is not None else sol.y1


def _check_t(t: object) -> tuple[float, ...]:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a 1-D torch.Tensor of times, got {type(t).__name__}")
    if t.dim() != 1 or len(t) == 0 or not t.is_floating_point():
        raise ValueError(f"t must be a non-empty 1-D floating tensor, got shape {tuple(t.shape)}, dtype {t.dtype}")
    times = tuple(t.tolist())
    if not all(math.isfinite(x) for x in times):
        raise ValueError(f"t must hold finite times, got {list(times)}")
    if len(times) > 1:
        d = 1 if times[1] > times[0] else -1
        if any(d * (b - a) <= 0 for a, b in zip(times, times[1:])):
            raise ValueError(f"t must be strictly increasing or strictly decreasing, got {list(times)}")
    return times


def _odeint(func, y0, t, *, rtol, atol, method, options, gradient, event_fn, **adjoint):
    y0 = check_y0(y0)
    if isinstance(t, torch.Tensor) and t.dim() == 2:  # one row of times per sample
        return odeint_per_sample(func, y0, t, rtol=rtol, atol=atol, method=method, options=options,
                                 gradient=gradient, event_fn=event_fn, **adjoint)
    times = _check_t(t)
    method = "dopri5" if method is None else method
    if event_fn is not None and (len(times) != 2 or not callable(event_fn)):
        raise ValueError(f"with event_fn (a callable event_fn(t, y), got {type(event_fn).__name__}), t must hold two "
                         f"times [t0, t1], t1 giving only the direction (the solve runs to the event), got "
                         f"{len(times)} times")
    if len(times) == 1:  # torchdiffeq: nothing to integrate, func is never called
        get_stepper(method)
        return rebuild(y0, [x.unsqueeze(0) for x in leaves(y0)])
    if getattr(func, "callback_accept_step", None) is not None and not getattr(get_stepper(method), "adaptive", False):
        warn_user("func.callback_accept_step is called after every step of a fixed-step method (every fixed step is "
                  "accepted); torchdiffeq ignores it for fixed-step methods")
    grad_t = wants_grad(t)
    sol = _integrate(func, y0, t0=times[0], t1=times[-1], out_times=times, method=method, steps=None,
                     grid_times=times, gradient=gradient, rtol=rtol, atol=atol, options=options,
                     declare_jumps=True, event_fn=event_fn, **adjoint,
                     times=TimeTensors(t[0] if grad_t else None, t if grad_t and event_fn is None else None))
    return sol.ys if event_fn is None else (sol.event_t.to(t.dtype), sol.ys)


def odeint(func: Callable, y0: State, t: torch.Tensor, *, rtol: float = 1e-7, atol: float = 1e-9,
           method: str | None = None, options: dict | None = None,
           event_fn: EventFn | None = None) -> State | tuple[torch.Tensor, State]:
    """torchdiffeq's ``odeint``: y at every time of ``t`` (1-D, strictly increasing or decreasing),
    shape ``(len(t), *y0.shape)`` (a tuple of such for a tuple y0). Gradients by backprop.
    ``t`` of shape (batch, T): row b holds sample b's times, solved with its own steps
    (``solve(..., per_sample=True)``).

    Fixed-step methods step from one time of ``t`` to the next, or by ``options={"step_size": h}``
    (the last step shortened; states between steps by linear interpolation) or
    ``{"grid_constructor": fn}``; ``options`` and the callbacks ``func.callback_step``,
    ``callback_accept_step``, ``callback_reject_step`` as torchdiffeq's (docs/solvers.md, "Coming
    from torchdiffeq"). Unlike torchdiffeq, an unknown option is an error. ``t`` may require grad: ``dL/dt_i = <dL/dy_i, f(t_i, y_i)>``,
    and t_0 also moves the start, ``dL/dt_0 = -<dL/dy0 - dL/dy_0, f(t_0, y0)>``
    (:mod:`contdepth.gradients.times`).

    ``event_fn(t, y)`` (a tensor): solve from t[0] (``t = [t0, t1]``, t1 only gives the direction)
    to the first time t* where an entry of event_fn changes sign; returns ``(t*, y)`` with
    ``y = [y0, y(t*)]`` stacked. Both are differentiable (implicit function theorem). Fixed-step
    methods need ``options={"step_size": h}``. See :mod:`contdepth.solvers.events`.
    """
    return _odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options, gradient="backprop",
                   adjoint_rtol=None, adjoint_atol=None, adjoint_method=None, adjoint_options=None,
                   adjoint_params=None, event_fn=event_fn)


def odeint_adjoint(func: Callable, y0: State, t: torch.Tensor, *, rtol: float = 1e-7, atol: float = 1e-9,
                   method: str | None = None, options: dict | None = None, adjoint_rtol: float | None = None,
                   adjoint_atol: float | None = None, adjoint_method: str | None = None,
                   adjoint_options: dict | None = None, adjoint_params: Sequence[torch.Tensor] | None = None,
                   event_fn: EventFn | None = None) -> State | tuple[torch.Tensor, State]:
    """torchdiffeq's ``odeint_adjoint``: as :func:`odeint` (``t`` and ``event_fn`` too), gradients by
    the continuous adjoint.

    ``adjoint_params``: the tensors to differentiate (default: the trainable parameters of func
    if it is an ``nn.Module`` or a method of one; for any other callable, every trainable tensor
    one evaluation func(t[0], y0) depends on, found from its autograd graph). ``adjoint_rtol``/``adjoint_atol``/``adjoint_method`` default to the
    forward solve's; ``adjoint_options={"norm": "seminorm"}`` leaves the parameter integrals out of
    the backward error control (Kidger et al. 2021).
    """
    return _odeint(func, y0, t, rtol=rtol, atol=atol, method=method, options=options, gradient="adjoint",
                   adjoint_rtol=adjoint_rtol, adjoint_atol=adjoint_atol, adjoint_method=adjoint_method,
                   adjoint_options=_inherited_options(method, options, adjoint_method, adjoint_options),
                   adjoint_params=adjoint_params, event_fn=event_fn)


def _inherited_options(method, options: dict | None, adjoint_method, adjoint_options: dict | None) -> dict | None:
    """torchdiffeq's default ``adjoint_options`` of ``odeint_adjoint``: the forward ``options``
    (their adaptive keys but ``norm``) when none are given and the backward solve uses the same
    adaptive method; else ``adjoint_options`` as given (a fixed grid is walked back as it is)."""
    if adjoint_options is not None or not isinstance(options, dict) or adjoint_method not in (None, method):
        return adjoint_options
    if not getattr(get_stepper("dopri5" if method is None else method), "adaptive", False):
        return adjoint_options
    return {k: v for k, v in options.items() if k in ADAPTIVE_OPTIONS and k != "norm"}


def odeint_event(func: Callable, y0: State, t0: torch.Tensor | float, *, event_fn: EventFn, reverse_time: bool = False,
                 odeint_interface: Callable = odeint, **kwargs) -> tuple[torch.Tensor, State]:
    """torchdiffeq's ``odeint_event``: solve from t0, forward (or backward with ``reverse_time``),
    until ``event_fn(t, y)`` changes sign: ``(t*, [y0, y(t*)])``, both differentiable (for
    g = event_fn, dt*/dtheta = -(dg/dtheta + dg/dy dy/dtheta) / (dg/dt + dg/dy . f)).
    ``odeint_interface``: :func:`odeint` or :func:`odeint_adjoint`; ``kwargs`` go to it."""
    if not callable(odeint_interface):
        raise TypeError(f"odeint_interface must be cd.odeint or cd.odeint_adjoint, got {type(odeint_interface).__name__}")
    start = t0 if isinstance(t0, torch.Tensor) else torch.tensor(float(t0), dtype=leaves(check_y0(y0))[0].dtype)
    if start.numel() != 1:
        raise ValueError(f"t0 must be one time (a float or a one-element tensor), got shape {tuple(start.shape)}")
    start = start.reshape(1)
    t = torch.cat([start, start.detach() + (-1.0 if reverse_time else 1.0)])
    return odeint_interface(func, y0, t, event_fn=event_fn, **kwargs)
