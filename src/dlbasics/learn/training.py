"""How a model learns: losses, optimisers, the in-memory minibatch loop, the closed-form
least-squares solver, and a variant's settings turned into (make_model, train_fn).

The loop keeps the whole split resident as tensors and slices each batch out of one
`torch.randperm` per epoch: no per-sample Dataset or DataLoader in the hot path.

What a person sees while it runs is Progress: a bar on a terminal, a quiet log elsewhere.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn
from tqdm import tqdm

from dlbasics.config.params import Params
from dlbasics.config.variants import LOSS_TASKS, OptimizerSpec, PenaltySpec, VariantSpec
from dlbasics.data.prepared import Prepared, Split
from dlbasics.errors import DivergenceError  # noqa: F401 - re-exported: training.DivergenceError
from dlbasics.learn import scratch
from dlbasics.learn.models import build_model
from dlbasics.learn.tasks import n_correct
from dlbasics.rng import derive_seed, torch_generator


def _bce_with_logits() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    bce = nn.BCEWithLogitsLoss()
    # One logit per sample [N, 1] against 0/1 labels [N].
    return lambda out, y: bce(out.reshape(-1), y.to(out.dtype))


def _bce() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    # File 001's way: probabilities from an explicit Sigmoid, then BCELoss (which clamps its
    # logs at -100, so a saturated sigmoid gives a loss of 100 and no gradient, not inf).
    sigmoid, bce = nn.Sigmoid(), nn.BCELoss()
    return lambda out, y: bce(sigmoid(out.reshape(-1)), y.to(out.dtype))


def _nll(weight: torch.Tensor | None = None) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    # Logits [N, K] -> log-probabilities by log_softmax, then NLLLoss: CrossEntropyLoss in two steps.
    nll = nn.NLLLoss(weight=weight)
    return lambda out, y: nll(torch.log_softmax(out, dim=1), y)


def _one_vs_all() -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    bce = nn.BCEWithLogitsLoss()

    def loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # Logits [N, K] against labels [N]: column k is a binary logistic regression "class k or
        # not". Summed over the K classifiers (K times the mean over all N x K entries), so each
        # one gets exactly the gradient it would get trained alone.
        onehot = nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
        return bce(out, onehot) * out.shape[1]

    return loss


# config.LOSS_TASKS names the losses params may use and the tasks each fits; this table builds
# them, and a name in one but not the other fails on import (the two cannot drift apart).
LOSSES: dict[str, Callable[[], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]] = {
    "mse": nn.MSELoss,
    "l1": nn.L1Loss,
    "squared_loss_scratch": lambda: scratch.squared_loss,
    "cross_entropy": nn.CrossEntropyLoss,
    "nll": _nll,
    "cross_entropy_scratch": lambda: scratch.scratch_cross_entropy,
    "one_vs_all": _one_vs_all,
    "bce_with_logits": _bce_with_logits,
    "bce": _bce,
    "multilabel_soft_margin": nn.MultiLabelSoftMarginLoss,
    "multilabel_softmax": lambda: scratch.multilabel_softmax_cross_entropy,
}
if set(LOSSES) != set(LOSS_TASKS):
    raise ImportError(f"dlbasics.learn.training builds losses {sorted(LOSSES)}, config.LOSS_TASKS "
                      f"lists {sorted(LOSS_TASKS)}")


def build_loss(name: str, weight: torch.Tensor | None = None
               ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss `name` as a callable (outputs, targets) -> scalar mean over the batch; `weight`
    [K]: class weights of cross_entropy / nll (torch's weighted mean: sum w_y l / sum w_y)."""
    return LOSSES[name]() if weight is None else LOSSES[name](weight=weight)


def class_weights(spec: VariantSpec, y: torch.Tensor, n_classes: int) -> torch.Tensor | None:
    """The variant's class weights [K] from its training labels y [N] (balanced:
    n / (K * count), scikit-learn's rule; a class absent from y gets weight 0), or None."""
    if spec.class_weight is None:
        return None
    counts = torch.bincount(y, minlength=n_classes).double()
    w = torch.where(counts > 0, y.shape[0] / (n_classes * counts.clamp(min=1)), 0.0)
    return w.float()


def weights_of(model: nn.Module) -> list[torch.Tensor]:
    """The parameters that are weights (matrices), not biases: those decayed and penalised."""
    return [p for p in model.parameters() if p.ndim > 1]


def build_penalty(
    spec: PenaltySpec | None, model: nn.Module
) -> Callable[[], torch.Tensor] | None:
    """strength * l2 (sum w^2 / 2), l1 (sum |w|) or their elastic-net mix of the weights,
    written by hand; or None."""
    if spec is None or spec.strength == 0:
        return None
    weights = weights_of(model)
    if spec.kind == "elastic_net":
        r = spec.l1_ratio
        return lambda: spec.strength * (r * scratch.l1_penalty(weights)
                                         + (1 - r) * scratch.l2_penalty(weights))
    fn = scratch.l2_penalty if spec.kind == "l2" else scratch.l1_penalty
    return lambda: spec.strength * fn(weights)


def build_optimizer(spec: OptimizerSpec, model: nn.Module):
    """torch.optim optimiser (or the hand-written ScratchSGD); weight decay applies to weights
    only, never to biases."""
    if spec.name == "sgd_scratch":
        return scratch.ScratchSGD(
            [{"params": weights_of(model), "weight_decay": spec.weight_decay},
             {"params": [p for p in model.parameters() if p.ndim <= 1], "weight_decay": 0.0}],
            lr=spec.lr,
        )
    decay = weights_of(model)
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": spec.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if spec.name == "sgd":
        return torch.optim.SGD(groups, lr=spec.lr, momentum=spec.momentum)
    if spec.name == "adam":
        return torch.optim.Adam(groups, lr=spec.lr, betas=spec.betas)
    return torch.optim.RMSprop(groups, lr=spec.lr, alpha=spec.alpha, momentum=spec.momentum)


@torch.no_grad()
def predict(model: nn.Module, X: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    """Model outputs for X [N, F] in eval mode, in chunks to bound memory: [N, out]."""
    was_training = model.training
    model.eval()
    outs = [model(X[i : i + chunk]) for i in range(0, X.shape[0], chunk)]
    model.train(was_training)
    return torch.cat(outs)


@torch.no_grad()
def evaluate_split(
    model: nn.Module, loss_fn: nn.Module, split: Split, task: str
) -> dict[str, float]:
    """Loss (and accuracy for classifiers) of `model` on one split."""
    out = predict(model, split.X)
    metrics = {"loss": float(loss_fn(out, split.y))}
    if task != "regression":
        metrics["accuracy"] = float(n_correct(out, split.y, task)) / max(1, split.y.shape[0])
    return metrics


# ----------------------------------------------------------------------------- progress

VERBOSE_ENV = "DLBASICS_VERBOSE"  # set (not 0): one line per epoch, thinned to ~100 a fit
HEARTBEAT_S = 30.0  # off a terminal, something that runs longer says where it is this often


def verbose() -> bool:
    """Whether DLBASICS_VERBOSE (or a stage's --verbose) asks for one line per epoch."""
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in ("", "0", "false", "no", "off")


def figures(record: dict[str, float], digits: int = 6) -> str:
    """An epoch's record as `train_loss=0.0123 val_accuracy=0.97` (the epoch left out)."""
    return " ".join(f"{k}={v:.{digits}g}" for k, v in record.items() if k != "epoch")


class Progress:
    """What a person sees while something trains: `total` units (epochs of one or more fits,
    or configurations of a search) under `label`.

    On a terminal (stderr a TTY), a tqdm bar, cleared when closed; in a log (not a TTY), nothing
    but a line every `every` seconds while it runs; with DLBASICS_VERBOSE, one line per epoch
    either way. close() returns the one line of results that the caller prints. It reads the
    clock and the records only: nothing here draws from a random generator or touches a tensor.
    """

    def __init__(self, label: str, total: int, unit: str = "epoch", every: float = HEARTBEAT_S):
        self.label, self.total, self.unit, self.every = label, total, unit, every
        self.done = 0
        self.last: dict[str, float] | None = None
        self.verbose = verbose()
        self.start = self._said = time.monotonic()
        self.bar = (tqdm(total=total, desc=label, unit=unit, leave=False, dynamic_ncols=True)
                    if sys.stderr.isatty() else None)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # the bar, also when a failure stopped the work

    def write(self, line: str) -> None:
        """One line on stdout, above the bar while there is one."""
        if self.bar is not None:
            tqdm.write(line, file=sys.stdout)
        else:
            print(line, flush=True)
        self._said = time.monotonic()

    def epoch(self, record: dict[str, float], epochs: int) -> None:
        """Epoch record["epoch"] of a fit of `epochs` ended with these figures."""
        epoch = int(record["epoch"])
        if self.verbose and (epoch % max(1, epochs // 100) == 0 or epoch == epochs):
            self.write(f"{self.label} epoch {epoch}/{epochs} {figures(record)}")
        self.last = record
        self.advance()

    def advance(self, n: int = 1, status: str | None = None) -> None:
        """`n` more units done; `status` (else the last record's figures) shows beside them."""
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
            if shown := self._status(status):
                self.bar.set_postfix_str(shown, refresh=False)
            return
        now = time.monotonic()
        if not self.verbose and now - self._said >= self.every:
            shown = self._status(status)
            self.write(f"{self.label}: {self.done}/{self.total} {self.unit}s after "
                       f"{now - self.start:.0f} s" + (f": {shown}" if shown else ""))

    def _status(self, status: str | None) -> str:
        return status if status is not None else figures(self.last, 4) if self.last else ""

    def close(self, record: dict[str, float] | None = None) -> str:
        """Clear the bar; the results: `30 epochs in 0.8 s: train_loss=...` (the time since the
        start) with the figures of `record` (else the last epoch's)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        seconds = time.monotonic() - self.start
        line = f"{self.done} {self.unit}{'' if self.done == 1 else 's'} in {seconds:.1f} s"
        record = record if record is not None else self.last
        return f"{line}: {figures(record, 4)}" if record else line


@contextmanager
def _reported(progress: Progress | None, label: str, epochs: int) -> Iterator[Progress]:
    """`progress` (its owner closes it), or a Progress of this fit alone that prints its line
    of results when the fit ends."""
    if progress is not None:
        yield progress
        return
    with Progress(label, epochs) as own:
        yield own
        line = own.close()
    own.write(f"{label}: {line}")


def train_epoch(
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    penalty: Callable[[], torch.Tensor] | None = None,
    task: str | None = None,
    label: str = "train",
    bar: bool = False,
) -> tuple[float, float | None]:
    """One epoch of minibatch steps over X [N, F], y [N, ...] (on the model's device) in the
    order of one torch.randperm(N, generator=generator). Returns (the mean minibatch loss,
    penalty excluded, NaN or infinite when training diverged; for a classifier `task`, the
    running accuracy: the share of rows each batch got right as it was trained on, d2l's train
    accuracy, free of a second pass; else None)."""
    model.train()
    n = X.shape[0]
    perm = torch.randperm(n, generator=generator).to(X.device)
    total = torch.zeros((), dtype=torch.float64, device=X.device)
    scored = task is not None and task != "regression"
    correct = torch.zeros((), dtype=torch.int64, device=X.device)
    # Only an epoch longer than 2 s shows its batches (below the fit's bar of epochs).
    steps = tqdm(range(0, n, batch_size), desc=label, leave=False, disable=not bar,
                 unit="batch", delay=2.0)
    manual = getattr(model, "manual_backward", False)
    for start in steps:
        idx = perm[start : start + batch_size]
        # index_select: the same rows as X[idx], in about half the time of advanced indexing.
        xb, yb = X.index_select(0, idx), y.index_select(0, idx)
        if manual:
            if scored:  # its outputs before the step, as autograd's path scores them
                correct += n_correct(model(xb), yb, task)
            loss = manual(xb, yb)  # sets p.grad itself, no autograd (scratch variants)
        else:
            out = model(xb)
            loss = loss_fn(out, yb)
            optimizer.zero_grad()
            (loss + penalty() if penalty is not None else loss).backward()
            if scored:
                correct += n_correct(out.detach(), yb, task)
        optimizer.step()
        total += loss.detach().double() * idx.shape[0]
    return float(total) / n, (int(correct) / n if scored else None)


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    val: Split | None,
    *,
    test: Split | None = None,
    penalty: Callable[[], torch.Tensor] | None = None,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    task: str,
    label: str = "train",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    progress: Progress | None = None,
) -> list[dict[str, float]]:
    """Minibatch training; returns one record per epoch: train_loss (the mean minibatch loss,
    penalty excluded), train_accuracy (classifiers: the running accuracy over the epoch's
    batches, like train_loss), then val_* and test_* (loss, accuracy) measured at the epoch's
    end. The
    test curve is for plots only: nothing is chosen by it.

    `generator` (CPU) draws the batch order, so shuffling never depends on the device.
    `penalty` (a callable returning a scalar) is added to the loss that is differentiated.
    Raises DivergenceError at the first epoch whose training loss is not finite.
    Each epoch is reported to `progress` (see Progress); without one, the fit has its own
    under `label` and prints its line of results at the end.
    """
    X, y = train.X, train.y  # already on the model's device
    lr = optimizer.lr if hasattr(optimizer, "lr") else optimizer.param_groups[0]["lr"]
    history: list[dict[str, float]] = []
    with _reported(progress, label, epochs) as shown:
        for epoch in range(1, epochs + 1):
            train_loss, train_accuracy = train_epoch(
                model, loss_fn, optimizer, X, y, penalty=penalty, batch_size=batch_size,
                generator=generator, task=task, label=f"{label} epoch {epoch}/{epochs}",
                bar=shown.bar is not None)
            if not math.isfinite(train_loss):
                raise DivergenceError(epoch, train_loss, lr)
            record = _epoch_record(model, loss_fn, epoch, train_loss, train_accuracy,
                                   {"val": val, "test": test}, task)
            history.append(record)
            if on_epoch is not None:
                on_epoch(record)
            shown.epoch(record, epochs)
    return history


def _epoch_record(model: nn.Module, loss_fn, epoch: int, train_loss: float,
                  train_accuracy: float | None, splits: dict[str, Split | None],
                  task: str) -> dict[str, float]:
    """One history record: the epoch's training figures, then loss (and accuracy) on each
    non-empty split of `splits` ({prefix: split}) measured now."""
    record = {"epoch": epoch, "train_loss": train_loss}
    if train_accuracy is not None:
        record["train_accuracy"] = train_accuracy
    for prefix, split in splits.items():
        if split is not None and split.X.shape[0] > 0:
            for k, v in evaluate_split(model, loss_fn, split, task).items():
                record[f"{prefix}_{k}"] = v
    return record


@torch.no_grad()
def fit_lstsq(model: nn.Linear, train: Split) -> None:
    """Set a linear model's weights to the closed-form least-squares solution (float64)."""
    X, y = train.X.double(), train.y.double()  # [N, F], [N, 1]
    if model.bias is not None:
        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)
    # gelsd: the minimum-norm solution via SVD, exact even when the system is ill-conditioned.
    sol = torch.linalg.lstsq(X.cpu(), y.cpu(), driver="gelsd").solution  # [F (+1), 1]
    n_in = model.in_features
    model.weight.copy_(sol[:n_in].T.to(model.weight))
    if model.bias is not None:
        model.bias.copy_(sol[n_in].to(model.bias))


def _solve(spec: VariantSpec, model: nn.Module, splits: dict[str, Split], task: str,
           on_epoch, progress: Progress | None = None, label: str = "train"
           ) -> list[dict[str, float]]:
    """solver lstsq: the closed form, recorded (and reported) as one epoch."""
    loss_fn = build_loss(spec.loss)
    with _reported(progress, label, 1) as shown:
        fit_lstsq(model, splits["train"])
        record: dict[str, float] = {"epoch": 1}
        for split in ("train", "val", "test"):
            if splits[split].X.shape[0]:
                record.update({f"{split}_{k}": v for k, v in
                               evaluate_split(model, loss_fn, splits[split], task).items()})
        on_epoch(record)
        shown.epoch(record, 1)
    return [record]


def make_trainer(params: Params, spec: VariantSpec, name: str, data: Prepared, device,
                 progress: Progress | None = None):
    """(make_model, train_fn) for one variant's settings on `data`; each epoch train_fn runs is
    reported to `progress` when given (one bar for all of a variant's fits), else each fit
    reports on its own.

    make_model() builds a fresh model with the seeded initial weights (the same on every call);
    train_fn(model, splits, on_epoch) trains it in place and returns the per-epoch history.
    Initial weights and batch order derive from the seed and the dataset's identity (what the
    data is, not its key), not from the variant: variants of one dataset share them (common
    random numbers), so a scratch variant and its torch.nn twin, or two optimisers, differ only
    in what the variants say.
    """
    man = data.manifest
    device = device or torch.device("cpu")

    def make_model() -> nn.Module:
        return build_model(
            spec.model, man["n_features"], man["n_outputs"],
            torch_generator(params.seed, "init", man["identity"]),
        ).to(device)

    def train_fn(model, splits, on_epoch=lambda rec: None):
        # nn.Dropout can only draw from the global generator: seed it per variant (and fit).
        torch.manual_seed(derive_seed(params.seed, "dropout", name))
        splits = {k: Split(v.X.to(device), v.y.to(device)) for k, v in splits.items()}
        if spec.solver == "lstsq":
            return _solve(spec, model, splits, data.task, on_epoch, progress, f"train {name}")
        loss_fn = build_loss(spec.loss, class_weights(spec, splits["train"].y, man["n_outputs"]))
        return fit(
            model, loss_fn, build_optimizer(spec.optimizer, model), splits["train"],
            splits["val"], test=splits["test"], penalty=build_penalty(spec.penalty, model),
            epochs=spec.epochs, batch_size=spec.batch_size,
            generator=torch_generator(params.seed, "batches", man["identity"]),
            task=data.task, label=f"train {name}", on_epoch=on_epoch, progress=progress,
        )

    return make_model, train_fn
