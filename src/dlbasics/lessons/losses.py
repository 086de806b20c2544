"""Lessons on file 001's loss functions: BCELoss after an explicit Sigmoid against
BCEWithLogitsLoss, and the class-weighted cross-entropy against its formula by hand.

Each lesson computes with torch.nn's losses and sets them against the source's formula
written out with tensor arithmetic; the tests repeat the checks from the outside.
"""

from __future__ import annotations

import torch
from torch import nn

from dlbasics.lessons.base import LessonResult, Table
from dlbasics.rng import torch_generator

SOURCE = "file 001"


def _explicit_and_fused(z: torch.Tensor, t: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-element BCE of logits z [N] against targets t [N], both ways, and d loss / d z:
    (explicit Sigmoid + BCELoss, BCEWithLogitsLoss, their gradients), float32."""
    z1 = z.clone().requires_grad_(True)
    explicit = nn.BCELoss(reduction="none")(nn.Sigmoid()(z1), t)
    explicit.sum().backward()
    z2 = z.clone().requires_grad_(True)
    fused = nn.BCEWithLogitsLoss(reduction="none")(z2, t)
    fused.sum().backward()
    return explicit.detach(), fused.detach(), z1.grad, z2.grad


def bce_saturation(*, seed: int, n: int, logit_sd: float, scan_max: float,
                   scan_step: float) -> LessonResult:
    """Explicit Sigmoid + BCELoss against BCEWithLogitsLoss: on n logits ~ N(0, logit_sd^2)
    with random 0/1 targets, then on logits 0, scan_step, ..., scan_max whose target is the
    other class (the confidently wrong case), where the explicit form saturates."""
    g = torch_generator(seed, "lessons", "bce_saturation")
    z = torch.randn(n, generator=g) * logit_sd
    t = torch.randint(0, 2, (n,), generator=g).float()
    e, f, ge, gf = _explicit_and_fused(z, t)
    ordinary_loss = float((e - f).abs().max())
    ordinary_grad = float((ge - gf).abs().max())

    scan = torch.arange(0.0, scan_max + scan_step / 2, scan_step)  # [S] float32
    rows, first = [], {}
    for side, logits, target in (("z > 0, target 0", scan, torch.zeros_like(scan)),
                                 ("z < 0, target 1", -scan, torch.ones_like(scan))):
        e, f, ge, gf = _explicit_and_fused(logits, target)
        wrong = ((e - f).abs() > 1e-3 * f.abs().clamp(min=1)) | ~torch.isfinite(e)
        # A gradient under half the true one: learning from this row has (all but) stopped.
        weak = (ge.abs() < 0.5 * gf.abs()) & (scan > 0)
        bad_loss = float(scan[wrong][0]) if wrong.any() else None
        no_grad = float(scan[weak][0]) if weak.any() else None
        first[side] = (bad_loss, no_grad)
        for k in range(len(scan)):
            if float(scan[k]) in (5.0, 10.0, 16.0, 17.0, 20.0, 50.0, 100.0):
                rows.append([side, float(logits[k]), float(e[k]), float(f[k]), float(ge[k]),
                             float(gf[k])])
    pos_loss, pos_grad = first["z > 0, target 0"]
    neg_loss, neg_grad = first["z < 0, target 1"]
    equal = ordinary_loss < 1e-5 and ordinary_grad < 1e-6
    broke = pos_loss is not None
    largest = float(scan[-1])

    def where(x):
        return f"|z| = {x:g}" if x is not None else f"nowhere up to |z| = {largest:g}"

    return LessonResult(
        title="BCELoss after an explicit Sigmoid against BCEWithLogitsLoss",
        source=f"{SOURCE}, loss functions",
        claim=("nn.BCELoss computes the binary cross-entropy of probabilities, so it is used after "
               "a Sigmoid layer; together they are the binary cross-entropy of the logits "
               "(what BCEWithLogitsLoss computes in one step)."),
        measured=(f"On {n} logits ~ N(0, {logit_sd:g}^2) the two agree to {ordinary_loss:.2g} in "
                  f"the loss and {ordinary_grad:.2g} in d loss / d z. Not for large logits. With "
                  f"z > 0 and target 0 the explicit loss is off by over 0.1% from "
                  f"{where(pos_loss)} (1 - sigmoid(z) loses its float32 digits), and from "
                  f"{where(pos_grad)} the sigmoid rounds to 1: BCELoss clamps log 0 to -100, a "
                  f"loss of 100 whatever z, with a gradient of 0. With z < 0 and target 1 the "
                  f"loss is right below {where(neg_loss)}, but the gradient falls under half the "
                  f"true one from {where(neg_grad)}."),
        holds=bool(equal and not broke),
        values={"ordinary_max_loss_diff": ordinary_loss, "ordinary_max_grad_diff": ordinary_grad,
                "positive_loss_breaks_at": pos_loss if pos_loss is not None else -1.0,
                "positive_grad_lost_from": pos_grad if pos_grad is not None else -1.0,
                "negative_loss_breaks_at": neg_loss if neg_loss is not None else -1.0,
                "negative_grad_lost_from": neg_grad if neg_grad is not None else -1.0},
        tables=[Table("Confidently wrong logits: loss and d loss / d z",
                      ["side", "z", "Sigmoid + BCELoss", "BCEWithLogitsLoss", "grad (explicit)",
                       "grad (with logits)"], rows)],
    )


def weighted_cross_entropy(*, seed: int, n: int, weights: list[float]) -> LessonResult:
    """CrossEntropyLoss(weight=w) and NLLLoss(weight=w) on log_softmax against file 001's
    per-sample formula w[y] * (-x[y] + log sum_j exp x[j]), on n random rows of K logits."""
    g = torch_generator(seed, "lessons", "weighted_cross_entropy")
    k = len(weights)
    x = torch.randn(n, k, generator=g, dtype=torch.float64) * 2  # [N, K] logits
    y = torch.randint(0, k, (n,), generator=g)  # [N]
    w = torch.tensor(weights, dtype=torch.float64)  # [K]
    # The formula by hand: per row, weight of its class times (-x[class] + log sum exp x).
    by_hand = w[y] * (-x[torch.arange(n), y] + torch.log(torch.exp(x).sum(1)))  # [N]
    ce_rows = nn.CrossEntropyLoss(weight=w, reduction="none")(x, y)
    nll_rows = nn.NLLLoss(weight=w, reduction="none")(torch.log_softmax(x, 1), y)
    ce_mean = float(nn.CrossEntropyLoss(weight=w)(x, y))
    nll_mean = float(nn.NLLLoss(weight=w)(torch.log_softmax(x, 1), y))
    over_weights = float(by_hand.sum() / w[y].sum())  # torch's mean: divided by sum of w[y]
    over_n = float(by_hand.mean())  # a plain mean over the n rows
    unweighted_nll = float(nn.NLLLoss()(torch.log_softmax(x, 1), y))
    unweighted_ce = float(nn.CrossEntropyLoss()(x, y))
    row_diff = float(max((ce_rows - by_hand).abs().max(), (nll_rows - by_hand).abs().max()))
    mean_diff = abs(ce_mean - over_weights)
    holds = row_diff < 1e-12 and mean_diff < 1e-12 and abs(nll_mean - ce_mean) < 1e-12
    return LessonResult(
        title="Class weights of CrossEntropyLoss and NLLLoss against the formula by hand",
        source=f"{SOURCE}, loss functions",
        claim=("With weight=, NLLLoss's loss of a row is -weights[class] x[class], and "
               "CrossEntropyLoss (log_softmax, then NLLLoss) becomes weights[class] * "
               "(-x[class] + log sum_j exp x[j])."),
        measured=(f"On {n} rows of {k} logits with weights {weights}, both losses equal the "
                  f"formula row by row to {row_diff:.2g} (float64), and NLLLoss on log_softmax "
                  f"equals CrossEntropyLoss (unweighted: {unweighted_nll:.6f} both). What the "
                  f"formula leaves out: the default mean divides by the sum of the rows' weights, "
                  f"not by n ({ce_mean:.6f} against {over_n:.6f} for a plain mean)."),
        holds=bool(holds and abs(unweighted_nll - unweighted_ce) < 1e-12),
        values={"max_row_diff": row_diff, "weighted_mean": ce_mean,
                "mean_over_weights_by_hand": over_weights, "plain_mean_by_hand": over_n,
                "nll_mean": nll_mean, "unweighted": unweighted_ce},
        tables=[Table("The weighted mean, three ways",
                      ["CrossEntropyLoss(weight=w)", "sum w[y] l / sum w[y] (by hand)",
                       "sum w[y] l / n (by hand)"], [[ce_mean, over_weights, over_n]])],
    )
