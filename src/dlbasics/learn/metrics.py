"""The metrics a trained model is judged by, computed by scikit-learn.

Every metric function returns plain Python floats (or ints / lists) so that the
result can be written straight to a DVC metrics file or logged to MLflow.
Metrics that are mathematically undefined for the given data are left out and
flagged with a ``<name>_undefined: 1.0`` entry instead of being NaN or inf.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from sklearn import metrics as skm

from dlbasics.learn.tasks import predicted_labels

__all__ = [
    "regression_metrics",
    "classification_metrics",
    "binary_metrics",
    "classification_details",
    "multilabel_metrics",
    "multilabel_predict",
]


# --------------------------------------------------------------------------- #
# input helpers
# --------------------------------------------------------------------------- #
def _to_numpy(x: Any) -> np.ndarray:
    """Any array-like or tensor -> numpy array (tensors detached, moved to CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_vector(x: Any, name: str) -> np.ndarray:
    """[N] or [N, 1] -> [N]; a model head with one output gives [N, 1]."""
    a = _to_numpy(x)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise ValueError(f"{name} must have shape [N] or [N, 1], got {a.shape}")
    return a


def _as_labels(y: Any, n_classes: int) -> np.ndarray:
    """[N] integer class ids, checked to lie in [0, n_classes)."""
    raw = _as_vector(y, "labels")
    a = raw.astype(np.int64)
    if not np.array_equal(a, raw):
        raise ValueError("labels must be integer class ids")
    if a.size and (a.min() < 0 or a.max() >= n_classes):
        raise ValueError(f"labels must lie in [0, {n_classes}), got {a.min()}..{a.max()}")
    return a


def _as_indicator(x: Any, name: str) -> np.ndarray:
    """[N, L] 0/1 matrix; anything else would be silently mis-scored by sklearn."""
    a = _to_numpy(x)
    if a.ndim != 2:
        raise ValueError(f"{name} must have shape [N, L], got {a.shape}")
    if not np.isin(a, (0, 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return a.astype(np.int64)


def _finite(d: dict[str, float]) -> dict[str, float]:
    """Cast values to float and refuse NaN/inf, which would poison metric files."""
    out = {k: float(v) for k, v in d.items()}
    bad = [k for k, v in out.items() if not math.isfinite(v)]
    if bad:
        raise ValueError(f"non-finite metric values for {bad}; check the inputs")
    return out


# --------------------------------------------------------------------------- #
# regression
# --------------------------------------------------------------------------- #
def regression_metrics(y_true: Any, y_pred: Any, *, mape_eps: float = 1e-8) -> dict[str, float]:
    """MAE, MSE, RMSE, MAPE (a fraction, not %), R2 for y_true, y_pred of shape [N] or [N, 1]."""
    yt = _as_vector(y_true, "y_true").astype(np.float64)
    yp = _as_vector(y_pred, "y_pred").astype(np.float64)
    if yt.shape != yp.shape:
        raise ValueError(f"shape mismatch: y_true {yt.shape} vs y_pred {yp.shape}")
    if yt.size < 2:
        # R2 needs a variance of y_true, which one sample does not have.
        raise ValueError("regression_metrics needs at least two samples")
    out = {
        "mae": skm.mean_absolute_error(yt, yp),
        "mse": skm.mean_squared_error(yt, yp),
        "rmse": skm.root_mean_squared_error(yt, yp),
        "r2": skm.r2_score(yt, yp),
    }
    # sklearn's MAPE divides by max(|y|, machine eps), so a zero target yields a
    # huge but finite number that looks like a real score; flag it instead.
    scale = max(1.0, float(np.abs(yt).max()))
    if np.any(np.abs(yt) <= mape_eps * scale):
        out["mape_undefined"] = 1.0
    else:
        out["mape"] = skm.mean_absolute_percentage_error(yt, yp)
        out["mape_undefined"] = 0.0
    return _finite(out)


# --------------------------------------------------------------------------- #
# single-label classification
# --------------------------------------------------------------------------- #
def _softmax_np(scores: Any) -> np.ndarray:
    """[N, C] logits -> [N, C] float64 probabilities (max-shifted inside torch)."""
    s = torch.as_tensor(_to_numpy(scores), dtype=torch.float64)
    return torch.softmax(s, dim=-1).numpy()


def classification_metrics(
    y_true: Any, scores: Any, *, n_classes: int, top_k: Iterable[int] = (1, 3)
) -> dict[str, float]:
    """Accuracy, macro/weighted P/R/F1, log-loss and top-k accuracy for y_true [N], logits [N, C]."""
    if n_classes < 2:
        raise ValueError("n_classes must be >= 2")
    yt = _as_labels(y_true, n_classes)
    probs = _softmax_np(scores)
    if probs.ndim != 2 or probs.shape != (yt.size, n_classes):
        raise ValueError(f"scores must have shape [{yt.size}, {n_classes}], got {probs.shape}")
    yp = predicted_labels(probs, "classification")
    # Fixed label set: a class absent from a small test split must not change
    # the averaging denominator or crash sklearn.
    labels = list(range(n_classes))
    out: dict[str, float] = {"accuracy": skm.accuracy_score(yt, yp)}
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            yt, yp, labels=labels, average=avg, zero_division=0
        )
        out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"] = p, r, f
    out["log_loss"] = skm.log_loss(yt, probs, labels=labels)
    for k in sorted(set(int(k) for k in top_k)):
        if k < 1 or k > n_classes:
            continue  # k > C is meaningless; skipped rather than reported as 1.0
        if k == n_classes:
            out[f"top_{k}_accuracy"] = 1.0  # every class is in the top C
            continue
        # sklearn insists on 1-D scores when there are only two classes.
        s = probs[:, 1] if n_classes == 2 else probs
        out[f"top_{k}_accuracy"] = skm.top_k_accuracy_score(yt, s, k=k, labels=labels)
    return _finite(out)


def binary_metrics(y_true: Any, logits: Any) -> dict[str, float]:
    """Accuracy, P, R, F1, log-loss, ROC-AUC for y_true [N] in {0,1} and one logit per sample [N] or [N, 1]."""
    yt = _as_labels(y_true, 2)
    z = torch.as_tensor(_as_vector(logits, "logits"), dtype=torch.float64)
    if z.shape[0] != yt.size:
        raise ValueError(f"{yt.size} labels but {z.shape[0]} logits")
    prob = torch.sigmoid(z).numpy()
    # Decided on the logit (tasks' one rule) so that saturation cannot flip it.
    yp = predicted_labels(z, "binary").numpy()
    p, r, f, _ = skm.precision_recall_fscore_support(
        yt, yp, average="binary", pos_label=1, zero_division=0
    )
    out = {
        "accuracy": skm.accuracy_score(yt, yp),
        "precision": p,
        "recall": r,
        "f1": f,
        "log_loss": skm.log_loss(yt, prob, labels=[0, 1]),
    }
    # ROC-AUC ranks positives against negatives; with one class there is nothing to rank.
    if np.unique(yt).size < 2:
        out["roc_auc_undefined"] = 1.0
    else:
        out["roc_auc"] = skm.roc_auc_score(yt, prob)
        out["roc_auc_undefined"] = 0.0
    return _finite(out)


def classification_details(y_true: Any, y_pred: Any, *, class_names: Sequence[str]) -> dict:
    """Per-class P/R/F1/support, macro/weighted averages and the confusion matrix for labels [N]."""
    n = len(class_names)
    yt = _as_labels(y_true, n)
    yp = _as_labels(y_pred, n)
    labels = list(range(n))
    rep = skm.classification_report(
        yt, yp, labels=labels, target_names=list(class_names), output_dict=True, zero_division=0
    )

    def row(r: dict) -> dict:
        return {
            "precision": float(r["precision"]),
            "recall": float(r["recall"]),
            "f1": float(r["f1-score"]),
            "support": int(r["support"]),
        }

    cm = skm.confusion_matrix(yt, yp, labels=labels)
    return {
        "class_names": [str(c) for c in class_names],
        "per_class": {str(c): row(rep[str(c)]) for c in class_names},
        "accuracy": float(skm.accuracy_score(yt, yp)),
        "macro_avg": row(rep["macro avg"]),
        "weighted_avg": row(rep["weighted avg"]),
        # rows = true class, columns = predicted class (sklearn's convention)
        "confusion_matrix": [[int(v) for v in r] for r in cm],
    }


# --------------------------------------------------------------------------- #
# multi-label classification
# --------------------------------------------------------------------------- #
def multilabel_metrics(y_true: Any, y_pred: Any) -> dict[str, float]:
    """Exact match, 0-1 loss, sample-wise Jaccard/P/R/F1 and Hamming loss for 0/1 matrices [N, L]."""
    yt = _as_indicator(y_true, "y_true")
    yp = _as_indicator(y_pred, "y_pred")
    if yt.shape != yp.shape:
        raise ValueError(f"shape mismatch: y_true {yt.shape} vs y_pred {yp.shape}")
    kw = {"average": "samples", "zero_division": 0}
    return _finite(
        {
            "exact_match": skm.accuracy_score(yt, yp),
            "zero_one_loss": skm.zero_one_loss(yt, yp),
            # |true & pred| / |true | pred| per sample: the "accuracy" of multi-label papers.
            "jaccard_samples": skm.jaccard_score(yt, yp, **kw),
            "precision_samples": skm.precision_score(yt, yp, **kw),
            "recall_samples": skm.recall_score(yt, yp, **kw),
            "f1_samples": skm.f1_score(yt, yp, **kw),
            "hamming_loss": skm.hamming_loss(yt, yp),
        }
    )


def multilabel_predict(
    logits: Any, *, threshold: float | None = None, top_k: int | None = None
) -> np.ndarray:
    """[N, L] logits -> [N, L] int64 0/1 predictions by sigmoid(logit) >= threshold or the top_k logits per row."""
    if (threshold is None) == (top_k is None):
        raise ValueError("give exactly one of threshold or top_k")
    z = torch.as_tensor(_to_numpy(logits), dtype=torch.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape [N, L], got {tuple(z.shape)}")
    if threshold is not None:
        if not 0.0 < threshold < 1.0:
            raise ValueError("threshold is a probability and must lie in (0, 1)")
        return (torch.sigmoid(z) >= threshold).numpy().astype(np.int64)
    if not 1 <= top_k <= z.shape[1]:
        raise ValueError(f"top_k must lie in [1, {z.shape[1]}], got {top_k}")
    idx = torch.topk(z, k=top_k, dim=1).indices
    pred = torch.zeros_like(z, dtype=torch.int64).scatter_(1, idx, 1)
    return pred.numpy()
