"""What a task is judged by, and how a model's outputs become its answers: one table, one rule.

Every stage reads these from here: cross-validation, evaluation, repeated runs, both reports.
Importing this module loads no torch (the report stage uses the table).
"""

from __future__ import annotations

from typing import Any, NamedTuple


class Metric(NamedTuple):
    name: str  # the key suffix in metrics.json, histories and fold tables: test_<name>
    higher_is_better: bool


# The headline metric of each task: what cross-validation selects by, what repeated runs and
# paired comparisons are stated in, what the report's overview shows first.
PRIMARY: dict[str, Metric] = {
    "regression": Metric("rmse", False),
    "classification": Metric("accuracy", True),
    "binary": Metric("accuracy", True),
    "multilabel": Metric("exact_match", True),
}


def predicted_labels(out: Any, task: str) -> Any:
    """A classifier's answers from its outputs (torch tensors or NumPy arrays): the argmax class
    [N] for classification, 1 where the one logit is > 0 (p > 0.5) for binary [N], 1 where each
    label's logit is > 0 for multilabel [N, L]; int64."""
    if task == "classification":
        return out.argmax(1)
    flat = out.reshape(-1) if task == "binary" else out
    positive = flat > 0
    return positive.long() if hasattr(positive, "long") else positive.astype("int64")


def n_correct(out: Any, y: Any, task: str) -> Any:
    """How many rows a classifier gets right: the class, the binary label, or every label of the
    row (multilabel: exact match). A scalar of the inputs' kind (a tensor stays on its device,
    so a training loop can add it up without a sync per batch)."""
    right = predicted_labels(out, task) == y
    if task == "multilabel":
        right = right.all(1)
    return right.sum()


def choose(records: list[dict[str, Any]], metric: Metric) -> dict[str, Any]:
    """The selection rule: among configurations that trained (not diverged), the best mean
    validation score `val_<metric>_mean`; ties go to fewer parameters, then to the earlier
    configuration. Each record holds `val_<metric>_mean`, `n_parameters`, `config`."""
    alive = [r for r in records if not r.get("diverged")]
    if not alive:
        raise ValueError("no configuration trained: every one diverged")
    sign = -1.0 if metric.higher_is_better else 1.0
    key = f"val_{metric.name}_mean"
    return min(alive, key=lambda r: (sign * r[key], r["n_parameters"], r["config"]))
