"""``contdepth.cli`` for the examples, loaded without importing contdepth or torch.

``import contdepth.cli`` first runs ``contdepth/__init__.py``, which imports torch (seconds, more on a
busy machine). contdepth/cli.py itself needs only the standard library, so this module executes that
file on its own and registers it as ``contdepth.cli`` (a later ``import contdepth.cli`` reuses it):
an example parses and checks its options before importing torch, and a bad option fails at once.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "contdepth.cli"


def load() -> ModuleType:
    """The ``contdepth.cli`` module, executed without its package if the package is not imported yet."""
    if NAME in sys.modules:
        return sys.modules[NAME]
    package = importlib.util.find_spec("contdepth")
    if package is None or not package.submodule_search_locations:
        raise ImportError("contdepth is not installed: pip install -e . from the repository")
    spec = importlib.util.spec_from_file_location(NAME, Path(package.submodule_search_locations[0]) / "cli.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[NAME]
        raise
    return module


cli = load()
