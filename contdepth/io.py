"""Atomic file writes for metrics and checkpoints (a crash never leaves a half-written file).

The file gets the mode ``open()`` would give it, ``0o666 & ~umask`` (0644 under the usual umask 022),
not ``tempfile.mkstemp``'s private 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    """The process's file-mode creation mask (``os.umask`` can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: str | os.PathLike, write) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented JSON to ``path`` atomically (temp file + ``os.replace``).

    Before ``path`` is touched, raises ``TypeError`` if ``obj`` is not JSON-serialisable and
    ``ValueError`` if it holds NaN or infinity (not valid JSON).
    """
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically (temp file + ``os.replace``)."""
    return _atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def torch_save_atomic(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save(obj, path)`` atomically (temp file + ``os.replace``)."""
    return _atomic_write(path, lambda fh: torch.save(obj, fh))
