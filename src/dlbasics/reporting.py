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
        cols = [c for c in ("train_mse", "test_mse", "train_r2", "test_r2", "w_norm",
                            "n_near_zero", "test_accuracy")
                if any(c in r for r in rows)]
        lines = ["| x | variant | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
        for r in rows:
            lines.append(f"| {_fmt(r['x'])} | `{r['variant']}` | "
                         + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
        out.append(f"### Series `{name}`\n\n" + "\n".join(lines) + "\n")
    return ("## Series\n\n" + "\n".join(out)) if out else ""


def search_sentences(name: str, search: dict[str, Any], metrics: dict[str, dict[str, float]],
                     details: dict[str, Any]) -> list[str]:
    """What one named search found, in words (report.md and report.html share them).

    search: {"info": data/select/NAME/model.json, "rows": reports/selection/NAME.json}."""
    info = search["info"]
    chosen = info["chosen"]
    metric = next(k.removeprefix("val_").removesuffix("_mean") for k in chosen
                  if k.startswith("val_") and k.endswith("_mean"))
    scale, unit, digits, higher = difference_units(metric)
    k = len(chosen["folds"])
    mean, sd = chosen[f"val_{metric}_mean"], chosen[f"val_{metric}_std"]
    own = metrics.get(f"select@{name}", {}).get(f"test_{metric}")
    epochs = (f"{chosen['epochs_chosen']} epochs chosen by validation, of at most "
              f"{chosen['epochs_max']}" if info.get("patience")
              else f"{chosen['epochs_chosen']} epochs, fixed by the search")
    out = []
    if info.get("description"):
        out.append(info["description"].strip())
    paths = ", ".join(f"{n} {p}" for p, n in sorted(info.get("paths", {}).items()))
    out.append(f"Chosen from {len({r['config'] for r in search['rows']})} configurations "
               f"({paths}): configuration {chosen['config']}, {info['chosen_words']} "
               f"({epochs}).")
    rows = (f" of a {info['max_rows']}-row subset" if info.get("max_rows") else "")
    out.append(f"Mean validation {metric} over {k} folds{rows} {mean:.4f} +/- {sd:.4f} (sd); "
               f"refitted on the whole training split, test {metric} {_fmt(own)}.")
    base = info.get("base")
    theirs = metrics.get(base, {}).get(f"test_{metric}") if base else None
    if own is not None and theirs is not None:
        diff = (own - theirs) if higher else (theirs - own)
        n_test = _n_test(details.get(f"select@{name}"))
        samples = (f" ({round(abs(own - theirs) * n_test)} of {n_test} test samples)"
                   if n_test and metric == "accuracy" else "")
        if abs(diff) * scale < 0.5 * 10 ** -digits:
            verdict = "the same as"
        else:
            verdict = (f"{abs(diff) * scale:.{digits}f}{' ' + unit if unit else ''} "
                       f"{'better' if diff > 0 else 'worse'} than")
        line = (f"Its test {metric} is {verdict} the hand-set base variant `{base}` "
                f"({_fmt(theirs)}){samples}.")
        tr_own = metrics.get(f"select@{name}", {}).get(f"train_{metric}")
        tr_base = metrics.get(base, {}).get(f"train_{metric}")
        if diff < 0 and tr_own is not None and tr_base is not None and (
                (tr_own < tr_base) == higher):
            line += (f" It also fits its training rows worse ({metric} {_fmt(tr_own)} against "
                     f"{_fmt(tr_base)}): at these settings the configurations are undertrained.")
        out.append(line)
    return out


def _n_test(details: dict[str, Any] | None) -> int | None:
    cm = (details or {}).get("confusion_matrix")
    return int(sum(sum(row) for row in cm)) if cm else None


def selection_section(searches: dict[str, dict[str, Any]], metrics: dict[str, dict[str, float]],
                      details: dict[str, Any]) -> str:
    """Every named search: what it chose, in words, then every configuration's mean and spread
    (rows: reports/selection/NAME.json, one per configuration and fold)."""
    parts = []
    for name, search in searches.items():
        rows = search["rows"]
        by_config: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            by_config.setdefault(r["config"], []).append(r)
        metric = next((k.removeprefix("val_") for k in rows[0] if k.startswith("val_")), None)
        axes = [k for k in rows[0] if "." in k]
        lines = ["| config | " + " | ".join(axes) + f" | epochs | train {metric} | "
                 f"val {metric} (mean +/- sd) |", "|" + "---|" * (len(axes) + 4)]
        for cfg, folds in sorted(by_config.items()):
            head = f"| {cfg} | " + " | ".join(str(folds[0][a]) for a in axes)
            if folds[0].get("diverged"):
                lines.append(head + " | diverged | diverged | diverged |")
                continue
            tr = np.array([f[f"train_{metric}"] for f in folds])
            va = np.array([f[f"val_{metric}"] for f in folds])
            sd = va.std(ddof=1) if len(va) > 1 else 0.0
            lines.append(head + f" | {folds[0].get('epochs_chosen')} | {tr.mean():.4f} | "
                         f"{va.mean():.4f} +/- {sd:.4f} |")
        words = " ".join(search_sentences(name, search, metrics, details))
        parts.append(f"### `select@{name}`\n\n{words}\n\n" + "\n".join(lines) + "\n")
    if not parts:
        return ""
    return ("## Model selection (K-fold searches)\n\nEach configuration is chosen by its mean "
            "validation score over the same folds (ties to the smaller model), then refitted on "
            "the whole training split; the test split is scored once.\n\n" + "\n".join(parts))


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


def _cell(text: Any) -> str:
    """Text for a Markdown table cell: a literal | (as in |x|) must not end the cell."""
    return str(text).replace("|", "\\|")


def lessons_section(lessons: list[dict[str, Any]], links: dict[str, str] | None = None) -> str:
    """The lessons (reports/lessons/lessons.json): each one's claim, what was measured, whether
    the claim held as stated, its tables and links to its figures (name -> relative path)."""
    if not lessons:
        return ""
    links = links or {}
    held = sum(bool(e["holds"]) for e in lessons)
    out = [f"## Lessons\n\n{len(lessons)} lessons computed by the `lessons` stage; {held} hold "
           "as their source states them. Wall-clock figures (the vectorisation speed-up) are "
           "logged to the MLflow run `lessons` and measured by `make bench`, never written "
           "here: this file is byte-identical between runs.\n"]
    for e in lessons:
        verdict = "holds" if e["holds"] else "does not hold as stated"
        part = [f"### {e['title']}\n",
                f"*{e['source']}* (`{e['id']}`). Claim: {e['claim']} **{verdict}**: {e['measured']}\n"]
        for t in e.get("tables", []):
            head = t["columns"]
            rows = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
            rows += ["| " + " | ".join(_cell(_fmt(v)) for v in r) + " |" for r in t["rows"]]
            part.append(f"{t['title']}\n\n" + "\n".join(rows) + "\n")
        part += [f"![{f}]({links[f]})\n" for f in e.get("figures", []) if f in links]
        out.append("\n".join(part))
    return "\n".join(out)


def render_markdown(
    params: Params, metrics: dict[str, dict[str, float]], series: dict[str, list] | None = None,
    figure_links: dict[str, str] | None = None,
    searches: dict[str, dict[str, Any]] | None = None, details: dict[str, Any] | None = None,
    lessons: list[dict[str, Any]] | None = None, lesson_links: dict[str, str] | None = None,
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
    if searches:
        parts.append(selection_section(searches, metrics, details or {}))
    repeats = repeats_section(params, details or {})
    if repeats:
        parts.append(repeats)
    if lessons:
        parts.append(lessons_section(lessons, lesson_links))
    if figure_links:
        parts.append(figures_section(figure_links))
    return "\n".join(parts)
