"""dopri5 on piecewise-constant theta: work and error with the control knots declared as jumps vs not.

    python benchmarks/dopri5_knots.py [--json out.json]

Field: DenseResidual(8), tanh, T = 20, 16 control knots, random theta, batch 256, float64 (the
peaks configuration of seed 004). Reference: RK4 with 4096 steps (steps a multiple of n).
"""
from __future__ import annotations

import argparse
import json
import os
import platform

import torch

import contdepth as cd
from contdepth.io import write_json_atomic


def measure(rtols=(1e-3, 1e-5, 1e-7)) -> dict:
    torch.manual_seed(0)
    field = cd.fields.DenseResidual(8, cd.ControlGrid(t0=0.0, t1=20.0, n=16), activation="tanh").double()
    x = torch.randn(256, 8, dtype=torch.float64)
    reference = cd.odesolve(field, x, method="rk4", steps=16 * 256)
    cases = []
    for rtol in rtols:
        for declare in (True, False):
            sol = cd.solve(field, x, method="dopri5", rtol=rtol, atol=rtol * 1e-2, declare_jumps=declare)
            f = sol.stats.forward
            cases.append({"rtol": rtol, "atol": rtol * 1e-2, "knots_declared": declare, "nfe": f.nfe,
                          "accepted_steps": f.accepted_steps, "rejected_steps": f.rejected_steps,
                          "max_error": (sol.y1 - reference).abs().max().item()})
    return {"machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "torch": torch.__version__, "cases": cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file (atomically)")
    args = parser.parse_args()
    result = measure()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_json_atomic(args.json, result)


if __name__ == "__main__":
    main()
