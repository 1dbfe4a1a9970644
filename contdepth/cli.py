"""The command line every example shares: ``--quick``, ``--out``, ``--seed``, ``--threads``,
``--no-progress``, argparse ``type=`` validators, and one-line errors (exit 2) before any work.

This module imports only the standard library (torch is imported by ``start`` and ``finish``), so an
example can load it without importing contdepth or torch, parse its options, and fail on a bad one
in a fraction of a second: see ``load_light``. Options are never abbreviated (``--epoch`` is an
error, not ``--epochs``).
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, NoReturn

__all__ = ["ExampleParser", "example_parser", "start", "finish", "positive_int", "nonnegative_int",
           "positive_float", "nonnegative_float", "out_dir"]


class ExampleParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line, ``PROG: error: MESSAGE``, exit status 2, and
    which accepts no abbreviated option (``allow_abbrev=False`` unless given)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _number(kind: type, lowest: float, strict: bool, what: str) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
        if not math.isfinite(value) or value < lowest or (strict and value == lowest):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
        return value
    parse.__name__ = what
    parse.__doc__ = f"An argparse ``type=``: the text as {what}, else ``ArgumentTypeError`` (exit 2 naming the option)."
    return parse


positive_int = _number(int, 0, True, "an integer >= 1")
nonnegative_int = _number(int, 0, False, "an integer >= 0")
positive_float = _number(float, 0.0, True, "a finite number > 0")
nonnegative_float = _number(float, 0.0, False, "a finite number >= 0")


def out_dir(text: str) -> Path:
    """An output folder: absent (it will be created) or an existing directory, never a file."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} exists and is not a directory")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{text!r}: {str(parent)!r} is not a directory")
            break
    return path


def example_parser(doc: str, *, default_out: str | None, quick_help: str) -> ExampleParser:
    """The parser of an example: its docstring's first line as description plus the shared flags.

    ``default_out=None`` leaves ``--out`` to default to None (the example then picks a folder).
    """
    parser = ExampleParser(description=doc.strip().splitlines()[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--out", type=out_dir, default=None if default_out is None else Path(default_out),
                        help="output folder for metrics.json and the PNG figures")
    parser.add_argument("--seed", type=nonnegative_int, default=0, help="random seed")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def start(args: argparse.Namespace) -> Path:
    """Set torch's CPU threads from ``args.threads``, create ``args.out`` and return it."""
    import torch

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    return args.out


def finish(out: Path, metrics: dict, summary: list[str]) -> str:
    """Write ``out/metrics.json`` atomically; return the ``summary`` lines plus a line naming what was written."""
    from .io import write_json_atomic

    write_json_atomic(out / "metrics.json", metrics)
    figures = sorted(p.name for p in out.glob("*.png"))
    return "\n".join([*summary, f"wrote {out / 'metrics.json'} and {len(figures)} figures ({', '.join(figures)})"])
