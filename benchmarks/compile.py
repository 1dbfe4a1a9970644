"""``torch.compile`` of a training step: compile time, steady-state speed, break-even, in one process.

    python benchmarks/compile.py [--reps N] [--only SUBSTRING] [--backend B] [--json out.json]

Per case one training step (solve, mean-square loss, backward) three ways: eager (the library as
it is), ``torch.compile`` of the forward (the solve and the loss; the backward runs the graph
AOTAutograd compiled with it), and torchdiffeq eager as the outside reference. The MNIST cases:
one step of ``build_mnist_model(M)`` (cross entropy, the example's batch), eager and compiled. ``compile_s`` is
the first compiled call minus a steady compiled call, with an empty inductor cache (a fresh
``TORCHINDUCTOR_CACHE_DIR``: what a user's first run pays). The steady times come from
interleaved rounds. The eager times are taken before anything is compiled: after a compiled
step has run, the eager step of the cubic MNIST model in the same process took 1.3x as long
(``eager_after_compile_s`` records it). ``ratio`` = median(compiled) / median(eager), ``vs_torchdiffeq`` =
median(compiled) / median(torchdiffeq); ``break_even_steps`` = compile_s / (eager - compiled), the
training steps after which compiling has paid (None if it never does). Single-threaded.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="contdepth-inductor-")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import Case, make_field, torchdiffeq  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402
from fused import field_step, mnist_step  # noqa: E402
from run import case_parser, interleave, machine  # noqa: E402

# (field, batch, method, steps, gradient)
CASES = [("dense", 64, "euler", 64, "backprop"), ("dense", 64, "rk4", 64, "backprop"),
         ("dense", 5000, "rk4", 64, "backprop"), ("dense", 64, "rk4", 64, "checkpoint"),
         ("conv", 32, "euler", 32, "backprop"), ("conv", 32, "rk4", 32, "backprop")]
MNIST_CASES = [("pde1", 128), ("resnet", 128), ("cubic", 64)]


def steps(kind: str, batch: int, method: str, n: int, gradient: str, backend: str) -> dict[str, Callable[[], None]]:
    """The eager, compiled and torchdiffeq training steps of one case (each its own copy of the field)."""
    field, x = make_field(kind, batch=batch)
    return {"eager": field_step(kind, batch, method, n, gradient),
            "compiled": field_step(kind, batch, method, n, gradient, compile_backend=backend),
            "torchdiffeq": torchdiffeq(Case("torchdiffeq", field, x, method, gradient, steps=n))}


def mnist_steps(name: str, batch: int, backend: str) -> dict[str, Callable[[], None]]:
    """One eager and one compiled training step of the MNIST model ``name`` (each its own copy)."""
    return {"eager": mnist_step(name, batch), "compiled": mnist_step(name, batch, compile_backend=backend)}


def fresh_process_row(label: str, args) -> dict:
    """This script on the one case ``label`` in a new interpreter (its printed line passed on)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "case.json"
        subprocess.run([sys.executable, __file__, "--only", label, "--reps", str(args.reps), "--backend",
                        args.backend, "--json", str(out)], check=True, stderr=subprocess.DEVNULL)
        return json.loads(out.read_text())["cases"][0]


def first_call_s(run: Callable[[], None]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def measure(label: str, runs: dict[str, Callable[[], None]], reps: int, *, baseline: str = "eager") -> dict:
    """The uncompiled rounds (``baseline``, and torchdiffeq if given) before anything is compiled, the
    first compiled call, then interleaved rounds of all; one result row, printed. ``ratio`` = compiled /
    ``baseline``, each a median."""
    before = interleave({k: v for k, v in runs.items() if k != "compiled"}, reps)
    first = first_call_s(runs["compiled"])
    times = interleave(runs, reps)
    med = {k: statistics.median(v) for k, v in before.items()}
    med["compiled"] = statistics.median(times["compiled"])
    compile_s = first - med["compiled"]
    gain = med[baseline] - med["compiled"]
    row = {"case": label, f"{baseline}_s": med[baseline], "compiled_s": med["compiled"],
           f"{baseline}_after_compile_s": statistics.median(times[baseline]),
           "ratio": med["compiled"] / med[baseline], "compile_s": compile_s,
           "break_even_steps": compile_s / gain if gain > 0 else None,
           "times_s": times, "times_before_compile_s": before}
    if "torchdiffeq" in med:
        row.update(torchdiffeq_s=med["torchdiffeq"], eager_vs_torchdiffeq=med["eager"] / med["torchdiffeq"],
                   vs_torchdiffeq=med["compiled"] / med["torchdiffeq"])
    even = "never" if row["break_even_steps"] is None else f"{row['break_even_steps']:.0f} steps"
    versus = f", vs torchdiffeq {row['vs_torchdiffeq']:.2f}" if "vs_torchdiffeq" in row else ""
    print(f"{label:36s} {baseline} {1e3 * med[baseline]:7.2f} ms  compiled {1e3 * med['compiled']:7.2f} ms "
          f"(ratio {row['ratio']:.2f}{versus})  compile {compile_s:5.1f} s, pays after {even}", flush=True)
    return row


def main() -> None:
    parser = case_parser(__doc__)
    parser.add_argument("--backend", default="inductor", help="torch.compile's backend (default inductor)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = {f"{k}(B={b})/{m}/{g}/steps={n}": (lambda k=k, b=b, m=m, n=n, g=g: steps(k, b, m, n, g, args.backend))
             for k, b, m, n, g in CASES}
    cases.update({f"mnist-{name}(B={b})": (lambda name=name, b=b: mnist_steps(name, b, args.backend))
                  for name, b in MNIST_CASES})
    labels = [label for label in cases if args.only in label]
    if len(labels) > 1:  # one fresh process per case: compiled code slows later eager runs in its process
        rows = [fresh_process_row(label, args) for label in labels]
    else:
        rows = [measure(label, cases[label](), args.reps) for label in labels]
    if args.json:
        write_json_atomic(args.json, {"machine": machine(), "reps": args.reps, "backend": args.backend,
                                      "cases": rows})


if __name__ == "__main__":
    main()
