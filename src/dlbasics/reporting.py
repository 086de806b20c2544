"""How results are shown: the comparison report, built from DVC outputs only (reproducible)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dlbasics.config import DATASET_TASKS, Params
from dlbasics.stats import describe_difference, mean_interval, paired_difference

# The columns of each task's table, in order, when a variant has them.
COLUMNS = {
    "regression": ("train_mse", "test_mse", "test/train", "test_rmse", "test_mae", "test_r2",
                   "cv_val_rmse_mean", "cv_val_rmse_std", "w_error", "b_error", "w_norm",
                   "n_near_zero"),
    "classification": ("train_accuracy", "test_accuracy", "test_f1_macro", "test_top_3_accuracy",
                       "test_log_loss"),
    "binary": ("train_accuracy", "test_accuracy", "test_f1", "test_roc_auc", "test_log_loss"),
    "multilabel": ("test_exact_match", "test_jaccard_samples", "test_f1_samples",
                   "test_hamming_loss", "test_top2_exact_match", "test_top2_hamming_loss"),
}
TITLES = {
    "regression": "Regression", "classification": "Classification",
    "binary": "Binary classification", "multilabel": "Multi-label classification",
}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def _settings(params: Params, name: str) -> str:
    spec = params.train[name]
    m = spec.model
    model = m.kind if not m.hidden else f"{m.kind} {'-'.join(map(str, m.hidden))} {m.activation}"
    if m.dropout and any(m.dropout):
        model += f" dropout {'/'.join(map(str, m.dropout))}"
    if spec.solver == "lstsq":
        return f"{model}, closed-form least squares"
    opt = f"{spec.optimizer.name} lr {spec.optimizer.lr}"
    if spec.optimizer.weight_decay:
        opt += f" wd {spec.optimizer.weight_decay}"
    if spec.penalty is not None:
        opt += f" +{spec.penalty.kind} {spec.penalty.strength}"
    return f"{model}, {opt}, batch {spec.batch_size}, {spec.epochs} epochs"


def variant_table(params: Params, metrics: dict[str, dict[str, float]], task: str) -> str:
    """A Markdown table of the variants of one task: settings, metrics, what each shows."""
    names = [n for n, s in params.train.items() if DATASET_TASKS[params.data[s.dataset].kind] == task]
    if not names:
        return ""
    metrics = {n: dict(metrics.get(n, {})) for n in names}
    for m in metrics.values():
        # The over-fitting gauge: how much worse the test error is than the training error.
        if m.get("train_mse", 0) > 0 and "test_mse" in m:
            m["test/train"] = m["test_mse"] / m["train_mse"]
    shown = [c for c in COLUMNS[task] if any(c in metrics.get(n, {}) for n in names)]
    head = ["variant", "dataset", "settings", *shown, "shows"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for n in names:
        spec = params.train[n]
        row = [f"`{n}`", spec.dataset, _settings(params, n),
               *(_fmt(metrics.get(n, {}).get(c, "")) for c in shown),
               params.report.notes.get(n, "")]
        lines.append("| " + " | ".join(row) + " |")
    return f"## {TITLES[task]}\n\n" + "\n".join(lines) + "\n"


def series_section(series: dict[str, list[dict[str, Any]]]) -> str:
    """One table per named series (for example the weight-decay lambda sweep)."""
    out = []
    for name, rows in series.items():
        cols = [c for c in ("train_mse", "test_mse", "w_norm", "n_near_zero", "test_accuracy")
                if any(c in r for r in rows)]
        lines = ["| x | variant | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
        for r in rows:
            lines.append(f"| {_fmt(r['x'])} | `{r['variant']}` | "
                         + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
        out.append(f"### Series `{name}`\n\n" + "\n".join(lines) + "\n")
    return ("## Series\n\n" + "\n".join(out)) if out else ""


def selection_section(rows: list[dict[str, Any]], metrics: dict[str, float]) -> str:
    """The K-fold grid search: every configuration's mean and spread, the chosen one, its test
    score (rows: reports/selection.json, one per configuration and fold)."""
    if not rows:
        return ""
    by_config: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append(r)
    metric = next((k.removeprefix("val_") for k in rows[0] if k.startswith("val_")), None)
    axes = [k for k in rows[0] if "." in k]
    lines = ["| config | " + " | ".join(axes) + f" | train {metric} | val {metric} (mean +/- sd) |",
             "|" + "---|" * (len(axes) + 3)]
    for cfg, folds in sorted(by_config.items()):
        head = f"| {cfg} | " + " | ".join(str(folds[0][a]) for a in axes)
        if folds[0].get("diverged"):
            lines.append(head + " | diverged | diverged |")
            continue
        tr = np.array([f[f"train_{metric}"] for f in folds])
        va = np.array([f[f"val_{metric}"] for f in folds])
        sd = va.std(ddof=1) if len(va) > 1 else 0.0
        lines.append(head + f" | {tr.mean():.4f} | {va.mean():.4f} +/- {sd:.4f} |")
    test = {k: v for k, v in metrics.items() if k.startswith("test_")}
    chosen = (f"Chosen by mean validation {metric} (ties to the smaller model), refitted on the "
              f"whole training split: test {metric} "
              f"{_fmt(test.get(f'test_{metric}', float('nan')))}.")
    return "## Model selection (K-fold grid search)\n\n" + "\n".join(lines) + "\n\n" + chosen + "\n"


def difference_units(metric: str) -> tuple[float, str, int, bool]:
    """(scale, unit, digits, higher is better) to state differences of `metric` in words."""
    if metric in ("rmse", "mse", "mae", "hamming_loss", "log_loss"):
        return 1.0, "", 4, False
    return 100.0, "points", 1, True


def repeat_rows(details: dict[str, Any]) -> list[dict[str, Any]]:
    """Per variant trained over several seeds: the test metric's mean, sd and 95% interval."""
    rows = []
    for name, d in details.items():
        rep = d.get("seeds")
        if not rep:
            continue
        metric = rep["metric"]
        res = mean_interval(rep["test"][metric])
        rows.append({"variant": name, "metric": f"test_{metric}", "seeds": rep["seeds"], **res})
    return rows


def comparison_sentences(params: Params, details: dict[str, Any]) -> list[str]:
    """One sentence per `report.compare` pair: the paired difference of their test metric over
    shared seeds, or of their validation metric over shared folds, with its 95% interval."""
    out = []
    for a, b in params.report.compare:
        da, db = details.get(a, {}), details.get(b, {})
        ra, rb = da.get("seeds"), db.get("seeds")
        fa, fb = da.get("folds"), db.get("folds")
        if ra and rb and ra["seeds"] == rb["seeds"] and ra["metric"] == rb["metric"]:
            metric, xa, xb = ra["metric"], ra["test"][ra["metric"]], rb["test"][rb["metric"]]
            over = f"test {metric} over seeds {', '.join(map(str, ra['seeds']))}"
        elif fa and fb and fa["k"] == fb["k"] and fa["metric"] == fb["metric"]:
            metric, xa, xb = fa["metric"], fa["val"], fb["val"]
            over = f"validation {metric} over the same {fa['k']} folds"
        else:
            continue  # not trained yet, or no longer paired
        scale, unit, digits, higher = difference_units(metric)
        res = paired_difference(xa, xb)
        out.append(f"{over}: " + describe_difference(a, b, res, unit=unit, scale=scale,
                                                     digits=digits, higher_is_better=higher))
    return out


def repeats_section(params: Params, details: dict[str, Any]) -> str:
    """Repeated runs (mean, sd, 95% interval over seeds) and the paired comparisons."""
    rows, sentences = repeat_rows(details), comparison_sentences(params, details)
    if not rows and not sentences:
        return ""
    parts = ["## Repeated runs and paired comparisons\n"]
    if rows:
        lines = ["| variant | metric | seeds | mean | sd | 95% interval |", "|---|---|---|---|---|---|"]
        for r in rows:
            lines.append(f"| `{r['variant']}` | {r['metric']} | {len(r['seeds'])} | "
                         f"{_fmt(r['mean'])} | {_fmt(r['sd'])} | "
                         f"{_fmt(r['ci_low'])} to {_fmt(r['ci_high'])} |")
        parts.append("\n".join(lines) + "\n")
    parts.extend(f"- {s}" for s in sentences)
    return "\n".join(parts) + "\n"


def figures_section(links: dict[str, str]) -> str:
    """Links to the image grids (file name -> path relative to the report)."""
    if not links:
        return ""
    items = [f"- [{name.removesuffix('.png')}]({path})" for name, path in links.items()]
    return "## Image grids\n\n" + "\n".join(items) + "\n"


def render_markdown(
    params: Params, metrics: dict[str, dict[str, float]], series: dict[str, list] | None = None,
    figure_links: dict[str, str] | None = None, selection: list[dict[str, Any]] | None = None,
    details: dict[str, Any] | None = None,
) -> str:
    """The whole report.md."""
    parts = [
        "# dlbasics report\n",
        f"Seed {params.seed}. Every number comes from the DVC outputs (`reports/metrics.json`, "
        "`reports/series.json`); per-epoch curves are in `reports/history/`.\n",
    ]
    for task in COLUMNS:
        table = variant_table(params, metrics, task)
        if table:
            parts.append(table)
    if series:
        parts.append(series_section(series))
    if selection:
        parts.append(selection_section(selection, metrics.get("select", {})))
    repeats = repeats_section(params, details or {})
    if repeats:
        parts.append(repeats)
    if figure_links:
        parts.append(figures_section(figure_links))
    return "\n".join(parts)
