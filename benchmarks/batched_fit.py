"""A whole batched fit of G configurations (dlbasics.learn.batched.BatchedTrainer for `epochs`), as
the benchmarks and the tests compare it with G separate training.fit runs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from dlbasics.config.variants import ModelSpec, OptimizerSpec
from dlbasics.learn.batched import BatchedTrainer


@dataclass(frozen=True)
class BatchedFit:
    """The outcome of one configuration of a batched fit."""

    # Loadable into build_model(spec, n_in, n_out); None when the configuration diverged.
    state_dict: dict[str, torch.Tensor] | None
    # Mean minibatch loss of every completed epoch (as training.fit's train_loss).
    train_loss: list[float]
    # First epoch whose training loss was not finite (training.fit raises there), else None.
    diverged_epoch: int | None = None
    diverged_loss: float | None = None


def fit_batched(
    spec: ModelSpec,
    n_in: int,
    n_out: int,
    optimizers: Sequence[OptimizerSpec],
    init_states: Sequence[dict[str, torch.Tensor]],
    X: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str,
    epochs: int,
    batch_size: int,
    generator: torch.Generator,
) -> list[BatchedFit]:
    """Train G = len(optimizers) configurations of one architecture together for `epochs`
    (see BatchedTrainer). A configuration whose epoch loss is not finite is recorded
    (diverged_epoch) and dropped; the others keep training."""
    trainer = BatchedTrainer(spec, n_in, n_out, optimizers, init_states, X, y, loss=loss,
                             batch_size=batch_size, generator=generator)
    G = len(optimizers)
    losses: list[list[float]] = [[] for _ in range(G)]
    diverged: dict[int, tuple[int, float]] = {}
    for epoch in range(1, epochs + 1):
        epoch_loss = trainer.epoch()
        good = []
        for k, v in enumerate(epoch_loss):
            if math.isfinite(v):
                losses[trainer.alive[k]].append(v)
                good.append(k)
            else:
                diverged[trainer.alive[k]] = (epoch, v)
        trainer.keep(good)
        if not trainer.alive:
            break
    states = {g: trainer.state_dict(k) for k, g in enumerate(trainer.alive)}
    return [
        BatchedFit(states.get(g), losses[g], *diverged.get(g, (None, None)))
        for g in range(G)
    ]
