"""Lessons on what makes a network more than a linear model, and on how gradients travel.

stacked_linear: linear layers without activations collapse to one affine map (book 3.1.6-3.1.8,
                d2l 4.1.1).
symmetry:       constant initialisation keeps every hidden unit identical (d2l 4.8.1).
gradient_flow:  vanishing and exploding gradients through deep MLPs (book 3.3.7, d2l 4.8.1).
activations:    LeakyReLU and PReLU, values and derivatives against their formulas (book 3.12.4).

Every lesson is deterministic on CPU for fixed arguments: all random draws (initialisation,
batch order, sampled rows) come from generators derived from `seed` by purpose.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import torch
from torch import Tensor, nn

from dlbasics.data.prepared import Prepared
from dlbasics.lessons.base import LessonResult, Table
from dlbasics.rng import torch_generator

# The book's printed LeakyReLU(0.2) example (3.12.4): inputs and outputs to four decimals.
BOOK_LEAKY_IN = [-0.0888, -0.5845, -0.8447, -0.9255, 1.1864,
                 0.7030, -0.2215, -0.7323, 1.4960, 0.7068]
BOOK_LEAKY_OUT = [-0.0178, -0.1169, -0.1689, -0.1851, 1.1864,
                  0.7030, -0.0443, -0.1465, 1.4960, 0.7068]


# ----------------------------------------------------------------------------- shared helpers


def _classification(data: Prepared) -> tuple[int, int]:
    """(n_features, n_classes) of a prepared classification set, with a clear error otherwise."""
    if data.manifest.get("task") != "classification":
        raise ValueError(f"{data.manifest.get('name', 'dataset')}: these lessons need a "
                         f"classification set, found task {data.manifest.get('task')!r}")
    n_features = int(data.splits["train"].X.shape[1])
    n_classes = int(data.manifest.get("n_outputs") or data.manifest.get("n_classes") or 0)
    if n_classes <= 0:  # a manifest without the count: the labels say it
        n_classes = int(max(int(s.y.max()) for s in data.splits.values() if len(s.y)) + 1)
    return n_features, n_classes


@torch.no_grad()
def _torch_default_init(layer: nn.Linear, generator: torch.Generator) -> None:
    """PyTorch's own nn.Linear scheme (kaiming-uniform a=sqrt(5), bias U(+-1/sqrt(fan_in))),
    drawn from `generator` instead of the global RNG (as dlbasics.learn.models does)."""
    nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=generator)
    bound = 1.0 / math.sqrt(layer.in_features)
    nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


def _train_sgd(model: nn.Module, X: Tensor, y: Tensor, *, epochs: int, batch_size: int,
               lr: float, generator: torch.Generator) -> None:
    """Mini-batch SGD on cross-entropy; the batch order comes only from `generator`, so two
    models trained with equally seeded generators see exactly the same batches."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    n = len(y)
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch_size):
            rows = order[start:start + batch_size]
            opt.zero_grad()
            loss_fn(model(X[rows]), y[rows]).backward()
            opt.step()


@torch.no_grad()
def _correct(model: nn.Module, X: Tensor, y: Tensor) -> int:
    """Number of rows whose argmax prediction equals the label."""
    return int((model(X).argmax(dim=1) == y).sum())


# ----------------------------------------------------------------------------- stacked linear


@torch.no_grad()
def collapse_linear_stack(layers: list[nn.Linear]) -> tuple[Tensor, Tensor]:
    """One affine map (W [out, in], b [out]) equal to the chain layers[-1](...layers[0](x)).

    x -> W_k(...(W_1 x + b_1)...) + b_k = (W_k...W_1) x + (W_k...W_2 b_1 + ... + b_k).
    """
    W = layers[0].weight.detach().clone()
    b = layers[0].bias.detach().clone()
    for layer in layers[1:]:
        W = layer.weight @ W
        b = layer.weight @ b + layer.bias
    return W, b


def _stacked_linear_models(widths: list[int], seed: int) -> tuple[list[nn.Linear], nn.Linear]:
    """The stack's layers (widths[i] -> widths[i + 1]) and the single layer [F -> C], each
    initialised from its own seeded stream."""
    init = torch_generator(seed, "lesson", "stacked_linear", "init")
    stack_layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    for layer in stack_layers:
        _torch_default_init(layer, init)
    single = nn.Linear(widths[0], widths[-1])
    _torch_default_init(single, torch_generator(seed, "lesson", "stacked_linear", "init_single"))
    return stack_layers, single


@torch.no_grad()
def _collapse_gap(stack: nn.Module, layers: list[nn.Linear], splits) -> tuple[float, float]:
    """(max |stack(X) - collapsed map(X)|, max |stack(X)|) over the splits' X [N, F]."""
    W, b = collapse_linear_stack(layers)
    diffs = [float((stack(s.X) - (s.X @ W.T + b)).abs().max()) for s in splits]
    scale = max(float(stack(s.X).abs().max()) for s in splits)
    return max(diffs), scale


def stacked_linear(*, data: Prepared, seed: int, hidden: list[int], epochs: int,
                   batch_size: int, lr: float) -> LessonResult:
    """Linear layers stacked without activations against one linear layer (softmax
    regression), trained alike; the stack collapsed into one affine map [C, F]."""
    n_features, n_classes = _classification(data)
    train, test = data.splits["train"], data.splits["test"]
    widths = [n_features, *hidden, n_classes]
    stack_layers, single = _stacked_linear_models(widths, seed)
    stack = nn.Sequential(*stack_layers)

    # The same batch stream for both: any difference is the parametrisation, not the data order.
    for model in (stack, single):
        _train_sgd(model, train.X, train.y, epochs=epochs, batch_size=batch_size, lr=lr,
                   generator=torch_generator(seed, "lesson", "stacked_linear", "batches"))

    max_diff, scale = _collapse_gap(stack, stack_layers, (train, test))
    # {model: (train correct, test correct)}
    counts = {name: (_correct(model, train.X, train.y), _correct(model, test.X, test.y))
              for name, model in (("stack", stack), ("single", single))}
    n_train, n_test = len(train.y), len(test.y)
    gain = counts["stack"][1] - counts["single"][1]  # in test samples; > 0: the stack did better
    # The collapse is exact in real arithmetic; 1e-4 of the logits' size leaves room for the
    # float32 rounding of products of trained matrices.
    collapses = max_diff <= 1e-4 * max(1.0, scale)
    holds = collapses and gain <= 0
    values = {
        "collapse_max_abs_diff": max_diff,
        "logit_max_abs": scale,
        "stack_train_accuracy": counts["stack"][0] / n_train,
        "stack_test_accuracy": counts["stack"][1] / n_test,
        "single_train_accuracy": counts["single"][0] / n_train,
        "single_test_accuracy": counts["single"][1] / n_test,
        "test_gain_samples": gain,
        "n_test": n_test,
        "stack_parameters": sum(p.numel() for p in stack.parameters()),
        "single_parameters": sum(p.numel() for p in single.parameters()),
    }
    return LessonResult(
        title="Stacked linear layers without activations collapse to one",
        source="file 004, 3.1.6-3.1.8 and 3.12 (stacking layers); file 002, 4.1.1",
        claim=("Linear layers stacked without an activation compute one affine map of the "
               "input, so the stack adds no expressive power: trained alike it is no more "
               "accurate than a single linear layer (softmax regression)."),
        measured=_stacked_linear_measured(widths, values, counts),
        holds=bool(holds),
        values=values,
        tables=[_stacked_linear_table(widths, values, counts)],
    )


def _stacked_linear_measured(widths: list[int], values: dict[str, Any],
                             counts: dict[str, tuple[int, int]]) -> str:
    """The measured sentences of stacked_linear from its values and correct counts."""
    v, gain = values, values["test_gain_samples"]
    stack_test, single_test = counts["stack"][1], counts["single"][1]
    verdict = ("not better than" if gain <= 0 else f"better by {gain} test samples than")
    measured = (
        f"The trained stack {' -> '.join(map(str, widths))} equals its collapsed affine map "
        f"W [{widths[-1]}, {widths[0]}] to {v['collapse_max_abs_diff']:.1e} (max abs logit "
        f"difference, logits up to {v['logit_max_abs']:.1f}). Its test accuracy "
        f"{v['stack_test_accuracy']:.4f} is {verdict} the single layer's "
        f"{v['single_test_accuracy']:.4f} ({stack_test} against {single_test} of "
        f"{v['n_test']} correct; train {v['stack_train_accuracy']:.4f} against "
        f"{v['single_train_accuracy']:.4f})."
    )
    if gain > 0:
        measured += (" What holds is the collapse: the stack is one affine map, and its edge "
                     "comes from fitting the training set faster in the same epochs (another "
                     "path through the same function class), not from more capacity.")
    return measured


def _stacked_linear_table(widths: list[int], values: dict[str, Any],
                          counts: dict[str, tuple[int, int]]) -> Table:
    """One row per model: parameters, accuracies (4 decimals) and test correct."""
    rows = []
    for name, label in (("stack", " -> ".join(map(str, widths))),
                        ("single", f"{widths[0]} -> {widths[-1]}")):
        rows.append([label, values[f"{name}_parameters"],
                     round(values[f"{name}_train_accuracy"], 4),
                     round(values[f"{name}_test_accuracy"], 4), counts[name][1]])
    return Table(
        title="stack of linear layers against one linear layer",
        columns=["model", "parameters", "train accuracy", "test accuracy", "test correct"],
        rows=rows,
    )


# ----------------------------------------------------------------------------- symmetry


def hidden_unit_spread(weight: Tensor) -> float:
    """How different the units are: max over rows (one row per unit) of max |row - row 0|.

    Pass a first layer's weight [units, fan_in] as it is and an output layer's weight
    [out, units] transposed, so that each row is one hidden unit's weight vector.
    """
    w = weight.detach()
    return float((w - w[:1]).abs().max()) if w.shape[0] > 1 else 0.0


def _relative_spread(weight: Tensor) -> float:
    """hidden_unit_spread divided by the largest |weight| (0 for an all-zero matrix)."""
    top = float(weight.detach().abs().max())
    return hidden_unit_spread(weight) / top if top > 0 else 0.0


def _symmetry_nets(n_features: int, hidden: int, n_classes: int, constant: float,
                   seed: int) -> tuple[nn.Sequential, nn.Sequential]:
    """Two sigmoid MLPs [F -> hidden -> C]: every parameter = `constant`, and PyTorch's
    default init drawn from a seeded stream."""
    # Sigmoid, not ReLU: sigmoid's derivative is never zero, so every hidden unit receives a
    # gradient at every step. With ReLU, units that stay identical could simply be dead (never
    # updated), which would not show that gradient descent itself preserves the symmetry.
    def mlp() -> nn.Sequential:
        return nn.Sequential(nn.Linear(n_features, hidden), nn.Sigmoid(),
                             nn.Linear(hidden, n_classes))

    constant_net, random_net = mlp(), mlp()
    with torch.no_grad():
        for p in constant_net.parameters():
            p.fill_(constant)  # the output layer too: random output weights would break it
    init = torch_generator(seed, "lesson", "symmetry", "init")
    for layer in random_net:
        if isinstance(layer, nn.Linear):
            _torch_default_init(layer, init)
    return constant_net, random_net


def _unit_stats(model: nn.Sequential, train, test) -> dict[str, float]:
    """How far the trained hidden units are apart (absolute and relative to the largest
    weight, incoming and outgoing) and the model's train / test accuracy."""
    w_in, w_out = model[0].weight, model[2].weight.T  # rows: one per hidden unit
    return {
        "in_spread": hidden_unit_spread(w_in),
        "in_relative": _relative_spread(w_in),
        "out_spread": hidden_unit_spread(w_out),
        "out_relative": _relative_spread(w_out),
        "train_accuracy": _correct(model, train.X, train.y) / len(train.y),
        "test_accuracy": _correct(model, test.X, test.y) / len(test.y),
    }


def symmetry(*, data: Prepared, seed: int, hidden: int, epochs: int, batch_size: int, lr: float,
             constant: float) -> LessonResult:
    """A one-hidden-layer sigmoid MLP [F -> hidden -> C] initialised with every parameter
    equal to `constant`, against the same net randomly initialised, trained alike."""
    n_features, n_classes = _classification(data)
    train, test = data.splits["train"], data.splits["test"]
    constant_net, random_net = _symmetry_nets(n_features, hidden, n_classes, constant, seed)
    for model in (constant_net, random_net):
        _train_sgd(model, train.X, train.y, epochs=epochs, batch_size=batch_size, lr=lr,
                   generator=torch_generator(seed, "lesson", "symmetry", "batches"))

    stats = {name: _unit_stats(model, train, test)
             for name, model in (("constant", constant_net), ("random", random_net))}
    c, r = stats["constant"], stats["random"]
    # Training must have moved the weights: identical but untouched units would prove nothing.
    c["in_moved"] = float((constant_net[0].weight.detach() - constant).abs().max())
    stays = max(c["in_relative"], c["out_relative"]) < 1e-5
    breaks = min(r["in_relative"], r["out_relative"]) > 1e-2
    holds = stays and breaks and c["in_moved"] > 0

    measured = (
        f"After {epochs} epochs the constant-initialised net's {hidden} hidden units are "
        f"{'still identical' if stays else 'no longer identical'}: largest difference to unit 0 "
        f"{c['in_spread']:.1e} (incoming) and "
        f"{c['out_spread']:.1e} (outgoing) while its weights moved by up to {c['in_moved']:.2f} "
        f"from {constant}; with random init they differ by {r['in_spread']:.2f} and "
        f"{r['out_spread']:.2f}. Test accuracy {c['test_accuracy']:.4f} (constant, in effect "
        f"one hidden unit) against {r['test_accuracy']:.4f} (random)."
    )
    if not holds:
        measured += " The claim did not hold in full at these settings (see values)."
    return LessonResult(
        title="Constant initialisation never breaks the symmetry of hidden units",
        source="file 002, 4.8.1 (breaking the symmetry) and 4.8.3",
        claim=("If every parameter starts at the same constant, all hidden units compute the "
               "same activation and receive the same gradient, so after any number of "
               "mini-batch SGD steps they remain identical and the layer acts as one unit; "
               "random initialisation breaks the symmetry. (Shown with a sigmoid hidden layer: "
               "its slope is never zero, so no unit stays put merely for lack of gradient.)"),
        measured=measured,
        holds=bool(holds),
        values={f"{name}_{key}": v for name, s in stats.items() for key, v in s.items()},
        tables=[Table(
            title="hidden units after training (spread: max |unit - unit 0|)",
            columns=["init", "incoming spread", "outgoing spread", "train accuracy",
                     "test accuracy"],
            rows=[[f"constant {constant}", f"{c['in_spread']:.2e}", f"{c['out_spread']:.2e}",
                   round(c["train_accuracy"], 4), round(c["test_accuracy"], 4)],
                  ["random (PyTorch default)", f"{r['in_spread']:.2e}", f"{r['out_spread']:.2e}",
                   round(r["train_accuracy"], 4), round(r["test_accuracy"], 4)]],
        )],
    )


# ----------------------------------------------------------------------------- gradient flow

# name -> (activation, initialisation of every Linear weight); biases start at zero.
_FLOW_NETS = (
    ("sigmoid, N(0, 1)", torch.sigmoid, "normal"),
    ("ReLU, N(0, 1)", torch.relu, "normal"),
    ("ReLU, Kaiming", torch.relu, "kaiming"),
)
_FLOW_KEYS = {"sigmoid, N(0, 1)": "sigmoid_normal", "ReLU, N(0, 1)": "relu_normal",
              "ReLU, Kaiming": "relu_kaiming"}


def _flow_norms(X: Tensor, y: Tensor, widths: list[int], activation, init: str,
                generator: torch.Generator) -> tuple[list[float], list[float]]:
    """One forward / backward pass of cross-entropy through an MLP with layer sizes `widths`.

    Returns (weight-gradient norms, one per Linear from the input side, and backpropagated
    signal norms ||dL/dh_l|| for each hidden layer's output h_l, then ||dL/dlogits||).
    """
    layers = [nn.Linear(a, b) for a, b in itertools.pairwise(widths)]
    with torch.no_grad():
        for layer in layers:
            if init == "normal":
                layer.weight.normal_(0.0, 1.0, generator=generator)
            else:  # He: N(0, 2 / fan_in), which keeps ReLU activations' scale layer to layer
                nn.init.kaiming_normal_(layer.weight, nonlinearity="relu", generator=generator)
            layer.bias.zero_()
    h, kept = X, []
    for layer in layers[:-1]:
        h = activation(layer(h))
        h.retain_grad()
        kept.append(h)
    logits = layers[-1](h)
    logits.retain_grad()
    nn.functional.cross_entropy(logits, y).backward()
    weight_norms = [float(layer.weight.grad.norm()) for layer in layers]
    signal_norms = [float(t.grad.norm()) for t in kept] + [float(logits.grad.norm())]
    return weight_norms, signal_norms


def _flow_values(weight_norms: dict[str, list[float]],
                 signal_norms: dict[str, list[float]]) -> dict[str, Any]:
    """Per network: first / last ratios of the weight gradients and of the signal, the largest,
    first, middle and last weight-gradient norms; then ReLU N(0, 1)'s largest over Kaiming's."""
    values: dict[str, Any] = {}
    for name, key in _FLOW_KEYS.items():
        wn, sn = weight_norms[name], signal_norms[name]
        values[f"{key}_first_last_ratio"] = wn[0] / wn[-1]
        values[f"{key}_signal_ratio"] = sn[0] / sn[-1]
        values[f"{key}_max_weight_grad"] = max(wn)
        values[f"{key}_first_weight_grad"] = wn[0]
        values[f"{key}_middle_weight_grad"] = wn[len(wn) // 2]
        values[f"{key}_last_weight_grad"] = wn[-1]
    values["relu_normal_over_kaiming"] = (values["relu_normal_max_weight_grad"]
                                          / values["relu_kaiming_max_weight_grad"])
    return values


def _flow_figure(weight_norms: dict[str, list[float]],
                 signal_norms: dict[str, list[float]]) -> bytes:
    """Weight-gradient and backpropagated-signal norms by layer, one line per network (PNG)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(8.0, 3.0))
    for name, _, _ in _FLOW_NETS:
        layers = range(1, len(weight_norms[name]) + 1)
        axes[0].plot(layers, weight_norms[name], marker="o", markersize=3, label=name)
        axes[1].plot(layers, signal_norms[name], marker="o", markersize=3, label=name)
    axes[0].set(yscale="log", xlabel="layer (1 = next to the input)",
                ylabel="||dL/dW||", title="weight gradients")
    axes[1].set(yscale="log", xlabel="layer output (last = logits)",
                ylabel="||dL/dh||", title="backpropagated signal")
    axes[0].legend(fontsize=7)
    fig.subplots_adjust(left=0.09, right=0.98, bottom=0.17, top=0.88, wspace=0.3)
    return _png(fig)


def _flow_table(weight_norms: dict[str, list[float]], signal_norms: dict[str, list[float]],
                depth: int, width: int) -> Table:
    """One row per network: first and last layer's weight-gradient norm, their ratio, the
    largest, and the signal's first / last ratio."""
    rows = []
    for name, _, _ in _FLOW_NETS:
        wn, sn = weight_norms[name], signal_norms[name]
        rows.append([name, f"{wn[0]:.2e}", f"{wn[-1]:.2e}", f"{wn[0] / wn[-1]:.2e}",
                     f"{max(wn):.2e}", f"{sn[0] / sn[-1]:.2e}"])
    return Table(
        title=f"gradient norms after one backward pass (depth {depth}, width {width})",
        columns=["network", "first layer ||dL/dW||", "last layer ||dL/dW||",
                 "first / last", "largest ||dL/dW||", "signal ||dL/dh1|| / ||dL/dz||"],
        rows=rows,
    )


def gradient_flow(*, data: Prepared, seed: int, depth: int, width: int,
                  batch: int) -> LessonResult:
    """Per-layer gradient norms after one backward pass, for three MLPs of `depth` hidden
    layers of `width` units: sigmoid / N(0, 1), ReLU / N(0, 1), ReLU / Kaiming."""
    n_features, n_classes = _classification(data)
    train = data.splits["train"]
    rows = torch.randperm(len(train.y), generator=torch_generator(
        seed, "lesson", "gradient_flow", "batch"))[:batch]
    X, y = train.X[rows], train.y[rows]
    widths = [n_features, *([width] * depth), n_classes]

    weight_norms: dict[str, list[float]] = {}
    signal_norms: dict[str, list[float]] = {}
    for name, activation, init in _FLOW_NETS:
        key = _FLOW_KEYS[name]
        weight_norms[name], signal_norms[name] = _flow_norms(
            X, y, widths, activation, init, torch_generator(seed, "lesson", "gradient_flow", key))

    values = _flow_values(weight_norms, signal_norms)
    sig, rel, kai = (values["sigmoid_normal_first_last_ratio"],
                     values["relu_normal_first_last_ratio"],
                     values["relu_kaiming_first_last_ratio"])
    explode = values["relu_normal_over_kaiming"]
    vanishes = sig < 1e-2
    explodes = values["relu_normal_signal_ratio"] > 1e3 and explode > 1e3
    stable = all(0.1 <= values[f"relu_kaiming_{k}"] <= 10.0
                 for k in ("first_last_ratio", "signal_ratio"))
    holds = vanishes and explodes and stable

    sig_word = ("vanishing" if vanishes else
                "no vanishing: wide sigmoid layers grow the signal by ~sqrt(width)")
    kai_word = "stable" if stable else "outside 0.1-10"
    measured = (
        f"Depth {depth}, width {width}, {batch} rows: the first layer's weight gradient is "
        f"{sig:.1e} of the last's with sigmoid and N(0, 1) weights ({sig_word}), {kai:.2f} with "
        f"ReLU and Kaiming init ({kai_word}). With ReLU and N(0, 1) weights every layer's gradient "
        f"is huge (up to {values['relu_normal_max_weight_grad']:.1e}, {explode:.1e} times "
        f"Kaiming's) and the backpropagated signal dL/dh grows "
        f"{values['relu_normal_signal_ratio']:.1e}-fold toward the input, yet the first/last "
        f"weight-gradient ratio is only {rel:.2f}: the forward activations grow by the same "
        f"factor, so the explosion is in size, not in the ratio."
    )
    if not holds:
        measured += " Not every part of the claim held at these settings (see values)."
    return LessonResult(
        title="Vanishing and exploding gradients in deep MLPs",
        source="file 004, 3.3.7; file 002, 4.8.1-4.8.2",
        claim=("Backpropagation multiplies one factor per layer, so in a deep network the "
               "gradient can vanish toward the input (saturating sigmoid, d2l 4.8.1) or explode "
               "(badly scaled weights, N(0, 1) here), and a suitable initialisation (He / "
               "Kaiming for ReLU) keeps it of the same order through the layers."),
        measured=measured,
        holds=bool(holds),
        values=values,
        tables=[_flow_table(weight_norms, signal_norms, depth, width)],
        figures={"gradient_flow": _flow_figure(weight_norms, signal_norms)},
    )


def _pyplot():
    from dlbasics.report.figures import pyplot

    return pyplot()


def _png(fig) -> bytes:
    from dlbasics.report.figures import png_bytes

    return png_bytes(fig)


# ----------------------------------------------------------------------------- activations


def _value_and_grad(module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """module(x) [n] and d module(x)_i / d x_i [n] by autograd (the functions act elementwise)."""
    xg = x.clone().requires_grad_(True)
    out = module(xg)
    (grad,) = torch.autograd.grad(out.sum(), xg)
    return out.detach(), grad


def _leaky_formula(xs: Tensor, a: float) -> tuple[Tensor, Tensor]:
    """max(0, x) + a min(0, x) and its derivative (1 for x > 0, else a), both [n]."""
    # At x = 0 the function has a kink; torch's backward takes the slope there.
    return (xs.clamp(min=0) + a * xs.clamp(max=0),
            torch.where(xs > 0, torch.ones_like(xs), torch.full_like(xs, a)))


def _slope_grad(prelu: nn.PReLU, xs: Tensor) -> float:
    """d sum(PReLU(x)) / d a, by backward into the slope parameter (formula: sum(min(0, x)))."""
    prelu.zero_grad()
    prelu(xs).sum().backward()
    return float(prelu.weight.grad[0])


def _book_leaky_error(leaky: nn.LeakyReLU) -> float:
    """Max |leaky(BOOK_LEAKY_IN) - BOOK_LEAKY_OUT|: the book's printed example, 4 decimals."""
    with torch.no_grad():
        book_y = leaky(torch.tensor(BOOK_LEAKY_IN, dtype=torch.float64))
    return float((book_y - torch.tensor(BOOK_LEAKY_OUT, dtype=torch.float64)).abs().max())


def _activations_measured(xs: Tensor, negative_slope: float, prelu_slope: float,
                          errs: dict[str, float], book_diff: float, slope_grad: float) -> str:
    """The measured sentences of `activations`."""
    value_err = max(errs["leaky_value_max_err"], errs["prelu_value_max_err"])
    grad_err = max(errs["leaky_grad_max_err"], errs["prelu_grad_max_err"])
    at_zero = " and at the kink x = 0" if bool((xs == 0).any()) else ""
    negative_side = (f"+{negative_slope} (PReLU +{prelu_slope}) for x < 0"
                     if bool((xs < 0).any()) else "(no x < 0 given) the negative side unmeasured")
    return (
        f"torch's LeakyReLU({negative_slope}) and PReLU (initial slope {prelu_slope}) match "
        f"max(0, x) + a min(0, x) to {value_err:.1e} and reproduce the book's printed example "
        f"to {book_diff:.1e}; autograd's derivative is 1 for x > 0 and {negative_side}"
        f"{at_zero}, matching the formula to {grad_err:.1e}. The book's "
        f"(3-121) writes -gamma for x <= 0, a sign slip (the slope of gamma x is +gamma); "
        f"PReLU's slope gradient is sum(min(0, x)) = {slope_grad:.4f}."
    )


def activations(*, negative_slope: float, x: list[float]) -> LessonResult:
    """LeakyReLU(negative_slope) and PReLU (torch's initial slope) at `x`: values and
    derivatives from torch against the formulas max(0, x) + a min(0, x) and 1 / a."""
    xs = torch.tensor(x, dtype=torch.float64)
    leaky = nn.LeakyReLU(negative_slope)
    prelu = nn.PReLU().double()  # one learnable slope; torch initialises it to 0.25
    prelu_slope = float(prelu.weight.detach()[0])

    leaky_y, leaky_d = _value_and_grad(leaky, xs)
    prelu_y, prelu_d = _value_and_grad(prelu, xs)
    leaky_fy, leaky_fd = _leaky_formula(xs, negative_slope)
    prelu_fy, prelu_fd = _leaky_formula(xs, prelu_slope)
    slope_grad = _slope_grad(prelu, xs)  # PReLU's slope is a parameter: d PReLU / d a = min(0, x)
    book_diff = _book_leaky_error(leaky)

    errs = {
        "leaky_value_max_err": float((leaky_y - leaky_fy).abs().max()),
        "leaky_grad_max_err": float((leaky_d - leaky_fd).abs().max()),
        "prelu_value_max_err": float((prelu_y - prelu_fy).abs().max()),
        "prelu_grad_max_err": float((prelu_d - prelu_fd).abs().max()),
    }
    formulas_hold = max(errs.values()) < 1e-12
    negative = xs < 0
    neg_grad = float(leaky_d[negative].mean()) if bool(negative.any()) else float("nan")
    # The book's (3-121) gives -gamma as the derivative for x <= 0; the slope of gamma * x is
    # +gamma, which is what autograd returns.
    book_sign_holds = bool(negative.any()) and abs(neg_grad + negative_slope) < 1e-12
    holds = formulas_hold and book_diff < 5e-5 and book_sign_holds
    return LessonResult(
        title="LeakyReLU and PReLU: values and derivatives",
        source="file 004, 3.12.4 (formulas 3-120, 3-121)",
        claim=("LeakyReLU is max(0, x) + gamma min(0, x) (the book uses gamma = 0.2) and keeps "
               "a small gradient for x < 0 so units cannot die; the book gives its derivative "
               "as 1 for x > 0 and -gamma for x <= 0."),
        measured=_activations_measured(xs, negative_slope, prelu_slope, errs, book_diff,
                                       slope_grad),
        holds=bool(holds),
        values={
            "negative_slope": negative_slope,
            "prelu_initial_slope": prelu_slope,
            **errs,
            "book_example_max_err": book_diff,
            "prelu_slope_grad": slope_grad,
            "prelu_slope_grad_formula": float(xs.clamp(max=0).sum()),
            # Only with some x < 0 (no NaN in the results).
            **({"negative_side_derivative": neg_grad} if bool(negative.any()) else {}),
        },
        tables=[Table(
            title=f"LeakyReLU({negative_slope}) and PReLU({prelu_slope}) by torch autograd",
            columns=["x", "LeakyReLU", "d LeakyReLU / dx", "PReLU", "d PReLU / dx"],
            rows=[[xi, round(float(leaky_y[i]), 6), round(float(leaky_d[i]), 6),
                   round(float(prelu_y[i]), 6), round(float(prelu_d[i]), 6)]
                  for i, xi in enumerate(x)],
        )],
    )
