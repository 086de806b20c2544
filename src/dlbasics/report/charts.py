"""The report's comparison figures as deterministic PNG bytes: several variants' curves on
shared axes, the activation functions, the weight-decay sweep, L1 against L2, and a search's
score per configuration.

Only the report stage draws these; figures.py holds what evaluation draws beside each model,
so a change here re-renders the report without re-evaluating any model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from dlbasics.report.content import SearchSummary
from dlbasics.report.figures import (
    DPI,
    epoch_axis,
    fit_margins,
    log_scale_if_positive,
    name_ticks,
    plot_splits,
    png_bytes,
    pyplot,
    scale_label,
)

_LEAKY_SLOPE = 0.2  # the slope the shipped mlp_leaky_relu sets (the book's)
_PRELU_START = 0.25  # nn.PReLU's initial (then learned) slope


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# The hidden-unit functions of models.ACTIVATION_LAYERS as numpy formulas, so the report stage
# needs no torch: name -> (f, f'). At 0 the derivatives take torch autograd's values (relu 0,
# leaky_relu the slope); prelu at its initial slope.
ACTIVATION_FORMULAS = {
    "relu": (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float)),
    "sigmoid": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x))),
    "tanh": (np.tanh, lambda x: 1.0 - np.tanh(x) ** 2),
    "leaky_relu": (lambda x: np.where(x > 0, x, _LEAKY_SLOPE * x),
                   lambda x: np.where(x > 0, 1.0, _LEAKY_SLOPE)),
    "prelu": (lambda x: np.where(x > 0, x, _PRELU_START * x),
              lambda x: np.where(x > 0, 1.0, _PRELU_START)),
}


def overlay_png(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
                splits: Sequence[str] = ("train", "test")) -> bytes:
    """Several variants' curves on shared axes: one colour per variant, one line style per
    split (train solid, val dotted, test dashed); loss on a log scale when positive. A
    one-epoch history (a closed-form fit) is one marker."""
    return png_bytes(overlay_figure(histories, title, splits))


def overlay_figure(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
                   splits: Sequence[str] = ("train", "test")):
    """overlay_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    has_acc = any(k.endswith("_accuracy") for h in histories.values() for r in h for k in r)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(8.4 if has_acc else 6.4, 3.0),
                             squeeze=False, dpi=DPI)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    metrics = ["loss", "accuracy"] if has_acc else ["loss"]
    epochs = [r["epoch"] for h in histories.values() for r in h]
    for ax, what in zip(axes[0], metrics):
        for i, (name, h) in enumerate(histories.items()):
            plot_splits(ax, h, what, label=name, color=colors[i % len(colors)], splits=splits)
        if what == "loss":
            log_scale_if_positive(ax, histories.values(), "loss")
        else:
            ax.set_ylabel(what)
        epoch_axis(ax, epochs)
        ax.set_title(f"{title}: {what}")
        if has_acc:
            ax.legend(fontsize=6, ncol=2)
        else:  # one panel: the legend beside it, clear of the curves (the margins make room)
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    fit_margins(fig)
    return fig


def activations_png() -> bytes:
    """Each function of ACTIVATION_FORMULAS and its derivative on x in [-6, 6]."""
    return png_bytes(activations_figure())


def activations_figure():
    """activations_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    x = np.linspace(-6.0, 6.0, 241)  # (241,)
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(8.4, 3.0), dpi=DPI)
    for name, (f, df) in ACTIVATION_FORMULAS.items():
        ax_f.plot(x, f(x), label=name, linewidth=1.2)
        ax_d.plot(x, df(x), label=name, linewidth=1.2)
    ax_f.set(xlabel="x", ylabel="f(x)", title="activation")
    ax_d.set(xlabel="x", ylabel="f'(x)", title="derivative")
    for ax in (ax_f, ax_d):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fit_margins(fig)
    return fig


def _symlog_x(ax, xs: Sequence[float]) -> None:
    """A log x axis for lambdas; linear near 0 when one of them is 0 (no log of 0)."""
    positive = [x for x in xs if x > 0]
    if positive and min(xs) == 0:
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlim(left=0, right=max(xs) * 1.5)  # lambda is never negative
    elif positive and len(positive) == len(xs):
        ax.set_xscale("log")


def weight_decay_png(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Train and test mse, and the weight norm, against lambda.

    rows: the weight-decay series of reports/series.json, ordered by x (lambda)."""
    return png_bytes(weight_decay_figure(rows))


def weight_decay_figure(rows: Sequence[Mapping[str, Any]]):
    """weight_decay_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    xs = [r["x"] for r in rows]
    fig, (ax_l, ax_w) = plt.subplots(1, 2, figsize=(8.4, 3.0), dpi=DPI)
    for key, style in (("train_mse", "-"), ("test_mse", "--")):
        ax_l.plot(xs, [r.get(key, math.nan) for r in rows], linestyle=style, marker="o",
                  label=key.replace("_", " "))
    if all(r.get(k, 0) > 0 for r in rows for k in ("train_mse", "test_mse")):
        ax_l.set_yscale("log")
    ax_w.plot(xs, [r.get("w_norm", math.nan) for r in rows], marker="o", color="C2")
    for ax in (ax_l, ax_w):
        _symlog_x(ax, xs)
        ax.set_xlabel(scale_label("lambda", ax.get_xscale()))
    ax_l.set(ylabel=scale_label("mse", ax_l.get_yscale()), title="loss against lambda")
    ax_l.legend(fontsize=7)
    ax_w.set(ylabel="||w||", title="weight norm against lambda")
    fit_margins(fig)
    return fig


def sparsity_png(names: Sequence[str], metrics: Mapping[str, Mapping[str, float]]) -> bytes:
    """Weights near zero and test mse of each named variant, as bars side by side."""
    return png_bytes(sparsity_figure(names, metrics))


def sparsity_figure(names: Sequence[str], metrics: Mapping[str, Mapping[str, float]]):
    """sparsity_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    fig, (ax_z, ax_m) = plt.subplots(1, 2, figsize=(8.4, 2.8), dpi=DPI)
    at = range(len(names))
    ax_z.bar(at, [metrics[n].get("n_near_zero", 0) for n in names], color="C0")
    ax_z.set(xlabel="variant", ylabel="weights near zero", title="sparsity")
    ax_m.bar(at, [metrics[n].get("test_mse", math.nan) for n in names], color="C1")
    ax_m.set(xlabel="variant", ylabel="test mse", title="test error")
    for ax in (ax_z, ax_m):
        name_ticks(ax, names)
    fit_margins(fig)
    return fig


def search_png(search: SearchSummary) -> bytes:
    """A search's mean validation score +/- sd over folds per configuration that trained, the
    chosen one marked: a glance at how much the grid matters."""
    return png_bytes(search_figure(search))


def search_figure(search: SearchSummary):
    """search_png's figure, open (png_bytes saves and closes it)."""
    plt = pyplot()
    scored = [c for c in search.configs if not c.diverged]
    fig, ax = plt.subplots(figsize=(min(9.0, 2.5 + 0.35 * len(scored)), 2.6), dpi=DPI)
    means = [c.mean for c in scored]
    ax.errorbar(range(len(scored)), means, yerr=[c.sd for c in scored], fmt="o", capsize=3)
    at = [i for i, c in enumerate(scored) if c.config == search.chosen]
    if at:
        ax.plot(at, [means[at[0]]], "o", color="C2", markersize=9, label="chosen")
        ax.legend(fontsize=7)
    ax.set_xticks(range(len(scored)), [str(c.config) for c in scored], fontsize=7)
    ax.set(xlabel="configuration", ylabel=f"val {search.metric}",
           title=f"select@{search.name}: mean +/- sd over folds")
    fit_margins(fig)
    return fig
