"""How a model is chosen: K-fold cross-validation done right.

Every (configuration, fold) fit starts from a fresh model with the configuration's own
initial weights (the sources' K-fold loop kept training one model across folds), and no fold
ever trains on its own validation rows.
"""

from __future__ import annotations

import json
import math
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


def _arch_key(spec) -> str:
    """What configurations must share to train as one batched model: everything but the
    optimiser's lr, momentum and weight decay."""
    raw = spec.model_dump(mode="json")
    raw["optimizer"] = {"name": spec.optimizer.name}
    return json.dumps(raw, sort_keys=True)


def _batchable(spec) -> bool:
    from dlbasics.batched import supports

    return (spec.solver == "gradient" and spec.penalty is None and spec.features is None
            and supports(spec.model, spec.optimizer, spec.loss))


class _Folds:
    """The K folds of the training split, on the device: [(train Split, val Split)]."""

    def __init__(self, data: Prepared, k: int, seed: int, device: torch.device):
        X, y = data.splits["train"].X, data.splits["train"].y
        folds = fold_indices(y.numpy(), k, seed,
                             stratify=data.task in ("classification", "binary"))
        self.splits = []
        for tr, va in folds:
            tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
            self.splits.append((Split(X[tr_t].to(device), y[tr_t].to(device)),
                                Split(X[va_t].to(device), y[va_t].to(device))))


class _Sequential:
    """One configuration: K fold fits (fresh models from its initial weights), advanced one
    epoch at a time with training.train_epoch, exactly as training.fit trains."""

    def __init__(self, params, spec, name: str, data: Prepared, folds: _Folds, device):
        from dlbasics.experiment import make_trainer
        from dlbasics.rng import derive_seed, torch_generator
        from dlbasics.training import build_loss, build_optimizer, build_penalty

        make_model, _ = make_trainer(params, spec, name, data, device)
        torch.manual_seed(derive_seed(params.seed, "dropout", name))  # nn.Dropout's masks
        self.spec, self.folds, self.task = spec, folds, data.task
        self.loss_fn = build_loss(spec.loss)
        self.fits = []
        for _ in folds.splits:
            model = make_model()
            self.fits.append((model, build_optimizer(spec.optimizer, model),
                              build_penalty(spec.penalty, model),
                              torch_generator(params.seed, "batches", data.manifest["identity"])))
        self.alive = [0]

    def epoch(self, score: bool = True) -> list[list[tuple[float, float, float]]]:
        from dlbasics.training import predict, train_epoch

        out = []
        for (model, opt, penalty, gen), (train, val) in zip(self.fits, self.folds.splits):
            loss = train_epoch(model, self.loss_fn, opt, train.X, train.y, penalty=penalty,
                               batch_size=self.spec.batch_size, generator=gen)
            if not (score and math.isfinite(loss)):
                out.append((loss, math.nan, math.nan))
                continue
            out.append((loss, _primary(self.task, predict(model, train.X), train.y),
                        _primary(self.task, predict(model, val.X), val.y)))
        return [out]

    def keep(self, positions) -> None:
        self.alive = [self.alive[k] for k in positions]


class _Batched:
    """G configurations of one architecture: one BatchedTrainer per fold, in lockstep."""

    def __init__(self, params, specs, data: Prepared, folds: _Folds, device):
        from dlbasics.batched import BatchedTrainer
        from dlbasics.experiment import make_trainer
        from dlbasics.rng import torch_generator

        spec = specs[0]
        man = data.manifest
        make_model, _ = make_trainer(params, spec, "select", data, device)
        init = {k: v.detach().cpu() for k, v in make_model().state_dict().items()}
        self.task = data.task
        self.folds = folds
        self.trainers = [
            BatchedTrainer(spec.model, man["n_features"], man["n_outputs"],
                           [s.optimizer for s in specs], [init] * len(specs), train.X, train.y,
                           loss=spec.loss, batch_size=spec.batch_size,
                           generator=torch_generator(params.seed, "batches", man["identity"]))
            for train, _ in folds.splits
        ]

    @property
    def alive(self) -> list[int]:
        return self.trainers[0].alive

    def epoch(self, score: bool = True) -> list[list[tuple[float, float, float]]]:
        per_fold = []
        for tr, (train, val) in zip(self.trainers, self.folds.splits):
            losses = tr.epoch()
            if not score:
                per_fold.append([(loss, math.nan, math.nan) for loss in losses])
                continue
            out_tr, out_va = tr.outputs(train.X), tr.outputs(val.X)  # [G, N, out]
            per_fold.append([
                (loss, _primary(self.task, out_tr[g], train.y),
                 _primary(self.task, out_va[g], val.y)) if math.isfinite(loss)
                else (loss, math.nan, math.nan)
                for g, loss in enumerate(losses)])
        return [list(config) for config in zip(*per_fold)]  # [G][K]

    def keep(self, positions) -> None:
        for tr in self.trainers:
            tr.keep(positions)


def _run(runner, max_epochs: int, patience: int | None, higher: bool, metric: str,
         k: int) -> dict[int, dict[str, Any]]:
    """Train the runner's configurations in lockstep over the folds, epoch by epoch, with early
    stopping on the mean validation score across folds. Returns, per configuration (index into
    the runner's list), its record: the fold scores at its chosen epoch, their mean and sd, the
    chosen and the trained epochs, the mean validation curve; or its divergence."""
    sign = 1.0 if higher else -1.0
    curves: dict[int, list[float]] = {g: [] for g in runner.alive}
    best: dict[int, tuple[int, list[tuple[float, float, float]]]] = {}
    done: dict[int, dict[str, Any]] = {}
    for epoch in range(1, max_epochs + 1):
        # Without early stopping only the last epoch is scored.
        scores = runner.epoch(score=patience is not None or epoch == max_epochs)
        # [alive][K] of (loss, train score, val score)
        keep = []
        for pos, (g, folds) in enumerate(zip(runner.alive, scores)):
            if not all(math.isfinite(f[0]) for f in folds):
                done[g] = {"diverged": True, "diverged_epoch": epoch}
                continue
            if patience is None and epoch < max_epochs:
                keep.append(pos)
                continue
            mean = float(np.mean([f[2] for f in folds]))
            curves[g].append(mean)
            if g not in best or sign * mean > sign * float(np.mean([f[2] for f in best[g][1]])):
                best[g] = (epoch, folds)
            stop = patience is not None and epoch - best[g][0] >= patience
            if stop or epoch == max_epochs:
                chosen_epoch, at = best[g] if patience is not None else (epoch, folds)
                done[g] = _record(at, chosen_epoch, epoch, curves[g], metric, k)
            else:
                keep.append(pos)
        runner.keep(keep)
        if not runner.alive:
            break
    return done


def _record(folds, epoch: int, trained: int, curve: list[float], metric: str,
            k: int) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "diverged": False,
        "folds": [{"fold": i, f"train_{metric}": tr, f"val_{metric}": va, "epochs": epoch}
                  for i, (_, tr, va) in enumerate(folds)],
        "epochs_chosen": epoch, "epochs_trained": trained, "val_curve": curve,
    }
    for j, part in ((1, "train"), (2, "val")):
        vals = np.array([f[j] for f in folds])
        rec[f"{part}_{metric}_mean"] = float(vals.mean())
        rec[f"{part}_{metric}_std"] = float(vals.std(ddof=1)) if k > 1 else 0.0
    return rec


def run_search(params, search: str, data: Prepared, device: torch.device | None = None,
               batched: str | None = None, log=print):
    """K-fold cross-validation of every configuration of the named search, then the best one
    (by mean validation score; ties to the smaller model) refitted on the whole training split.

    One seeded (stratified) fold split is shared by every configuration; each (configuration,
    fold) fit starts from a fresh model with the configuration's seeded initial weights. With
    `patience`, every configuration trains its K folds in lockstep and stops once the mean
    validation score has not improved for `patience` epochs; its best epoch is its answer and
    the refit trains that many epochs. Configurations that share an architecture train as one
    batched model when `batched` (default: the search's setting) is auto and the size rule says
    it is faster. A configuration whose loss becomes NaN or infinite in any fold is recorded as
    diverged (with the epoch) and excluded.
    Returns (table of configurations in grid order, the chosen record, its spec as refitted,
    the refitted model, its history).
    """
    from dlbasics.batched import batched_is_faster
    from dlbasics.config import ConfigError, grid_variants
    from dlbasics.experiment import make_trainer
    from dlbasics.rng import derive_seed

    sel = params.select.searches[search]
    device = device or torch.device("cpu")
    mode = batched or sel.batched
    metric = PRIMARY[data.task]
    higher = metric != "rmse"
    name = f"select@{search}"
    folds = _Folds(data, sel.k, derive_seed(params.seed, "folds", data.manifest["identity"]),
                   device)
    configs = grid_variants(params, search)
    # A grid point that resolves to settings already listed (dropout of a 0-layer model) is
    # trained once: unique settings in grid order, and each grid point's index into them.
    unique: dict[str, int] = {}
    specs = []
    for _, spec in configs:
        key = spec.model_dump_json()
        if key not in unique:
            unique[key] = len(specs)
            specs.append(spec)
    groups: dict[str, list[int]] = {}
    for u, spec in enumerate(specs):
        groups.setdefault(_arch_key(spec) if _batchable(spec) else f"seq{u}", []).append(u)
    man = data.manifest
    results: dict[int, dict[str, Any]] = {}
    for members in groups.values():
        spec = specs[members[0]]
        if mode == "auto" and _batchable(spec) and batched_is_faster(
                spec.model, man["n_features"], man["n_outputs"], len(members)):
            runner = _Batched(params, [specs[u] for u in members], data, folds, device)
            done = _run(runner, spec.epochs, sel.patience, higher, metric, sel.k)
            for g, u in enumerate(members):
                results[u] = {**done[g], "path": "batched"}
            log(f"{name}: {len(members)} configurations of one architecture trained batched")
        else:
            for u in members:
                runner = _Sequential(params, specs[u], name, data, folds, device)
                done = _run(runner, specs[u].epochs, sel.patience, higher, metric, sel.k)
                results[u] = {**done[0], "path": "sequential"}
            log(f"{name}: {len(members)} configuration(s) trained one by one")
    table = []
    for i, (values, spec) in enumerate(configs):
        make_model, _ = make_trainer(params, spec, name, data, device)
        table.append({"config": i, "values": values, "n_parameters": n_parameters(make_model()),
                      "epochs_max": spec.epochs, **results[unique[spec.model_dump_json()]]})
    alive = [r for r in table if not r["diverged"]]
    if not alive:
        raise ConfigError(f"params.yaml: select.searches.{search}.grid: expected at least one "
                          "configuration that trains, found every one diverged; lower the "
                          "optimizer.lr values")
    sign = -1.0 if higher else 1.0
    best = min(alive, key=lambda r: (sign * r[f"val_{metric}_mean"], r["n_parameters"],
                                     r["config"]))
    spec = configs[best["config"]][1].model_copy(update={"epochs": best["epochs_chosen"]})
    make_model, train_fn = make_trainer(params, spec, name, data, device)
    model = make_model()
    history = train_fn(model, data.splits)
    return table, best, spec, model.cpu(), history
