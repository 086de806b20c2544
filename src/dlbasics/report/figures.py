"""Figures as deterministic PNG bytes (no timestamps in the file): image grids, one model's
learning curves and its confusion matrix, as evaluation draws them beside each model; and the
curve-plotting pieces the report's own figures (report_figures) share with them. Each figure
is built, still open, by a `*_figure` function (what the tests measure: every label inside it,
its margins fitted to its labels by fit_margins); its PNG function saves it with png_bytes.

matplotlib is imported lazily with the non-interactive Agg backend, so importing this module
opens no window and touches no file.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

# PNG metadata matplotlib would otherwise fill with its version: keep files byte-stable.
_PNG_META = {"Software": None}
# Pixels per inch of every PNG saved here.
DPI = 80


def pyplot():
    """matplotlib.pyplot on the Agg backend, set up for this project's figures."""
    import matplotlib

    matplotlib.use("Agg")
    # Titles at a fixed height: no figure here puts ticks above an axes, so the automatic
    # placement, which measures every tick label of every axes on each save, only costs time.
    matplotlib.rcParams["axes.titley"] = 1.0
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """`fig` as PNG bytes without version metadata (byte-stable), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata=_PNG_META)
    pyplot().close(fig)
    return buf.getvalue()


def image_grid(
    images: np.ndarray,  # [N, H, W], any range
    titles: Sequence[str],
    *,
    ncols: int = 8,
    title_colors: Sequence[str] | None = None,
    suptitle: str = "",
) -> bytes:
    """A grid of grey images with a title under each: PNG bytes."""
    return png_bytes(image_grid_figure(images, titles, ncols=ncols, title_colors=title_colors,
                                       suptitle=suptitle))


def image_grid_figure(images: np.ndarray, titles: Sequence[str], *, ncols: int = 8,
                      title_colors: Sequence[str] | None = None, suptitle: str = ""):
    """image_grid's figure (images: [N, H, W]), open (png_bytes saves and closes it)."""
    plt = pyplot()
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows), squeeze=False,
                             dpi=DPI)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray_r")
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(titles[i], fontsize=7, color=color)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    # Fixed margins sized for two title lines per image, rather than tight_layout, which
    # measures every title on each draw.
    top = 1 - (0.6 if suptitle else 0.1) / fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.1,
                        hspace=0.5 if any("\n" in t for t in titles) else 0.3)
    return fig


def sample_grid(X: np.ndarray, y: np.ndarray, class_names: Sequence[str],
                image_shape: Sequence[int], n: int = 24) -> bytes:
    """The first `n` images of a split with their text labels."""
    imgs = X[:n].reshape(-1, *image_shape)
    return image_grid(imgs, [class_names[int(c)] for c in y[:n]], suptitle="samples")


def prediction_grid(X: np.ndarray, y: np.ndarray, pred: np.ndarray, class_names: Sequence[str],
                    image_shape: Sequence[int], n: int = 24) -> bytes:
    """Test images titled 'true / predicted', wrong predictions in red (as the sources' predict
    helpers show them)."""
    imgs = X[:n].reshape(-1, *image_shape)
    titles = [f"{class_names[int(t)]}\n{class_names[int(p)]}" for t, p in zip(y[:n], pred[:n])]
    colors = ["black" if t == p else "red" for t, p in zip(y[:n], pred[:n])]
    return image_grid(imgs, titles, title_colors=colors, suptitle="true / predicted")


# ----------------------------------------------------------------------------- one model's figures

# The line style of each split in every curve plot.
SPLIT_STYLE = {"train": "-", "val": ":", "test": "--"}


def fit_margins(fig) -> None:
    """Margins measured from what the figure draws (tick labels, axis labels, titles, legends
    beside an axes), so every label lies inside the saved PNG however wide its ticks (a log
    axis' 5x10^-15 needs three times the room of 0.5). Deterministic: the same figure gets the
    same margins, measured at the DPI the PNG is saved at."""
    fig.set_dpi(DPI)
    fig.tight_layout(pad=0.6)


def scale_label(quantity: str, scale: str) -> str:
    """An axis label that names a log scale (`scale`: matplotlib's "linear", "log", "symlog")."""
    return {"log": f"{quantity} (log scale)",
            "symlog": f"{quantity} (log scale, linear near 0)"}.get(scale, quantity)


def epoch_axis(ax, epochs: Sequence[int]) -> None:
    """Label x as epochs, ticked at whole epochs only (one tick for a one-epoch history)."""
    from matplotlib.ticker import MaxNLocator

    ax.set_xlabel("epoch")
    if len(set(epochs)) == 1:
        ax.set_xticks(sorted(set(epochs)))
    else:  # as many ticks as the axis' length allows, as the default locator would
        ax.xaxis.set_major_locator(MaxNLocator(nbins="auto", steps=[1, 2, 5, 10], integer=True))


def name_ticks(ax, names: Sequence[str]) -> None:
    """Category names under the x axis at 0, 1, ...; slanted when a row of them would run
    together (about 28 characters fit under one panel of a two-panel figure)."""
    ax.set_xticks(range(len(names)), [str(n) for n in names])
    if sum(len(str(n)) for n in names) > 28:
        ax.tick_params(axis="x", labelrotation=30)
        for label in ax.get_xticklabels():
            label.set(horizontalalignment="right", rotation_mode="anchor")


def plot_splits(ax, history: Sequence[Mapping[str, Any]], what: str, label: str = "",
                color: str | None = None, splits: Sequence[str] = tuple(SPLIT_STYLE)) -> bool:
    """Draw `<split>_<what>` of each of `splits` from a history (records with "epoch"), in its
    split's line style; a one-epoch history as markers. True if anything was drawn."""
    epochs = [r["epoch"] for r in history]
    drawn = False
    for split in splits:
        style = SPLIT_STYLE[split]
        ys = [r.get(f"{split}_{what}") for r in history]
        if all(y is None for y in ys):
            continue
        ax.plot(epochs, [math.nan if y is None else y for y in ys], linestyle=style,
                color=color, marker="o" if len(epochs) == 1 else None, linewidth=1.2,
                label=f"{label} {split}".strip())
        drawn = True
    return drawn


def log_scale_if_positive(ax, histories: Iterable[Sequence[Mapping[str, Any]]], what: str
                          ) -> None:
    """A log y axis when every `<split>_<what>` value of the histories is positive; the y label
    `what`, naming the log scale when it is one."""
    values = [r[k] for h in histories for r in h for k in r
              if k.endswith(f"_{what}") and r[k] is not None]
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_ylabel(scale_label(what, ax.get_yscale()))


def curves_png(name: str, history: Sequence[Mapping[str, Any]]) -> bytes:
    """One variant's per-epoch loss (log scale when positive) and accuracy, train / val / test."""
    return png_bytes(curves_figure(name, history))


def curves_figure(name: str, history: Sequence[Mapping[str, Any]]):
    """curves_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    has_acc = any(k.endswith("_accuracy") for r in history for k in r)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(7.2 if has_acc else 3.8, 2.6),
                             squeeze=False, dpi=DPI)
    epochs = [r["epoch"] for r in history]
    ax = axes[0][0]
    plot_splits(ax, history, "loss")
    log_scale_if_positive(ax, [history], "loss")
    epoch_axis(ax, epochs)
    ax.set_title(f"{name}: loss")
    ax.legend(fontsize=7)
    if has_acc:
        ax = axes[0][1]
        plot_splits(ax, history, "accuracy")
        epoch_axis(ax, epochs)
        ax.set(ylabel="accuracy", title=f"{name}: accuracy")
        ax.legend(fontsize=7)
    fit_margins(fig)
    return fig


def fit_png(name: str, x: np.ndarray, y: np.ndarray, grid: np.ndarray, fitted: np.ndarray,
            truth: tuple[float, float] | None = None) -> bytes:
    """A 1-D regression as file 001 plots it: the training points x [N], y [N] and the model's
    predictions `fitted` [G] along `grid` [G]; with `truth` (w, b), the true line dashed."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(3.8, 2.8), dpi=DPI)
    ax.plot(x, y, "o", color="tab:green", alpha=0.3, markersize=3, label="training points")
    ax.plot(grid, fitted, color="tab:blue", label="fitted")
    if truth is not None:
        ax.plot(grid, truth[0] * grid + truth[1], "--", color="grey", linewidth=1, label="true line")
    ax.set(xlabel="x", ylabel="y", title=f"{name}: data and fit")
    ax.legend(fontsize=7)
    fit_margins(fig)
    return png_bytes(fig)


def confusion_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted) with its counts."""
    return png_bytes(confusion_figure(matrix, class_names, title))


def confusion_figure(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str):
    """confusion_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    cm = np.asarray(matrix, dtype=float)  # (C, C)
    c = cm.shape[0]
    size = min(6.0, 1.6 + 0.38 * c)
    fig, ax = plt.subplots(figsize=(size, size), dpi=DPI)
    ax.imshow(cm, cmap="Blues")
    top = cm.max() if cm.size else 0
    for i in range(c):
        for j in range(c):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > top / 2 else "black")
    # Upright names while a row of them fits under the matrix (digits, two short words).
    upright = c <= 10 and c * max((len(str(n)) for n in class_names), default=0) <= 30
    ax.set_xticks(range(c), [str(n) for n in class_names], fontsize=7, rotation=0 if upright else 90)
    ax.set_yticks(range(c), [str(n) for n in class_names], fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fit_margins(fig)
    return fig
