"""Memory measurement against known answers: saved-for-backward bytes and fresh-process peak RSS."""
from __future__ import annotations

import sys

import pytest
import torch

import contdepth as cd
from contdepth.analysis.memory import saved_tensor_bytes
from contdepth.analysis.profiling import child_peak_rss, peak_rss_growth, resolve_target

MiB = 2 ** 20


def allocate(mb: int, build_only: bool) -> None:
    """Subprocess target: import torch (both runs), then hold ``mb`` MiB of touched memory."""
    import torch as t
    if not build_only:
        block = t.ones(mb * MiB // 4)
        assert float(block[-1]) == 1.0


def test_saved_bytes_of_a_product():
    x = torch.randn(3, 5, requires_grad=True)
    w = torch.randn(3, 5, requires_grad=True)
    with saved_tensor_bytes() as m:
        y = x * w
    assert (m.bytes, m.tensors) == (2 * 15 * 4, 2)      # mul saves both operands
    y.sum().backward()
    assert torch.equal(x.grad, w)


def test_a_storage_saved_twice_counts_once():
    x = torch.randn(7, dtype=torch.float64, requires_grad=True)
    with saved_tensor_bytes() as m:
        x * x
    assert (m.bytes, m.tensors) == (7 * 8, 1)


@pytest.mark.parametrize("length", [1, 10, 100])
def test_saved_bytes_of_a_linear_graph(length):
    x = torch.randn(4, 6, dtype=torch.float64, requires_grad=True)
    with saved_tensor_bytes() as m:
        y = x
        for _ in range(length):
            y = torch.sin(y)                            # sin saves its input: one (4, 6) float64 per op
    assert m.bytes == length * 4 * 6 * 8
    assert m.tensors == length


def test_views_share_their_storage():
    x = torch.randn(10, 10, requires_grad=True)
    with saved_tensor_bytes() as m:
        (x[0] * x[1]).sin()                             # saves views x[0], x[1] and the product
    assert m.bytes == 100 * 4 + 10 * 4


def test_adjoint_saved_bytes_do_not_grow_with_steps():
    field = cd.fields.ConvResidual(2, cd.ControlGrid(0.0, 1.0, 4))
    x = torch.randn(3, 2, 5, 5)
    saved = {}
    for steps in (8, 64):
        with saved_tensor_bytes() as m:
            cd.odesolve(field, x, method="rk4", steps=steps, gradient="adjoint")
        saved[steps] = m.bytes
    assert saved[8] == saved[64] == x.numel() * 4         # only y(t1)


def test_peak_rss_growth_sees_a_known_allocation():
    growth = peak_rss_growth(f"{__file__}:allocate", {"mb": 200})
    assert 190 * MiB <= growth.growth_bytes <= 230 * MiB, growth


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_child_peak_is_not_inherited_from_a_large_parent():
    """getrusage's ru_maxrss survives fork + exec; the measurement must not."""
    ballast = torch.ones(600 * MiB // 4)
    baseline = child_peak_rss(f"{__file__}:allocate", {"mb": 0, "build_only": True})
    rss = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmRSS:"))
    assert baseline < rss - 500 * MiB
    del ballast


@pytest.mark.parametrize("target, message", [
    ("no_colon", "module:function"),
    ("/nonexistent/file.py:f", "does not exist"),
    ("contdepth.io:missing_function", "no function"),
])
def test_resolve_target_errors_name_the_problem(target, message):
    with pytest.raises(ValueError, match=message):
        resolve_target(target)


def test_resolve_target_file_imports_its_siblings(tmp_path):
    """A target file is loaded as ``python FILE`` would load it: it can import a module beside it."""
    folder = tmp_path / "scripts"
    folder.mkdir()
    (folder / "_helper_for_resolve_target.py").write_text("VALUE = 41\n")
    (folder / "main.py").write_text("from _helper_for_resolve_target import VALUE\n\ndef f():\n    return VALUE + 1\n")
    assert resolve_target(f"{folder / 'main.py'}:f")() == 42


def test_peak_rss_growth_owns_build_only():
    with pytest.raises(ValueError, match="build_only"):
        peak_rss_growth(f"{__file__}:allocate", {"mb": 1, "build_only": False})
