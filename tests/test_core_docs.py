"""The code in README.md and docs/extending.md runs as written."""
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("doc", ["README.md", "docs/extending.md"])
def test_first_python_block_runs(doc, capsys):
    code = re.search(r"```python\n(.*?)```", (ROOT / doc).read_text(), re.S).group(1)
    exec(compile(code, doc, "exec"), {})
