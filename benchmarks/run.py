"""Training-step speed of contdepth against a hand-written loop and torchdiffeq.

    python benchmarks/run.py [--quick] [--json out.json] [--reps N]

For every case (conv field on 28x28 states; the peaks dense field at its full batch of 5000,
where kernels dominate, and at batch 64, where per-step overhead dominates; Euler, RK4, dopri5;
backprop and adjoint) the runners -- contdepth and each applicable baseline -- are timed in interleaved
rounds in one process (the order rotates every round), one training step (solve, loss,
backward) per timing. Reported: medians, ``ratio`` = median(ours) / median(baseline), and
``paired_ratio`` = the median over rounds of ours / baseline within a round (robust to load that
drifts between rounds). Absolute times on a shared machine are noisy; the interleaved ratios are
what to read. Every case runs at one torch thread and at torch's default (the machine's cores),
the thread count of each row recorded in the JSON (``--threads 1`` for one of them only).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torchdiffeq as tdq

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contdepth as cd  # noqa: E402
from baselines import BASELINES, Case, baselines_for, make_field, ours  # noqa: E402
from contdepth.io import write_json_atomic  # noqa: E402

THREADS = (1, 0)  # 0: torch's default, the machine's cores


def build_cases(quick: bool) -> list[Case]:
    """The benchmark configurations (``quick``: small batches, few steps)."""
    conv_batch, conv_steps = (2, 8) if quick else (32, 32)
    dense_steps = 16 if quick else 64
    knots = 4 if quick else 16
    rtols = (1e-2,) if quick else (1e-3,)
    cases = []
    for kind, batch, steps in (("conv", conv_batch, conv_steps), ("dense", 5000, dense_steps),
                               ("dense", 64, dense_steps)):
        for method in ("euler", "rk4", "dopri5"):
            for gradient in ("backprop", "adjoint"):
                f, x = make_field(kind, batch=batch, knots=knots)
                label = f"{kind}(B={batch})/{method}/{gradient}"
                if method == "dopri5":
                    for rtol in rtols:
                        cases.append(Case(f"{label}/rtol={rtol:g}", f, x, method, gradient,
                                          rtol=rtol, atol=rtol * 1e-2))
                else:
                    cases.append(Case(f"{label}/steps={steps}", f, x, method, gradient, steps=steps))
    return cases


def time_case(case: Case, reps: int) -> list[dict]:
    """Interleaved timings of contdepth and the case's baselines; one result row per baseline.

    A runner that raises (e.g. torchdiffeq's adjoint meeting a non-finite state) is dropped from
    the remaining rounds and its row carries the error instead of a time.
    """
    names = ["ours"] + baselines_for(case)
    runners = {"ours": ours(case), **{b: BASELINES[b](case) for b in names[1:]}}
    times: dict[str, list[float]] = {n: [] for n in names}
    errors: dict[str, str] = {}

    def attempt(n: str) -> float | None:
        start = time.perf_counter()
        try:
            runners[n]()
        except (AssertionError, RuntimeError, ValueError) as err:
            errors[n] = f"{type(err).__name__}: {str(err)[:200]}"
            return None
        return time.perf_counter() - start

    for n in names:  # warm-up round, untimed
        attempt(n)
    for r in range(reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            if n not in errors:
                elapsed = attempt(n)
                if elapsed is not None:
                    times[n].append(elapsed)
    med = {n: statistics.median(v) if v and n not in errors else None for n, v in times.items()}
    common = dict(case=case.name, field=case.name.split("(")[0], batch=int(case.x.shape[0]), method=case.method,
                  gradient=case.gradient, steps=case.steps, knots=case.field.grid.n, rtol=case.rtol, atol=case.atol,
                  reps=reps, ours_s=med["ours"], ours_times_s=times["ours"], nfe_ours=case.nfe.get("ours"),
                  ours_error=errors.get("ours"))
    rows = []
    for b in names[1:]:
        ratio = med["ours"] / med[b] if med["ours"] is not None and med[b] is not None else None
        paired = [o / t for o, t in zip(times["ours"], times[b])] if ratio is not None else []
        rows.append(dict(common, baseline=b, baseline_s=med[b], baseline_times_s=times[b], ratio=ratio,
                         paired_ratio=statistics.median(paired) if paired else None,
                         nfe_baseline=case.nfe.get(b), baseline_error=errors.get(b)))
    return rows


def knot_counts(quick: bool) -> list[dict]:
    """dopri5 forward work on piecewise-constant theta with the control knots declared as jumps
    (``cd.solve``'s default) and without (``declare_jumps=False``), same tolerances."""
    knots = 4 if quick else 16
    rtols = (1e-2,) if quick else (1e-3, 1e-5, 1e-7)
    rows = []
    for kind, batch in (("conv", 2 if quick else 32), ("dense", 5000)):
        f, x = make_field(kind, batch=batch, knots=knots)
        for rtol in rtols:
            for declare in (True, False):
                with torch.no_grad():
                    stats = cd.solve(f, x, method="dopri5", rtol=rtol, atol=rtol * 1e-2, declare_jumps=declare).stats
                rows.append(dict(field=kind, batch=batch, knots=knots, rtol=rtol, atol=rtol * 1e-2,
                                 declare_jumps=declare, nfe=stats.forward.nfe,
                                 accepted_steps=stats.forward.accepted_steps,
                                 rejected_steps=stats.forward.rejected_steps))
    return rows


def machine() -> dict:
    """Where the numbers were measured."""
    try:
        commit = subprocess.run(["git", "-C", str(Path(__file__).resolve().parents[1]), "rev-parse", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return dict(platform=platform.platform(), processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(), python=platform.python_version(), torch=torch.__version__,
                torchdiffeq=tdq.__version__, torch_num_threads=torch.get_num_threads(), git_commit=commit)


def case_parser(doc: str, *, reps: int | None = 7) -> argparse.ArgumentParser:
    """The options every per-case timing script takes: ``--reps`` (unless ``reps`` is None),
    ``--only`` and ``--json``."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if reps is not None:
        parser.add_argument("--reps", type=int, default=reps, help="timed rounds per case")
    parser.add_argument("--only", default="", help="run the cases whose label contains this")
    parser.add_argument("--json", help="write the results to this file (atomically)")
    return parser


def interleave(runs: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Each runner once to warm up, then ``reps`` timed rounds of all of them, the order reversed
    every other round: per runner its times in seconds (the medians and ratios are the caller's)."""
    for run in runs.values():
        run()
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(reps):
        for name in names if r % 2 == 0 else names[::-1]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return times


def _ms(seconds: float | None) -> str:
    return "failed" if seconds is None else f"{1e3 * seconds:.2f}"


def format_row(row: dict) -> str:
    """One line of the printed table."""
    ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
    paired = "-" if row["paired_ratio"] is None else f"{row['paired_ratio']:.3f}"
    nfe = f"{row['nfe_ours']}/{row['nfe_baseline']}"
    line = (f"{row['case']:44s} {row['baseline']:18s} {_ms(row['ours_s']):>10s} {_ms(row['baseline_s']):>10s} "
            f"{ratio:>7s} {paired:>7s} {nfe:>11s}")
    for key in ("ours_error", "baseline_error"):
        if row[key]:
            line += f"  [{key}: {row[key][:80]}]"
    return line


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small cases, few repetitions (about a minute)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here (atomically)")
    parser.add_argument("--reps", type=int, default=None, help="timed rounds per case (default 2 quick, 5 full)")
    parser.add_argument("--only", default=None, help="run only the cases whose name contains this string")
    parser.add_argument("--threads", type=int, nargs="+", default=list(THREADS),
                        help="torch thread counts to run every case at (default: 1 and 0, torch's default: the "
                             "machine's cores)")
    args = parser.parse_args(argv)
    reps = args.reps if args.reps is not None else (2 if args.quick else 5)
    if reps < 1:
        parser.error(f"--reps must be >= 1, got {reps}")
    if any(n < 0 for n in args.threads):
        parser.error(f"--threads must be >= 0, got {args.threads}")
    threads = list(dict.fromkeys(n or os.cpu_count() or 1 for n in args.threads))
    rows = []
    cases = [c for c in build_cases(args.quick) if args.only is None or args.only in c.name]
    if not cases:
        parser.error(f"--only {args.only!r} matches no case")
    for n in threads:
        torch.set_num_threads(n)
        print(f"\n{n} torch thread(s)\n{'case':44s} {'baseline':18s} {'ours ms':>10s} {'base ms':>10s} {'ratio':>7s} "
              f"{'paired':>7s} {'nfe':>11s}")
        for case in cases:
            for row in time_case(case, reps):
                rows.append(dict(row, threads=n))
                print(format_row(row), flush=True)
    torch.set_num_threads(threads[0])
    knot_rows = knot_counts(args.quick) if args.only is None else []
    if knot_rows:
        print(f"\n{'dopri5 nfe, knots declared / not':44s} {'nfe':>6s} {'acc':>5s} {'rej':>5s}")
    for k in knot_rows:
        label = f"{k['field']}(B={k['batch']})/rtol={k['rtol']:g}/{'declared' if k['declare_jumps'] else 'not declared'}"
        print(f"{label:44s} {k['nfe']:6d} {k['accepted_steps']:5d} {k['rejected_steps']:5d}", flush=True)
    result = dict(machine=dict(machine(), torch_num_threads=threads), quick=args.quick, reps=reps, only=args.only,
                  cases=rows, dopri5_knots=knot_rows)
    if args.json is not None:
        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
