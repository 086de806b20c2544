"""Figures as deterministic PNG bytes (no timestamps in the file): image grids, one model's
learning curves and its confusion matrix.

matplotlib is imported lazily with the non-interactive Agg backend, so importing this module
opens no window and touches no file.
"""

from __future__ import annotations

import io
import math
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

# PNG metadata matplotlib would otherwise fill with its version: keep files byte-stable.
_PNG_META = {"Software": None}


def pyplot():
    """matplotlib.pyplot on the Agg backend, set up for this project's figures."""
    import matplotlib

    matplotlib.use("Agg")
    # Titles at the top of their axes: no figure here puts ticks above an axes, and the automatic
    # placement measured every tick label of every axes on each save (a third of a grid's time;
    # the PNGs are byte-identical).
    matplotlib.rcParams["axes.titley"] = 1.0
    import matplotlib.pyplot as plt

    return plt


def png_bytes(fig) -> bytes:
    """`fig` as PNG bytes without version metadata (byte-stable), then closed."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80, metadata=_PNG_META)
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
    plt = pyplot()
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.3 * ncols, 1.5 * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i], cmap="gray_r")
            color = title_colors[i] if title_colors is not None else "black"
            ax.set_title(titles[i], fontsize=7, color=color)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    # Fixed margins sized for two title lines per image: tight_layout measured every one of the
    # 24 titles and took half of the figure's time.
    top = 1 - (0.6 if suptitle else 0.1) / fig.get_figheight()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.1,
                        hspace=0.5 if any("\n" in t for t in titles) else 0.3)
    return png_bytes(fig)


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

_SPLIT_STYLE = {"train": "-", "val": ":", "test": "--"}

_LEAKY_SLOPE = 0.2  # the book's slope, which the shipped mlp_leaky_relu uses
_PRELU_START = 0.25  # nn.PReLU's initial (then learned) slope


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# The hidden-unit functions of models.ACTIVATIONS as numpy formulas: name -> (f, f'). At 0 the
# derivatives take torch autograd's values (relu 0, leaky_relu the slope); prelu at its start.
ACTIVATION_FORMULAS = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "leaky_relu": (lambda x: np.where(x > 0, x, _LEAKY_SLOPE * x),
                   lambda x: np.where(x > 0, 1.0, _LEAKY_SLOPE)),
    "prelu": (lambda x: np.where(x > 0, x, _PRELU_START * x),
              lambda x: np.where(x > 0, 1.0, _PRELU_START)),
}


def _layout(fig) -> None:
    # Fixed margins: tight_layout measures every label, which doubles the cost of a figure.
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.17, top=0.88, wspace=0.28)


def _plot_splits(ax, history: Sequence[Mapping[str, Any]], what: str, label: str = "",
                 color: str | None = None) -> bool:
    """Draw `<split>_<what>` for train / val / test from a history; True if anything drawn."""
    epochs = [r["epoch"] for r in history]
    drawn = False
    for split, style in _SPLIT_STYLE.items():
        ys = [r.get(f"{split}_{what}") for r in history]
        if all(y is None for y in ys):
            continue
        ax.plot(epochs, [math.nan if y is None else y for y in ys], linestyle=style,
                color=color, marker="o" if len(epochs) == 1 else None, linewidth=1.2,
                label=f"{label} {split}".strip())
        drawn = True
    return drawn


def _log_if_positive(ax, histories: Iterable[Sequence[Mapping[str, Any]]], what: str) -> None:
    values = [r[k] for h in histories for r in h for k in r
              if k.endswith(f"_{what}") and r[k] is not None]
    if values and min(values) > 0:
        ax.set_yscale("log")


def curves_png(name: str, history: Sequence[Mapping[str, Any]]) -> bytes:
    """One variant's per-epoch loss (log scale when positive) and accuracy, train / val / test."""
    plt = pyplot()
    has_acc = any(k.endswith("_accuracy") for r in history for k in r)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(7.2 if has_acc else 3.8, 2.6),
                             squeeze=False)
    ax = axes[0][0]
    _plot_splits(ax, history, "loss")
    _log_if_positive(ax, [history], "loss")
    ax.set(xlabel="epoch", ylabel="loss", title=f"{name}: loss")
    ax.legend(fontsize=7)
    if has_acc:
        ax = axes[0][1]
        _plot_splits(ax, history, "accuracy")
        ax.set(xlabel="epoch", ylabel="accuracy", title=f"{name}: accuracy")
        ax.legend(fontsize=7)
    _layout(fig)
    return png_bytes(fig)


def confusion_png(matrix: Sequence[Sequence[int]], class_names: Sequence[str], title: str) -> bytes:
    """A confusion matrix (rows: true class, columns: predicted) with its counts."""
    import numpy as np

    plt = pyplot()
    cm = np.asarray(matrix, dtype=float)  # (C, C)
    c = cm.shape[0]
    size = min(6.0, 1.6 + 0.38 * c)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(cm, cmap="Blues")
    top = cm.max() if cm.size else 0
    for i in range(c):
        for j in range(c):
            if cm[i, j]:
                ax.text(j, i, f"{int(cm[i, j])}", ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > top / 2 else "black")
    ax.set_xticks(range(c), [str(n) for n in class_names], fontsize=7, rotation=90 if c > 10 else 0)
    ax.set_yticks(range(c), [str(n) for n in class_names], fontsize=7)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    return png_bytes(fig)
