"""Headless matplotlib figures for planar experiments and image states through depth (Agg backend; import
explicitly as ``contdepth.plot``).

Every function returns the ``Figure``; those with an ``ax`` argument draw into it when given (else a
new figure), the multi-panel ones (:func:`activations`, :func:`compare_layer_states`,
:func:`controls`, :func:`panel_grid`, :func:`params_vs_layer`) make their own. :func:`save` writes a
PNG and closes the figure.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullLocator  # noqa: E402

from .analysis.landscape import Landscape  # noqa: E402
from .analysis.stability import stability_function  # noqa: E402
from .fields.base import ControlledField  # noqa: E402


def _axes(ax: Axes | None, *, projection: str | None = None, figsize=(5, 4.5)) -> Axes:
    if ax is not None:
        return ax
    fig = plt.figure(figsize=figsize)
    return fig.add_subplot(projection=projection)


def plain_log_ticks(axis, values: Sequence[float] | None = None) -> None:
    """Readable ticks on a log ``axis`` (``ax.xaxis``/``ax.yaxis``): plain numbers (0.2, 8, 16, not
    2x10^-1 or 10^1) at ``values`` if given, else at 1, 2 and 5 times the powers of ten; no minor labels."""
    axis.set_major_locator(FixedLocator(list(values)) if values is not None else LogLocator(subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_locator(NullLocator())


def legend_outside(ax: Axes, handles=None, labels=None, *, below: bool = False, **kwargs) -> None:
    """A legend outside the data: right of ``ax``, or under its x label if ``below`` (for side-by-side
    panels). ``save`` crops the figure to include it."""
    args = () if handles is None else (handles, labels)
    where = dict(loc="upper center", bbox_to_anchor=(0.5, -0.22)) if below else \
        dict(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    ax.legend(*args, borderaxespad=0.0, fontsize=8, **where, **kwargs)


def _class_legend(ax: Axes, points, y: torch.Tensor, title: str = "class") -> None:
    handles, _ = points.legend_elements()
    legend_outside(ax, handles, [str(int(c)) for c in torch.unique(y)], title=title)


def save(fig: Figure, path: str | os.PathLike, *, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG to ``path`` (atomically: temp file + ``os.replace``) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def scatter_classes(X: torch.Tensor, y: torch.Tensor, *, ax: Axes | None = None, s: float = 8,
                    title: str | None = None) -> Figure:
    """Points ``X`` (N, 2) coloured by integer class ``y`` (seed 002 fig. 2a, seed 004 fig. 3.1)."""
    ax = _axes(ax)
    X, y = X.detach().cpu(), y.detach().cpu()
    points = ax.scatter(X[:, 0], X[:, 1], c=y, cmap="tab10", vmin=0, vmax=9, s=s, edgecolors="none")
    ax.set_aspect("equal")
    ax.set(xlabel="x1", ylabel="x2")
    _class_legend(ax, points, y)
    if title:
        ax.set_title(title)
    return ax.figure


def decision_boundary(predict: Callable[[torch.Tensor], torch.Tensor], X: torch.Tensor, y: torch.Tensor, *,
                      ax: Axes | None = None, extent: Sequence[float] | None = None, resolution: int = 150,
                      title: str | None = None, s: float = 8, legend: bool = True) -> Figure:
    """Predicted class of ``predict`` (points (M, 2) -> integer labels (M,)) on a grid, with the data on top.

    ``extent`` = (xmin, xmax, ymin, ymax) defaults to the data's bounding box plus a 10 % margin.
    Shaded regions are the predicted classes, dots the data's true classes (legend: ``legend``).
    """
    ax = _axes(ax)
    X, y = X.detach().cpu(), y.detach().cpu()
    if extent is None:
        lo, hi = X.min(dim=0).values, X.max(dim=0).values
        pad = 0.1 * (hi - lo)
        extent = (float(lo[0] - pad[0]), float(hi[0] + pad[0]), float(lo[1] - pad[1]), float(hi[1] + pad[1]))
    gx = torch.linspace(extent[0], extent[1], resolution)
    gy = torch.linspace(extent[2], extent[3], resolution)
    mx, my = torch.meshgrid(gx, gy, indexing="xy")
    with torch.no_grad():
        labels = predict(torch.stack([mx.reshape(-1), my.reshape(-1)], dim=1)).reshape(resolution, resolution)
    ax.imshow(labels.cpu().numpy(), origin="lower", extent=tuple(extent), cmap="tab10", vmin=0, vmax=9,
              alpha=0.35, interpolation="nearest", aspect="auto")
    points = ax.scatter(X[:, 0], X[:, 1], c=y, cmap="tab10", vmin=0, vmax=9, s=s, edgecolors="k", linewidths=0.2)
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("x1", fontsize=8)
    ax.set_ylabel("x2", fontsize=8)
    if legend:
        _class_legend(ax, points, y, title="true class\n(shade: predicted)")
    if title:
        ax.set_title(title, fontsize=8)
    return ax.figure


def _label_state_axes(ax: Axes, dim: int) -> None:
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    if dim == 3:
        ax.set_zlabel("x3")


def transformed_points(Z: torch.Tensor, color: torch.Tensor, *, ax: Axes | None = None, s: float = 8,
                       title: str | None = None, label: str = "p(class 2)") -> Figure:
    """Final states ``Z`` (N, 2) or (N, 3) coloured by a value in [0, 1] (seed 002 figs. 2b, 5a)."""
    Z, color = Z.detach().cpu(), color.detach().cpu()
    if Z.dim() != 2 or Z.shape[1] not in (2, 3):
        raise ValueError(f"Z must have shape (N, 2) or (N, 3), got {tuple(Z.shape)}")
    ax = _axes(ax, projection="3d" if Z.shape[1] == 3 else None)
    points = ax.scatter(*Z.T, c=color, cmap="coolwarm", vmin=0, vmax=1, s=s)
    ax.figure.colorbar(points, ax=ax, label=label, shrink=0.8, pad=0.12 if Z.shape[1] == 3 else 0.05)
    _label_state_axes(ax, Z.shape[1])
    if title:
        ax.set_title(title)
    return ax.figure


def trajectories(ys: torch.Tensor, *, ax: Axes | None = None, color: torch.Tensor | None = None,
                 annotate_every: int = 0, title: str | None = None) -> Figure:
    """Paths of inputs through depth (seed 002 figs. 2c, 5b): ``ys`` (L + 1, B, 2 or 3) from :func:`contdepth.analysis.trajectory`.

    ``color`` (B,) colours each path; ``annotate_every`` > 0 writes the layer number l beside
    every that-many-th state of the first path.
    """
    ys = ys.detach().cpu()
    if ys.dim() != 3 or ys.shape[2] not in (2, 3):
        raise ValueError(f"ys must have shape (L + 1, B, 2) or (L + 1, B, 3), got {tuple(ys.shape)}")
    ax = _axes(ax, projection="3d" if ys.shape[2] == 3 else None)
    cmap = plt.get_cmap("coolwarm")
    for b in range(ys.shape[1]):
        c = cmap(float(color[b])) if color is not None else None
        path = ys[:, b].T
        ax.plot(*path, "-", color=c, lw=1)
        ax.plot(*path[:, :1], "o", color=c, ms=4)
        ax.plot(*path[:, -1:], "s", color=c, ms=4)
    if annotate_every > 0:
        for l in range(0, ys.shape[0], annotate_every):
            ax.text(*ys[l, 0].tolist(), str(l), fontsize=7)
    _label_state_axes(ax, ys.shape[2])
    if title:
        ax.set_title(title)
    return ax.figure


def params_vs_layer(field: ControlledField, *, names: Sequence[str] | None = None,
                    title: str | None = None) -> Figure:
    """Every entry of each control parameter against the knot index l (seed 002 figs. 3, 4, 6): one panel per parameter."""
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a ControlledField, got {type(field).__name__}")
    names = tuple(field.control_names if names is None else names)
    unknown = [n for n in names if n not in field.control_names]
    if unknown:
        raise ValueError(f"names {unknown} are not control parameters of the field {field.control_names}")
    fig, axes = plt.subplots(1, len(names), figsize=(5.5 * len(names), 3.5), squeeze=False, layout="constrained")
    for ax, name in zip(axes[0], names):
        param = getattr(field, name).detach().cpu()
        values = param.reshape(field.grid.n, -1)
        lines = ax.plot(range(field.grid.n), values.numpy(), marker=".", ms=3, lw=0.8)
        ax.set_xlabel("layer l")
        ax.set_ylabel(name)
        if len(lines) <= 9:  # name each entry: bias[i], weight[i, j]
            index = [list(i) for i in torch.cartesian_prod(*[torch.arange(k) for k in param.shape[1:]]).reshape(
                len(lines), -1).tolist()]
            legend_outside(ax, lines, [f"{name}[{', '.join(map(str, i))}]" for i in index])
    if title:
        fig.suptitle(title)
    return fig


def stability_boundary(ax: Axes, method: str = "euler", *, extent: Sequence[float] = (-3.0, 1.0, -3.0, 3.0),
                       color: str = "r") -> None:
    """Draw the curve |R(z)| = 1 of ``method``'s stability region into ``ax`` (eq. 3.1: the circle |1 + z| = 1 for Euler)."""
    re = torch.linspace(extent[0], extent[1], 400, dtype=torch.float64)
    im = torch.linspace(extent[2], extent[3], 400, dtype=torch.float64)
    mr, mi = torch.meshgrid(re, im, indexing="xy")
    mag = stability_function(torch.complex(mr, mi), method).abs()
    ax.contour(mr.numpy(), mi.numpy(), mag.numpy(), levels=[1.0], colors=color, linewidths=1)


def eigenvalues(z: torch.Tensor, *, ax: Axes | None = None, methods: Sequence[str] = ("euler",),
                title: str | None = None, s: float = 6, legend: bool = True) -> Figure:
    """Eigenvalues z = h lambda(J) in the complex plane with the stability boundaries of ``methods`` (seed 004 figs. 3.4-3.6)."""
    ax = _axes(ax)
    z = z.detach().cpu().reshape(-1)
    re, im = z.real.double(), z.imag.double()
    lo, hi, top = (1.1 * float(re.min()), 1.1 * float(re.max()), 1.1 * float(im.abs().max())) if len(z) else (0.0,) * 3
    extent = (min(-2.2, lo), max(0.6, hi), -max(1.2, top), max(1.2, top))
    handles = []
    for method, color in zip(methods, ("r", "g", "m")):
        stability_boundary(ax, method, extent=extent, color=color)
        handles.append(Line2D([], [], color=color, lw=1, label=f"{method}: |R(z)| = 1"))
    handles.append(ax.scatter(re, im, s=s, c="b", label="h * eigenvalue"))
    ax.axhline(0, color="0.7", lw=0.5)
    ax.axvline(0, color="0.7", lw=0.5)
    ax.set_aspect("equal")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    ax.set_xlabel("Re(h lambda)", fontsize=8)
    ax.set_ylabel("Im(h lambda)", fontsize=8)
    if legend:
        legend_outside(ax, handles, [h.get_label() for h in handles])
    if title:
        ax.set_title(title, fontsize=8)
    return ax.figure


def landscape_contour(result: Landscape, *, ax: Axes | None = None, levels: int = 30, log: bool = False,
                      title: str | None = None) -> Figure:
    """Contours of a :class:`~contdepth.analysis.Landscape` over (alpha, beta) (seed 004 figs. 3.7-3.8)."""
    ax = _axes(ax)
    loss = result.loss.log10() if log else result.loss
    ma, mb = torch.meshgrid(result.alphas, result.betas, indexing="ij")
    cs = ax.contour(ma.numpy(), mb.numpy(), loss.numpy(), levels=levels, cmap="viridis", linewidths=0.8)
    ax.figure.colorbar(cs, ax=ax, label="log10 loss" if log else "loss", shrink=0.8)
    ax.plot([0], [0], "r+")
    ax.set_xlabel("alpha")
    ax.set_ylabel("beta")
    if title:
        ax.set_title(title)
    return ax.figure


def curves(series: dict[str, Sequence[float]], *, ax: Axes | None = None, xlabel: str = "epoch",
           ylabel: str = "loss", log: bool = False, title: str | None = None, x: Sequence[float] | None = None,
           logx: bool = False) -> Figure:
    """One line per entry of ``series`` (label -> values at ``x``, default 1, 2, ...), e.g. loss against
    epoch (seed 004 fig. 3.9). Lines differ in colour, dash and marker; the legend (for two or more)
    sits outside the data. ``logx``: a log x axis labelled with the values of ``x`` themselves."""
    if not isinstance(series, dict) or not series:
        raise ValueError("series must be a non-empty dict label -> sequence of numbers")
    ax = _axes(ax, figsize=(6, 4))
    for i, (label, values) in enumerate(series.items()):
        values = [float(v) for v in values]
        xs = list(range(1, len(values) + 1)) if x is None else list(x)[:len(values)]
        ax.plot(xs, values, lw=1.2, label=label, color=f"C{i}", linestyle=("-", "--", ":", "-.")[i % 4],
                marker="osd^v<>"[i % 7], markevery=max(1, len(values) // 8), ms=4)
    if log:
        ax.set_yscale("log")
        plain_log_ticks(ax.yaxis)
    if logx:
        if x is None:
            raise ValueError("logx=True needs the x values")
        ax.set_xscale("log")
        plain_log_ticks(ax.xaxis, x)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(series) > 1:
        legend_outside(ax)
    if title:
        ax.set_title(title)
    return ax.figure


def bars(values: dict[str, float], *, ax: Axes | None = None, xlabel: str = "value",
         title: str | None = None) -> Figure:
    """Horizontal bars, one per entry of ``values`` (label -> value), each labelled with its value."""
    ax = _axes(ax, figsize=(7, 0.4 * len(values) + 1.2))
    names = list(values)
    ax.barh(range(len(names)), [values[k] for k in names], color="C0")
    ax.set_yticks(range(len(names)), names, fontsize=8)
    ax.invert_yaxis()
    for i, k in enumerate(names):
        ax.text(values[k], i, f" {values[k]:.4f}", va="center", fontsize=8)
    lo, hi = min(values.values()), max(values.values())
    span = hi - lo or abs(hi) or 1.0
    ax.set_xlim(lo - 0.5 * span, hi + 0.3 * span)  # bars differ visibly; room for the value labels
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title)
    return ax.figure


def panel_grid(n_rows: int, n_cols: int, draw: Callable[[Axes, int, int], None], *, size: float = 2.2,
               title: str | None = None, projection: str | None = None, ticks: bool = False) -> Figure:
    """An ``n_rows`` x ``n_cols`` grid of panels; ``draw(ax, i, j)`` fills panel (i, j) (seed 004 fig. 3.3)."""
    for name, value in (("n_rows", n_rows), ("n_cols", n_cols)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    fig = plt.figure(figsize=(size * n_cols, size * n_rows))
    for i in range(n_rows):
        for j in range(n_cols):
            ax = fig.add_subplot(n_rows, n_cols, i * n_cols + j + 1, projection=projection)
            draw(ax, i, j)
            if projection is None and not ticks:
                ax.set_xticks([])
                ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


# ---- image states through depth and theta(t) per layer (seed 000 fig. 4.5, seed 002 figs. 6-7) ----------------


def _check_states(name: str, states) -> torch.Tensor:
    if not isinstance(states, torch.Tensor) or states.dim() != 4 or states.shape[0] < 1 or states.is_complex():
        what = tuple(states.shape) if isinstance(states, torch.Tensor) else type(states).__name__
        raise ValueError(f"{name} must be a real tensor (L + 1, C, H, W): one input's state at every layer, got {what}")
    return states.detach().cpu().float()


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    return value


def layer_picks(n_states: int, max_panels: int) -> list[int]:
    """At most ``max_panels`` (>= 2) state indices evenly spaced over 0..n_states - 1, both ends included:
    round(i (n_states - 1) / (max_panels - 1)) for i = 0..max_panels - 1 (every index if n_states <= max_panels)."""
    _check_int("n_states", n_states, 1)
    _check_int("max_panels", max_panels, 2)
    if n_states <= max_panels:
        return list(range(n_states))
    return sorted({round(i * (n_states - 1) / (max_panels - 1)) for i in range(max_panels)})


def _scale(values: torch.Tensor) -> tuple[float, float, "matplotlib.colors.Colormap"]:
    """(vmin, vmax, cmap) for images of ``values``: symmetric around 0 (RdBu_r) if a finite value is
    negative, else [0, max] (viridis); non-finite pixels drawn grey."""
    finite = values[torch.isfinite(values)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 0.0)
    if lo < 0:
        top = max(-lo, hi)
        return -top, top, plt.get_cmap("RdBu_r").with_extremes(bad="0.6")
    return 0.0, hi if hi > 0 else 1.0, plt.get_cmap("viridis").with_extremes(bad="0.6")


def _image_axes(ax: Axes, image: torch.Tensor, scale, label: str, *, gaps: str | None = None):
    vmin, vmax, cmap = scale
    cmap = cmap if gaps is None else cmap.with_extremes(bad=gaps)
    im = ax.imshow(image.numpy(), cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_title(label, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def _state_label(index: int, times: Sequence[float] | None) -> str:
    return f"layer {index}" if times is None else f"t = {float(times[index]):.3g}"


def activations(states: torch.Tensor, *, times: Sequence[float] | None = None, channel: int = 0,
                max_panels: int = 11, max_channels: int = 10, title: str | None = None) -> Figure:
    """One input through the layers (seed 002 fig. 7): ``states`` (L + 1, C, H, W), e.g.
    ``contdepth.analysis.layer_states(model, x)[:, 0]``.

    First row (fig. 7b): channel ``channel`` of psi_l at up to ``max_panels`` layers
    (:func:`layer_picks`: evenly spaced, layer 0 = the input and L included), titled "layer l", or
    "t = ..." given ``times`` (L + 1 values). For C > 1 a second row (fig. 7a): the first
    ``max_channels`` channels of the output psi_L, each titled with its maximum (what a global max
    pool takes). Each row has one colour scale and colorbar: symmetric around 0 (RdBu_r) if a value
    is negative, else from 0 (viridis); non-finite pixels grey.

    Raises ``ValueError`` for ``states`` that are not (L + 1, C, H, W), ``times`` of another length,
    a ``channel`` outside [0, C), ``max_panels`` < 2 or ``max_channels`` < 1.
    """
    states = _check_states("states", states)
    n, c = states.shape[:2]
    if times is not None and len(times) != n:
        raise ValueError(f"times must have one value per state ({n}), got {len(times)}")
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < c:
        raise ValueError(f"channel must be an int in [0, {c}) (the states have {c} channels), got {channel!r}")
    picks = layer_picks(n, max_panels)
    _check_int("max_channels", max_channels, 1)
    shown = min(c, max_channels)
    cols = max(len(picks), shown if c > 1 else 0)
    rows = 2 if c > 1 else 1
    fig = plt.figure(figsize=(1.35 * cols + 1.2, 1.75 * rows + 0.5), layout="constrained")
    subs = fig.subfigures(rows, 1, squeeze=False)[:, 0]
    top = subs[0].subplots(1, cols, squeeze=False)[0]
    scale = _scale(states[picks, channel])
    for ax, l in zip(top, picks):
        im = _image_axes(ax, states[l, channel], scale, _state_label(l, times))
    for ax in top[len(picks):]:
        ax.set_visible(False)
    subs[0].colorbar(im, ax=list(top), label="activation", shrink=0.9)  # the whole row: no gap before hidden panels
    subs[0].suptitle(f"channel {channel} through the layers" if c > 1 else "the state through the layers",
                     fontsize=9)
    if c > 1:
        bottom = subs[1].subplots(1, cols, squeeze=False)[0]
        last = states[-1, :shown]
        scale = _scale(last)
        for k, ax in enumerate(bottom[:shown]):
            peak = last[k].max()
            im = _image_axes(ax, last[k], scale, f"channel {k}\nmax {float(peak):.3g}")
        for ax in bottom[shown:]:
            ax.set_visible(False)
        subs[1].colorbar(im, ax=list(bottom), label="activation", shrink=0.9)
        more = f" (the first {shown} of {c})" if shown < c else ""
        subs[1].suptitle(f"the output's channels{more}, {_state_label(n - 1, times)}", fontsize=9)
    if title:
        fig.suptitle(title)
    return fig


def compare_layer_states(left: dict[str, torch.Tensor], right: dict[str, torch.Tensor], *,
                         names: tuple[str, str] = ("PDE1", "PDE2"), channel: int = 0, max_panels: int = 6,
                         title: str | None = None) -> Figure:
    """One input through the layers of two models side by side (seed 000 fig. 4.5: PDE1 vs PDE2).

    ``left`` and ``right`` map the same row labels (e.g. "depth 15") to states (L + 1, C, H, W)
    of the models ``names[0]`` (left half) and ``names[1]`` (right half); each row shows channel
    ``channel`` at up to ``max_panels`` layers (:func:`layer_picks`), titled "layer l". A row's
    two halves share one colour scale (its colorbar at the end of either half; symmetric around 0,
    RdBu_r, if a value is negative, else from 0, viridis), so they compare pixel for pixel.

    Raises ``ValueError`` for empty dicts or dicts with different labels, states that are not
    (L + 1, C, H, W), a ``channel`` outside [0, C) of any states, or ``max_panels`` < 2.
    """
    if not isinstance(left, dict) or not isinstance(right, dict) or not left:
        raise ValueError("left and right must be non-empty dicts: row label -> states (L + 1, C, H, W)")
    if list(left) != list(right):
        raise ValueError(f"left and right must have the same row labels in the same order, got {list(left)} and "
                         f"{list(right)}")
    rows = []
    for label in left:
        pair = []
        for side, states in ((names[0], left[label]), (names[1], right[label])):
            states = _check_states(f"states of {side!r}, row {label!r}", states)
            c = states.shape[1]
            if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < c:
                raise ValueError(f"channel must be an int in [0, {c}) (the states of {side!r}, row {label!r} "
                                 f"have {c} channels), got {channel!r}")
            pair.append(states[:, channel])
        rows.append((label, pair))
    picks = [[layer_picks(len(s), max_panels) for s in pair] for _, pair in rows]
    cols = max(len(p) for pair in picks for p in pair)
    fig = plt.figure(figsize=(2 * (1.3 * cols) + 1.5, 1.55 * len(rows) + 0.8), layout="constrained")
    halves = fig.subfigures(1, 2, wspace=0.04)
    grids = [half.subplots(len(rows), cols, squeeze=False) for half in halves]
    for half, name in zip(halves, names):
        half.suptitle(name, fontsize=10)
    for r, ((label, pair), pair_picks) in enumerate(zip(rows, picks)):
        scale = _scale(torch.cat([s[p].reshape(-1) for s, p in zip(pair, pair_picks)]))
        for grid, states, p in zip(grids, pair, pair_picks):
            for ax, l in zip(grid[r], p):
                im = _image_axes(ax, states[l], scale, f"layer {l}")
            for ax in grid[r][len(p):]:
                ax.set_visible(False)
            grid[r][0].set_ylabel(label, fontsize=9)
        for half, grid in zip(halves, grids):  # both halves: the same geometry, panels compare pixel for pixel
            half.colorbar(im, ax=list(grid[r]), label="activation", shrink=0.9)
    fig.suptitle(title or f"one input through the layers, channel {channel}: {names[0]} (left) vs {names[1]} (right)")
    return fig


def kernel_mosaic(weight: torch.Tensor) -> torch.Tensor:
    """The kernels (C_out, C_in, k, k) as one image: block (o, i) at rows o (k + 1).., columns i (k + 1)..,
    the blocks separated by one row/column of NaN (drawn as gaps); shape (C_out (k + 1) - 1, C_in (k + 1) - 1)."""
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        what = tuple(weight.shape) if isinstance(weight, torch.Tensor) else type(weight).__name__
        raise ValueError(f"weight must be a tensor (C_out, C_in, k, k), got {what}")
    o, i, kh, kw = weight.shape
    padded = F.pad(weight.detach().cpu().float(), (0, 1, 0, 1), value=float("nan"))
    return padded.permute(0, 2, 1, 3).reshape(o * (kh + 1), i * (kw + 1))[:-1, :-1]


def _entry_curves(ax: Axes, name: str, param: torch.Tensor, n: int) -> None:
    """Every entry of ``param`` (n, ...) against the layer l; with one knot (n = 1), the entries against their index."""
    values = param.reshape(n, -1)
    many = values.shape[1] > 10  # up to 10 (the colour cycle): one coloured, named line each
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.set_ylabel(name)
    if n == 1:
        ax.plot(range(values.shape[1]), values[0].numpy(), ".", ms=3 if many else 6, color="C0")
        ax.set_xlabel("entry (flattened index)")
        ax.set_title(f"{name}: one knot, constant in t", fontsize=9)
        return
    ax.set_xlabel("layer l")
    if many:  # one collection of thin lines (fig. 6b): hundreds of Line2D artists draw slowly
        xs = torch.arange(n, dtype=values.dtype).expand(values.shape[1], n)
        ax.add_collection(LineCollection(torch.stack([xs, values.T], dim=-1).numpy(), colors="C0", linewidths=0.5,
                                         alpha=0.3))
        ax.autoscale_view()
        ax.set_title(f"{name}: all {values.shape[1]} entries", fontsize=9)
        return
    lines = ax.plot(range(n), values.numpy(), marker="." if n < 30 else None, ms=3, lw=1.0)
    ax.set_title(name, fontsize=9)
    if len(lines) > 1:
        index = torch.cartesian_prod(*[torch.arange(k) for k in param.shape[1:]]).reshape(len(lines), -1).tolist()
        legend_outside(ax, lines, [f"{name}[{', '.join(map(str, i))}]" for i in index])


def controls(field: ControlledField, *, max_layers: int = 10, panels_per_row: int = 4,
             title: str | None = None) -> Figure:
    """theta(t) per layer (seed 002 fig. 6): every control parameter of ``field`` against the knot index l.

    A parameter whose knots are convolution kernels (n, C_out, C_in, k, k) gets the curve of every
    entry against l (fig. 6b; not for n = 1) and a row with the kernels of up to ``max_layers``
    evenly spaced knots as images (:func:`kernel_mosaic`: C_out x C_in blocks of k x k; one colour
    scale symmetric around 0). Every other parameter (n, ...) gets its entries' curves, one panel
    each (at most ``panels_per_row`` in a row); they share one panel when each has one entry per
    knot (a one-channel PDE stencil's alpha, beta, sigma, rho, gamma: five curves) or when n = 1
    (an autonomous field: every entry against its index). Scalar parameters and buffers outside
    theta(t) (the cubic field's learned gamma) are given in the title.

    Raises ``TypeError`` if ``field`` is not a ControlledField, ``ValueError`` if it has no control
    parameters or for ``max_layers`` < 2 or ``panels_per_row`` < 1.
    """
    if not isinstance(field, ControlledField):
        raise TypeError(f"field must be a ControlledField, got {type(field).__name__}")
    if not field.control_names:
        raise ValueError(f"field {type(field).__name__} has no control parameters theta(t) to draw")
    _check_int("max_layers", max_layers, 2)
    _check_int("panels_per_row", panels_per_row, 1)
    n = field.grid.n
    params = {name: getattr(field, name).detach().cpu().float() for name in field.control_names}
    kernels = [name for name, p in params.items() if p.dim() == 5]
    others = [name for name in params if name not in kernels]
    combined = len(others) > 1 and (n == 1 or all(params[name][0].numel() == 1 for name in others))
    panels = (["*"] if combined else others) + (kernels if n > 1 else [])  # one knot: no curve
    curve_rows = -(-len(panels) // panels_per_row)
    picks = layer_picks(n, max_layers)
    heights = [3.0] * curve_rows + [2.4 if n > 1 else 4.0] * len(kernels)  # one knot: one larger mosaic
    width = max(4.8 * min(len(panels), panels_per_row), 1.5 * max(len(picks), 3) + 1.5 if kernels else 0.0)
    fig = plt.figure(figsize=(width, sum(heights) + 0.6), layout="constrained")
    subs = fig.subfigures(len(heights), 1, squeeze=False, height_ratios=heights)[:, 0]
    for r in range(curve_rows):
        row = panels[r * panels_per_row:(r + 1) * panels_per_row]
        axes = subs[r].subplots(1, panels_per_row if curve_rows > 1 else len(row), squeeze=False)[0]
        for ax, name in zip(axes, row):
            if name == "*" and n == 1:  # one knot: every parameter's entries against their index
                for i, other in enumerate(others):
                    values = params[other].reshape(-1)
                    ax.plot(range(len(values)), values.numpy(), marker="osd^v<>"[i % 7], ms=3, ls="none",
                            label=other)
                ax.set_xlabel("entry (flattened index)")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_ylabel("value")
                ax.set_title("one knot: theta constant in t", fontsize=9)
                ax.grid(alpha=0.3)
                legend_outside(ax)
            elif name == "*":
                for i, other in enumerate(others):
                    ax.plot(range(n), params[other].reshape(n).numpy(), marker="osd^v<>"[i % 7], ms=3, lw=1.0,
                            label=other)
                ax.set_xlabel("layer l")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
                ax.set_ylabel("value")
                ax.set_title(", ".join(others), fontsize=9)
                ax.grid(alpha=0.3)
                legend_outside(ax)
            else:
                _entry_curves(ax, name, params[name], n)
        for ax in axes[len(row):]:
            ax.set_visible(False)
    for sub, name in zip(subs[curve_rows:], kernels):
        weight = params[name]
        axes = sub.subplots(1, len(picks), squeeze=False)[0]
        scale = _scale(weight[picks])
        o, i = weight.shape[1:3]
        for ax, l in zip(axes, picks):
            im = _image_axes(ax, kernel_mosaic(weight[l]), scale, f"layer {l}", gaps="white")
        if o > 1 or i > 1:
            axes[0].set_xlabel(f"input channel 0..{i - 1}", fontsize=8)
            axes[0].set_ylabel(f"output channel 0..{o - 1}", fontsize=8)
        sub.colorbar(im, ax=list(axes), label=name, shrink=0.9)
        sub.suptitle(f"{name}: the {o} x {i} kernels ({weight.shape[3]} x {weight.shape[4]}) of layer l", fontsize=9)
    scalars = [(name, float(v.detach())) for name, v in (*field.named_parameters(), *field.named_buffers())
               if name not in params and "." not in name and v.numel() == 1]
    extra = ", ".join(f"{name} = {value:.3g}" for name, value in scalars)
    heading = title or f"{type(field).__name__}: theta(t) per layer"
    fig.suptitle(f"{heading}\n({extra}, constant in depth)" if extra else heading)
    return fig
