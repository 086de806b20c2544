"""How a model is chosen: K-fold cross-validation done right.

Every (configuration, fold) fit starts from a fresh model with the configuration's own
initial weights (the sources' K-fold loop kept training one model across folds), and no fold
ever trains on its own validation rows.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dlbasics.data import Prepared, Split

# The score cross-validation reports per task: (metric name, computed from outputs and targets).
PRIMARY = {"regression": "rmse", "classification": "accuracy", "binary": "accuracy",
           "multilabel": "accuracy"}


def fold_indices(
    y: np.ndarray, k: int, seed: int, stratify: bool
) -> list[tuple[np.ndarray, np.ndarray]]:
    """K seeded folds over rows of `y`: [(train_rows, val_rows)], stratified when asked."""
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if stratify else KFold)(n_splits=k, shuffle=True, random_state=seed)
    rows = np.arange(len(y))
    return [(tr, va) for tr, va in splitter.split(rows, y if stratify else None)]


def _primary(task: str, out: torch.Tensor, y: torch.Tensor) -> float:
    if task == "regression":
        return float(torch.sqrt(torch.mean((out.double() - y.double()) ** 2)))
    if task == "classification":
        return float((out.argmax(1) == y).double().mean())
    if task == "binary":
        return float(((out.reshape(-1) > 0).long() == y).double().mean())
    return float(((out > 0).to(y.dtype) == y).all(1).double().mean())


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
    from dlbasics.training import predict

    task = data.task
    metric = PRIMARY[task]
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
            f"train_{metric}": _primary(task, predict(model, train.X), train.y),
            f"val_{metric}": _primary(task, predict(model, val.X), val.y),
            "epochs": len(history),
        })
    summary: dict[str, Any] = {"k": k, "metric": metric, "folds": records}
    for part in ("train", "val"):
        vals = np.array([r[f"{part}_{metric}"] for r in records])
        summary[f"{part}_{metric}_mean"] = float(vals.mean())
        summary[f"{part}_{metric}_std"] = float(vals.std(ddof=1)) if k > 1 else 0.0
    return summary


def n_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def grid_search(params, data: Prepared, device: torch.device | None = None, on_config=None):
    """K-fold cross-validation of every configuration of `params.select`, then the best one
    (by mean validation score; ties to the smaller model) refitted on the whole training split.

    One seeded (stratified) fold split is shared by every configuration; each (configuration,
    fold) fit starts from a fresh model with the configuration's seeded initial weights. A
    configuration whose loss becomes NaN or infinite is recorded as diverged (with the epoch)
    and excluded. `on_config(record)` is called after each configuration.
    Returns (table of configurations, the chosen record, the refitted model, its history).
    """
    from dlbasics.config import grid_variants
    from dlbasics.experiment import make_trainer
    from dlbasics.rng import derive_seed
    from dlbasics.training import DivergenceError

    identity = data.manifest["identity"]
    metric = PRIMARY[data.task]
    higher_is_better = metric != "rmse"
    fold_seed = derive_seed(params.seed, "folds", identity)
    table = []
    done: dict[str, dict[str, Any]] = {}  # resolved settings -> result: a grid point that
    # resolves to settings already scored (dropout of a 0-layer model) is not trained again
    for i, (values, spec) in enumerate(grid_variants(params)):
        make_model, train_fn = make_trainer(params, spec, "select", data, device)
        record: dict[str, Any] = {"config": i, "values": values,
                                  "n_parameters": n_parameters(make_model())}
        key = spec.model_dump_json()
        if key not in done:
            try:
                cv = cross_validate(data, params.select.k, fold_seed, make_model, train_fn)
            except DivergenceError as exc:
                done[key] = {"diverged": True, "diverged_epoch": exc.epoch}
            else:
                done[key] = {"diverged": False, "folds": cv["folds"],
                             **{k: v for k, v in cv.items() if k.endswith(("_mean", "_std"))}}
        record.update(done[key])
        table.append(record)
        if on_config is not None:
            on_config(record, spec)
    alive = [r for r in table if not r["diverged"]]
    if not alive:
        from dlbasics.config import ConfigError

        raise ConfigError("params.yaml: select.grid: expected at least one configuration that "
                          "trains, found every one diverged; lower the optimizer.lr values")
    sign = -1.0 if higher_is_better else 1.0
    best = min(alive, key=lambda r: (sign * r[f"val_{metric}_mean"], r["n_parameters"],
                                     r["config"]))
    spec = grid_variants(params)[best["config"]][1]
    make_model, train_fn = make_trainer(params, spec, "select", data, device)
    model = make_model()
    history = train_fn(model, data.splits)
    return table, best, spec, model.cpu(), history
