"""Peak resident memory of a workload, measured in a fresh Python process.

Saved-for-backward bytes (:mod:`contdepth.analysis.memory`) are exact but miss everything
autograd does not save: recomputation buffers, allocator slack, temporaries of the backward pass.
Peak RSS catches all of it, but it is a high-water mark of the whole process, so each measurement
needs its own process. :func:`peak_rss_growth` runs the workload twice in fresh interpreters --
once fully, once with ``build_only=True`` (imports, model and input only) -- and reports the
difference of the two peaks.

A workload is a function named by ``"package.module:function"`` or ``"/path/to/file.py:function"``
that takes keyword arguments (JSON-serialisable) including ``build_only: bool``.
"""
from __future__ import annotations

import importlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

_MARKER = "CONTDEPTH_PEAK_RSS "


@dataclass(frozen=True)
class RSSGrowth:
    """Peak RSS (bytes) of the full run, of the build-only run, and their difference."""

    peak_bytes: int
    baseline_bytes: int

    @property
    def growth_bytes(self) -> int:
        return self.peak_bytes - self.baseline_bytes


def resolve_target(target: str) -> Callable[..., Any]:
    """The function named by ``"module:function"`` or ``"/path/file.py:function"``; a file is
    loaded as ``python /path/file.py`` would load it, with its folder first on ``sys.path`` (so
    it can import its siblings, as the examples import ``_cli``)."""
    if not isinstance(target, str) or target.count(":") < 1:
        raise ValueError(f"target must look like 'module:function' or '/path/file.py:function', got {target!r}")
    location, _, name = target.rpartition(":")
    if location.endswith(".py"):
        path = Path(location)
        if not path.is_file():
            raise ValueError(f"target file {location!r} does not exist")
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(f"_contdepth_target_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"target {target!r}: {location} has no function {name!r}")
    return fn


def _self_peak_rss_bytes() -> int:
    """Peak RSS of this process's current address space.

    On Linux this is ``VmHWM`` from ``/proc/self/status``, not ``getrusage().ru_maxrss``: the
    kernel carries ``ru_maxrss`` across ``fork`` and ``execve``, so a child started by a large
    parent reports at least the parent's size (a 1 GB parent made every child report 1 GB, growth
    0). ``VmHWM`` belongs to the address space created by ``execve``. Elsewhere ``ru_maxrss``
    (bytes on macOS) is the best available.
    """
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def child_peak_rss(target: str, kwargs: dict[str, Any], *, timeout: float = 1800.0) -> int:
    """Run ``target(**kwargs)`` in a fresh interpreter and return that process's peak RSS in bytes.

    Raises ``RuntimeError`` with the child's stderr if it fails or times out.
    """
    if not isinstance(kwargs, dict):
        raise TypeError(f"kwargs must be a dict, got {type(kwargs).__name__}")
    if not timeout > 0:
        raise ValueError(f"timeout must be positive, got {timeout!r}")
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "contdepth.analysis.profiling", target, json.dumps(kwargs)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        raise RuntimeError(f"peak-RSS child for {target} {kwargs} timed out after {timeout} s") from err
    lines = [line for line in done.stdout.splitlines() if line.startswith(_MARKER)]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"peak-RSS child for {target} {kwargs} failed (exit {done.returncode}):\n"
                           f"{done.stderr[-4000:]}")
    return int(lines[-1][len(_MARKER):])


def peak_rss_growth(target: str, kwargs: dict[str, Any], *, baseline_bytes: int | None = None,
                    timeout: float = 1800.0) -> RSSGrowth:
    """Peak RSS of ``target(**kwargs, build_only=False)`` and of the build-only baseline, each fresh.

    ``baseline_bytes``: a build-only peak measured before for the same model and input (several
    gradient methods share one); measured here when ``None``.
    """
    if "build_only" in kwargs:
        raise ValueError("kwargs must not contain 'build_only'; peak_rss_growth sets it")
    if baseline_bytes is None:
        baseline_bytes = child_peak_rss(target, {**kwargs, "build_only": True}, timeout=timeout)
    peak = child_peak_rss(target, {**kwargs, "build_only": False}, timeout=timeout)
    return RSSGrowth(peak_bytes=peak, baseline_bytes=baseline_bytes)


def _main(argv: list[str]) -> int:
    if len(argv) != 2:
        sys.stderr.write("usage: python -m contdepth.analysis.profiling TARGET JSON_KWARGS\n")
        return 2
    resolve_target(argv[0])(**json.loads(argv[1]))
    sys.stdout.write(f"\n{_MARKER}{_self_peak_rss_bytes()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
