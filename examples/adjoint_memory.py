"""Memory and time of one training step for backprop, adjoint and checkpointing as depth grows.

    python examples/adjoint_memory.py [--quick] [--out DIR] [--max-gb GB] [--seed S] [--threads N]

Seed 000 ch. 5: the adjoint method's memory is constant in depth. Two fields:

* ``conv``: ConvResidual (relu, 3x3), 16 channels, MNIST-sized states 28x28 (batch 32; quick 4);
* ``dense``: CubicFriction (gamma = 0.1) of width 8 on a peaks-sized state (batch 5000), small random weights.

Both have 16 control knots on [0, 1] (quick: 4). For Euler and RK4 with 8, 16, ..., 256 steps
(quick: 8, 16) and dopri5 at several
tolerances, each gradient method's training step (solve, mean-square loss, backward) is measured:

* saved-for-backward bytes (``saved_tensor_bytes`` around the solve: exact, noise-free);
* peak-RSS growth of a fresh subprocess (``peak_rss_growth``: peak of the full step minus the peak
  of a child that only builds the model and input) -- catches what autograd does not save;
* time: median of interleaved repetitions, single-threaded.

For contrast, ``torch_checkpoint`` is a hand-written classical RK4 loop with
``torch.utils.checkpoint(use_reentrant=False)`` around each step. Backprop configurations whose
saved bytes (extrapolated linearly from 8 steps) exceed ``--max-gb`` are skipped and say so.
Quick mode measures peak RSS only for the conv RK4 configurations at the largest step count.

Writes ``metrics.json``, ``memory.png`` and ``time.png`` to ``--out``.

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 27 s; the full run about 45 min.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

from _cli import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    parser = cli.example_parser(__doc__, default_out="runs/adjoint_memory",
                                quick_help="fewer steps, smaller conv batch, RSS for one group")
    parser.add_argument("--max-gb", type=cli.positive_float, default=4.0, help="skip backprop configurations above this")
    return parser.parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.utils.checkpoint  # noqa: E402

import contdepth as cd  # noqa: E402
import contdepth.plot as cplot  # noqa: E402
from contdepth.analysis.memory import saved_tensor_bytes  # noqa: E402
from contdepth.analysis.profiling import peak_rss_growth  # noqa: E402
from contdepth.solvers import RK4, FixedGrid, RungeKutta  # noqa: E402

GRADIENTS = ("backprop", "adjoint", "checkpoint")
REFERENCE = "torch_checkpoint"
MiB = 2 ** 20


def build(field: str, batch: int, knots: int = 16, seed: int = 0) -> tuple[cd.fields.ControlledField, torch.Tensor]:
    """The field (``knots`` control knots on [0, 1]) and input of a configuration, deterministic in ``seed``."""
    torch.manual_seed(seed)
    if field == "conv":
        f = cd.fields.ConvResidual(16, cd.ControlGrid(0.0, 1.0, knots))
        return f, torch.randn(batch, 16, 28, 28)
    if field == "dense":
        f = cd.fields.CubicFriction(8, cd.ControlGrid(0.0, 1.0, knots), gamma=0.1)
        with torch.no_grad():
            f.weight.normal_(0.0, 0.2)
            f.bias.normal_(0.0, 0.1)
        return f, torch.randn(batch, 8)
    raise ValueError(f"field must be 'conv' or 'dense', got {field!r}")


def torch_checkpoint_rk4(f: cd.fields.ControlledField, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Classical RK4 (contdepth's own step), each step wrapped in
    ``torch.utils.checkpoint(use_reentrant=False)``: the PyTorch-native way to checkpoint."""
    grid, stepper, term = FixedGrid.uniform(f.grid.t0, f.grid.t1, steps), RungeKutta(RK4), f.make_term()

    def step(y: torch.Tensor, t: float) -> torch.Tensor:
        return stepper.step(term, t, grid.h, y, ())[0]

    y = x
    for t in grid.times[:-1]:
        y = torch.utils.checkpoint.checkpoint(step, y, t, use_reentrant=False)
    return y


def train_step(f: cd.fields.ControlledField, x: torch.Tensor, method: str, gradient: str, steps: int | None,
               rtol: float | None) -> dict:
    """One training step; returns saved bytes of the solve, nfe and whether the gradients are finite."""
    for p in f.parameters():
        p.grad = None
    with saved_tensor_bytes() as saved:
        if gradient == REFERENCE:
            y, stats = torch_checkpoint_rk4(f, x, steps), None
        else:
            kwargs = dict(steps=steps) if steps is not None else dict(rtol=rtol, atol=rtol * 1e-2)
            sol = cd.solve(f, x, method=method, gradient=gradient, **kwargs)
            y, stats = sol.y1, sol.stats
    y.square().mean().backward()
    return dict(saved_bytes=saved.bytes, saved_tensors=saved.tensors,
                nfe_forward=stats.forward.nfe if stats else None, nfe_backward=stats.backward.nfe if stats else None,
                grads_finite=all(bool(torch.isfinite(p.grad).all()) for p in f.parameters() if p.grad is not None))


def workload(field: str, batch: int, knots: int, method: str, gradient: str, steps: int | None = None,
             rtol: float | None = None, seed: int = 0, threads: int = 1, build_only: bool = False) -> None:
    """Subprocess target for peak-RSS measurement: build the model and input, then (unless
    ``build_only``) run one training step."""
    torch.set_num_threads(threads)
    f, x = build(field, batch, knots, seed)
    if not build_only:
        train_step(f, x, method, gradient, steps, rtol)


def measure_group(field: str, batch: int, knots: int, method: str, gradients: list[str], steps: int | None,
                  rtol: float | None, reps: int, seed: int) -> list[dict]:
    """Saved bytes, nfe and interleaved median time of each gradient method for one configuration."""
    f, x = build(field, batch, knots, seed)
    rows = {g: dict(field=field, batch=batch, knots=knots, method=method, steps=steps, rtol=rtol, gradient=g)
            for g in gradients}
    grads = {}
    for g in gradients:
        rows[g].update(train_step(f, x, method, g, steps, rtol))
        grads[g] = [p.grad.clone() for p in f.parameters()]
    if "checkpoint" in grads and "backprop" in grads:
        rows["checkpoint"]["max_rel_diff_to_backprop"] = max(
            ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
            for a, b in zip(grads["checkpoint"], grads["backprop"]))
    times: dict[str, list[float]] = {g: [] for g in gradients}
    for r in range(reps):
        for g in gradients[r % len(gradients):] + gradients[:r % len(gradients)]:
            t0 = time.perf_counter()
            train_step(f, x, method, g, steps, rtol)
            times[g].append(time.perf_counter() - t0)
    for g in gradients:
        rows[g].update(time_s=statistics.median(times[g]), times_s=times[g])
    return [rows[g] for g in gradients]


def add_rss(row: dict, baselines: dict[tuple, int], seed: int) -> None:
    """Peak-RSS growth of ``row``'s training step, each child a fresh interpreter; the build-only
    baseline is measured once per model and input and kept in ``baselines``."""
    kwargs = dict(field=row["field"], batch=row["batch"], knots=row["knots"], method=row["method"],
                  gradient=row["gradient"], steps=row["steps"], rtol=row["rtol"], seed=seed,
                  threads=torch.get_num_threads())
    key = (row["field"], row["batch"], row["knots"])
    growth = peak_rss_growth(f"{Path(__file__).resolve()}:workload", kwargs, baseline_bytes=baselines.get(key))
    baselines[key] = growth.baseline_bytes
    row.update(rss_peak_bytes=growth.peak_bytes, rss_baseline_bytes=growth.baseline_bytes,
               rss_growth_bytes=growth.growth_bytes)


def run(quick: bool, max_bytes: float, seed: int = 0, log=print) -> dict:
    """All measurements (torch's current CPU threads, in this process and the RSS children); returns the metrics."""
    steps_list = [8, 16] if quick else [8, 16, 32, 64, 128, 256]
    rtols = [1e-2] if quick else [1e-3, 1e-5, 1e-7]
    reps = 1 if quick else 3
    knots = 4 if quick else 16
    batches = {"conv": 4 if quick else 32, "dense": 5000}
    rows: list[dict] = []
    for field, batch in batches.items():
        for method in ("euler", "rk4"):
            per_step_backprop = None
            for steps in steps_list:
                gradients = list(GRADIENTS) + ([REFERENCE] if field == "conv" and method == "rk4" else [])
                skipped = []
                if per_step_backprop is not None and per_step_backprop * steps > max_bytes:
                    skipped = [g for g in ("backprop", REFERENCE) if g in gradients]
                    gradients = [g for g in gradients if g not in skipped]
                group = measure_group(field, batch, knots, method, gradients, steps, None, reps, seed)
                for g in skipped:
                    group.append(dict(field=field, batch=batch, knots=knots, method=method, steps=steps, rtol=None, gradient=g,
                                      skipped=f"backprop-sized memory predicted above --max-gb "
                                              f"({per_step_backprop * steps / 2 ** 30:.1f} GB)"))
                if per_step_backprop is None:
                    per_step_backprop = next(r["saved_bytes"] for r in group if r["gradient"] == "backprop") / steps
                rows.extend(group)
                for r in group:
                    log(describe(r))
        for rtol in rtols:
            group = measure_group(field, batch, knots, "dopri5", ["backprop", "adjoint"], None, rtol, reps, seed)
            rows.extend(group)
            for r in group:
                log(describe(r))
    baselines: dict[tuple, int] = {}
    for r in rows:
        wanted = not quick or (r["field"] == "conv" and r["method"] == "rk4" and r["steps"] == steps_list[-1])
        if wanted and "skipped" not in r:
            add_rss(r, baselines, seed)
            log(f"  peak RSS growth {r['field']}/{r['method']}/{r['steps'] or r['rtol']}/{r['gradient']}: "
                f"{r['rss_growth_bytes'] / MiB:.0f} MiB")
    return dict(machine=dict(platform=platform.platform(), cpu_count=os.cpu_count(), python=platform.python_version(),
                             torch=torch.__version__, torch_num_threads=torch.get_num_threads()),
                quick=quick, seed=seed, reps=reps, max_gb=max_bytes / 2 ** 30, rows=rows, summary=summarise(rows, steps_list))


def describe(r: dict) -> str:
    where = f"steps={r['steps']}" if r["steps"] is not None else f"rtol={r['rtol']:g}"
    head = f"{r['field']:5s} B={r['batch']:<5d} {r['method']:6s} {where:11s} {r['gradient']:16s}"
    if "skipped" in r:
        return f"{head} skipped: {r['skipped']}"
    nfe = "" if r["nfe_forward"] is None else f" nfe {r['nfe_forward']}+{r['nfe_backward']}"
    return f"{head} saved {r['saved_bytes'] / MiB:9.1f} MiB  time {r['time_s'] * 1e3:9.1f} ms{nfe}"


def _find(rows: list[dict], **match) -> dict | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()) and "skipped" not in r:
            return r
    return None


def summarise(rows: list[dict], steps_list: list[int]) -> dict:
    """The issue's goals as numbers: adjoint growth in depth, checkpoint vs backprop, equality."""
    lo, hi = steps_list[0], steps_list[-1]
    mid = 64 if 64 in steps_list else hi
    out: dict = {}
    for field in ("conv", "dense"):
        for method in ("euler", "rk4"):
            key = f"{field}/{method}"
            growth = {}
            for g in GRADIENTS:
                a, b = _find(rows, field=field, method=method, steps=lo, gradient=g), \
                    _find(rows, field=field, method=method, steps=hi, gradient=g)
                if a and b:
                    growth[g] = b["saved_bytes"] / a["saved_bytes"]
            cp, bp = _find(rows, field=field, method=method, steps=mid, gradient="checkpoint"), \
                _find(rows, field=field, method=method, steps=mid, gradient="backprop")
            out[key] = dict(
                saved_bytes_growth_steps=f"{lo}->{hi}", saved_bytes_growth=growth,
                checkpoint_over_backprop_steps=mid,
                checkpoint_over_backprop_saved=cp["saved_bytes"] / bp["saved_bytes"] if cp and bp else None,
                checkpoint_max_rel_diff_to_backprop=max((r["max_rel_diff_to_backprop"] for r in rows
                                                         if r["field"] == field and r["method"] == method
                                                         and "max_rel_diff_to_backprop" in r), default=None))
    return out


def plot(metrics: dict, out: Path) -> None:
    """memory.png (saved bytes solid, peak-RSS growth dashed) and time.png, one line per gradient method."""
    rows = [r for r in metrics["rows"] if r["steps"] is not None and "skipped" not in r]
    steps = sorted({r["steps"] for r in rows})
    for name, ylabel in (("memory", "MiB"), ("time", "seconds per training step")):
        fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
        for i, field in enumerate(("conv", "dense")):
            for k, method in enumerate(("euler", "rk4")):
                ax = axes[i][k]
                for n, g in enumerate(GRADIENTS + (REFERENCE,)):
                    sel = sorted((r for r in rows if r["field"] == field and r["method"] == method
                                  and r["gradient"] == g), key=lambda r: r["steps"])
                    if not sel:
                        continue
                    color = f"C{n}"
                    if name == "memory":
                        ax.plot([r["steps"] for r in sel], [r["saved_bytes"] / MiB for r in sel], "o-", color=color,
                                label=f"{g}: saved for backward")
                        rss = [r for r in sel if "rss_growth_bytes" in r]
                        if rss:
                            ax.plot([r["steps"] for r in rss], [max(r["rss_growth_bytes"], 1) / MiB for r in rss],
                                    "s--", color=color, label=f"{g}: peak RSS growth")
                    else:
                        ax.plot([r["steps"] for r in sel], [r["time_s"] for r in sel], "o-", color=color, label=g)
                batch = next((r["batch"] for r in rows if r["field"] == field), "?")
                ax.set(xscale="log", yscale="log", xlabel="steps", ylabel=ylabel, title=f"{field} (B={batch}), {method}")
                cplot.plain_log_ticks(ax.xaxis, steps)  # 8, 16, 32, ... instead of 10^x labels
                cplot.plain_log_ticks(ax.yaxis)  # 0.2, 0.5, 1, 2, ... instead of 2x10^-1
                ax.grid(True, which="both", alpha=0.3)
        labels: dict = {}
        for ax in axes.flat:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                labels.setdefault(label, handle)
        fig.tight_layout()
        fig.legend(list(labels.values()), list(labels), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
        cplot.save(fig, out / f"{name}.png", dpi=110)


def main(args: argparse.Namespace) -> None:
    out = cli.start(args)
    log = (lambda line: None) if args.no_progress else print
    metrics = run(args.quick, args.max_gb * 2 ** 30, args.seed, log=log)
    plot(metrics, out)
    print(cli.finish(out, metrics, [f"{key}: saved-bytes growth {s['saved_bytes_growth_steps']} steps "
                                + ", ".join(f"{g} x{v:.2f}" for g, v in s["saved_bytes_growth"].items())
                                for key, s in metrics["summary"].items()]))


if __name__ == "__main__":
    main(ARGS)
