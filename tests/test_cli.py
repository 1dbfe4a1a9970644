"""The examples' shared command line: no abbreviated options, option errors before torch is imported,
and metrics.json written with the usual file mode."""
from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from contdepth.cli import ExampleParser, example_parser, finish
from contdepth.io import torch_save_atomic, write_json_atomic, write_text_atomic

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py") if not p.stem.startswith("_"))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}


def test_options_are_never_abbreviated(capsys):
    parser = example_parser("doc", default_out="out", quick_help="quick")
    parser.add_argument("--epochs", type=int, default=1)
    assert parser.parse_args(["--epochs", "3"]).epochs == 3
    for abbreviation in (["--epoch", "3"], ["--qui"], ["--thread", "2"]):
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args(abbreviation)
        assert exit_.value.code == 2
        assert f"unrecognized arguments: {' '.join(abbreviation)}" in capsys.readouterr().err
    assert ExampleParser().allow_abbrev is False and ExampleParser(allow_abbrev=True).allow_abbrev is True


# Python's own start-up plus argparse takes well under a second; importing torch takes seconds
# (2.7 s on an idle 2-core VM, 10-15 s when the machine is loaded). The torch check below is exact;
# the time bound only guards against a hang.
PROBE = """
import os, runpy, sys
sys.argv = [{script!r}, *{args!r}]
sys.path.insert(0, os.path.dirname({script!r}))  # as `python SCRIPT` has it
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit as e:
    print("torch imported:", "torch" in sys.modules, "contdepth imported:", "contdepth" in sys.modules, "exit:", e.code)
"""


@pytest.mark.parametrize("name", EXAMPLES)
@pytest.mark.parametrize("bad", [["--epoch", "3"], ["--threads", "0"]], ids=["abbreviated", "invalid"])
def test_a_bad_option_fails_before_torch_is_imported(name, bad, tmp_path):
    script = str(ROOT / "examples" / f"{name}.py")
    done = subprocess.run([sys.executable, "-c", PROBE.format(script=script, args=bad)], env=ENV, cwd=tmp_path,
                          timeout=60, capture_output=True, text=True)
    assert done.stdout.strip() == "torch imported: False contdepth imported: False exit: 2", done.stderr
    assert done.stderr.startswith(f"{name}.py: error: ") and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "--epoch" not in bad or "unrecognized arguments: --epoch 3" in done.stderr
    assert list(tmp_path.iterdir()) == []


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_files_get_the_umask_mode_and_stay_atomic(mask, tmp_path):
    old = os.umask(mask)
    try:
        paths = [write_json_atomic(tmp_path / "a.json", {"x": 1}), torch_save_atomic(tmp_path / "b.pt", {"x": 1}),
                 write_text_atomic(tmp_path / "c.md", "| é |\n"), tmp_path / "metrics.json"]
        finish(tmp_path, {"acc": 0.5}, [])
    finally:
        os.umask(old)
    assert _umask() == old
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.pt", "c.md", "metrics.json"]  # no temporary left
    assert (tmp_path / "c.md").read_text(encoding="utf-8") == "| é |\n"
    write_json_atomic(tmp_path / "a.json", {"x": 2})  # replacing keeps the process's current mode
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o666 & ~old
