"""MNIST through torchvision, from a local folder of the original IDX files (never downloaded).

``root`` (or the environment variable ``CONTDEPTH_DATA``) is a folder holding the four
``*-idx?-ubyte.gz`` files directly, or torchvision's ``MNIST/raw/`` layout (``.gz`` or
uncompressed files).  Every file is checked against the md5 that torchvision checks, so a
truncated or foreign file raises a ``ValueError`` naming it instead of failing inside
torchvision.  The files are decompressed once into a cache folder laid out as torchvision
expects, and ``torchvision.datasets.MNIST`` reads them from there (``download=False``).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["load_mnist", "mnist_root", "random_shift", "MNIST_FILES", "MNIST_MEAN", "MNIST_STD"]

# name -> (md5 of the .gz as checked by torchvision, md5 of the uncompressed file, uncompressed bytes)
MNIST_FILES: dict[str, tuple[str, str, int]] = {
    "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb", 47040016),
    "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624", 60008),
    "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea", 7840016),
    "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637", 10008),
}
"""The four IDX files: name -> (md5 of the .gz, md5 of the uncompressed file, uncompressed bytes)."""
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _cache_dir() -> Path:
    return Path(os.environ.get("CONTDEPTH_CACHE", Path.home() / ".cache" / "contdepth"))


def _find(folder: Path, name: str) -> tuple[Path, bool] | None:
    """(path, is_gzip) of ``name`` in ``folder`` or ``folder/MNIST/raw``, preferring ``.gz``."""
    for base in (folder, folder / "MNIST" / "raw"):
        for path, gz in ((base / f"{name}.gz", True), (base / name, False)):
            if path.is_file():
                return path, gz
    return None


def _check(path: Path, name: str, gz: bool) -> None:
    md5_gz, md5_raw, size = MNIST_FILES[name]
    got = _md5(path)
    want = md5_gz if gz else md5_raw
    if got != want:
        raise ValueError(
            f"MNIST file {path} is corrupt, truncated or not the original {name}{'.gz' if gz else ''}: "
            f"md5 {got} ({path.stat().st_size} bytes), expected md5 {want}"
            + ("" if gz else f" ({size} bytes)")
        )


def mnist_root(root: str | os.PathLike | None = None) -> Path:
    """A torchvision root (a folder with ``MNIST/raw/`` holding the four uncompressed files).

    ``root`` defaults to ``$CONTDEPTH_DATA``; with neither, ``FileNotFoundError`` says to set one
    (nothing is downloaded).
    """
    if root is None:
        root = os.environ.get("CONTDEPTH_DATA") or None
    if root is None:
        raise FileNotFoundError("no MNIST folder given: pass --data DIR (examples) or root=DIR, or set "
                                "CONTDEPTH_DATA, to a folder with the four IDX files "
                                f"({', '.join(n + '.gz' for n in MNIST_FILES)}); nothing is downloaded")
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f"MNIST data folder {folder} does not exist (set by --data or CONTDEPTH_DATA)")
    found = {name: _find(folder, name) for name in MNIST_FILES}
    missing = [name for name, hit in found.items() if hit is None]
    if missing:
        raise FileNotFoundError(
            f"MNIST data folder {folder} lacks {', '.join(n + '.gz' for n in missing)} "
            f"(looked in {folder} and {folder / 'MNIST' / 'raw'}; set by --data or CONTDEPTH_DATA)"
        )
    if all(not gz and path.parent == folder / "MNIST" / "raw" for path, gz in found.values()):  # type: ignore[misc]
        for name, (path, gz) in found.items():  # type: ignore[misc]
            _check(path, name, gz)
        return folder
    # decompress (or copy) the checked files into a cache keyed by the source folder
    key = hashlib.md5(str(folder.resolve()).encode()).hexdigest()[:12]
    target = _cache_dir() / f"mnist-{key}"
    raw = target / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for name, (path, gz) in found.items():  # type: ignore[misc]
        dest = raw / name
        stamp = raw / f"{name}.source"
        source_id = f"{path.resolve()} {path.stat().st_size} {path.stat().st_mtime_ns}"
        if dest.is_file() and stamp.is_file() and stamp.read_text() == source_id:
            continue
        _check(path, name, gz)
        fd, tmp = tempfile.mkstemp(dir=raw, prefix=f".{name}.")
        with os.fdopen(fd, "wb") as out, (gzip.open(path, "rb") if gz else open(path, "rb")) as src:
            shutil.copyfileobj(src, out, 1 << 20)
        os.chmod(tmp, 0o644)
        os.replace(tmp, dest)
        stamp.write_text(source_id)
    return target


def load_mnist(
    root: str | os.PathLike | None = None,
    *,
    train: bool = True,
    limit: int | None = None,
    seed: int = 0,
    normalize: bool = True,
) -> tuple[Tensor, Tensor]:
    """MNIST as tensors ``(X, y)``: X float32 (N, 1, 28, 28), y int64 (N,).

    Pixels are scaled to [0, 1] and, if ``normalize``, standardised with the usual training-set
    mean 0.1307 and std 0.3081.  ``limit`` keeps a random subset of ``limit`` images (drawn with
    ``seed``, in their original order).  ``root`` as in :func:`mnist_root`.

    Raises ``FileNotFoundError`` (naming ``--data``/``CONTDEPTH_DATA``) when the folder or a file is
    missing, ``ValueError`` for a damaged file or a bad ``limit``.

    Example: ``X, y = load_mnist("data/mnist", train=False, limit=1000, seed=0)``.
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive int or None, got {limit!r}")
    from torchvision.datasets import MNIST

    ds = MNIST(str(mnist_root(root)), train=train, download=False)
    X, y = ds.data, ds.targets
    if limit is not None and limit < len(y):
        keep = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))[:limit].sort().values
        X, y = X[keep], y[keep]
    X = X.unsqueeze(1).float().div_(255.0)
    if normalize:
        X = X.sub_(MNIST_MEAN).div_(MNIST_STD)
    return X, y.long()


def random_shift(X: Tensor, y: Tensor, *, max_shift: int = 4, fill: float | None = None,
                 generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Translate each image of ``X`` (N, C, H, W) by its own integer offset (dy, dx), each uniform in
    [-max_shift, max_shift]; pixels shifted in take ``fill`` (default ``X.min()``, the background of
    MNIST, raw or normalised). Labels unchanged.

    The same as torchvision's ``RandomCrop(H, padding=max_shift, fill=fill)`` per image (Chen et al.
    2018's MNIST augmentation, ``max_shift=4``), done for the whole batch in one gather. For
    ``contdepth.train.fit(..., transform=random_shift)``: offsets come from ``generator`` or the global
    torch RNG, which ``fit`` seeds and checkpoints.
    """
    if not isinstance(X, Tensor) or X.ndim != 4:
        raise ValueError(f"X must be an (N, C, H, W) tensor of images, got "
                         f"{tuple(X.shape) if isinstance(X, Tensor) else type(X).__name__}")
    if not isinstance(max_shift, int) or isinstance(max_shift, bool) or max_shift < 0:
        raise ValueError(f"max_shift must be a non-negative int, got {max_shift!r}")
    n, c, h, w = X.shape
    if max_shift == 0 or n == 0:
        return X, y
    k = max_shift
    padded = torch.nn.functional.pad(X, (k, k, k, k), value=float(X.min()) if fill is None else fill)
    offset = torch.randint(0, 2 * k + 1, (2, n, 1), generator=generator, device=X.device)
    rows = offset[0] + torch.arange(h, device=X.device)  # (N, H): padded row k - dy + i
    cols = offset[1] + torch.arange(w, device=X.device)
    batch = torch.arange(n, device=X.device)[:, None, None, None]
    channel = torch.arange(c, device=X.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]], y
