"""Property-based checks of the public API's input checking (hypothesis): any combination of
shapes, dtypes, devices, methods, step counts, tolerances and time lists gives either a finite
result or a ValueError/TypeError whose message names the offending argument."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import contdepth as cd

ARGUMENTS = ("y0", "method", "steps", "rtol", "atol", "t0", "t1", "t_eval", "t ", "t must", "gradient", "state",
             "dtype", "func", "field")
METHODS = st.sampled_from(["euler", "midpoint", "rk4", "bosh3", "dopri5", "tsit5", "rk5", "RK4", "", "leapfrog", 3])
DTYPES = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool])
STEPS = st.one_of(st.none(), st.integers(-2, 6), st.floats(-1.0, 6.0), st.just(True), st.just("4"))
TOLERANCES = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True), st.just(-1), st.just("1e-3"))
TIMES = st.floats(-3.0, 3.0, allow_nan=False)
FUNCS = st.sampled_from(["decay", "friction", "friction64"])


def make_func(kind: str):
    if kind == "decay":
        return lambda t, y: -y  # any shape; bounded for |t1| <= 3
    field = cd.fields.CubicFriction(3, cd.ControlGrid(0.0, 1.0, n=2), gamma=0.1)
    return field.double() if kind == "friction64" else field


def check_outcome(call) -> None:
    """``call()`` returns finite tensors, or raises ValueError/TypeError naming an argument."""
    try:
        out = call()
    except (ValueError, TypeError) as e:
        message = str(e)
        assert any(name in message for name in ARGUMENTS), f"{type(e).__name__} names no argument: {message}"
        return
    for x in out if isinstance(out, tuple) else (out,):
        assert isinstance(x, torch.Tensor) and bool(torch.isfinite(x).all()), "silent non-finite result"


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(shape=st.lists(st.integers(0, 3), max_size=3), dtype=DTYPES, device=st.sampled_from(["cpu", "meta"]),
       func=FUNCS, method=METHODS, steps=STEPS, rtol=TOLERANCES, atol=TOLERANCES, t0=st.one_of(st.none(), TIMES),
       t1=st.one_of(st.none(), TIMES), t_eval=st.one_of(st.none(), st.lists(st.one_of(TIMES, st.just(math.nan)), max_size=3)),
       gradient=st.sampled_from(["backprop", "checkpoint", "adjoint", "reversible", "magic"]))
def test_solve_gives_a_result_or_names_the_argument(shape, dtype, device, func, method, steps, rtol, atol, t0, t1,
                                                    t_eval, gradient):
    y0 = torch.full(shape, 0.5, device=device).to(dtype)
    kwargs = {k: v for k, v in dict(method=method, steps=steps, rtol=rtol, atol=atol, t0=t0, t1=t1, t_eval=t_eval,
                                    gradient=gradient).items() if v is not None}
    check_outcome(lambda: cd.odesolve(make_func(func), y0, **kwargs))


@settings(max_examples=150, deadline=None)
@given(times=st.lists(st.one_of(TIMES, st.just(math.nan)), max_size=4), dtype=DTYPES, method=st.one_of(st.none(), METHODS),
       rtol=st.floats(-1.0, 1.0), steps=STEPS)
def test_odeint_gives_a_result_or_names_the_argument(times, dtype, method, rtol, steps):
    options = None if steps is None else {"step_size": steps}
    t = torch.tensor(times, dtype=torch.float64)
    check_outcome(lambda: cd.odeint(lambda t, y: -y, torch.full((2, 3), 0.5).to(dtype), t.to(dtype),
                                    method=method, rtol=abs(rtol) or 1e-3, options=options))


@settings(max_examples=100, deadline=None)
@given(method=METHODS, steps=STEPS, rtol=TOLERANCES, atol=TOLERANCES,
       gradient=st.sampled_from(["backprop", "checkpoint", "adjoint", "magic"]))
def test_odeblock_checks_its_arguments_at_construction(method, steps, rtol, atol, gradient):
    field = make_func("friction")
    kwargs = {k: v for k, v in dict(steps=steps, rtol=rtol, atol=atol).items() if v is not None}
    try:
        block = cd.ODEBlock(field, method=method, gradient=gradient, **kwargs)
    except (ValueError, TypeError) as e:
        assert any(name in str(e) for name in ARGUMENTS), str(e)
        return
    check_outcome(lambda: block(torch.full((4, 3), 0.5)))  # e.g. leapfrog: y0 must be a pair (known at the call)


@pytest.mark.parametrize("kwargs, name", [
    (dict(method="rk4", steps=4, rtol=1e-3), "rtol"),
    (dict(method="euler", steps=4, atol=1e-9), "atol"),
    (dict(method="dopri5", steps=4), "steps"),
    (dict(method="rk5"), "method"),
    (dict(method="rk4", steps=0), "steps"),
    (dict(method="rk4", steps=2.0), "steps"),
])
def test_odeblock_and_solve_reject_the_same_arguments(kwargs, name):
    field = make_func("friction")
    with pytest.raises((ValueError, TypeError), match=name):
        cd.ODEBlock(field, **kwargs)
    with pytest.raises((ValueError, TypeError), match=name):
        cd.solve(field, torch.ones(2, 3), **kwargs)


def test_odeint_keeps_torchdiffeq_semantics_for_tolerances_with_fixed_steps():
    y = cd.odeint(lambda t, y: -y, torch.ones(2), torch.linspace(0, 1, 5), method="rk4", rtol=1e-3, atol=1e-5)
    assert torch.allclose(y[-1], torch.full((2,), math.exp(-1.0)), atol=1e-4)


def test_dtype_and_device_mismatch_names_both():
    with pytest.raises(ValueError, match="float64.*float32"):
        cd.odesolve(make_func("friction64"), torch.ones(2, 3), method="rk4", steps=2)
    with pytest.raises(ValueError, match="meta"):
        cd.odesolve(make_func("friction"), torch.ones(2, 3, device="meta"), method="rk4", steps=2)


@settings(max_examples=100, deadline=None)
@given(shape=st.lists(st.integers(1, 3), min_size=1, max_size=3), dtype=st.sampled_from([torch.float32, torch.float64]),
       method=st.sampled_from(["euler", "midpoint", "rk4", "bosh3", "dopri5", "tsit5"]), steps=st.integers(4, 8),
       rtol=st.floats(1e-6, 1e-3), t1=st.floats(-2.0, 2.0).filter(lambda t: abs(t) > 1e-3),
       gradient=st.sampled_from(["backprop", "checkpoint", "adjoint"]))
def test_valid_inputs_give_the_solution(shape, dtype, method, steps, rtol, t1, gradient):
    y0 = torch.full(shape, 0.5, dtype=dtype)
    adaptive = method in ("bosh3", "dopri5", "tsit5")
    kwargs = dict(rtol=rtol, atol=rtol * 1e-2) if adaptive else dict(steps=steps)
    y1 = cd.odesolve(lambda t, y: -y, y0, t0=0.0, t1=t1, method=method, gradient=gradient,
                     adjoint_params=() if gradient != "backprop" else None, **kwargs)
    assert y1.shape == y0.shape and y1.dtype == dtype
    # exact solution 0.5 exp(-t1); Euler at h = 0.5 (4 steps to |t1| = 2) is the loosest case, within 54 %
    assert torch.allclose(y1, torch.full_like(y1, 0.5 * math.exp(-t1)), rtol=0.6 if not adaptive else 0.02)


def test_odeblock_uses_its_tolerances_only_with_adaptive_methods():
    block = cd.ODEBlock(make_func("friction"), method="dopri5", rtol=1e-4, atol=1e-6)
    x = torch.full((4, 3), 0.5)
    adaptive = block(x)
    block.method, block.steps = "rk4", 8  # re-evaluated with a fixed-step method: no tolerance error
    assert torch.allclose(block(x), adaptive, atol=1e-4) and block.stats.forward.nfe == 32


BAD_SDE = {"y0": [torch.zeros(0, 3), torch.ones(2, 3, dtype=torch.int64), (torch.ones(2, 3),)],
           "noise": [-0.1, math.nan, math.inf, "0.1", True, lambda t, y: y.sum()],
           "method": ["rk4", "", 2, "Heun"], "steps": [0, -1, 2.5, True, "4"], "t0": [math.nan, math.inf],
           "t1": [math.inf], "gradient": ["reversible", "magic"],
           "bm": ["short", "float16", "wrong shape", "not a path"], "seed": ["1", 1.5]}


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=st.integers(1, 4), dtype=st.sampled_from([torch.float32, torch.float64]),
       method=st.sampled_from(["euler_maruyama", "milstein", "heun"]), steps=st.integers(1, 8),
       noise=st.one_of(st.floats(0.0, 1.0), st.just("sin")), t0=st.floats(0.0, 0.5), length=st.floats(0.1, 0.5),
       backward=st.booleans(), gradient=st.sampled_from(["backprop", "checkpoint", "adjoint"]),
       path=st.booleans(), bad=st.one_of(st.none(), st.sampled_from(sorted(BAD_SDE))), pick=st.integers(0, 5))
def test_sdesolve_gives_a_result_or_names_the_argument(batch, dtype, method, steps, noise, t0, length, backward,
                                                       gradient, path, bad, pick):
    """A valid call with at most one argument spoiled: a finite result (and gradients), or an error naming it."""
    t1 = t0 + length
    if backward:
        t0, t1 = t1, t0
    y0 = torch.full((batch, 3), 0.5, dtype=dtype)
    field = make_func("friction64" if dtype == torch.float64 else "friction")
    kwargs = dict(y0=y0, noise=(lambda t, y: 0.1 * torch.sin(y)) if noise == "sin" else noise, method=method,
                  steps=steps, t0=t0, t1=t1, gradient="backprop" if noise == "sin" and gradient == "adjoint" else gradient,
                  bm=cd.BrownianPath(min(t0, t1), max(t0, t1), y0.shape, seed=0, dtype=dtype) if path else None,
                  seed=None if path else 3)
    if bad is not None:
        value = BAD_SDE[bad][pick % len(BAD_SDE[bad])]
        if bad == "bm":
            kwargs["seed"] = None
            value = {"short": cd.BrownianPath(min(t0, t1), min(t0, t1) + 0.05, y0.shape, dtype=dtype),
                     "float16": cd.BrownianPath(min(t0, t1), max(t0, t1), y0.shape, dtype=torch.float16),
                     "wrong shape": cd.BrownianPath(min(t0, t1), max(t0, t1), (batch, 4), dtype=dtype),
                     "not a path": "bm"}[value]
        if bad == "seed":
            kwargs["bm"] = None
        kwargs[bad] = value
    y = kwargs.pop("y0")
    try:
        if isinstance(y, torch.Tensor) and y.is_floating_point():
            y.requires_grad_()
        sol = cd.sdesolve(field, y, **kwargs)
    except (ValueError, TypeError) as e:
        assert bad is not None, f"a valid call failed: {e}"
        assert bad.strip() in str(e) or (bad == "bm" and "bm" in str(e)), f"{bad!r} not named: {e}"
        return
    assert bad is None, f"spoiled {bad}={kwargs[bad]!r} was accepted"
    sol.y1.square().sum().backward()
    assert bool(torch.isfinite(sol.y1).all()) and bool(torch.isfinite(y.grad).all())
