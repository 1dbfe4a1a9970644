"""Exact memory accounting: bytes of the tensors autograd saves for the backward pass."""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class SavedBytes:
    """Bytes saved for backward while the context was open (each storage counted once)."""

    bytes: int = 0
    tensors: int = 0


@contextmanager
def saved_tensor_bytes() -> Iterator[SavedBytes]:
    """Count the storage bytes of every tensor saved for backward inside the ``with`` block.

    Uses ``torch.autograd.graph.saved_tensors_hooks``; a storage saved twice (e.g. a parameter
    used by several steps) is counted once. Tensors saved inside custom ``autograd.Function``
    forwards through ``ctx.save_for_backward`` are counted too.
    """
    result = SavedBytes()
    seen: set[int] = set()

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        key = storage.data_ptr()
        if key not in seen:
            seen.add(key)
            result.bytes += storage.nbytes()
            result.tensors += 1
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield result
