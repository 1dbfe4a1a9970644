"""Markdown tables from the JSON of ``benchmarks/run.py`` and ``examples/adjoint_memory.py``.

    python benchmarks/report.py --bench bench.json [--memory metrics.json]

Prints the tables used in ``docs/PERFORMANCE.md``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

MiB = 2 ** 20


def _ms(seconds: float | None) -> str:
    return "failed" if seconds is None else f"{1e3 * seconds:.1f}"


def speed_table(bench: dict) -> str:
    """One row per case and baseline: times, ratio, nfe."""
    lines = ["| case | threads | baseline | ours ms | baseline ms | ratio | paired ratio | nfe ours / baseline |",
             "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in bench["cases"]:
        ratio = "-" if r["ratio"] is None else f"**{r['ratio']:.2f}**"
        paired = "-" if r.get("paired_ratio") is None else f"{r['paired_ratio']:.2f}"
        threads = r.get("threads", bench["machine"].get("torch_num_threads", "-"))
        lines.append(f"| {r['case']} | {threads} | {r['baseline']} | {_ms(r['ours_s'])} | {_ms(r['baseline_s'])} "
                     f"| {ratio} | {paired} | {r['nfe_ours']} / {r['nfe_baseline']} |")
    return "\n".join(lines)


def knots_table(bench: dict) -> str:
    """dopri5 work with and without the control knots declared."""
    lines = ["| field | rtol | declared: nfe / accepted / rejected | not declared: nfe / accepted / rejected |",
             "|---|---|---|---|"]
    rows = bench.get("dopri5_knots", [])
    for on in (r for r in rows if r["declare_jumps"]):
        off = next(r for r in rows if not r["declare_jumps"] and r["field"] == on["field"] and r["rtol"] == on["rtol"])
        lines.append(f"| {on['field']} (B={on['batch']}, {on['knots']} knots) | {on['rtol']:g} "
                     f"| {on['nfe']} / {on['accepted_steps']} / {on['rejected_steps']} "
                     f"| {off['nfe']} / {off['accepted_steps']} / {off['rejected_steps']} |")
    return "\n".join(lines)


def memory_table(metrics: dict, field: str, method: str) -> str:
    """Saved bytes, peak-RSS growth and time per gradient method and step count."""
    rows = [r for r in metrics["rows"] if r["field"] == field and r["method"] == method]
    lines = ["| steps / rtol | gradient | saved MiB | peak-RSS growth MiB | time s | nfe fwd+bwd |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        where = r["steps"] if r["steps"] is not None else f"rtol {r['rtol']:g}"
        if "skipped" in r:
            lines.append(f"| {where} | {r['gradient']} | skipped: {r['skipped']} | | | |")
            continue
        rss = f"{r['rss_growth_bytes'] / MiB:.0f}" if "rss_growth_bytes" in r else "-"
        nfe = "-" if r["nfe_forward"] is None else f"{r['nfe_forward']}+{r['nfe_backward']}"
        lines.append(f"| {where} | {r['gradient']} | {r['saved_bytes'] / MiB:.1f} | {rss} | {r['time_s']:.3f} "
                     f"| {nfe} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bench", type=Path, help="JSON written by benchmarks/run.py")
    parser.add_argument("--memory", type=Path, help="metrics.json written by examples/adjoint_memory.py")
    args = parser.parse_args(argv)
    if args.bench is None and args.memory is None:
        parser.error("give --bench and/or --memory")
    if args.bench is not None:
        bench = json.loads(args.bench.read_text())
        print(f"machine: {bench['machine']}\n\n{speed_table(bench)}\n")
        if bench.get("dopri5_knots"):
            print(f"{knots_table(bench)}\n")
    if args.memory is not None:
        metrics = json.loads(args.memory.read_text())
        for field in ("conv", "dense"):
            batch = next(r["batch"] for r in metrics["rows"] if r["field"] == field)
            for method in ("euler", "rk4", "dopri5"):
                print(f"#### {field} (B={batch}), {method}\n\n{memory_table(metrics, field, method)}\n")
        print(json.dumps(metrics["summary"], indent=1))


if __name__ == "__main__":
    main()
