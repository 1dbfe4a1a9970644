"""``torch.compile`` of a training step: the gradients are the eager ones, and the solve is traced.

Backend ``aot_eager`` (dynamo's trace and AOTAutograd's backward, no code generation: seconds,
not the inductor's tens of seconds; benchmarks/compile.py times the inductor). Under compile the
fixed-step solve takes the autograd path (contdepth/gradients/fused.py), so the whole step loop
is one graph; checkpoint and the adjoint graph-break into their eager autograd Functions. Each
gradient is compared with the eager solve's in float64.
"""
from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

import contdepth as cd
import contdepth.gradients.backprop as backprop

pytestmark = pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")


def _field(kind: str) -> tuple[cd.fields.ControlledField, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "dense":
        field, x = cd.fields.DenseResidual(3, cd.ControlGrid(0.0, 1.0, 4), activation="tanh"), torch.randn(5, 3)
    else:
        field = cd.fields.ConvCubicFriction(2, cd.ControlGrid(0.0, 1.0, 4), gamma=0.3, learn_gamma=True)
        x = torch.randn(3, 2, 5, 5)
    field = field.double()
    with torch.no_grad():
        for p in field.parameters():
            p.normal_(0.1, 0.3)
    return field, x.double().requires_grad_()


def _grads(field, x, step) -> list[torch.Tensor]:
    for p in [x, *field.parameters()]:
        p.grad = None
    step().backward()
    return [x.grad.clone(), *(p.grad.clone() for p in field.parameters())]


@pytest.mark.parametrize("kind,method,gradient", [
    ("dense", "euler", "backprop"), ("dense", "rk4", "backprop"), ("dense", "rk4", "checkpoint"),
    ("dense", "rk4", "adjoint"), ("dense", "dopri5", "backprop"), ("conv", "rk4", "backprop")])
def test_compiled_step_has_the_eager_gradient(kind, method, gradient):
    torch._dynamo.reset()
    field, x = _field(kind)
    steps = None if method == "dopri5" else 4
    kwargs = dict(rtol=1e-4, atol=1e-4) if method == "dopri5" else {}

    def loss() -> torch.Tensor:
        return cd.odesolve(field, x, method=method, steps=steps, gradient=gradient, **kwargs).square().mean()

    eager = _grads(field, x, loss)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = _grads(field, x, torch.compile(loss, backend=counter))
    assert counter.frame_count >= 1
    for a, b in zip(compiled, eager):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_compiled_fixed_step_solve_is_one_traced_loop(monkeypatch):
    """Under compile the fused Function is not taken (it would run eagerly between graph breaks):
    every step's operations are in the traced graphs."""
    torch._dynamo.reset()
    calls = []
    applies = backprop.fused_applies
    monkeypatch.setattr(backprop, "fused_applies", lambda *a: calls.append(applies(*a)) or calls[-1])
    field, x = _field("dense")
    counter = CompileCounterWithBackend("aot_eager")
    loss = lambda: cd.odesolve(field, x, method="euler", steps=8).square().mean()  # noqa: E731
    loss().backward()
    torch.compile(loss, backend=counter)().backward()
    assert calls == [True, False]  # eager: the fused path; compiled: autograd's
    assert counter.op_count >= 8 * 3  # per Euler step at least the matmul, the activation and the update
    assert counter.frame_count <= 8    # a few graph breaks (finiteness checks, statistics), not one per step


def test_compiled_mnist_model_compiles_once_and_counts_its_calls():
    """ODEClassifier records every training call's statistics outside the traced code: three
    compiled steps compile once (a traced list append would recompile on every call) and count 3."""
    from contdepth.models import build_mnist_model

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_mnist_model("pde1", 2).double()
    x, labels = torch.rand(4, 1, 28, 28, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    counter = CompileCounterWithBackend("aot_eager")
    step = torch.compile(lambda: torch.nn.functional.cross_entropy(model(x), labels), backend=counter)
    step().backward()
    frames = counter.frame_count
    step().backward()
    step().backward()
    assert counter.frame_count == frames
    assert model.nfe_totals()["calls"] == 3


def test_compiled_model_reevaluated_at_other_step_counts():
    """A compiled model whose step count changes (examples/mnist.py --compile --eval-steps): dynamo
    makes the changed int symbolic; the grid specialises it and every count equals eager."""
    from contdepth.models import build_mnist_model

    torch._dynamo.reset()
    torch.manual_seed(0)
    model = build_mnist_model("cubic").double()
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    counts = (20, 40, 7, 20)
    with torch.no_grad():
        eager = {}
        for steps in counts:
            model.set_solver("euler", steps)
            eager[steps] = model(x)
        model.compile(backend="aot_eager")
        for steps in counts:
            model.set_solver("euler", steps)
            assert torch.equal(model(x), eager[steps]), steps


def test_compiled_solve_with_the_step_count_as_an_argument():
    """The step count as an argument of a compiled function (dynamo makes it symbolic once it
    changes): every count and method equals eager, bit for bit."""
    field, x = _field("dense")
    x = x.detach()

    def solve(y, steps, method):
        return cd.odesolve(field, y, method=method, steps=steps)

    torch._dynamo.reset()
    compiled = torch.compile(solve, backend="aot_eager")
    with torch.no_grad():
        for method in ("euler", "rk4"):
            for steps in (4, 8, 5, 4):
                assert torch.equal(compiled(x, steps, method), solve(x, steps, method)), (method, steps)


@pytest.mark.filterwarnings("error:Dynamo detected a call to a `functools.lru_cache`")
def test_compiled_solve_checks_y0_inside_the_graph_and_traces_no_lru_cache():
    """Under compile, solve's finiteness check of y0 is an assertion in the graph (eagerly it is a
    bool of a tensor: a graph break on every call) and a NaN y0 still fails; the uniform grid's times
    are a trace-time constant, so dynamo does not trace (and warn about) their lru_cache."""
    import torch._dynamo.utils as dynamo_utils

    torch._dynamo.reset()
    dynamo_utils.warn_once_cache.clear()
    field, x = _field("dense")
    x = x.detach()
    solve = lambda y: cd.odesolve(field, y, method="rk4", steps=4)  # noqa: E731
    explained = torch._dynamo.explain(solve)(x)
    stacks = ["".join(str(frame) for frame in reason.user_stack) for reason in explained.break_reasons]
    assert not any("check_y0" in stack for stack in stacks), stacks
    compiled = torch.compile(solve, backend="aot_eager")
    with torch.no_grad():
        assert torch.equal(compiled(x), solve(x))
        with pytest.raises(RuntimeError, match="y0 must be finite"):
            compiled(torch.where(x > 0, x, torch.nan))
