"""Every figure the report and evaluation draw keeps its text inside itself: each drawn tick
label, axis label, title and legend lies within the figure's pixels at the resolution the PNG
is saved at, every axis that plots something is labelled (a log axis says so), and the PNG is
the same bytes for the same inputs."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from dlbasics.report import charts as report_figures
from dlbasics.report import figures
from dlbasics.report.content import search_summary


def _history(epochs: int, start: float, rate: float, accuracy: bool, floor: float = 0.0
             ) -> list[dict]:
    """A reports/history/<variant>.json shape: loss decays towards `floor`, accuracy rises."""
    out = []
    for e in range(1, epochs + 1):
        loss = start * math.exp(-rate * e) + floor
        r = {"epoch": e, "train_loss": loss, "test_loss": 1.3 * loss}
        if accuracy:
            r |= {"val_loss": 1.2 * loss, "train_accuracy": 1 - 0.5 * math.exp(-rate * e),
                  "val_accuracy": 1 - 0.55 * math.exp(-rate * e),
                  "test_accuracy": 1 - 0.6 * math.exp(-rate * e)}
        out.append(r)
    return out


# Histories shaped like the shipped variants': a classifier over 30 epochs, a regression loss
# over eight decades, a closed-form fit (one epoch, losses near 1e-15), a loss in one decade.
CLASSIFIER = _history(30, 2.3, 0.2, True)
DECADES = _history(1000, 2e3, 0.02, False, floor=1e-5)
CLOSED_FORM = [{"epoch": 1, "train_loss": 4.281020135420534e-15, "test_loss": 7.70938895404763e-15}]
ONE_DECADE = _history(400, 20.0, 0.05, False, floor=3.77)

SEARCH_ROWS = [
    {"config": c, "model.hidden": h, "optimizer.lr": lr, "model.dropout": 0.5,
     "optimizer.weight_decay": 0.0, "diverged": False, "n_parameters": n, "path": "batched",
     "epochs_chosen": 10, "fold": f, "train_accuracy": acc + 0.02, "val_accuracy": acc + f / 100}
    for c, (h, lr, n, acc) in enumerate([("[]", 0.01, 650, 0.67), ("[]", 0.03, 650, 0.86),
                                         ("[1024, 1024]", 0.01, 1126410, 0.78),
                                         ("[1024, 1024]", 0.03, 1126410, 0.864)])
    for f in range(3)
]
SEARCH_INFO = {"chosen": {"config": 3, "epochs_chosen": 10, "epochs_max": 10,
                          "folds": [0, 1, 2], "val_accuracy_mean": 0.874,
                          "val_accuracy_std": 0.01},
               "chosen_words": "2 hidden layers of 1024 + 1024 relu units", "patience": None}
FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]

BUILDERS = {
    "curves: classifier": lambda: figures.curves_figure("mlp_default_init", CLASSIFIER),
    "curves: eight decades": lambda: figures.curves_figure("poly20_few", DECADES),
    "curves: closed form": lambda: figures.curves_figure("trapezoid_features", CLOSED_FORM),
    "curves: one decade": lambda: figures.curves_figure("poly1", ONE_DECADE),
    "confusion: 3 classes": lambda: figures.confusion_figure(
        [[9, 1, 0], [0, 8, 2], [1, 0, 9]], ["0", "1", "2"], "softmax"),
    "confusion: 10 named classes": lambda: figures.confusion_figure(
        np.eye(10, dtype=int) * 97 + 1, FASHION, "mlp"),
    "confusion: 12 classes": lambda: figures.confusion_figure(
        np.eye(12, dtype=int) * 30, [str(i) for i in range(12)], "many"),
    "image grid": lambda: figures.image_grid_figure(
        np.arange(24 * 16, dtype=float).reshape(24, 4, 4),
        [f"{FASHION[i % 10]}\n{FASHION[(i + 3) % 10]}" for i in range(24)],
        title_colors=["black", "red"] * 12, suptitle="true / predicted"),
    "overlay: classifiers": lambda: report_figures.overlay_figure(
        {"dropout": CLASSIFIER, "dropout_off": _history(30, 2.3, 0.25, True)}, "dropout"),
    "overlay: regression beside its legend": lambda: report_figures.overlay_figure(
        {"poly3": ONE_DECADE, "poly20": DECADES, "poly20_lstsq": CLOSED_FORM,
         "poly20_few_lstsq": [{"epoch": 1, "train_loss": 1.5e-7, "test_loss": 2.8e9}]},
        "polynomial fits"),
    "activations": report_figures.activations_figure,
    "weight decay: lambda from 0": lambda: report_figures.weight_decay_figure(
        [{"x": x, "train_mse": tr, "test_mse": te, "w_norm": w}
         for x, tr, te, w in [(0, 4.6e-12, 146.7, 12.74), (0.1, 3.5e-6, 115.4, 11.3),
                              (1, 2.6e-4, 13.38, 3.8), (10, 3.7e-3, 0.0326, 0.045)]]),
    "weight decay: positive lambdas": lambda: report_figures.weight_decay_figure(
        [{"x": x, "train_mse": 0.01 * x, "test_mse": 0.02, "w_norm": 1 / x}
         for x in (0.01, 0.1, 1.0)]),
    "sparsity": lambda: report_figures.sparsity_figure(
        ["sparse_none", "sparse_l2", "sparse_l1", "sparse_elastic"],
        {"sparse_none": {"n_near_zero": 5, "test_mse": 0.1343},
         "sparse_l2": {"n_near_zero": 3, "test_mse": 0.1023},
         "sparse_l1": {"n_near_zero": 112, "test_mse": 0.08725},
         "sparse_elastic": {"n_near_zero": 112, "test_mse": 0.08643}}),
    "search": lambda: report_figures.search_figure(search_summary(
        "book", {"info": SEARCH_INFO, "rows": SEARCH_ROWS}, {}, {})),
}


def drawn_texts(fig) -> list:
    """Every piece of text the saved PNG shows, each drawn once at the PNG's resolution: tick
    labels within the axis' view (matplotlib keeps stale ones outside it), axis labels, offset
    texts, titles, legends; none of an axes turned off but its title."""
    from matplotlib.text import Text

    fig.set_dpi(figures.DPI)
    fig.canvas.draw()
    hidden = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * max(abs(lo), abs(hi), 1e-300)
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                loc = tick.get_loc()
                if not ax.axison or loc is None or not lo - slack <= loc <= hi + slack:
                    hidden |= {tick.label1, tick.label2}
            if not ax.axison:
                hidden |= {axis.label, axis.get_offset_text()}
    return [t for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip() and t not in hidden]


def _overlapping(labels: list, renderer, lo: int, hi: int) -> list[str]:
    """Neighbouring tick labels of one axis whose text would overlap: upright ones whose boxes
    meet along the axis (box extents `lo`, `hi`: 0, 2 for x; 1, 3 for y); slanted ones (parallel
    strips) whose anchors lie less than a line of text apart across the slant."""
    out = []
    if all(t.get_rotation() == 0 for t in labels):
        spans = sorted((*t.get_window_extent(renderer).extents[[lo, hi]], t.get_text())
                       for t in labels)
        out = [f"{a[2]!r} and {b[2]!r}" for a, b in itertools.pairwise(spans) if b[0] < a[1] - 0.5]
    else:
        for a, b in itertools.pairwise(labels):
            theta = math.radians(a.get_rotation())
            (xa, ya), (xb, yb) = (t.get_transform().transform(t.get_position()) for t in (a, b))
            across = abs(-(xb - xa) * math.sin(theta) + (yb - ya) * math.cos(theta))
            if across < a.get_fontsize() * figures.DPI / 72:
                out.append(f"{a.get_text()!r} and {b.get_text()!r}")
    return out


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_label_lies_inside_its_figure(name: str):
    fig = BUILDERS[name]()
    try:
        texts = drawn_texts(fig)
        renderer = fig.canvas.get_renderer()
        width, height = fig.bbox.width, fig.bbox.height
        outside = []
        for t in texts:
            box = t.get_window_extent(renderer)
            if box.x0 < -0.5 or box.y0 < -0.5 or box.x1 > width + 0.5 or box.y1 > height + 0.5:
                outside.append(f"{t.get_text()!r} at x {box.x0:.0f}..{box.x1:.0f}, "
                               f"y {box.y0:.0f}..{box.y1:.0f}")
        assert not outside, (f"{name}: text outside the {width:.0f} x {height:.0f} px figure: "
                             + "; ".join(outside))
        # The check is not vacuous: every axes shown has its tick labels among the texts.
        for ax in (ax for ax in fig.axes if ax.axison):
            for axis, lo, hi in ((ax.xaxis, 0, 2), (ax.yaxis, 1, 3)):  # bounds along the axis
                labels = [t for t in axis.get_ticklabels() + axis.get_ticklabels(minor=True)
                          if t in texts]
                assert labels or axis is ax.xaxis  # a one-epoch x axis may have one label
                assert not _overlapping(labels, renderer, lo, hi), \
                    f"{name}: tick labels run together: {_overlapping(labels, renderer, lo, hi)}"
    finally:
        figures.pyplot().close(fig)


@pytest.mark.parametrize("name", list(BUILDERS))
def test_every_axis_that_plots_a_quantity_is_labelled(name: str):
    fig = BUILDERS[name]()
    try:
        for ax in fig.axes:
            if not ax.axison:  # an image of a grid: no axis drawn
                continue
            for label, scale in ((ax.get_xlabel(), ax.get_xscale()),
                                 (ax.get_ylabel(), ax.get_yscale())):
                assert label.strip(), f"{name}: an unlabelled axis in {ax.get_title()!r}"
                if scale != "linear":
                    assert "log scale" in label, f"{name}: {label!r} on a {scale} axis"
    finally:
        figures.pyplot().close(fig)


def test_curves_name_the_log_scale_of_loss_and_keep_a_linear_one_plain():
    fig = figures.curves_figure("linreg", CLASSIFIER)
    loss, accuracy = fig.axes
    assert (loss.get_yscale(), loss.get_ylabel()) == ("log", "loss (log scale)")
    assert (loss.get_xlabel(), accuracy.get_ylabel()) == ("epoch", "accuracy")
    figures.pyplot().close(fig)
    # A loss that is not positive everywhere stays on a linear axis, labelled plainly.
    fig = figures.curves_figure("v", [{"epoch": 1, "train_loss": 0.0}, {"epoch": 2,
                                                                       "train_loss": 0.5}])
    assert (fig.axes[0].get_yscale(), fig.axes[0].get_ylabel()) == ("linear", "loss")
    figures.pyplot().close(fig)


@pytest.mark.parametrize("name", ["curves: eight decades", "overlay: regression beside its legend",
                                  "weight decay: lambda from 0", "search"])
def test_the_same_inputs_give_the_same_png_bytes(name: str):
    first, second = figures.png_bytes(BUILDERS[name]()), figures.png_bytes(BUILDERS[name]())
    assert first == second
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"Software" not in first and b"tIME" not in first  # no version, no timestamp
