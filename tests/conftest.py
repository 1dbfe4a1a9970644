import os
from pathlib import Path

import pytest
import torch

from contdepth.data.mnist import MNIST_FILES

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
