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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from .control.emsa import EMSA
from .control.fitting import TRAINERS, MSATrainer, VarProTrainer, make_trainer
from .control.varpro import GaussNewtonVarPro
from .errors import CheckpointError, check_positive_int
from .io import torch_save_atomic, write_json_atomic

__all__ = ["fit", "evaluate", "count_correct", "TrainState", "load_checkpoint", "save_checkpoint", "write_json_atomic"]

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

    Example: ``evaluate(model, (X, y))``, or with ``correct_fn=lambda out, y: ((out[:, 0] > 0).long() == y).sum()``
    for a single-logit model.
    """
    return _score(model, data, batch_size=batch_size, correct_fn=correct_fn)[0]


def _rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])


@dataclass
class TrainState:
    """What a checkpoint carries besides the weights and RNG states: the per-epoch history, the
    epochs done and the optimizer steps taken."""

    history: dict[str, list[float]] = field(default_factory=lambda: {
        "train_loss": [], "train_reg": [], "train_acc": [], "eval_acc": [], "eval_loss": [], "epoch_wall_s": []})
    epoch: int = 0
    steps: int = 0


def _state_dict_differences(saved: dict[str, Tensor], model: dict[str, Tensor]) -> list[str]:
    """What differs between a saved and a model's state dict: shapes, then missing and extra keys."""
    diffs = [f"{k}: shape {tuple(saved[k].shape)} in the file, {tuple(v.shape)} in the model"
             for k, v in model.items() if k in saved and tuple(saved[k].shape) != tuple(v.shape)]
    missing = [k for k in model if k not in saved]
    extra = [k for k in saved if k not in model]
    if missing:
        diffs.append(f"not in the file: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    if extra:
        diffs.append(f"not in the model: {', '.join(extra[:5])}{' ...' if len(extra) > 5 else ''}")
    return diffs


def save_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any | None,
                    progress: TrainState, *, seed: int, epochs: int) -> None:
    """Write everything :func:`load_checkpoint` restores to ``path`` atomically."""
    torch_save_atomic(path, {
        "model": model.state_dict(), "model_class": type(model).__name__,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": _rng_state(), "history": progress.history, "epoch": progress.epoch, "steps": progress.steps,
        "seed": seed, "epochs": epochs,
    })


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any | None, *,
                    seed: int, epochs: int) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states from ``path``; return the progress saved.

    Raises :class:`~contdepth.errors.CheckpointError` (a ``ValueError``) naming ``path`` and what differs if the file cannot be read (truncated,
    not a checkpoint), holds another model class, other parameter shapes or keys, another seed,
    or more than ``epochs`` epochs.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises RuntimeError, EOFError or pickle errors for a damaged file
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it is truncated or not "
                         "written by contdepth.train.fit: delete it to start again") from e
    keys = ("model", "optimizer", "rng", "history", "epoch", "steps", "seed")
    if not isinstance(state, dict) or not all(k in state for k in keys):
        raise CheckpointError(f"checkpoint {path} is not a contdepth.train.fit checkpoint (it lacks "
                         f"{[k for k in keys if not isinstance(state, dict) or k not in state]})")
    if state["seed"] != seed:
        raise CheckpointError(f"checkpoint {path} was written with seed={state['seed']}, not seed={seed}")
    if state["epoch"] > epochs:
        raise CheckpointError(f"checkpoint {path} has already run {state['epoch']} epochs, more than "
                         f"epochs={epochs}; delete it to start again")
    saved_class = state.get("model_class", type(model).__name__)
    if saved_class != type(model).__name__:
        raise CheckpointError(f"checkpoint {path} holds a {saved_class} model, not a {type(model).__name__}; "
                         "delete it or choose another output folder")
    diffs = _state_dict_differences(state["model"], model.state_dict())
    if diffs:
        raise CheckpointError(f"checkpoint {path} holds a differently configured {saved_class}: {'; '.join(diffs[:4])}"
                         f"{' ...' if len(diffs) > 4 else ''}; delete it or choose another output folder")
    model.load_state_dict(state["model"])
    try:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CheckpointError(f"checkpoint {path}: its optimizer or scheduler state does not fit this run's "
                         f"({type(e).__name__}: {e})") from e
    _set_rng_state(state["rng"])
    return TrainState({**TrainState().history, **state["history"]}, state["epoch"], state["steps"])


def _train_epoch(net: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], *, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[Tensor, Tensor], Tensor], regularizer: Callable[[], Tensor] | None,
                 transform: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]] | None, clip_grad_norm: float | None,
                 correct_fn: Callable[[Tensor, Tensor], Tensor], device: torch.device, progress: TrainState,
                 bar: Any | None, batch_scheduler: Any | None) -> list[float]:
    """One pass of optimizer steps over ``batches``; counts ``progress.steps``; returns
    [loss * count, regulariser * count, correct, count] summed over the batches."""
    net.train()
    raw = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net
    params = list(raw.parameters())
    projections = [m.project_ for m in raw.modules() if callable(getattr(m, "project_", None))]
    sums = [0.0, 0.0, 0.0, 0.0]
    for xb, yb in batches:
        xb, yb = xb.to(device), yb.to(device)
        if transform is not None:
            xb, yb = transform(xb, yb)
        if isinstance(optimizer, (VarProTrainer, MSATrainer)):
            loss, reg, out = optimizer.train_step(xb, yb)
            if not torch.isfinite(loss + reg):
                raise FloatingPointError(f"non-finite loss {(loss + reg).item()} at epoch {progress.epoch + 1}, "
                                         f"step {progress.steps + 1}")
        else:
            optimizer.zero_grad(set_to_none=True)
            out = net(xb)
            loss = loss_fn(out, yb)
            reg = regularizer() if regularizer is not None else None
            total = loss + reg if reg is not None else loss
            if not torch.isfinite(total):
                raise FloatingPointError(f"non-finite loss {total.item()} at epoch {progress.epoch + 1}, "
                                         f"step {progress.steps + 1}")
            total.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(params, clip_grad_norm)
            optimizer.step()
        for project in projections:
            project()
        if batch_scheduler is not None:
            batch_scheduler.step()
        progress.steps += 1
        k = float(yb.shape[0])
        sums[0] += float(loss.detach()) * k
        sums[1] += (float(reg.detach()) if reg is not None else 0.0) * k
        sums[2] += float(correct_fn(out.detach(), yb))
        sums[3] += k
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return sums


def _check_fit_args(model, loss_fn, optimizer, epochs, batch_size, checkpoint_every, clip_grad_norm, regularizer,
                    transform) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(loss_fn):
        raise TypeError("loss_fn must be callable(output, target) -> scalar tensor")
    if not (isinstance(optimizer, (torch.optim.Optimizer, GaussNewtonVarPro, EMSA))
            or (isinstance(optimizer, str) and optimizer in TRAINERS)):
        raise TypeError(f"optimizer must be a torch.optim.Optimizer, one of {list(TRAINERS)}, a "
                        f"contdepth.control.GaussNewtonVarPro or EMSA, got {optimizer!r}")
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


def fit(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    train_data: Data,
    *,
    optimizer: torch.optim.Optimizer | str | GaussNewtonVarPro | EMSA,
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
    scheduler_interval: str = "epoch",
) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs minimising ``loss_fn(model(x), y) + regularizer()``.

    ``batch_size=None`` is full-batch gradient descent.  ``checkpoint``: if the file exists the
    run resumes from it (model, optimizer, scheduler, RNG states, history, epoch); it is
    rewritten atomically every ``checkpoint_every`` epochs and after the last, so an interrupted
    run, resumed, ends with weights bit-identical to an uninterrupted run with the same ``seed``.
    A checkpoint that cannot be read, or of another model, seed or more than ``epochs`` epochs
    is refused (:func:`load_checkpoint`).  A fresh run seeds torch,
    numpy and ``random`` with ``seed``.  ``scheduler`` (if any) is stepped once per epoch, or after
    every optimizer step with ``scheduler_interval="batch"`` (warm-up, OneCycle).  After every
    optimizer step each submodule's ``project_()`` method, if it has one, is called (e.g. the
    friction fields' ``gamma_min`` bound: projected gradient descent).
    ``progress``: tqdm bars on a terminal (none when stderr is not a terminal).
    ``log`` receives each epoch's record.  ``clip_grad_norm`` rescales the gradient to at most
    that global 2-norm before each step.  ``transform(x, y) -> (x, y)`` is applied to every
    training batch (data augmentation, e.g. :func:`contdepth.data.random_rotation`); it should
    draw from the global torch RNG, which is seeded and checkpointed.  Returns the history: per-epoch ``train_loss``
    (mean data loss, without the regulariser), ``train_reg``, ``train_acc``, ``eval_acc`` and
    ``eval_loss`` (if ``eval_data``), ``epoch_wall_s``, plus ``wall_s`` (sum over all epochs, including
    those before a resume), ``epochs_run_now``, ``resumed_from_epoch``, ``steps``,
    ``train_images`` (samples seen per epoch over all ranks).

    ``optimizer="gn"``: Gauss-Newton with variable projection (:class:`~contdepth.control.GaussNewtonVarPro`,
    default settings; pass an instance ``GaussNewtonVarPro(model[:-1], model[-1], ...)`` for others) on
    ``model = nn.Sequential(*features, nn.Linear head)`` with ``loss_fn`` the cross-entropy; each batch is
    one Gauss-Newton step, ``train_reg`` its pRegTh + pRegW. ``optimizer="msa"``: E-MSA
    (:class:`~contdepth.control.EMSA`, or an instance on the model's field) on ``model =
    nn.Sequential(*pre, ODEBlock(field), *post)`` whose only trainable parameters are the field's
    control knots. Both refuse ``regularizer``, ``clip_grad_norm``, ``scheduler`` and distributed runs
    (``ValueError`` naming the option).

    Example: ``fit(model, F.cross_entropy, (X, y), optimizer=torch.optim.Adam(model.parameters()), epochs=10)``
    returns the history dict; with ``checkpoint="run.pt"`` a rerun resumes.
    """
    _check_fit_args(model, loss_fn, optimizer, epochs, batch_size, checkpoint_every, clip_grad_norm, regularizer,
                    transform)
    if scheduler_interval not in ("epoch", "batch"):
        raise ValueError(f"scheduler_interval must be 'epoch' or 'batch', got {scheduler_interval!r}")
    n = _check_data(train_data, "train_data")
    if eval_data is not None:
        _check_data(eval_data, "eval_data")

    rank, world = _dist()
    if not isinstance(optimizer, torch.optim.Optimizer):
        optimizer = make_trainer(optimizer, model, loss_fn, unsupported={
            "regularizer": regularizer, "clip_grad_norm": clip_grad_norm, "scheduler": scheduler,
            "distributed training (world size)": world if world > 1 else None})
    device = _device(model)
    net: nn.Module = model
    if world > 1 and not isinstance(model, nn.parallel.DistributedDataParallel):
        net = nn.parallel.DistributedDataParallel(model)
    raw = net.module if isinstance(net, nn.parallel.DistributedDataParallel) else net

    ckpt_path = Path(checkpoint) if checkpoint is not None else None
    if ckpt_path is not None and ckpt_path.exists():
        run = load_checkpoint(ckpt_path, raw, optimizer, scheduler, seed=seed, epochs=epochs)
    else:
        run = TrainState()
        torch.manual_seed(seed)
        np.random.seed(seed)
        random.seed(seed)
    resumed_from = run.epoch
    history = run.history

    bs = n if batch_size is None else batch_size
    hide = None if progress and rank == 0 else True  # None: tqdm shows bars on a terminal only
    epoch_bar = tqdm(total=epochs, initial=run.epoch, desc="epochs", disable=hide)
    t_call = time.perf_counter()
    for epoch in range(run.epoch, epochs):
        t0 = time.perf_counter()
        indices = _epoch_indices(n, seed, epoch, shuffle)
        n_batches = math.ceil(len(indices) / bs)
        bar = tqdm(total=n_batches, desc=f"epoch {epoch + 1}/{epochs}", leave=False, disable=hide) \
            if n_batches > 1 else None
        sums = _train_epoch(net, _batches(train_data, indices, bs), optimizer=optimizer, loss_fn=loss_fn,
                            regularizer=regularizer, transform=transform, clip_grad_norm=clip_grad_norm,
                            correct_fn=correct_fn, device=device, progress=run, bar=bar,
                            batch_scheduler=scheduler if scheduler_interval == "batch" else None)
        if bar is not None:
            bar.close()
        if scheduler is not None and scheduler_interval == "epoch":
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
        run.epoch = epoch + 1
        epoch_bar.set_postfix(loss=f"{history['train_loss'][-1]:.4f}", refresh=False)
        epoch_bar.update(1)
        if ckpt_path is not None and rank == 0 and (run.epoch % checkpoint_every == 0 or run.epoch == epochs):
            save_checkpoint(ckpt_path, raw, optimizer, scheduler, run, seed=seed, epochs=epochs)
        if world > 1:
            dist.barrier()
        if log is not None:
            log({"epoch": run.epoch, **{k: v[-1] for k, v in history.items() if v}})
    epoch_bar.close()

    return {
        **history,
        "epochs": epochs,
        "epochs_run_now": max(epochs - resumed_from, 0),
        "resumed_from_epoch": resumed_from,
        "steps": run.steps,
        "train_images": n,
        "wall_s": float(sum(history["epoch_wall_s"])),
        "session_wall_s": time.perf_counter() - t_call,
    }
