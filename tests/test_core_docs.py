"""The documentation runs as written, and the API reference names every public object.

Every ```python block of README.md and of the guide (docs/*.md, docs/guide/*.md) runs on its own,
in a fresh namespace: each block is self-contained (its own imports). A block that must not run
(rare: a training run too slow for the suite, or code that needs a file the reader has) is
preceded by the line ``<!-- not-run: why -->``; the reason is required. The blocks are examples,
not experiments: all of them together take about 15 s on the project's 2-core machine (keep it
so: make a slow block smaller, or mark it not-run with its reason).

The API pages (docs/api/*.md) are mkdocstrings directives (``::: contdepth.xxx``); a module
directive renders the module's public names (its ``__all__``, or its own top-level definitions).
The test checks that every name of ``contdepth.__all__`` and of each subpackage is covered by one.
"""
import importlib
import re
import types
from pathlib import Path

import pytest
import torch

import contdepth

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")) + sorted(
    str(p.relative_to(ROOT)) for p in (ROOT / "docs" / "guide").glob("*.md"))
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(\S.*?)\s*-->\s*\n\s*$")
BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```", re.S | re.M)


def _blocks(doc: str) -> list[tuple[int, str, str | None]]:
    """(line, code, reason it is not run or None) for every ```python block of ``doc``."""
    text = (ROOT / doc).read_text()
    out = []
    for m in BLOCK.finditer(text):
        before = text[:m.start()]
        skip = NOT_RUN.search(before[-300:])
        out.append((before.count("\n") + 1, m.group(1), skip.group(1) if skip else None))
    return out


CASES = [pytest.param(doc, line, code, why, id=f"{doc}:{line}") for doc in GUIDE for line, code, why in _blocks(doc)]


def test_the_guide_has_python_examples():
    docs_with_code = {case.values[0] for case in CASES}
    assert {"README.md", "docs/solvers.md", "docs/extending.md", "docs/guide/quickstart.md"} <= docs_with_code


@pytest.mark.parametrize("doc,line,code,why", CASES)
def test_python_block_runs(doc, line, code, why):
    if why is not None:
        pytest.skip(f"marked not-run: {why}")
    torch.manual_seed(0)
    exec(compile(code, f"{doc}:{line}", "exec"), {"__name__": "__docs__"})


def test_not_run_marker_is_recognised():
    text = "Text.\n\n<!-- not-run: trains for ten minutes -->\n```python\nraise SystemExit\n```\n"
    m = BLOCK.search(text)
    assert NOT_RUN.search(text[:m.start()]).group(1) == "trains for ten minutes"
    assert NOT_RUN.search("<!-- not-run: -->\n") is None  # a reason is required


# --------------------------------------------------------------------------- API reference

API = ROOT / "docs" / "api"
DIRECTIVE = re.compile(r"^::: ([\w.]+)[ \t]*\n((?:[ \t]+.*\n)*)", re.M)


def _directives() -> dict[str, bool]:
    """Object path -> whether the directive renders the object's members."""
    found = {}
    for page in API.glob("*.md"):
        for m in DIRECTIVE.finditer(page.read_text() + "\n"):
            found[m.group(1)] = not re.search(r"^\s+members:\s*false\s*$", m.group(2), re.M)
    return found


def _public(module: types.ModuleType) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, value in vars(module).items() if not name.startswith("_")
            and not isinstance(value, types.ModuleType) and getattr(value, "__module__", None) is not None
            and value.__module__.startswith(module.__name__)]


def _covered(module: types.ModuleType, name: str, directives: dict[str, bool]) -> bool:
    value = getattr(module, name)
    if isinstance(value, types.ModuleType):
        return directives.get(value.__name__) is not None
    if directives.get(module.__name__) and hasattr(module, "__all__"):
        return True  # the module's directive renders its __all__
    home = getattr(value, "__module__", None)
    qualname = getattr(value, "__qualname__", name)
    return f"{home}.{qualname}" in directives or bool(home and directives.get(home))


SUBPACKAGES = sorted(contdepth._LAZY)


def test_api_pages_cover_every_subpackage():
    directives = _directives()
    missing = [name for name in SUBPACKAGES if f"contdepth.{name}" not in directives]
    assert not missing, (f"no API page for contdepth.{missing}: add docs/api/NAME.md with '::: contdepth.NAME' "
                         "and list it under 'API reference' in mkdocs.yml")


@pytest.mark.parametrize("package", ["contdepth"] + [f"contdepth.{name}" for name in SUBPACKAGES])
def test_api_pages_name_every_public_object(package):
    module = importlib.import_module(package)
    directives = _directives()
    names = _public(module)
    if package == "contdepth":
        names = [n for n in names if not isinstance(getattr(module, n), types.ModuleType)]
    elif not hasattr(module, "__all__"):  # a package without __all__: what it imports from its modules
        names = [n for n, v in vars(module).items() if not n.startswith("_") and not isinstance(v, types.ModuleType)
                 and str(getattr(v, "__module__", "")).startswith(package)]
    missing = [n for n in names if not _covered(module, n, directives)]
    assert not missing, f"{package}: {missing} are public but on no API page (docs/api/*.md)"


def test_every_api_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = [p.relative_to(ROOT / "docs").as_posix() for p in API.glob("*.md")]
    assert [p for p in pages if p not in nav] == []
