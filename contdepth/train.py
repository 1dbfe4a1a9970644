"""Shared training loop for every example: mini-batch or full-batch training with atomic,
bit-exact resumable checkpoints and optional DistributedDataParallel.

Data is either a tuple ``(X, y)`` of tensors with equal first dimension or a
``torch.utils.data.Dataset`` yielding ``(x, y)`` pairs.  The sample order of epoch ``e`` is
``torch.randperm(N)`` drawn from a generator seeded with ``seed + e`` (exactly
``DistributedSampler``'s order), so it never depends on how a run was interrupted.  When
``torch.distributed`` is initialised, each rank takes the ``DistributedSampler`` shard of that
order, the model is wrapped in ``DistributedDataParallel`` and ``batch_size`` is per process.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .errors import check_positive_int
from .io import torch_save_atomic, write_json_atomic

__all__ = ["fit", "evaluate", "count_correct", "write_json_atomic"]

Data = Union[tuple[Tensor, Tensor], Dataset]


def count_correct(output: Tensor, target: Tensor) -> Tensor:
    """Number of correct predictions in a batch.

    Class-index targets ``(B,)`` with logits ``(B, K)``: ``argmax`` over the last axis.
    Binary targets (0/1) of the same shape as ``output``: ``output > 0`` (output is a logit).
    """
    if output.ndim == target.ndim + 1:
        return (output.argmax(-1) == target).sum()
    if output.shape == target.shape:
        return ((output > 0) == (target > 0.5)).sum()
    raise ValueError(
        f"count_correct: cannot compare output of shape {tuple(output.shape)} with target of "
        f"shape {tuple(target.shape)}; pass correct_fn="
    )


def _check_data(data: Any, name: str) -> int:
    if isinstance(data, tuple):
        if len(data) != 2 or not all(isinstance(t, Tensor) for t in data):
            raise TypeError(f"{name} must be a tuple (X, y) of two tensors or a Dataset")
        if data[0].shape[0] != data[1].shape[0]:
            raise ValueError(
                f"{name}: X has {data[0].shape[0]} samples but y has {data[1].shape[0]}"
            )
        n = int(data[0].shape[0])
    elif isinstance(data, Dataset):
        n = len(data)  # type: ignore[arg-type]
    else:
        raise TypeError(f"{name} must be a tuple (X, y) of tensors or a torch Dataset, got {type(data).__name__}")
    if n == 0:
        raise ValueError(f"{name} is empty")
    return n


def _dist() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _epoch_indices(n: int, seed: int, epoch: int, shuffle: bool) -> list[int]:
    rank, world = _dist()
    sampler = DistributedSampler(
        range(n), num_replicas=world, rank=rank, shuffle=shuffle, seed=seed, drop_last=False  # type: ignore[arg-type]
    )
    sampler.set_epoch(epoch)
    return list(sampler)


def _batches(data: Data, indices: Sequence[int], batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
    chunks = [list(indices[i : i + batch_size]) for i in range(0, len(indices), batch_size)]
    if isinstance(data, tuple):
        X, y = data
        for chunk in chunks:
            idx = torch.as_tensor(chunk, dtype=torch.long)
            yield X[idx], y[idx]
    else:
        # own generator: DataLoader would otherwise draw its base seed from the global RNG
        yield from DataLoader(data, batch_sampler=chunks, generator=torch.Generator())


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _all_sum(values: list[float], device: torch.device) -> list[float]:
    if _dist()[1] == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


@torch.no_grad()
def _score(model: nn.Module, data: Data, *, batch_size: int, correct_fn: Callable[[Tensor, Tensor], Tensor],
           loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None) -> tuple[float, float]:
    """(accuracy, mean loss) of ``model`` on ``data`` in eval mode; the loss is nan without ``loss_fn``."""
    n = _check_data(data, "data")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    rank, world = _dist()
    device = _device(model)
    was_training = model.training
    model.eval()
    correct, loss = 0.0, 0.0
    try:
        for xb, yb in _batches(data, range(rank, n, world), batch_size):
            xb, yb = xb.to(device), yb.to(device)
            out = model(xb)
            correct += float(correct_fn(out, yb))
            if loss_fn is not None:
                loss += float(loss_fn(out, yb)) * yb.shape[0]
    finally:
        model.train(was_training)
    correct, loss = _all_sum([correct, loss], device)
    return correct / n, loss / n if loss_fn is not None else math.nan


def evaluate(
    model: nn.Module,
    data: Data,
    *,
    batch_size: int = 1000,
    correct_fn: Callable[[Tensor, Tensor], Tensor] = count_correct,
) -> float:
    """Accuracy of ``model`` on ``data`` in eval mode (training mode is restored afterwards).

    Under ``torch.distributed`` every rank scores a disjoint stride of the data and the counts
    are summed, so every rank returns the accuracy on the whole set.
    """
    return _score(model, data, batch_size=batch_size, correct_fn=correct_fn)[0]


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


def fit(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train_data: Data,
    *,
    optimizer: torch.optim.Optimizer,
    epochs: int,
    batch_size: int | None = None,
    regularizer: Callable[[], Tensor] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 1,
    seed: int = 0,
    progress: bool = True,
    eval_data: Data | None = None,
    log: Callable[[dict[str, Any]], None] | None = None,
    scheduler: Any | None = None,
    correct_fn: Callable[[Tensor, Tensor], Tensor] = count_correct,
    eval_batch_size: int = 1000,
    shuffle: bool = True,
    clip_grad_norm: float | None = None,
    transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None = None,
) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs minimising ``loss_fn(model(x), y) + regularizer()``.

    ``batch_size=None`` is full-batch gradient descent.  ``checkpoint``: if the file exists the
    run resumes from it (model, optimizer, scheduler, RNG states, history, epoch); it is
    rewritten atomically every ``checkpoint_every`` epochs and after the last, so an interrupted
    run, resumed, ends with weights bit-identical to an uninterrupted run with the same ``seed``.
    A checkpoint of a different ``seed`` or of more than ``epochs`` epochs is refused.  A fresh run seeds torch,
    numpy and ``random`` with ``seed``.  ``scheduler`` (if any) is stepped once per epoch.
    ``log`` receives each epoch's record.  ``clip_grad_norm`` rescales the gradient to at most
    that global 2-norm before each step.  ``transform(x, y) -> (x, y)`` is applied to every
    training batch (data augmentation, e.g. :func:`contdepth.data.random_rotation`); it should
    draw from the global torch RNG, which is seeded and checkpointed.  Returns the history: per-epoch ``train_loss``
    (mean data loss, without the regulariser), ``train_reg``, ``train_acc``, ``eval_acc`` and
    ``eval_loss`` (if ``eval_data``), ``epoch_wall_s``, plus ``wall_s`` (sum over all epochs, including
    those before a resume), ``epochs_run_now``, ``resumed_from_epoch``, ``steps``,
    ``train_images`` (samples seen per epoch over all ranks).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable(output, target) -> scalar tensor")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if batch_size is not None and (not isinstance(batch_size, int) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive int or None (full batch), got {batch_size!r}")
    check_positive_int("checkpoint_every", checkpoint_every)
    if clip_grad_norm is not None and not (isinstance(clip_grad_norm, (int, float)) and clip_grad_norm > 0):
        raise ValueError(f"clip_grad_norm must be a positive number or None, got {clip_grad_norm!r}")
    if regularizer is not None and not callable(regularizer):
        raise TypeError("regularizer must be callable() -> scalar tensor or None")
    if transform is not None and not callable(transform):
        raise TypeError("transform must be callable(x, y) -> (x, y) or None")
    n = _check_data(train_data, "train_data")
    if eval_data is not None:
        _check_data(eval_data, "eval_data")

    rank, world = _dist()
    device = _device(model)
    net: nn.Module = model
    if world > 1 and not isinstance(model, nn.parallel.DistributedDataParallel):
        net = nn.parallel.DistributedDataParallel(model)
    raw = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net

    history: dict[str, list[float]] = {
        "train_loss": [], "train_reg": [], "train_acc": [], "eval_acc": [], "eval_loss": [], "epoch_wall_s": []
    }
    start_epoch, steps = 0, 0
    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        state = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if state.get("seed") != seed:
            raise ValueError(
                f"checkpoint {ckpt_path} was written with seed={state.get('seed')}, not seed={seed}"
            )
        if state["epoch"] > epochs:
            raise ValueError(f"checkpoint {ckpt_path} has already run {state['epoch']} epochs, more than "
                             f"epochs={epochs}; delete it to start again")
        raw.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        history = {**history, **state["history"]}
        start_epoch, steps = state["epoch"], state["steps"]
    else:
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
    resumed_from = start_epoch

    bs = n if batch_size is None else batch_size
    show = progress and rank == 0
    epoch_bar = tqdm(total=epochs, initial=start_epoch, desc="epochs", disable=not show)
    t_call = time.perf_counter()
    for epoch in range(start_epoch, epochs):
        t0 = time.perf_counter()
        net.train()
        indices = _epoch_indices(n, seed, epoch, shuffle)
        sums = [0.0, 0.0, 0.0, 0.0]  # loss*count, reg*count, correct, count
        n_batches = math.ceil(len(indices) / bs)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False) if show and n_batches > 1 else None
        for xb, yb in _batches(train_data, indices, bs):
            xb, yb = xb.to(device), yb.to(device)
            if transform is not None:
                xb, yb = transform(xb, yb)
            optimizer.zero_grad(set_to_none=True)
            out = net(xb)
            loss = loss_fn(out, yb)
            reg = regularizer() if regularizer is not None else None
            total = loss + reg if reg is not None else loss
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss {total.item()} at epoch {epoch + 1}, step {steps + 1}")
            total.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(raw.parameters(), clip_grad_norm)
            optimizer.step()
            steps += 1
            k = float(yb.shape[0])
            sums[0] += float(loss.detach()) * k
            sums[1] += (float(reg.detach()) if reg is not None else 0.0) * k
            sums[2] += float(correct_fn(out.detach(), yb))
            sums[3] += k
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss.item():.4f}")
        if bar is not None:
            bar.close()
        if scheduler is not None:
            scheduler.step()
        loss_sum, reg_sum, correct, count = _all_sum(sums, device)
        history["train_loss"].append(loss_sum / count)
        history["train_reg"].append(reg_sum / count)
        history["train_acc"].append(correct / count)
        if eval_data is not None:
            acc, eval_loss = _score(raw, eval_data, batch_size=eval_batch_size, correct_fn=correct_fn, loss_fn=loss_fn)
            history["eval_acc"].append(acc)
            history["eval_loss"].append(eval_loss)
        history["epoch_wall_s"].append(time.perf_counter() - t0)
        epoch_bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", refresh=False)
        epoch_bar.update(1)
        record = {"epoch": epoch + 1, **{k: v[-1] for k, v in history.items() if v}}
        if ckpt_path is not None and rank == 0 and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
            torch_save_atomic(
                ckpt_path,
                {
                    "model": raw.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict() if scheduler is not None else None,
                    "rng": _rng_state(),
                    "history": history,
                    "epoch": epoch + 1,
                    "steps": steps,
                    "seed": seed,
                },
            )
        if world > 1:
            dist.barrier()
        if log is not None:
            log(record)
    epoch_bar.close()

    return {
        **history,
        "epochs": epochs,
        "epochs_run_now": max(epochs - resumed_from, 0),
        "resumed_from_epoch": resumed_from,
        "steps": steps,
        "train_images": n,
        "wall_s": float(sum(history["epoch_wall_s"])),
        "session_wall_s": time.perf_counter() - t_call,
    }
