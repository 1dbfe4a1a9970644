"""contdepth.terms case by case: what a FuncTerm hands the user's func (t, the side of a declared
jump), its checks of what func returns, the parameters it finds, and SDETerm's noise plumbing."""
import math

import pytest
import torch
from torch import nn

import contdepth as cd
from contdepth.brownian import BrownianPath
from contdepth.terms import (FuncTerm, SDETerm, as_term, check_params_match, check_returned, default_params,
                             time_tensor, trainable_leaves)

DT = torch.float64


def test_time_tensor_is_cached_per_dtype_device_and_inference_mode():
    a = time_tensor(0.25, DT, torch.device("cpu"))
    assert a.dtype == DT and a.item() == 0.25 and a.dim() == 0
    assert time_tensor(0.25, DT, torch.device("cpu")) is a
    assert time_tensor(0.25, torch.float32, torch.device("cpu")).dtype == torch.float32
    with torch.inference_mode():
        b = time_tensor(0.25, DT, torch.device("cpu"))
    assert b is not a and b.is_inference() and not a.is_inference()


def test_func_term_passes_t_and_counts_evaluations():
    seen = []
    term = FuncTerm(lambda t, y: (seen.append(t), -y)[1], torch.ones(2, dtype=DT))
    out = term(0.5, torch.ones(2, dtype=DT), 1)
    assert torch.equal(out, -torch.ones(2, dtype=DT)) and term.counts.nfe == 1
    assert seen[0].dtype == DT and seen[0].item() == 0.5
    term(0.75, torch.ones(2, dtype=DT), 0)
    assert term.counts.nfe == 2 and term.jumps() == () and term.params() == []


def test_func_term_sees_a_declared_jump_from_the_given_side():
    seen = []
    term = FuncTerm(lambda t, y: (seen.append(t.item()), y)[1], torch.ones(1, dtype=DT), jump_t=[0.7, 0.3])
    assert term.jumps() == (0.3, 0.7)  # sorted
    y = torch.ones(1, dtype=DT)
    term(0.3, y, 1)
    term(0.3, y, -1)
    term(0.3, y, 0)
    term(0.5, y, 1)                      # not a jump: t itself
    term(0.7 * (1 + 1e-13), y, -1)       # within the 1e-12 tolerance of a jump
    term(0.7 * (1 + 1e-11), y, -1)       # outside it
    assert seen[0] == math.nextafter(0.3, 1) and seen[1] == math.nextafter(0.3, 0)
    assert seen[2] == 0.3 and seen[3] == 0.5
    assert seen[4] == math.nextafter(0.7 * (1 + 1e-13), 0) and seen[5] == 0.7 * (1 + 1e-11)


def test_func_must_be_callable():
    with pytest.raises(TypeError, match=r"^func must be callable as func\(t, y\), got int"):
        FuncTerm(3, torch.ones(1))


@pytest.mark.parametrize("out,y,match", [
    (torch.ones(2), (torch.ones(2),), r"^func must return the structure of the state y: got Tensor for a state of type tuple"),
    ((torch.ones(2),), torch.ones(2), r"^func must return the structure of the state y: got tuple of length 1 for a state of type Tensor"),
    ((torch.ones(2),), (torch.ones(2), torch.ones(2)), r"got tuple of length 1 for a state of type tuple"),
    ([torch.ones(2)], (torch.ones(2),), r"^func must return the structure of the state y: got list for a state"),
    (torch.ones(3), torch.ones(2), r"^func returned shape \(3,\), but the state has shape \(2,\)"),
    (torch.ones(2, dtype=DT), torch.ones(2), r"^func returned dtype torch.float64, but the state has dtype torch.float32"),
    ((torch.ones(2), torch.ones(1)), (torch.ones(2), torch.ones(2)), r"^func component 1 returned shape \(1,\)"),
    (torch.ones(2, device="meta"), torch.ones(2), r"^func returned a tensor on meta, but the state is on cpu"),
])
def test_check_returned(out, y, match):
    with pytest.raises(ValueError, match=match):
        check_returned(out, y, "func")


def test_check_returned_accepts_the_state_structure():
    check_returned((torch.ones(2), (torch.zeros(1),)), (torch.ones(2), (torch.ones(1),)), "func")


def test_a_wrong_return_is_caught_on_the_first_call_only():
    calls = []
    def func(t, y):
        calls.append(1)
        return y if len(calls) > 1 else y[:1]
    term = FuncTerm(func, torch.ones(2))
    with pytest.raises(ValueError, match="func returned shape"):
        term(0.0, torch.ones(2), 1)
    term = FuncTerm(lambda t, y: y, torch.ones(2))
    term(0.0, torch.ones(2), 1)
    assert term._checked


def test_check_params_match_names_the_owner_and_both_dtypes():
    lin = nn.Linear(2, 2)
    check_params_match(lin.parameters(), torch.ones(2), "func")
    check_params_match([torch.ones(2, dtype=torch.int64)], torch.ones(2), "func")  # integer buffers are fine
    with pytest.raises(ValueError, match=r"^func \(Linear\) has parameters of dtype torch.float32 on cpu, but the state "
                                         r"y0 is torch.float64 on cpu"):
        check_params_match(lin.parameters(), torch.ones(2, dtype=DT), "func (Linear)")


def test_module_and_bound_method_parameters():
    lin = nn.Linear(2, 2)
    lin.bias.requires_grad_(False)
    assert default_params(lin, torch.ones(2), None) == [lin.weight]
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(torch.ones(2))
        def f(self, t, y):
            return self.w * y
    m = M()
    assert default_params(m.f, torch.ones(2), None) == [m.w]
    term = FuncTerm(m.f, torch.ones(2, dtype=DT))
    with pytest.raises(ValueError, match=r"^func \(M\) has parameters of dtype torch.float32"):
        term.check_state(torch.ones(2, dtype=DT))


def test_a_closure_is_probed_only_when_asked_and_with_grad_on():
    k = torch.tensor(2.0, requires_grad=True)
    free = torch.tensor(3.0, requires_grad=True)
    func = lambda t, y: k * y + t
    assert default_params(func, torch.ones(2), None) == []
    found = default_params(func, torch.ones(2), 0.0)
    assert len(found) == 1 and found[0] is k
    with torch.no_grad():
        assert default_params(func, torch.ones(2), 0.0) == []
    assert default_params(lambda t, y: 2 * y, torch.ones(2), 0.0) == []
    assert [p is free for p in trainable_leaves((free, free * 2, torch.ones(1)))] == [True]
    assert FuncTerm(func, torch.ones(2), probe_t=0.0).params()[0] is k
    assert FuncTerm(func, torch.ones(2), params=[free], probe_t=0.0).params() == [free]
    assert FuncTerm(func, torch.ones(2), params=[free]).params_explicit
    assert not FuncTerm(func, torch.ones(2)).params_explicit


def test_as_term_uses_a_func_s_own_term():
    class Own:
        def make_term(self, **kwargs):
            return kwargs
    assert as_term(Own(), torch.ones(1), params=[1], jump_t=(0.5,), declare_jumps=False) == dict(
        params=[1], jump_t=(0.5,), declare_jumps=False)
    assert isinstance(as_term(lambda t, y: y, torch.ones(1)), FuncTerm)


def _sde(noise, params=None, probe_t=None):
    y0 = torch.ones(3, dtype=DT)
    drift = FuncTerm(lambda t, y: -y, y0, params=params)
    return SDETerm(drift, noise, BrownianPath(0.0, 1.0, (3,), seed=1, dtype=DT), y0, params=params, probe_t=probe_t)


def test_sde_term_additive_noise():
    y = torch.ones(3, dtype=DT)
    quiet = _sde(0.0)
    assert quiet.additive and quiet.diffusion(0.0, y) is None and quiet.increment(0.0, 0.5) is None
    assert quiet.diffusion_derivative(0.0, y) == (None, None)
    loud = _sde(0.3)
    assert loud.diffusion(0.0, y) == 0.3 and loud.diffusion_derivative(0.0, y) == (0.3, None)
    assert torch.equal(loud.increment(0.25, 0.5), loud.bm(0.25, 0.75))
    assert torch.equal(loud(0.0, y, 1), -y) and loud.counts is loud.drift.counts


def test_sde_term_diagonal_noise_and_its_derivative():
    y = torch.tensor([1.0, 2.0, 3.0], dtype=DT)
    sde = _sde(lambda t, y: torch.sin(y) * (1 + t))
    g, gdg = sde.diffusion_derivative(0.5, y)
    assert torch.allclose(g, 1.5 * torch.sin(y), rtol=0, atol=1e-15)
    assert torch.allclose(gdg, 1.5 * torch.sin(y) * 1.5 * torch.cos(y), rtol=0, atol=1e-15)
    bad = _sde(lambda t, y: y[:2])
    with pytest.raises(ValueError, match=r"^noise g\(t, y\) \(one diffusion coefficient per component of y: diagonal "
                                         r"noise\) returned shape \(2,\)"):
        bad.diffusion(0.0, y)


def test_sde_term_parameters_without_duplicates():
    s = torch.tensor(0.2, dtype=DT, requires_grad=True)
    sde = _sde(lambda t, y: s * y, probe_t=0.0)
    assert sde.params() == [s] and sde.param_pieces() == [((s,), False)] and not sde.params_explicit
    shared = _sde(lambda t, y: s * y, params=[s])  # sdesolve gives both the same adjoint_params
    assert shared.drift.params() == [s] and shared.params() == [s] and shared.params_explicit


def test_trainable_leaves_visits_every_branch_past_a_shared_node():
    p = torch.tensor(1.0, requires_grad=True)
    r = torch.tensor(2.0, requires_grad=True)
    x = p * 2
    found = trainable_leaves(torch.stack([r * 3, x, x]))  # x's node is met twice before r's branch
    assert {id(t) for t in found} == {id(p), id(r)}


def test_jump_tolerance_is_relative_to_t():
    seen = []
    term = FuncTerm(lambda t, y: (seen.append(t.item()), y)[1], torch.ones(1, dtype=DT), jump_t=[0.5, 100.0])
    y = torch.ones(1, dtype=DT)
    term(100.0 * (1 + 5e-13), y, 1)   # 5e-11 from the jump at 100: within 1e-12 * 100
    term(0.5 + 1.5e-12, y, 1)         # 1.5e-12 from the jump at 0.5: outside 1e-12 * max(1, 0.5)
    assert seen == [math.nextafter(100.0 * (1 + 5e-13), math.inf), 0.5 + 1.5e-12]


def test_module_func_dtype_is_checked():
    with pytest.raises(ValueError, match=r"^func \(Linear\) has parameters of dtype torch.float32"):
        FuncTerm(nn.Linear(2, 2), torch.ones(2, dtype=DT)).check_state(torch.ones(2, dtype=DT))


def test_as_term_defaults_and_jumps():
    class Own:
        def make_term(self, **kwargs):
            return kwargs
    assert as_term(Own(), torch.ones(1))["declare_jumps"] is True
    assert as_term(lambda t, y: y, torch.ones(1), jump_t=(0.5,)).jumps() == (0.5,)


def test_sde_term_keeps_named_parameters_and_checks_its_noise_module():
    noise = nn.Linear(3, 3).to(DT)
    assert _sde(noise, params=[]).params() == []                       # named: nothing discovered
    assert _sde(noise).params() == list(noise.parameters())             # a module: its parameters
    with pytest.raises(ValueError, match=r"^noise \(Linear\) has parameters of dtype torch.float32 on cpu, but the "
                                         r"state y0 is torch.float64"):
        _sde(noise.float()).check_state(torch.ones(3, dtype=DT))


def test_sde_term_drift_sees_jump_sides_and_checks_the_interval():
    seen = []
    y0 = torch.ones(2, dtype=DT)
    drift = FuncTerm(lambda t, y: (seen.append(t.item()), y)[1], y0, jump_t=[0.5])
    sde = SDETerm(drift, 0.1, BrownianPath(0.0, 1.0, (2,), seed=1, dtype=DT), y0)
    sde(0.5, y0, -1)
    assert seen == [math.nextafter(0.5, 0)] and sde.jumps() == (0.5,)
    field = cd.fields.DenseResidual(2, cd.ControlGrid(0.0, 1.0, n=2)).to(DT)
    controlled = SDETerm(as_term(field, y0), 0.1, BrownianPath(0.0, 1.0, (2,), seed=1, dtype=DT), y0)
    controlled.check_interval(0.0, 1.0)
    with pytest.raises(ValueError, match=r"must lie inside the control grid \[0.0, 1.0\]"):
        controlled.check_interval(0.0, 2.0)
    with pytest.raises(ValueError, match=r"must lie inside the control grid"):
        controlled.check_interval(-1.0, 1.0)


def test_a_term_without_a_vjp_says_so_by_its_type():
    """Term.vjp is not implemented unless a term writes one: NotImplementedError naming the term's type."""
    term = FuncTerm(lambda t, y: y, torch.ones(2))
    with pytest.raises(NotImplementedError) as info:
        term.vjp(0.0, torch.ones(2), 1, torch.ones(2), torch.ones(2), [])
    assert str(info.value) == "FuncTerm has no hand-written vector-Jacobian product"


def test_half_reads_component_i_from_the_declared_side_of_a_jump():
    """Term.half and SDETerm.half on a pair state (q, p) at a declared jump: component i of f seen
    from the given side (the func sees t one ulp to that side)."""
    y0 = (torch.ones(2, dtype=DT), 2 * torch.ones(2, dtype=DT))
    drift = FuncTerm(lambda t, y: (t * y[0], (t - 0.5).sign() * y[1]), y0, jump_t=[0.5])
    sde = SDETerm(drift, 0.1, BrownianPath(0.0, 1.0, (2,), seed=1, dtype=DT), y0)
    for term in (drift, sde):
        assert torch.equal(term.half(0.5, y0, -1, 1), -y0[1]) and torch.equal(term.half(0.5, y0, 1, 1), y0[1])
        assert torch.equal(term.half(0.5, y0, 1, 0), math.nextafter(0.5, 1) * y0[0])


def test_every_evaluation_sees_t_in_the_states_dtype():
    """The drift and the noise get t as a 0-dim tensor of y's dtype (float64 here) at every call,
    the probe for parameters at t0 included (checkpoint)."""
    seen = []
    a = torch.tensor(0.7, dtype=DT, requires_grad=True)

    def f(t, y):
        seen.append(("f", t.dtype, t.dim()))
        return -a * y

    def g(t, y):
        seen.append(("g", t.dtype, t.dim()))
        return 0.3 * torch.ones_like(y)

    cd.sdesolve(f, torch.ones(2, dtype=DT), noise=g, steps=2, t0=0.0, t1=1.0, seed=1, gradient="checkpoint")
    assert {s[0] for s in seen} == {"f", "g"} and all(s[1:] == (DT, 0) for s in seen)


class _Plain:
    """Not a module: its bound method's tensors are found by the probe."""

    def __init__(self) -> None:
        self.k = torch.tensor(2.0, dtype=DT, requires_grad=True)

    def f(self, t, y):
        return self.k * y


def test_a_bound_method_of_a_plain_object_is_probed_not_asked_for_parameters():
    """owning_module is None for a method of an object that is not an nn.Module; default_params
    then probes it and finds the tensor it reads; a FuncTerm's module() is the owning module of a
    module method."""
    from contdepth.terms import owning_module
    plain, lin = _Plain(), nn.Linear(2, 2).to(DT)
    assert owning_module(plain.f) is None
    assert default_params(plain.f, torch.ones(2, dtype=DT), 0.0) == [plain.k]
    assert FuncTerm(lin.forward, torch.ones(2, dtype=DT)).module() is lin


@pytest.mark.parametrize("out", [None, 3.0, [torch.ones(2, dtype=DT)]])
def test_a_probe_that_returns_no_state_finds_no_parameters(out):
    """default_params of a func returning neither a tensor nor a tuple: no parameters (the check of
    what func returns comes later, with its own message)."""
    a = torch.tensor(1.0, dtype=DT, requires_grad=True)
    result = [a * 2] if isinstance(out, list) else out
    assert default_params(lambda t, y: result, torch.ones(2, dtype=DT), 0.0) == []


def test_a_wrong_noise_return_is_caught_on_the_first_call_only():
    """SDETerm checks what g returns on its first call only (later calls are trusted)."""
    calls = []

    def g(t, y):
        calls.append(1)
        return torch.ones_like(y) if len(calls) == 1 else torch.ones(3, dtype=DT)

    y0 = torch.ones(2, dtype=DT)
    sde = SDETerm(FuncTerm(lambda t, y: y, y0), g, BrownianPath(0.0, 1.0, (2,), seed=1, dtype=DT), y0)
    sde.diffusion(0.0, y0)
    assert sde.diffusion(0.5, y0).shape == (3,)


def test_time_tensor_cache_clear_empties_both_caches():
    """time_tensor.cache_clear() forgets the cached tensors of both modes: the next call makes a new one."""
    outside = time_tensor(0.125, DT, torch.device("cpu"))
    with torch.inference_mode():
        inside = time_tensor(0.125, DT, torch.device("cpu"))
    time_tensor.cache_clear()
    assert time_tensor(0.125, DT, torch.device("cpu")) is not outside
    with torch.inference_mode():
        assert time_tensor(0.125, DT, torch.device("cpu")) is not inside
