"""How Model 2 of examples/circles.py was set up: validation sweep and over-fitting diagnosis (docs/RESULTS.md).

1. sweep: ten SGD settings (momentum 0.9, cosine-annealed lr), all with random-rotation
   augmentation, scored on a validation set circles(2000, seed=100) (never on the test sets); the
   two best are re-run with four more training seeds.
2. diagnosis: Model 2 without augmentation, (a) optimised hard on the 400 points (Adam, full
   batch) and (b) trained on 20,000 points (with lambda = 1 and lambda = 0). Expected accuracy on
   circles(200000, seed=999).

    python examples/circles_study.py [--quick] [--out DIR] [--seed S] [--threads N] [--no-progress]

writes DIR/metrics.json (atomically) and DIR/validation.png. --quick runs one sweep setting with a thirtieth of the epochs and
short diagnoses (CI; numbers meaningless).

Times (2-core machine, one thread, wall; --quick alone on the idle machine, full runs as in the
docs): --quick 6 s; the full study 5 min 6 s.
"""
from __future__ import annotations

import argparse
import time

from _cli import cli


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The shared options, parsed before torch is imported (a bad one fails at once)."""
    return cli.example_parser(__doc__, default_out="out/circles_study",
                              quick_help="one short sweep setting, short diagnoses (CI)").parse_args(argv)


if __name__ == "__main__":
    ARGS = parse_args()

import contdepth.plot as cplot  # noqa: E402
from contdepth.data import circles  # noqa: E402
from contdepth.train import evaluate  # noqa: E402

from circles import EXPECTED_N, EXPECTED_SEED, LAMBDA, TRAIN_SEED, Model2, fit_circles, model2_correct, model2_loss  # noqa: E402

SWEEP = [  # (batch size or None = full batch, epochs, lr, clip_grad_norm)
    (50, 300, 1e-2, None), (50, 300, 3e-3, None), (50, 300, 1e-2, 1.0), (50, 1000, 1e-2, 1.0), (50, 300, 3e-2, 1.0),
    (100, 1000, 1e-2, 1.0), (None, 1000, 1e-2, None), (None, 3000, 1e-2, 1.0), (None, 1000, 3e-2, 1.0),
    (None, 3000, 3e-3, None),
]
EXTRA_SEEDS = (1, 2, 3, 4)


def train_model2(data, *, optimizer: str, epochs: int, lr: float, batch_size: int | None, clip: float | None,
                 augment: bool, lam: float = LAMBDA, seed: int = 0) -> Model2:
    model = Model2()
    fit_circles(model, model2_loss, model2_correct, data, epochs=epochs, lr=lr, batch_size=batch_size,
                clip_grad_norm=clip, augment=augment, optimizer=optimizer, lam=lam, seed=seed)
    return model


def main(args: argparse.Namespace) -> None:
    out, quick = cli.start(args), args.quick
    t0 = time.perf_counter()
    data, val, expected = circles(400, seed=TRAIN_SEED), circles(2000, seed=100), circles(EXPECTED_N, seed=EXPECTED_SEED)

    def scores(model: Model2, train=data) -> dict:
        sets = {"train": train, "val": val, "expected": expected}
        return {f"{k}_acc": evaluate(model, d, correct_fn=model2_correct, batch_size=len(d[1])) for k, d in sets.items()}

    sweep = []
    for bs, epochs, lr, clip in [(bs, e // 30, lr, clip) for bs, e, lr, clip in SWEEP[:1]] if quick else SWEEP:
        setting = {"batch_size": bs, "epochs": epochs, "lr": lr, "clip_grad_norm": clip}  # batch_size None: full batch
        runs = [scores(train_model2(data, optimizer="sgd", epochs=epochs, lr=lr, batch_size=bs, clip=clip, augment=True,
                                    seed=args.seed))]
        sweep.append({**setting, "runs": runs})
    best = sorted(sweep, key=lambda r: -r["runs"][0]["val_acc"])[:2]
    for r in best:
        for seed in EXTRA_SEEDS[:1] if quick else EXTRA_SEEDS:
            r["runs"].append(scores(train_model2(data, optimizer="sgd", epochs=r["epochs"], lr=r["lr"], batch_size=r["batch_size"],
                                                 clip=r["clip_grad_norm"], augment=True, seed=args.seed + seed)))
        r["mean_val_acc"] = sum(x["val_acc"] for x in r["runs"]) / len(r["runs"])

    steps = 50 if quick else 3000
    big = circles(20_000, seed=7)
    diagnosis = {
        "adam_full_batch_400_points": scores(train_model2(data, optimizer="adam", epochs=steps, lr=3e-3, batch_size=None,
                                                          clip=None, augment=False, seed=args.seed)),
        **{f"adam_20000_points_lambda_{lam:g}": scores(train_model2(big, optimizer="adam", epochs=max(1, steps // 50), lr=1e-2,
                                                                    batch_size=400, clip=None, augment=False, lam=lam,
                                                                    seed=args.seed), big)
           for lam in (LAMBDA, 0.0)},
    }
    labels = {f"SGD bs={r['batch_size'] or 'full'} {r['epochs']} ep lr={r['lr']:g} clip={r['clip_grad_norm']}":
              r["runs"][0]["val_acc"] for r in sweep}
    labels.update({f"diagnosis: {k}": v["val_acc"] for k, v in diagnosis.items()})
    cplot.save(cplot.bars(labels, xlabel="validation accuracy (circles(2000, seed=100))",
                          title="circles study: Model 2 settings"), out / "validation.png")
    metrics = {"quick": quick, "seed": args.seed, "sweep": sweep, "diagnosis": diagnosis,
               "validation_set": {"seed": 100, "n": 2000}, "expected_acc_set": {"seed": EXPECTED_SEED, "n": EXPECTED_N},
               "wall_s": time.perf_counter() - t0}
    summary = [f"{name}: validation {acc:.4f}" for name, acc in labels.items()]
    summary += [f"best: {b['batch_size'] or 'full'}-batch {b['epochs']} epochs lr {b['lr']:g}, mean validation "
                f"{b['mean_val_acc']:.4f} over {len(b['runs'])} seeds" for b in best[:1]]
    print(cli.finish(out, metrics, summary))


if __name__ == "__main__":
    main(ARGS)
