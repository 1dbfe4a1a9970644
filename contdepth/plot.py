"""Headless matplotlib figures for planar experiments (Agg backend; import explicitly as ``contdepth.plot``).

Every function draws into ``ax`` when given (else a new figure) and returns the ``Figure``;
:func:`save` writes a PNG and closes the figure.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, NullLocator  # noqa: E402

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
