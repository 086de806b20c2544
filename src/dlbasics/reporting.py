"""How results are shown: the comparison report, built from DVC outputs only (reproducible)."""

from __future__ import annotations

from typing import Any

from dlbasics.config import Params

# Metrics shown first, in this order, when a variant has them.
KEY_METRICS = (
    "test_accuracy", "test_f1_macro", "test_top_3_accuracy", "test_log_loss",
    "test_mse", "test_rmse", "test_mae", "test_r2", "w_error", "b_error",
)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.3e}"
    return str(v)


def comparison_table(params: Params, metrics: dict[str, dict[str, float]]) -> str:
    """A Markdown table: one row per variant, its settings and its test metrics."""
    shown = [m for m in KEY_METRICS if any(m in row for row in metrics.values())]
    head = ["variant", "dataset", "model", "optimizer", "lr", "batch", "epochs", *shown]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, spec in params.train.items():
        m = spec.model
        model = m.kind if m.kind == "linear" else f"mlp {'-'.join(map(str, m.hidden))} {m.activation}"
        row = [
            f"`{name}`", spec.dataset, model, spec.optimizer.name, _fmt(spec.optimizer.lr),
            str(spec.batch_size), str(spec.epochs),
            *(_fmt(metrics.get(name, {}).get(k, "")) for k in shown),
        ]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def render_markdown(params: Params, metrics: dict[str, dict[str, float]]) -> str:
    """The whole report.md."""
    return (
        "# dlbasics report\n\n"
        f"Seed {params.seed}. Test metrics of every variant, from `reports/metrics.json`; "
        "training curves are in `reports/history/`.\n\n"
        "## Variants\n\n" + comparison_table(params, metrics)
    )
