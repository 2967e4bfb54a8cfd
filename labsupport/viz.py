"""Plots for the labs: attention heads as heatmaps, loss curves against a floor, any labelled heatmap.

Everything is plain matplotlib (works offline, no bertviz) and returns the Figure. Figures come from pyplot,
so Jupyter also shows them on its own: end the call with ``;`` (or assign it) to avoid showing it twice.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage


def _as_array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=float)


def select_layer(attn: Any, layer: int | None = None) -> np.ndarray:
    """Bring the accepted attention formats to one (heads, T, T) array.

    attn: (heads, T, T), (1, heads, T, T), or the per-layer tuple that Hugging Face models return with
    ``output_attentions=True`` (each (1, heads, T, T)) together with `layer`."""
    if isinstance(attn, tuple | list):
        if layer is None:
            raise ValueError(f"attn holds {len(attn)} layers: pick one with layer=0..{len(attn) - 1}")
        if not -len(attn) <= layer < len(attn):
            raise ValueError(f"layer={layer} is out of range for {len(attn)} layers")
        attn = attn[layer]
    elif layer is not None:
        raise ValueError("layer= only applies to a tuple of per-layer attentions (outputs.attentions)")
    a = _as_array(attn)
    if a.ndim == 4:
        if a.shape[0] != 1:
            raise ValueError(f"attention holds a batch of {a.shape[0]} sequences: pass one, e.g. attn[i:i+1]")
        a = a[0]
    if a.ndim != 3 or a.shape[1] != a.shape[2]:
        raise ValueError(f"attention must be (heads, T, T) or (1, heads, T, T), got shape {tuple(a.shape)}")
    return a


def _labels(labels: Sequence[Any] | None, n: int, what: str) -> list[str] | None:
    if labels is None:
        return None
    labels = [str(t) for t in labels]
    if len(labels) != n:
        raise ValueError(f"got {len(labels)} {what} for {n} positions: pass exactly one label per position")
    return labels


def _heatmap(
    ax: Axes,
    m: np.ndarray,
    xlabels: list[str] | None,
    ylabels: list[str] | None,
    cmap: str,
    vmin: float | None,
    vmax: float | None,
) -> AxesImage:
    im = ax.imshow(m, cmap=cmap, vmin=vmin, vmax=vmax)
    if xlabels is not None:
        ax.set_xticks(range(len(xlabels)), labels=xlabels, rotation=90)
    if ylabels is not None:
        ax.set_yticks(range(len(ylabels)), labels=ylabels)
    return im


def attention_heads(
    attn: Any,
    tokens: Sequence[Any],
    layer: int | None = None,
    heads: Sequence[int] | int | None = None,
    ncols: int = 4,
    title: str | None = None,
    cmap: str = "viridis",
    cell_size: float = 0.35,
) -> Figure:
    """One layer's attention heads as a grid of heatmaps (rows = queries, columns = keys, both labelled by
    `tokens`), on a shared colour scale from 0. `heads` picks a subset (in the given order)."""
    a = select_layer(attn, layer)  # (H, T, T)
    n_heads, T, _ = a.shape
    tokens = _labels(tokens, T, "tokens")
    heads = list(range(n_heads)) if heads is None else [heads] if isinstance(heads, int) else list(heads)
    if not heads or any(not 0 <= h < n_heads for h in heads):
        raise ValueError(f"heads must be a non-empty list of head indices in 0..{n_heads - 1}, got {heads}")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    ncols = min(ncols, len(heads))
    nrows = math.ceil(len(heads) / ncols)
    side = max(2.5, cell_size * T)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(side * ncols + 1.0, side * nrows + 0.8), squeeze=False, layout="constrained"
    )
    vmax = max(float(a[heads].max()), 1e-12)
    used = []
    for k, ax in enumerate(axes.flat):
        if k >= len(heads):
            ax.remove()  # an incomplete last row
            continue
        im = _heatmap(ax, a[heads[k]], tokens, tokens, cmap, 0.0, vmax)
        ax.set_title(f"head {heads[k]}")
        ax.set_xlabel("key")
        ax.set_ylabel("query")
        used.append(ax)
    fig.colorbar(im, ax=used, shrink=0.8, label="attention weight")
    if title is not None or layer is not None:
        fig.suptitle(title if title is not None else f"layer {layer}")
    return fig


def plot_heatmap(
    matrix: Any,
    xlabels: Sequence[Any] | None = None,
    ylabels: Sequence[Any] | None = None,
    title: str | None = None,
    ax: Axes | None = None,
    cmap: str = "viridis",
    colorbar: bool = True,
    annotate: bool = False,
    fmt: str = ".2f",
) -> Figure:
    """A labelled heatmap of a 2-D matrix (tensor or array); `annotate` writes each value in its cell."""
    m = _as_array(matrix)
    if m.ndim != 2:
        raise ValueError(f"plot_heatmap needs a 2-D matrix, got shape {tuple(m.shape)}")
    xlabels, ylabels = _labels(xlabels, m.shape[1], "xlabels"), _labels(ylabels, m.shape[0], "ylabels")
    if ax is None:
        size = (max(3.0, 0.5 * m.shape[1] + 1.5), max(2.5, 0.5 * m.shape[0] + 1.0))
        _, ax = plt.subplots(figsize=size, layout="constrained")
    im = _heatmap(ax, m, xlabels, ylabels, cmap, None, None)
    if annotate:
        mid = (np.nanmin(m) + np.nanmax(m)) / 2
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, format(v, fmt), ha="center", va="center", color="black" if v > mid else "white")
    if colorbar:
        ax.figure.colorbar(im, ax=ax)
    if title is not None:
        ax.set_title(title)
    return ax.figure


def _curve(name: str, values: Any) -> tuple[np.ndarray, np.ndarray]:
    """A list of losses (x = 0, 1, ...) or of (step, loss) pairs -> (xs, ys)."""
    try:
        v = _as_array(values)
    except (TypeError, ValueError):
        v = None
    if v is None or v.ndim not in (1, 2) or (v.ndim == 2 and v.shape[1] != 2):
        raise ValueError(f"history[{name!r}] must be a list of numbers or of (step, value) pairs")
    return (np.arange(len(v)), v) if v.ndim == 1 else (v[:, 0], v[:, 1])


def moving_average(values: Sequence[float], window: int) -> list[float]:
    """Mean of each value and up to `window - 1` values before it (same length as `values`)."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, running = [], 0.0
    for i, v in enumerate(values):
        running += v
        if i >= window:
            running -= values[i - window]
        out.append(running / min(i + 1, window))
    return out


def _trainer_history(trainer: Any) -> dict[str, Any]:
    """A Trainer's curves: the loss of every iteration (x = 1, 2, ...) and its (iteration, loss) evaluations."""
    history: dict[str, Any] = {"train": list(zip(range(1, len(trainer.losses) + 1), trainer.losses))}
    if trainer.eval_losses:
        history["validation"] = list(trainer.eval_losses)
    return history


def plot_losses(
    history: Mapping[str, Sequence[float]] | Any,
    floor: float | None = None,
    floor_label: str = "Bayes floor",
    title: str | None = None,
    ax: Axes | None = None,
    xlabel: str | None = None,
    ylabel: str = "loss (nats/token)",
    logy: bool = False,
    smooth: int | None = None,
) -> Figure:
    """Loss curves, one per `history` entry (name -> losses, or name -> (step, loss) pairs when curves are
    logged at different steps), with an optional dashed horizontal line at `floor` (e.g. the Bayes floor, or
    ln V with ``floor_label="ln V (uniform guess)"``).

    `history` may also be a labsupport Trainer: its training loss per iteration and its validation losses.
    `smooth`: draw curves with more than `smooth` points faintly, with their `smooth`-point moving average.
    """
    if hasattr(history, "losses") and hasattr(history, "eval_losses"):
        history, xlabel = _trainer_history(history), xlabel or "iteration"
    if not isinstance(history, Mapping) or not history:
        raise ValueError("history must be a non-empty dict of name -> list of losses, e.g. {'train': [...]}")
    if smooth is not None and smooth < 1:
        raise ValueError(f"smooth must be >= 1 (points per moving average), got {smooth}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for i, (name, values) in enumerate(history.items()):
        xs, ys = _curve(name, values)
        if smooth is not None and len(ys) > smooth:
            ax.plot(xs, ys, color=f"C{i}", alpha=0.25, linewidth=0.8)
            ax.plot(xs, moving_average(list(ys), smooth), color=f"C{i}", label=f"{name} (mean of {smooth})")
        else:
            ax.plot(xs, ys, "o-" if len(ys) <= 30 and smooth is not None else "-", color=f"C{i}", label=name)
    if floor is not None:
        label = f"{floor_label} ({float(floor):.3f})"
        ax.axhline(float(floor), color="black", linestyle="--", linewidth=1, label=label)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or "step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend()
    if title is not None:
        ax.set_title(title)
    return ax.figure
