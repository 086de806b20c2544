"""Figures as deterministic PNG bytes (no timestamps in the file): image grids and curves.

matplotlib is imported lazily with the non-interactive Agg backend, so importing this module
opens no window and touches no file.
"""

from __future__ import annotations

import io
from typing import Sequence

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
