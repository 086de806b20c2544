"""How a model is chosen: K-fold cross-validation done right (the grid search that runs it
over many configurations is dlbasics.search.gridsearch; the rule that picks one is tasks.choose).

Every (configuration, fold) fit starts from a fresh model with the configuration's own
initial weights (the sources' K-fold loop kept training one model across folds), and no fold
ever trains on its own validation rows.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dlbasics.data.prepared import Prepared, Split
from dlbasics.learn.tasks import PRIMARY, n_correct


def fold_indices(
    y: np.ndarray, k: int, seed: int, stratify: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K seeded folds over rows of `y`: [(train_rows, val_rows)], stratified when asked."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if stratify else KFold)(n_splits=k, shuffle=True, random_state=seed)
    rows = np.arange(len(y))
    return [(tr, va) for tr, va in splitter.split(rows, y)]  # (KFold ignores y)


def primary_score(task: str, out: torch.Tensor, y: torch.Tensor) -> float:
    """The task's primary metric (tasks.PRIMARY) of outputs `out` against targets `y`: RMSE
    for regression, else the share of rows right (tasks.n_correct)."""
    if task == "regression":
        return float(torch.sqrt(torch.mean((out.double() - y.double()) ** 2)))
    return int(n_correct(out, y, task)) / y.shape[0]


def cross_validate(
    data: Prepared,
    k: int,
    seed: int,
    make_model: Callable[[], nn.Module],
    train_fn: Callable[[nn.Module, dict[str, Split]], list[dict[str, float]]],
) -> dict[str, Any]:
    """K-fold cross-validation on data's training split.

    make_model() returns a freshly initialised model (the same initial weights every call);
    train_fn(model, {"train", "val", "test"}) trains it in place. Returns per-fold train and
    validation scores of the task's primary metric and their mean and standard deviation.
    """
    from dlbasics.learn.training import predict

    task = data.task
    metric = PRIMARY[task].name
    X, y = data.splits["train"].X, data.splits["train"].y
    folds = fold_indices(y.numpy(), k, seed, stratify=task in ("classification", "binary"))
    empty = Split(X[:0], y[:0])
    records = []
    for i, (tr, va) in enumerate(folds):
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        train, val = Split(X[tr_t], y[tr_t]), Split(X[va_t], y[va_t])
        model = make_model()
        history = train_fn(model, {"train": train, "val": val, "test": empty})
        records.append({
            "fold": i,
            f"train_{metric}": primary_score(task, predict(model, train.X), train.y),
            f"val_{metric}": primary_score(task, predict(model, val.X), val.y),
            "epochs": len(history),
        })
    summary: dict[str, Any] = {"k": k, "metric": metric, "folds": records}
    for part in ("train", "val"):
        vals = np.array([r[f"{part}_{metric}"] for r in records])
        summary[f"{part}_{metric}_mean"] = float(vals.mean())
        summary[f"{part}_{metric}_std"] = float(vals.std(ddof=1))  # (k >= 2: KFold's rule)
    return summary


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def describe(spec, epochs: int | None = None) -> str:
    """A configuration in words: architecture, optimiser, batch and epochs (for the report)."""
    m, o = spec.model, spec.optimizer
    if m.hidden:
        layers = " + ".join(str(h) for h in m.hidden)
        drop = [p for p in m.dropout if p > 0]
        arch = (f"{len(m.hidden)} hidden layer{'s' if len(m.hidden) > 1 else ''} of {layers} "
                f"{m.activation} units" + (f", dropout {'/'.join(f'{p:g}' for p in m.dropout)}"
                                          if drop else ", no dropout"))
    else:
        arch = "no hidden layer (a linear model)"
    opt = f"{o.name} lr {o.lr:g}"
    if o.name in ("sgd", "rmsprop") and o.momentum:
        opt += f" momentum {o.momentum:g}"
    opt += f", weight decay {o.weight_decay:g}" if o.weight_decay else ", no weight decay"
    n = spec.epochs if epochs is None else epochs
    return f"{arch}; {opt}; batch {spec.batch_size}, {n} epoch{'s' if n != 1 else ''}"
