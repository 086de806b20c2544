"""The 48-fit grid (16 configurations x 3 folds) batched against sequential, and the size rule's
sweep: where batching stops paying."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from benchmarks.batched_fit import fit_batched
from benchmarks.shapes import BATCH, CLASSES, DIGITS_F, FEATURES
from benchmarks.timing import alternated, quiet
from dlbasics.config.variants import ModelSpec, OptimizerSpec
from dlbasics.data.prepared import Split
from dlbasics.learn.batched import batched_is_faster, n_weights
from dlbasics.learn.models import build_model
from dlbasics.learn.training import build_loss, build_optimizer, fit

# The size rule's sweep: (architecture, inputs), from below to above BATCHED_MAX_WEIGHTS.
SIZE_RULE_MODELS = [
    (ModelSpec(kind="linear"), FEATURES),
    (ModelSpec(kind="mlp", hidden=[256]), DIGITS_F),
    *((ModelSpec(kind="mlp", hidden=[h]), FEATURES) for h in (32, 64, 128, 256)),
]


def grid_configs() -> list[OptimizerSpec]:
    """16 configurations: lr x weight decay x momentum.

    The learning rates stay below SGD's stability limit for 784 unstandardised [0, 1) inputs
    (softmax curvature up to ~100): past it a fit is chaotic, float32 rounding grows to O(1)
    within an epoch (float32 against float64 training.fit differ as much), and the batched and
    sequential weights can no longer be compared."""
    return [OptimizerSpec(lr=lr, weight_decay=wd, momentum=m)
            for lr in (0.001, 0.003, 0.01, 0.02) for wd in (0.0, 1e-4) for m in (0.0, 0.9)]


def bench_grid(spec: ModelSpec, n: int, n_in: int, batch: int, epochs: int, seed: int,
               folds: int = 3, configs: list[OptimizerSpec] | None = None,
               repeats: int = 1) -> dict[str, Any]:
    """The grid (configurations x folds) trained fit by fit with training.fit, then batched per
    fold with fit_batched; the same initial weights and batch order. Seconds and max |diff|."""
    configs = configs or grid_configs()
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_in, generator=g)  # pixel-like intensities in [0, 1)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    fold_of = torch.arange(n) % folds
    train_rows = [torch.nonzero(fold_of != k).squeeze(1) for k in range(folds)]
    loss_fn = build_loss("cross_entropy")
    inits = [build_model(spec, n_in, CLASSES, torch.Generator().manual_seed(seed + c)).state_dict()
             for c in range(len(configs))]
    sequential: list[dict[str, torch.Tensor]] = []
    batched: list[dict[str, torch.Tensor]] = []

    def run_sequential():
        sequential.clear()
        for k, rows in enumerate(train_rows):
            for c, opt_spec in enumerate(configs):
                model = build_model(spec, n_in, CLASSES, torch.Generator())
                model.load_state_dict(inits[c])
                with quiet():
                    fit(model, loss_fn, build_optimizer(opt_spec, model), Split(X[rows], y[rows]),
                        None, epochs=epochs, batch_size=batch,
                        generator=torch.Generator().manual_seed(seed + 100 + k),
                        task="classification")
                sequential.append(model.state_dict())

    def run_batched():
        batched.clear()
        for k, rows in enumerate(train_rows):
            fits = fit_batched(spec, n_in, CLASSES, configs, inits, X[rows], y[rows],
                               loss="cross_entropy", epochs=epochs, batch_size=batch,
                               generator=torch.Generator().manual_seed(seed + 100 + k))
            batched.extend(f.state_dict for f in fits)

    both = alternated({"sequential": run_sequential, "batched": run_batched}, repeats)
    ratios = [a / b for a, b in zip(both["sequential"], both["batched"])]
    # Per fit: max |batched - sequential| over its weights, and relative to its largest weight.
    diffs = [max(float((a[k] - b[k]).abs().max()) for k in a) for a, b in zip(sequential, batched)]
    scale = [max(float(a[k].abs().max()) for k in a) for a in sequential]
    return {"fits": len(configs) * folds, "rows": n, "batch_size": batch, "epochs": epochs,
            "sequential_s": statistics.median(both["sequential"]),
            "batched_s": statistics.median(both["batched"]), "speedup": statistics.median(ratios),
            "speedup_min": min(ratios), "speedup_max": max(ratios), "repeats": repeats,
            "max_abs_diff": max(diffs),
            "max_rel_diff": max(d / s for d, s in zip(diffs, scale)),
            "fits_within_1e-6": sum(d <= 1e-6 for d in diffs),
            "rule_says_batched": batched_is_faster(spec, n_in, CLASSES, len(configs))}


def bench_size_rule(seed: int, steps: int) -> list[dict[str, Any]]:
    """Batched against sequential for each of SIZE_RULE_MODELS, `steps` batches of 256 per fit,
    16 configurations x 3 folds, one epoch: where batching stops paying."""
    rows = []
    for spec, n_in in SIZE_RULE_MODELS:
        # 3 folds of steps * 256 training rows each.
        r = bench_grid(spec, steps * BATCH * 3 // 2, n_in, BATCH, 1, seed)
        widths = [n_in, *spec.hidden, CLASSES]
        r.update(model=f"{spec.kind} {'-'.join(map(str, widths))}",
                 weights=n_weights(spec, n_in, CLASSES))
        rows.append(r)
    return rows
