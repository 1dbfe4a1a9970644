"""The command line shared by the planar examples: ``--quick``, ``--out DIR``, ``--threads N``."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch


def quick_out_threads(description: str, *, default_out: str, quick_help: str) -> tuple[bool, Path]:
    """Parse the shared flags, set torch's CPU threads, create the output folder; return ``(quick, out)``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", default=default_out, help="output folder for metrics.json and figures")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = parser.parse_args()
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    return args.quick, out
