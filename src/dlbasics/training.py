"""How a model learns: losses, optimisers and the in-memory minibatch loop.

The loop keeps the whole split resident as tensors and slices each batch out of one
`torch.randperm` per epoch: no per-sample Dataset or DataLoader in the hot path.
"""

from __future__ import annotations

import math
import sys
from typing import Callable

import torch
from torch import nn
from tqdm import tqdm

from dlbasics.config import OptimizerSpec
from dlbasics.data import Split


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, loss: float, lr: float):
        super().__init__(
            f"training diverged at epoch {epoch}: loss is {loss}; "
            f"lower the learning rate (now {lr}) or standardise the inputs"
        )
        self.epoch, self.loss, self.lr = epoch, loss, lr


LOSSES: dict[str, Callable[[], nn.Module]] = {
    "mse": nn.MSELoss,
    "cross_entropy": nn.CrossEntropyLoss,
}


def build_loss(name: str) -> nn.Module:
    return LOSSES[name]()


def build_optimizer(spec: OptimizerSpec, model: nn.Module) -> torch.optim.Optimizer:
    """torch.optim optimiser; weight decay applies to weights only, never to biases."""
    decay = [p for p in model.parameters() if p.ndim > 1]
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
    if task == "classification":
        metrics["accuracy"] = float((out.argmax(dim=1) == split.y).float().mean())
    return metrics


def fit(
    model: nn.Module,
    loss_fn: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Split,
    val: Split | None,
    *,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
    task: str,
    label: str = "train",
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> list[dict[str, float]]:
    """Minibatch training; returns one record per epoch (train_loss, val_loss, val_accuracy).

    `generator` (CPU) draws the batch order, so shuffling never depends on the device.
    Raises DivergenceError at the first epoch whose training loss is not finite.
    """
    X, y = train.X, train.y  # already on the model's device
    n = X.shape[0]
    lr = optimizer.param_groups[0]["lr"]
    history: list[dict[str, float]] = []
    tty = sys.stderr.isatty()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=generator).to(X.device)
        total = torch.zeros((), dtype=torch.float64, device=X.device)
        bar = tqdm(
            range(0, n, batch_size), desc=f"{label} epoch {epoch}/{epochs}", leave=False,
            disable=not tty, unit="batch",
        )
        for start in bar:
            idx = perm[start : start + batch_size]
            xb, yb = X[idx], y[idx]
            manual = getattr(model, "manual_backward", False)
            if manual:
                loss = manual(xb, yb)  # sets p.grad itself, no autograd (scratch variants)
            else:
                loss = loss_fn(model(xb), yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
            optimizer.step()
            total += loss.detach().double() * idx.shape[0]
        train_loss = float(total) / n
        if not math.isfinite(train_loss):
            raise DivergenceError(epoch, train_loss, lr)
        record = {"epoch": epoch, "train_loss": train_loss}
        if val is not None:
            for k, v in evaluate_split(model, loss_fn, val, task).items():
                record[f"val_{k}"] = v
        history.append(record)
        if on_epoch is not None:
            on_epoch(record)
        if not tty:
            shown = " ".join(f"{k}={v:.6g}" for k, v in record.items() if k != "epoch")
            print(f"{label} epoch {epoch}/{epochs} {shown}", flush=True)
    return history
