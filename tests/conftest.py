import os
from pathlib import Path

import pytest
import torch

from contdepth.data.mnist import MNIST_FILES
from contdepth.terms import Term

torch.set_num_threads(int(os.environ.get("CONTDEPTH_TEST_THREADS", "1")))

MNIST_DIR = Path(os.environ.get("CONTDEPTH_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist")
MNIST_MISSING = [n for n in MNIST_FILES if not ((MNIST_DIR / f"{n}.gz").is_file()
                                                 or (MNIST_DIR / "MNIST" / "raw" / n).is_file())]


def need_mnist() -> None:
    """Skip the calling test when the MNIST files are missing, with the reason; under CI=true, fail instead."""
    if MNIST_MISSING:
        why = (f"MNIST IDX files {MNIST_MISSING} not found in {MNIST_DIR} "
               "(set CONTDEPTH_DATA, default ../shared/data/mnist beside the repository)")
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI: {why}", pytrace=False)
        pytest.skip(why)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _default_dtype_unchanged(request):
    """A test (or a module at import) that leaves torch's default dtype changed fails here, instead of
    making later tests on the same worker fail with dtype mismatches."""
    before = torch.get_default_dtype()
    yield
    after = torch.get_default_dtype()
    if after != before:
        torch.set_default_dtype(before)
        pytest.fail(f"{request.node.nodeid} left torch's default dtype at {after} (it was {before})", pytrace=False)


def pytest_collection_finish(session):
    """Importing the test modules must leave torch's default dtype alone (float32)."""
    if torch.get_default_dtype() != torch.float32:
        raise pytest.UsageError(f"a test module set torch's default dtype to {torch.get_default_dtype()} at import")


class RecordingTerm(Term):
    """f(t, y) = t - y^2 on every tensor of y, recording each call's (t, side) (the stepper tests)."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, int]] = []

    def __call__(self, t, y, side):
        self.calls.append((t, side))
        return tuple(t - x * x for x in y) if isinstance(y, tuple) else t - y * y
