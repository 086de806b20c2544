"""How results are shown: the comparison report as Markdown (report.md), built from DVC outputs
only (reproducible). What its book, selection and repeated-run sections say comes from
report_content, shared with the HTML report; this module only lays it out."""

from __future__ import annotations

from typing import Any

from dlbasics.config.params import Params
from dlbasics.report.content import (
    BOOK_TITLE,
    Answer,
    SearchSummary,
    answer,
    book_section,
    comparison_sentences,
    contrast_rows,
    fmt,
    submission_text,
    repeat_rows,
    verdict_words,
    search_summary,
    variant_task,
)

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
    names = [n for n in params.train if variant_task(params, n) == task]
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
               *(fmt(metrics.get(n, {}).get(c, "")) for c in shown),
               params.report.notes.get(n, "")]
        lines.append("| " + " | ".join(row) + " |")
    return f"## {TITLES[task]}\n\n" + "\n".join(lines) + "\n"


def book_markdown(params: Params, metrics: dict[str, dict[str, float]],
                  details: dict[str, Any]) -> str:
    """The sources' figures (params.report.book) beside the measured test accuracy, a verdict
    each, and each scratch version against its concise twin; "" when none of them trained."""
    book = book_section(params, metrics, details)
    if book is None:
        return ""
    lines = ["| source | stated | variant | data set | n | mean | sd | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for r in book.rows:
        cells = [r["source"], r["stated"], f"`{r['variant']}`", r["dataset"],
                 *("" if r[k] is None else fmt(r[k]) for k in ("n", "mean", "sd")), r["verdict"]]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    sentences = "".join(f"- {s}\n" for s in book.sentences)
    return (f"## {BOOK_TITLE}\n\n{book.intro}\n\n" + "\n".join(lines) + "\n"
            + (f"\n{sentences}" if sentences else ""))


def series_section(series: dict[str, list[dict[str, Any]]]) -> str:
    """One table per named series (for example the weight-decay lambda sweep)."""
    out = []
    for name, rows in series.items():
        cols = [c for c in ("train_mse", "test_mse", "train_r2", "test_r2", "w_norm",
                            "n_near_zero", "test_accuracy")
                if any(c in r for r in rows)]
        lines = ["| x | variant | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 2)]
        for r in rows:
            lines.append(f"| {fmt(r['x'])} | `{r['variant']}` | "
                         + " | ".join(fmt(r.get(c, "")) for c in cols) + " |")
        out.append(f"### Series `{name}`\n\n" + "\n".join(lines) + "\n")
    return ("## Series\n\n" + "\n".join(out)) if out else ""


def selection_section(searches: dict[str, dict[str, Any]], metrics: dict[str, dict[str, float]],
                      details: dict[str, Any]) -> str:
    """Every named search: what it chose, in words, then every configuration's mean and spread
    (searches: {name: {"info": data/select/NAME/model.json, "rows":
    reports/selection/NAME.json}})."""
    parts = [_search(s) for name, search in searches.items()
             if (s := search_summary(name, search, metrics, details)) is not None]
    if not parts:
        return ""
    return ("## Model selection (K-fold searches)\n\nEach configuration is chosen by its mean "
            "validation score over the same folds (ties to the smaller model), then refitted on "
            "the whole training split; the test split is scored once.\n\n" + "\n".join(parts))


def _search(s: SearchSummary) -> str:
    lines = ["| config | " + " | ".join(s.axes) + f" | epochs | train {s.metric} | "
             f"val {s.metric} (mean +/- sd) |", "|" + "---|" * (len(s.axes) + 4)]
    for c in s.configs:
        head = f"| {c.config} | " + " | ".join(str(c.settings[a]) for a in s.axes)
        if c.diverged:
            lines.append(head + " | diverged | diverged | diverged |")
        else:
            lines.append(head + f" | {c.epochs} | {c.train_mean:.4f} | "
                         f"{c.mean:.4f} +/- {c.sd:.4f} |")
    return f"### `select@{s.name}`\n\n{' '.join(s.sentences)}\n\n" + "\n".join(lines) + "\n"


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
                         f"{fmt(r['mean'])} | {fmt(r['sd'])} | "
                         f"{fmt(r['ci_low'])} to {fmt(r['ci_high'])} |")
        parts.append("\n".join(lines) + "\n")
    parts.extend(f"- {s}" for s in sentences)
    return "\n".join(parts) + "\n"


FIT_SUFFIX = "_fit.png"  # reports/figures/<variant>_fit.png: a 1-D regression's data and fit


def figures_section(links: dict[str, str]) -> str:
    """Links to the image grids (file name -> path relative to the report)."""
    if not links:
        return ""
    fits = {n: p for n, p in links.items() if n.endswith(FIT_SUFFIX)}
    grids = {n: p for n, p in links.items() if n not in fits}
    out = []
    if fits:  # file 001's plot of each 1-D regression
        out.append("## Data and fit\n\nEach 1-D regression's training points, its fitted line "
                   "and the true one (dashed):\n\n" + "\n".join(
                       f"![{n.removesuffix('.png')}]({p})" for n, p in fits.items()) + "\n")
    if grids:
        out.append("## Image grids\n\n" + "\n".join(
            f"- [{n.removesuffix('.png')}]({p})" for n, p in grids.items()) + "\n")
    return "\n".join(out)


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
    out = [(f"## Lessons\n\n{len(lessons)} lessons computed by the `lessons` stage; {held} "
            "hold as their source states them. Wall-clock figures (the vectorisation speed-up) "
            "are logged to the MLflow run `lessons` and measured by `make bench`, never written "
            "here: this file is byte-identical between runs.\n")]
    for e in lessons:
        verdict = "holds" if e["holds"] else "does not hold as stated"
        part = [f"### {e['title']}\n",
                f"*{e['source']}* (`{e['id']}`). Claim: {e['claim']} **{verdict}**: {e['measured']}\n"]
        for t in e.get("tables", []):
            head = t["columns"]
            rows = ["| " + " | ".join(_cell(h) for h in head) + " |", "|" + "---|" * len(head)]
            rows += ["| " + " | ".join(_cell(fmt(v)) for v in r) + " |" for r in t["rows"]]
            part.append(f"{t['title']}\n\n" + "\n".join(rows) + "\n")
        part += [f"![{f}]({links[f]})\n" for f in e.get("figures", []) if f in links]
        out.append("\n".join(part))
    return "\n".join(out)


def contrasts_section(rows) -> str:
    """params.report.contrasts as measured (content.contrast_rows): claim, verdict, numbers."""
    if not rows:
        return ""
    out = ["## Claims about pairs of variants\n",
           "Each pair is trained alike but for the setting the claim is about.\n"]
    for r in rows:
        out.append(f"- **{r.title}** (*{r.source}*, `{r.a}` against `{r.b}`). Claim: {r.claim} "
                   f"**{verdict_words(r.verdict)}**: {r.measured}")
    return "\n".join(out) + "\n"


def answer_section(a: Answer) -> str:
    """The report's first section: the best model per dataset, the searches against their
    bases, each lesson's verdict; the tables follow."""
    out = ["## The answer\n",
           "The best test score on each dataset (ties named together), by its task's primary "
           "metric:\n",
           "| dataset | task | best | test score | spread | of | one test row |",
           "|---|---|---|---|---|---|---|"]
    out += [f"| {r.dataset} | {r.task} | {', '.join(f'`{n}`' for n in r.best)} | "
            f"{r.metric} {fmt(r.score)} | {r.spread} | {r.of} | {r.resolution} |"
            for r in a.best]
    if a.searches:
        out += ["", "Model selection:", ""] + [f"- {s}" for s in a.searches]
    if a.lessons:
        held = sum(h for _, h in a.lessons)
        out += ["", f"Lessons: {held} of {len(a.lessons)} hold as their sources state them.", ""]
        out += [f"- {'holds' if h else '**does not hold as stated**'}: {title}"
                for title, h in a.lessons]
    return "\n".join(out) + "\n"


def render_markdown(
    params: Params, metrics: dict[str, dict[str, float]], series: dict[str, list] | None = None,
    figure_links: dict[str, str] | None = None,
    searches: dict[str, dict[str, Any]] | None = None, details: dict[str, Any] | None = None,
    lessons: list[dict[str, Any]] | None = None, lesson_links: dict[str, str] | None = None,
    submission: dict[str, Any] | None = None,
) -> str:
    """The whole report.md."""
    parts = [
        "# dlbasics report\n",
        (f"Seed {params.seed}. Every number comes from the DVC outputs "
         "(`reports/metrics.json`, `reports/series.json`); per-epoch curves are in "
         "`reports/history/`.\n"),
        answer_section(answer(params, metrics, details, searches, lessons)),
    ]
    book = book_markdown(params, metrics, details or {})
    if book:
        parts.append(book)
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
    if submission_text(submission):
        parts.append("## The house-prices submission\n\n" + submission_text(submission) + "\n")
    contrasts = contrasts_section(contrast_rows(params, metrics, details or {}))
    if contrasts:
        parts.append(contrasts)
    if lessons:
        parts.append(lessons_section(lessons, lesson_links))
    if figure_links:
        parts.append(figures_section(figure_links))
    return "\n".join(parts)
