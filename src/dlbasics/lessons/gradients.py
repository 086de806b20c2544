"""A classifier's gradients: why training follows a loss, and gradients by differences.

Two lessons from file 003 ("Deep Learning from Scratch", ch. 4): `accuracy_signal` (accuracy is
flat almost everywhere under a small change of one logit, the loss is not: the reason training
descends a loss) and `numerical_training` (the two-layer net trained by numerical gradients and
by backpropagation from one start, the gradients checked against each other). Each function is
pure: it draws randomness only from the seeded streams of `dlbasics.rng`, and reports the cost of
numerical gradients as a count of forward passes, never a timing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dlbasics.data.prepared import Prepared
from dlbasics.learn.scratch import numerical_gradient
from dlbasics.lessons.base import LessonResult, Table
from dlbasics.report.figures import png_bytes, pyplot
from dlbasics.rng import torch_generator

__all__ = ["accuracy_signal", "numerical_training"]


# ----------------------------------------------------------------------------- helpers (data)


def _n_classes(data: Prepared) -> int:
    """Number of classes: the manifest's n_outputs / n_classes / class_names, else from labels."""
    m = data.manifest
    for key in ("n_outputs", "n_classes"):
        if m.get(key):
            return int(m[key])
    if m.get("class_names"):
        return len(m["class_names"])
    return int(max(int(s.y.max()) for s in data.splits.values() if len(s.y)) + 1)


def _batches(n: int, batch_size: int, generator: torch.Generator):
    """Endless minibatch index tensors: a fresh seeded permutation of 0..n-1 per epoch."""
    while True:
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n, batch_size):
            yield perm[i:i + batch_size]


# ----------------------------------------------------------------------------- 4. accuracy signal


def _train_softmax_regression(X: Tensor, y: Tensor, n_classes: int, *, seed: int, epochs: int,
                              batch_size: int, lr: float) -> nn.Linear:
    """Softmax regression X [N, F] -> logits [N, C] (weights N(0, 0.01^2), zero bias) trained
    by minibatch SGD on cross-entropy for `epochs` epochs."""
    n, n_features = X.shape
    # skip_init: no default (global-RNG) initialisation; the weights come from a seeded stream.
    model = nn.utils.skip_init(nn.Linear, n_features, n_classes)
    gen_init = torch_generator(seed, "lessons", "accuracy_signal", "init")
    with torch.no_grad():
        model.weight.copy_(torch.randn(n_classes, n_features, generator=gen_init) * 0.01)
        model.bias.zero_()
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    batches = _batches(n, batch_size,
                       torch_generator(seed, "lessons", "accuracy_signal", "batches"))
    steps = epochs * math.ceil(n / batch_size)
    for _ in range(steps):
        idx = next(batches)
        optimizer.zero_grad()
        loss_fn(model(X[idx]), y[idx]).backward()
        optimizer.step()
    return model


class _LogitProbe:
    """The logits X W^T + b [N, C] of a linear model with one parameter moved at a time, and
    their accuracy and loss against labels y [N]; parameter j indexes W [C, F] flattened, then
    b [C]."""

    def __init__(self, X: Tensor, y: Tensor, W: Tensor, b: Tensor):
        self.X, self.y, self.W, self.b = X, y, W, b
        self.base = X @ W.T + b

    def moved(self, j: int, d: float) -> Tensor:
        """The logits with parameter j moved by d: only its class's column changes, by d x_j (a
        weight) or d (a bias), so one column is recomputed, not X W^T."""
        z = self.base.clone()
        if j < self.W.numel():
            c, f = divmod(j, self.W.shape[1])
            z[:, c] += d * self.X[:, f]
        else:
            z[:, j - self.W.numel()] += d
        return z

    def accuracy(self, z: Tensor | None = None) -> float:
        """Accuracy [0, 1] of logits z (default: the unmoved ones)."""
        z = self.base if z is None else z
        return float((z.argmax(dim=1) == self.y).double().mean())

    def loss(self, z: Tensor | None = None) -> float:
        """Mean cross-entropy (nats) of logits z (default: the unmoved ones)."""
        return float(F.cross_entropy(self.base if z is None else z, self.y))

    def loss_gradient(self) -> Tensor:
        """dL/dW flattened, then dL/db [C * F + C], by autograd at the unmoved parameters."""
        Wg, bg = self.W.clone().requires_grad_(True), self.b.clone().requires_grad_(True)
        F.cross_entropy(self.X @ Wg.T + bg, self.y).backward()
        return torch.cat([Wg.grad.reshape(-1), bg.grad])


def _probe_derivatives(probe: _LogitProbe, chosen: Tensor, h: float
                       ) -> tuple[dict[str, Any], list[bool]]:
    """Central differences (step h) of accuracy and loss wrt each chosen parameter [probes],
    summarised against autograd; and per probe whether it can matter (a bias, or a weight on
    an input that is not zero in every row)."""
    dead_inputs = (probe.X == 0).all(dim=0)  # constant-zero pixels: their weights cannot matter
    n_weights, n_features = probe.W.numel(), probe.W.shape[1]
    acc_d, loss_d, live = [], [], []
    for j in chosen.tolist():
        plus, minus = probe.moved(j, h), probe.moved(j, -h)
        acc_p, loss_p = probe.accuracy(plus), probe.loss(plus)
        acc_m, loss_m = probe.accuracy(minus), probe.loss(minus)
        acc_d.append((acc_p - acc_m) / (2 * h))
        loss_d.append((loss_p - loss_m) / (2 * h))
        live.append(j >= n_weights or not bool(dead_inputs[j % n_features]))
    acc_d_t, loss_d_t = torch.tensor(acc_d), torch.tensor(loss_d)
    live_t = torch.tensor(live)
    summary = {
        "fraction_accuracy_derivative_zero": float((acc_d_t == 0).double().mean()),
        "fraction_loss_derivative_nonzero": float((loss_d_t != 0).double().mean()),
        "fraction_loss_derivative_nonzero_live": (
            float((loss_d_t[live_t] != 0).double().mean()) if live_t.any() else 0.0),
        "probes_on_constant_inputs": int((~live_t).sum()),
        "loss_vs_autograd_max_abs_diff": float(
            (loss_d_t - probe.loss_gradient()[chosen]).abs().max()),
        "loss_derivative_abs_median": float(loss_d_t.abs().median()),
    }
    return summary, live


def _accuracy_slice(probe: _LogitProbe, j: int) -> tuple[np.ndarray, list[float], list[float]]:
    """Parameter j moved by 201 offsets in [-0.5, 0.5]: (offsets, accuracy, loss) at each."""
    offsets = np.linspace(-0.5, 0.5, 201)
    acc_line, loss_line = [], []
    for d in offsets:
        z = probe.moved(j, float(d))
        acc_line.append(probe.accuracy(z))
        loss_line.append(probe.loss(z))
    return offsets, acc_line, loss_line


def accuracy_signal(
    *, data: Prepared, seed: int, epochs: int, batch_size: int, lr: float, probes: int, h: float
) -> LessonResult:
    """Central differences (step h) of train accuracy [0, 1] and loss (nats) wrt `probes` weights.

    The model is a softmax regression X [N, F] -> logits [N, C] trained by minibatch SGD first.
    """
    if probes < 1 or epochs < 0 or batch_size < 1:
        raise ValueError("accuracy_signal: needs probes >= 1, epochs >= 0 and batch_size >= 1")
    X, y = data.splits["train"].X.float(), data.splits["train"].y.long()
    model = _train_softmax_regression(X, y, _n_classes(data), seed=seed, epochs=epochs,
                                      batch_size=batch_size, lr=lr)
    # Probe the trained model in float64: the question is about the functions, not float32 noise.
    probe = _LogitProbe(X.double(), y, model.weight.detach().double().clone(),
                        model.bias.detach().double().clone())
    n_params = probe.W.numel() + probe.b.numel()
    probes = min(probes, n_params)
    chosen = torch.randperm(n_params, generator=torch_generator(
        seed, "lessons", "accuracy_signal", "probes"))[:probes]
    summary, live = _probe_derivatives(probe, chosen, h)

    # A 1-D slice through the first probed parameter that can matter (not on a constant-zero
    # pixel): accuracy is a staircase of flat steps, the loss a smooth curve.
    j0 = int(chosen[live.index(True)]) if any(live) else int(chosen[0])
    offsets, acc_line, loss_line = _accuracy_slice(probe, j0)
    values = {
        "train_accuracy": probe.accuracy(), "train_loss": probe.loss(), "probes": probes,
        "n_params": n_params, **summary,
        "slice_accuracy_levels": len(set(acc_line)), "slice_points": len(offsets),
    }
    holds = (values["fraction_accuracy_derivative_zero"] >= 0.9
             and values["fraction_loss_derivative_nonzero_live"] == 1.0
             and values["loss_vs_autograd_max_abs_diff"] < 1e-6)
    return LessonResult(
        title="Why the loss, not the accuracy, is what training differentiates",
        source="file 003, why a loss function (4.2.5)",
        claim=("The accuracy's derivative with respect to a weight is zero almost everywhere "
               "(a small change flips no prediction), so it gives no direction; the loss changes "
               "continuously and its derivative does."),
        measured=_accuracy_signal_measured(values, epochs, h), holds=bool(holds), values=values,
        tables=[_accuracy_signal_table(values, h)],
        figures={"accuracy_signal": _accuracy_signal_figure(offsets, acc_line, loss_line, j0)},
    )


def _accuracy_signal_figure(offsets: np.ndarray, acc_line: list[float], loss_line: list[float],
                            j: int) -> bytes:
    """Train accuracy (steps) and loss (second axis) along the slice through parameter j (PNG)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.8, 3.0))
    ax.plot(offsets, acc_line, color="tab:red", drawstyle="steps-mid", label="train accuracy")
    ax.set(xlabel=f"change of parameter #{j}", ylabel="train accuracy",
           title="one weight moved: accuracy steps, loss flows")
    ax2 = ax.twinx()
    ax2.plot(offsets, loss_line, color="tab:blue", label="train loss")
    ax2.set_ylabel("train loss")
    fig.legend(fontsize=7, loc="lower center", bbox_to_anchor=(0.5, 0.17))
    fig.subplots_adjust(left=0.15, right=0.85, bottom=0.15, top=0.9)
    return png_bytes(fig)


def _accuracy_signal_table(values: dict[str, Any], h: float) -> Table:
    """The accuracy_signal values as one quantity per row."""
    v = values
    return Table(
        title=f"{v['probes']} randomly chosen parameters, central differences with h = {h:g}",
        columns=["quantity", "value"],
        rows=[["train accuracy", v["train_accuracy"]], ["train loss", v["train_loss"]],
              ["fraction d(accuracy) = 0", v["fraction_accuracy_derivative_zero"]],
              ["fraction d(loss) != 0", v["fraction_loss_derivative_nonzero"]],
              ["fraction d(loss) != 0, inputs not constant",
               v["fraction_loss_derivative_nonzero_live"]],
              ["probes on constant-zero inputs", v["probes_on_constant_inputs"]],
              ["max |d(loss) numerical - autograd|", v["loss_vs_autograd_max_abs_diff"]],
              ["median |d(loss)|", v["loss_derivative_abs_median"]],
              [f"accuracy levels on a {v['slice_points']}-point slice",
               v["slice_accuracy_levels"]]],
    )


def _accuracy_signal_measured(values: dict[str, Any], epochs: int, h: float) -> str:
    """The measured sentence of accuracy_signal from its values."""
    v = values
    return (
        f"After {epochs} epochs (train accuracy {v['train_accuracy']:.3f}), moving one of "
        f"{v['probes']} random parameters by +-{h:g} left the training accuracy unchanged for "
        f"{v['fraction_accuracy_derivative_zero']:.1%} of them, while the loss changed for "
        f"{v['fraction_loss_derivative_nonzero']:.1%} "
        f"({v['fraction_loss_derivative_nonzero_live']:.1%} of those not attached to a "
        f"constant-zero pixel), with central differences within "
        f"{v['loss_vs_autograd_max_abs_diff']:.1e} of autograd's gradient."
    )


# ----------------------------------------------------------------------------- 5. two-layer net


_TWO_LAYER_NAMES = ("W1", "b1", "W2", "b2")  # the order of params below
_MNIST_NET_PARAMS = 784 * 50 + 50 + 50 * 10 + 10  # file 003's 784-50-10 net


def _two_layer_loss(params: Sequence[Tensor], X: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy of the net X [N, F] -> sigmoid(X W1 + b1) W2 + b2 [N, C] -> scalar."""
    W1, b1, W2, b2 = params
    return F.cross_entropy(torch.sigmoid(X @ W1 + b1) @ W2 + b2, y)


def _two_layer_accuracy(params: Sequence[Tensor], X: Tensor, y: Tensor) -> float:
    """Accuracy [0, 1] of the same net's argmax prediction on X [N, F] against y [N]."""
    W1, b1, W2, b2 = params
    with torch.no_grad():
        return float(((torch.sigmoid(X @ W1 + b1) @ W2 + b2).argmax(dim=1) == y).double().mean())


def _two_layer_init(n_features: int, hidden: int, n_classes: int, seed: int) -> list[Tensor]:
    """W1 [F, hidden], b1 [hidden], W2 [hidden, C], b2 [C] in float64, as file 003 initialises
    them: weight_init_std 0.01 for both weight matrices, zero biases."""
    gen = torch_generator(seed, "lessons", "numerical_training", "init")
    return [torch.randn(n_features, hidden, generator=gen, dtype=torch.float64) * 0.01,
            torch.zeros(hidden, dtype=torch.float64),
            torch.randn(hidden, n_classes, generator=gen, dtype=torch.float64) * 0.01,
            torch.zeros(n_classes, dtype=torch.float64)]


def _backprop_grads(params: Sequence[Tensor], X: Tensor, y: Tensor) -> tuple[float, list[Tensor]]:
    """The two-layer net's loss at params and its gradients (shaped like params) by autograd."""
    leaves = [p.clone().requires_grad_(True) for p in params]
    loss = _two_layer_loss(leaves, X, y)
    return float(loss.detach()), list(torch.autograd.grad(loss, leaves))


def _gradient_check(params: list[Tensor], X: Tensor, y: Tensor,
                    h: float) -> dict[str, dict[str, float]]:
    """Numerical (step h) against backprop gradients at params on one batch X [B, F]: per
    parameter name, the mean and max |difference| and the mean |backprop gradient|."""
    probe = [p.clone() for p in params]
    num = numerical_gradient(lambda: _two_layer_loss(probe, X, y), probe, h)
    _, bp = _backprop_grads(params, X, y)
    names = _TWO_LAYER_NAMES
    return {"mean": {k: float((a - b).abs().mean()) for k, a, b in zip(names, num, bp)},
            "max": {k: float((a - b).abs().max()) for k, a, b in zip(names, num, bp)},
            "scale": {k: float(b.abs().mean()) for k, b in zip(names, bp)}}


def _train_both(init: list[Tensor], X: Tensor, y: Tensor, order: list[Tensor], lr: float,
                h: float) -> tuple[list[Tensor], list[Tensor], list[float], list[float]]:
    """SGD from `init` over the batches `order`, once by numerical gradients (step h), once by
    backprop: (end parameters numerical, backprop, batch losses numerical, backprop)."""
    p_num = [p.clone() for p in init]
    p_bp = [p.clone() for p in init]
    loss_num, loss_bp = [], []
    for idx in order:
        Xb, yb = X[idx], y[idx]
        with torch.no_grad():
            loss_num.append(float(_two_layer_loss(p_num, Xb, yb)))
        grads = numerical_gradient(lambda Xb=Xb, yb=yb: _two_layer_loss(p_num, Xb, yb),
                                   p_num, h)
        with torch.no_grad():
            for p, g in zip(p_num, grads):
                p -= lr * g
        loss, grads = _backprop_grads(p_bp, Xb, yb)
        loss_bp.append(loss)
        with torch.no_grad():
            for p, g in zip(p_bp, grads):
                p -= lr * g
    return p_num, p_bp, loss_num, loss_bp


def _end_of_training(init: list[Tensor], p_num: list[Tensor], p_bp: list[Tensor],
                     splits: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Train loss at the start and at the end, train and test accuracy at the end, of both
    trainings; splits: {"train": (X, y) used for training, "test": (X, y)}."""
    (X, y), (X_test, y_test) = splits["train"], splits["test"]
    with torch.no_grad():
        return {
            "train_loss_start": float(_two_layer_loss(init, X, y)),
            "train_loss_end_backprop": float(_two_layer_loss(p_bp, X, y)),
            "train_loss_end_numerical": float(_two_layer_loss(p_num, X, y)),
            "train_accuracy_backprop": _two_layer_accuracy(p_bp, X, y),
            "train_accuracy_numerical": _two_layer_accuracy(p_num, X, y),
            "test_accuracy_backprop": _two_layer_accuracy(p_bp, X_test, y_test),
            "test_accuracy_numerical": _two_layer_accuracy(p_num, X_test, y_test),
        }


def numerical_training(
    *, data: Prepared, seed: int, hidden: int, rows: int, batch_size: int, steps: int, lr: float,
    h: float,
) -> LessonResult:
    """F-hidden-C sigmoid net (float64): gradient check, then SGD by numerical grads vs backprop.

    Uses the first `rows` training rows [rows, F]; losses are mean cross-entropy (nats).
    """
    if min(hidden, rows, batch_size) < 1 or steps < 0:
        raise ValueError("numerical_training: hidden, rows, batch_size >= 1 and steps >= 0")
    X = data.splits["train"].X[:rows].double()
    y = data.splits["train"].y[:rows].long()
    n, n_features = X.shape
    n_classes = _n_classes(data)
    init = _two_layer_init(n_features, hidden, n_classes, seed)
    n_params = sum(p.numel() for p in init)
    batches = _batches(n, batch_size, torch_generator(seed, "lessons", "numerical_training",
                                                      "batches"))
    order = [next(batches) for _ in range(steps)]  # one batch order shared by both nets

    # (a) Gradient check at the start, on the first batch.
    check_idx = order[0] if order else torch.arange(min(batch_size, n))
    check = _gradient_check(init, X[check_idx], y[check_idx], h)
    # (b) The same start and batches, trained once by numerical gradients, once by backprop.
    p_num, p_bp, loss_num, loss_bp = _train_both(init, X, y, order, lr, h)
    end = _end_of_training(init, p_num, p_bp, {
        "train": (X, y), "test": (data.splits["test"].X.double(), data.splits["test"].y.long())})

    forwards_num = 2 * n_params  # two loss evaluations per parameter per step
    curve_diff = max((abs(a - b) for a, b in zip(loss_num, loss_bp)), default=0.0)
    values: dict[str, Any] = {
        **{f"gradcheck_mean_abs_diff_{k}": v for k, v in check["mean"].items()},
        **{f"gradcheck_max_abs_diff_{k}": v for k, v in check["max"].items()},
        **{f"grad_mean_abs_{k}": v for k, v in check["scale"].items()},
        "loss_curve_max_abs_diff": curve_diff,
        "param_max_abs_diff_end": max(float((a - b).abs().max()) for a, b in zip(p_num, p_bp)),
        "batch_loss_first": loss_bp[0] if loss_bp else math.nan,
        "batch_loss_last": loss_bp[-1] if loss_bp else math.nan,
        **end,
        "n_params": n_params, "forward_passes_per_step_numerical": forwards_num,
        "forward_passes_per_step_backprop": 1,
        "forward_passes_total_numerical": forwards_num * steps,
        "forward_passes_per_step_numerical_784_50_10": 2 * _MNIST_NET_PARAMS,
        "steps": steps,
    }
    holds = (max(check["mean"].values()) < 1e-7 and curve_diff < 1e-7
             and end["train_loss_end_backprop"] < end["train_loss_start"])
    return LessonResult(
        title="Training a two-layer net by numerical gradients, checked against backprop",
        source="file 003, implementing the learning algorithm (4.5)",
        claim=("Numerical gradients (central differences) agree with backpropagation, so a net "
               "trained with either follows the same path; backpropagation is far cheaper, since "
               "numerical gradients need two forward passes per parameter per step."),
        measured=_numerical_training_measured(values, check, (n_features, hidden, n_classes)),
        holds=bool(holds), values=values,
        tables=_numerical_training_tables(values, check, init, len(check_idx), h,
                                          loss_num, loss_bp),
        figures={"numerical_training": _numerical_training_figure(loss_num, loss_bp)},
    )


def _numerical_training_figure(loss_num: list[float], loss_bp: list[float]) -> bytes:
    """The two batch-loss curves by step, and their absolute difference (log scale) (PNG)."""
    plt = pyplot()
    fig, (ax, ax_d) = plt.subplots(1, 2, figsize=(8.0, 3.0))
    ax.plot(range(1, len(loss_bp) + 1), loss_bp, label="backprop", linewidth=2.5, alpha=0.5)
    ax.plot(range(1, len(loss_num) + 1), loss_num, label="numerical", linestyle="--")
    ax.set(xlabel="step", ylabel="batch loss", title="two trainings, same start and batches")
    ax.legend(fontsize=7)
    diffs = [abs(a - b) for a, b in zip(loss_num, loss_bp)]
    ax_d.plot(range(1, len(diffs) + 1), [d if d > 0 else math.nan for d in diffs], marker=".")
    ax_d.set(yscale="log", xlabel="step", ylabel="|loss numerical - loss backprop|",
             title="difference of the curves")
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.3)
    return png_bytes(fig)


def _numerical_training_tables(values: dict[str, Any], check: dict[str, dict[str, float]],
                               init: list[Tensor], check_rows: int, h: float,
                               loss_num: list[float], loss_bp: list[float]) -> list[Table]:
    """The gradient check per parameter, the two loss curves by step, the end and the cost."""
    v = values
    return [
        Table(title=f"gradient check at the start, one batch of {check_rows}, h = {h:g}",
              columns=["parameter", "shape", "mean |numerical - backprop|",
                       "max |numerical - backprop|", "mean |backprop grad|"],
              rows=[[k, "x".join(str(s) for s in p.shape), check["mean"][k], check["max"][k],
                     check["scale"][k]] for k, p in zip(_TWO_LAYER_NAMES, init)]),
        Table(title="training by numerical gradients against backprop",
              columns=["step", "batch loss numerical", "batch loss backprop", "|difference|"],
              rows=[[i + 1, a, b, abs(a - b)] for i, (a, b) in enumerate(zip(loss_num, loss_bp))]),
        Table(title="end of training and cost",
              columns=["", "numerical", "backprop"],
              rows=[["train loss", v["train_loss_end_numerical"], v["train_loss_end_backprop"]],
                    ["train accuracy", v["train_accuracy_numerical"],
                     v["train_accuracy_backprop"]],
                    ["test accuracy", v["test_accuracy_numerical"],
                     v["test_accuracy_backprop"]],
                    ["forward passes per step", v["forward_passes_per_step_numerical"], 1]]),
    ]


def _numerical_training_measured(values: dict[str, Any], check: dict[str, dict[str, float]],
                                 sizes: tuple[int, int, int]) -> str:
    """The measured sentences of numerical_training; sizes: (F, hidden, C)."""
    v = values
    ta_bp, ta_num = v["test_accuracy_backprop"], v["test_accuracy_numerical"]
    test_acc = (f"{ta_bp:.3f} for both" if ta_bp == ta_num
                else f"{ta_num:.3f} numerical, {ta_bp:.3f} backprop")
    return (
        f"Numerical and backprop gradients of the {'-'.join(map(str, sizes))} net differ "
        f"by {min(check['mean'].values()):.1e} to {max(check['mean'].values()):.1e} on average "
        f"per parameter (W1, b1, W2, b2); over {v['steps']} SGD steps the two loss curves differ "
        f"by at most {v['loss_curve_max_abs_diff']:.1e} (training loss "
        f"{v['train_loss_start']:.4f} -> {v['train_loss_end_backprop']:.4f}, "
        f"test accuracy {test_acc}). Numerical gradients "
        f"cost {v['forward_passes_per_step_numerical']} forward passes per step "
        f"({2 * _MNIST_NET_PARAMS} for file 003's "
        "784-50-10 net) against one forward and one backward pass."
    )
