"""Every Python block in README.md and docs/*.md runs as written (blocks of one document share a
namespace, in order)."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/extending.md", "docs/solvers.md"]


@pytest.mark.parametrize("doc", DOCS)
def test_python_blocks_run(doc):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S)
    assert blocks, f"{doc} has no python example"
    namespace: dict = {}
    for i, code in enumerate(blocks):
        exec(compile(code, f"{doc} block {i + 1}", "exec"), namespace)
