"""The report as one self-contained HTML file: every figure embedded, no external reference.

Built from DVC outputs only (metrics, series, selection, details, per-epoch histories, image
grids, dataset manifests) and a few facts about the environment passed in, so the same inputs
give the same bytes: no timestamps, PNGs without version metadata, stable ordering.

A section appears only when the variants it talks about ran (their keys are in the inputs):
a comparison of named variants (params.report.groups) needs at least two of them. What the
sections say comes from report_content, their figures from report_figures: this module only
lays them out in HTML.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dlbasics.config.params import Params
from dlbasics.io import manifest_digest
from dlbasics.learn.tasks import PRIMARY
from dlbasics.report.charts import (
    activations_png,
    overlay_png,
    search_png,
    sparsity_png,
    weight_decay_png,
)
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
from dlbasics.report.figures import confusion_png, curves_png

# Section id -> heading, in page order (ids are the anchors of the contents list).
SECTIONS = {
    "answer": "The answer",
    "book": BOOK_TITLE,
    "overview": "Every variant",
    "learning-curves": "Learning curves",
    "fitting": "Under- and over-fitting",
    "weight-decay": "Weight decay",
    "sparsity": "L1 against L2: sparsity",
    "dropout": "Dropout on and off",
    "activations": "Activation functions",
    "optimisers": "Optimisers",
    "initialisations": "Initialisations",
    "confusion": "Confusion matrices and per-class scores",
    "top-k": "Top-k accuracy",
    "multilabel": "Multi-label metrics",
    "selection": "Model selection (K-fold searches)",
    "repeats": "Repeated runs and paired comparisons",
    "submission": "The house-prices submission",
    "contrasts": "Claims about pairs of variants",
    "lessons": "Lessons: mechanisms computed",
    "fits": "Data and fit",
    "figures": "Image grids",
    "provenance": "Dataset provenance",
    "environment": "Environment",
}

# The page never scrolls sideways on a laptop: a table wider than the text scrolls inside its
# own box (div.scroll), its first column (the variant, the configuration) staying in view; a
# figure and its image shrink to the width there is; a long word breaks.
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1b1b1b;line-height:1.45;overflow-wrap:break-word}
h1{font-size:1.7rem}h2{font-size:1.3rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;
margin-top:2.2rem}h3{font-size:1.05rem}
div.scroll{overflow-x:auto;max-width:100%;margin:.6rem 0}
table{border-collapse:collapse;font-size:.85rem}
th,td{border:1px solid #d0d0d0;padding:.2rem .5rem;text-align:right;vertical-align:top}
th:first-child,td:first-child{position:sticky;left:0}td:first-child{background:#fff}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.chosen td{background:#e8f4e8;font-weight:600}
code{font-size:.85em;background:#f5f5f5;padding:0 .2em}
figure{display:inline-block;margin:.4rem;vertical-align:top;max-width:calc(100% - .8rem)}
figcaption{font-size:.8rem;text-align:center}img{max-width:100%;height:auto}
nav ol{columns:2}details{margin:.3rem 0}
div.answer{display:grid;grid-template-columns:fit-content(36rem) minmax(0,1fr);gap:1.5rem;font-size:.82rem;
line-height:1.3}div.answer ul{margin:.2rem 0;padding-left:1.1rem}div.answer li{margin:0}
div.answer p{margin:.2rem 0}div.answer div.scroll{margin:.3rem 0}
ul.verdicts{list-style:none;padding-left:0!important}ul.verdicts li::before{margin-right:.4em}
li.yes::before{content:"\\2713"}li.no::before{content:"\\2717"}li.no{font-weight:600}
#answer{margin-top:.6rem}
summary{cursor:pointer}p.note{color:#555;font-size:.85rem}
"""

# ----------------------------------------------------------------------------- small helpers


def _text(value: Any) -> str:
    """HTML-escaped text. A URL's colon is written as an entity: the page shows the address
    but holds nothing a browser or a checker could take for a link to fetch."""
    return html.escape(str(value)).replace("://", "&#58;//")


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_text(alt)}">'


def _figure(png: bytes, caption: str) -> str:
    return f"<figure>{_img(png, caption)}<figcaption>{_text(caption)}</figcaption></figure>"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
           classes: Sequence[str] | None = None) -> str:
    """An HTML table in its own horizontally scrolling box; the first `left` columns are
    left-aligned text, the rest numbers."""
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f'<{tag}{" class=l" if i < left else ""}>{_text(_cell(v))}</{tag}>'
            for i, v in enumerate(values))

    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>{cells('td', r)}</tr>")
    return (f'<div class="scroll"><table><thead><tr>{cells("th", head)}</tr></thead><tbody>'
            + "".join(body) + "</tbody></table></div>")


def _cell(v: Any) -> str:
    return "" if v is None else fmt(v)  # a missing value is an empty cell


def _section(sid: str, body: str, intro: str = "") -> str:
    p = f"<p>{_text(intro)}</p>" if intro else ""
    return f'<section><h2 id="{sid}">{_text(SECTIONS[sid])}</h2>{p}{body}</section>'


def _last(history: Sequence[Mapping[str, Any]], key: str) -> Any:
    return history[-1].get(key) if history else None


def _hyper(params: Params, name: str) -> list[str]:
    """[model, optimiser, batch, epochs] of a variant in words."""
    spec = params.train[name]
    m = spec.model
    model = m.kind
    if m.hidden:
        model += f" {'-'.join(map(str, m.hidden))} {m.activation}"
    if m.dropout and any(m.dropout):
        model += f" dropout {'/'.join(map(str, m.dropout))}"
    if m.init != "default":
        model += f" init {m.init}"
    if spec.features:
        model += f" ({spec.features} features)"
    if spec.solver == "lstsq":
        return [model, "closed-form least squares", "", ""]
    o = spec.optimizer
    opt = f"{o.name} lr {o.lr}"
    if o.momentum:
        opt += f" momentum {o.momentum}"
    if o.weight_decay:
        opt += f" wd {o.weight_decay}"
    if spec.penalty is not None:
        opt += f" +{spec.penalty.kind} {spec.penalty.strength}"
    return [model, opt, str(spec.batch_size), str(spec.epochs)]


# ----------------------------------------------------------------------------- sections


def _answer(a: Answer) -> str:
    """The first screen: the best model per dataset beside the searches and the lessons."""
    if not a.best:
        return ""
    table = _table(["dataset", "best", "test score", "spread", "of"],
                   [[r.dataset, ", ".join(r.best), f"{r.metric} {fmt(r.score)}", r.spread, r.of]
                    for r in a.best], left=4)
    notes = "; ".join(f"{r.dataset}: {r.resolution}" for r in a.best if r.resolution)
    right = ""
    if a.searches:
        right += "<p><b>Model selection</b></p><ul>" + "".join(
            f"<li>{_text(s)}</li>" for s in a.searches) + "</ul>"
    if a.lessons:
        held = sum(h for _, h in a.lessons)
        items = [f'<li class="{"yes" if h else "no"}">{_text(title)}</li>'
                 for title, h in a.lessons]
        right += (f"<p><b>Lessons</b>: {held} of {len(a.lessons)} hold as their sources state "
                  "them (&#10003;); the others are marked &#10007;.</p><ul class=\"verdicts\">"
                  + "".join(items) + "</ul>")
    intro = ("The best test score on each dataset by its task's primary metric (ties named "
             "together), each search's winner against its hand-set base, each lesson's verdict. "
             "The full tables follow.")
    return _section("answer", f'<div class="answer"><div>{table}<p class="note">'
                              f'{_text(notes)}</p></div><div>{right}</div></div>', intro)


def _overview(params: Params, metrics, histories) -> str:
    names = [n for n in params.train if n in metrics or n in histories]
    if not names:
        return ""
    head = ["variant", "task", "dataset", "model", "optimiser", "batch", "epochs", "metric",
            "train", "val", "test", "train loss", "val loss", "test loss"]
    rows = []
    for n in names:
        task = variant_task(params, n)
        metric = PRIMARY[task].name
        m, h = metrics.get(n, {}), histories.get(n, [])
        rows.append([n, task, params.train[n].dataset, *_hyper(params, n), metric,
                     m.get(f"train_{metric}"), _last(h, f"val_{metric}"), m.get(f"test_{metric}"),
                     _last(h, "train_loss"), _last(h, "val_loss"), _last(h, "test_loss")])
    return _section("overview", _table(head, rows, left=8),
                    "Settings from params.yaml; train and test scores from reports/metrics.json; "
                    "validation scores and losses from the last epoch of reports/history/.")


def _book(params: Params, metrics, details) -> str:
    """The sources' figures (params.report.book) beside the measured test accuracy."""
    book = book_section(params, dict(metrics), dict(details))
    if book is None:
        return ""
    rows = [[r["source"], r["stated"], r["variant"], r["dataset"], r["n"], r["mean"], r["sd"],
             r["verdict"]] for r in book.rows]
    table = _table(["source", "stated", "variant", "data set", "n", "mean", "sd", "verdict"],
                   rows, left=4)
    return _section("book", table + "".join(f"<p>{_text(s)}</p>" for s in book.sentences),
                    book.intro)


def _learning_curves(params: Params, histories, curves: Mapping[str, bytes]) -> str:
    names = [n for n in params.train if histories.get(n)]
    if not names:
        return ""
    # Drawn beside each model by the train stage (the same function on the same history);
    # drawn here only when missing.
    body = "".join(_figure(curves.get(n) or curves_png(n, histories[n]), n) for n in names)
    return _section("learning-curves", body,
                    "Per-epoch loss (log scale) and accuracy; train solid, validation dotted, "
                    "test dashed.")


def _capacity(params: Params, metrics) -> str:
    """R^2 on the training points and on new points along the `capacity` series (sin(x))."""
    names = sorted((n for n, s in params.train.items()
                    if s.series is not None and s.series.name == "capacity" and n in metrics),
                   key=lambda n: params.train[n].series.x)
    if len(names) < 2:
        return ""
    rows = [[n, params.train[n].series.x, metrics[n].get("train_r2"), metrics[n].get("test_r2"),
             metrics[n].get("test_mse")] for n in names]
    return ("<p>Growing capacity on a few noisy points of sin(x) (file 004, 3.10.1): the training "
            "R<sup>2</sup> only rises, the R<sup>2</sup> on new points does not.</p>"
            + _table(["variant", "degree", "train R2", "test R2", "test mse"], rows))


def _fitting(params: Params, metrics, histories) -> str:
    # One variant of the group is enough: its own train-test gap is the point.
    names = [n for n in params.report.groups.fitting if histories.get(n)]
    if not names:
        return ""
    png = overlay_png({n: histories[n] for n in names}, "polynomial fits")
    rows = []
    for n in names:
        m = metrics.get(n, {})
        tr, te = m.get("train_mse"), m.get("test_mse")
        ratio = te / tr if tr and te is not None else None
        rows.append([n, _hyper(params, n)[0], _hyper(params, n)[1], tr, te, ratio])
    table = _table(["variant", "model", "fit", "train mse", "test mse", "test/train"], rows, 3)
    return _section("fitting", _figure(png, "train (solid) and test (dashed) loss") + table
                    + _capacity(params, metrics),
                    "Train and test loss of the polynomial variants on a log scale: a test loss "
                    "far above the training loss is over-fitting, both high is under-fitting.")


def _weight_decay(series) -> str:
    rows = sorted(series.get("weight_decay") or [], key=lambda r: r["x"])
    if len(rows) < 2:
        return ""
    table = _table(["lambda", "variant", "train mse", "test mse", "test/train", "||w||"],
                   [[r["x"], r["variant"], r.get("train_mse"), r.get("test_mse"),
                     r["test_mse"] / r["train_mse"] if r.get("train_mse") else None,
                     r.get("w_norm")] for r in rows], left=0)
    return _section("weight-decay", _figure(weight_decay_png(rows), "weight decay sweep") + table,
                    "The weight-decay series (reports/series.json): a larger lambda shrinks the "
                    "weights and closes the gap between training and test loss.")


def _sparsity(params: Params, metrics) -> str:
    names = [n for n in params.report.groups.sparsity if n in metrics]
    if len(names) < 2:
        return ""
    rows = [[n, _hyper(params, n)[1], metrics[n].get("n_near_zero"),
             metrics[n].get("n_weights"), metrics[n].get("w_norm"), metrics[n].get("train_mse"),
             metrics[n].get("test_mse")] for n in names]
    table = _table(["variant", "optimiser", "near zero", "weights", "||w||", "train mse",
                    "test mse"], rows, 2)
    return _section("sparsity", _figure(sparsity_png(names, metrics), "L1 against L2") + table,
                    "Weights with |w| below evaluate.zero_tol count as near zero: L1 drives "
                    "weights to zero, L2 shrinks every weight a little.")


def _final_table(names: Sequence[str], metrics, histories, metric: str = "accuracy") -> str:
    rows = [[n, metrics.get(n, {}).get(f"train_{metric}"), _last(histories.get(n, []),
             f"val_{metric}"), metrics.get(n, {}).get(f"test_{metric}"),
             _last(histories.get(n, []), "train_loss"), _last(histories.get(n, []), "test_loss")]
            for n in names]
    return _table(["variant", f"train {metric}", f"val {metric}", f"test {metric}",
                   "train loss", "test loss"], rows)


def _overlay_section(params: Params, sid: str, metrics, histories, intro: str,
                     extra: str = "") -> str:
    """The variants of params.report.groups.<sid> that ran: curves overlaid, one table."""
    names = [n for n in getattr(params.report.groups, sid) if histories.get(n)]
    if len(names) < 2:
        return ""
    png = overlay_png({n: histories[n] for n in names}, SECTIONS[sid].lower())
    return _section(sid, extra + _figure(png, ", ".join(names))
                    + _final_table(names, metrics, histories), intro)


def _confusion(details, confusions: Mapping[str, bytes]) -> str:
    names = sorted(n for n, d in details.items() if d.get("confusion_matrix"))
    if not names:
        return ""
    parts = []
    for n in names:
        d = details[n]
        classes = d.get("class_names") or [str(i) for i in range(len(d["confusion_matrix"]))]
        png = confusions.get(n) or confusion_png(d["confusion_matrix"], classes, n)
        rows = [[c, s.get("precision"), s.get("recall"), s.get("f1"), s.get("support")]
                for c, s in ((c, d.get("per_class", {}).get(str(c), {})) for c in classes)]
        for avg in ("macro_avg", "weighted_avg"):
            if avg in d:
                s = d[avg]
                rows.append([avg.replace("_", " "), s.get("precision"), s.get("recall"),
                             s.get("f1"), s.get("support")])
        table = _table(["class", "precision", "recall", "F1", "support"], rows)
        acc = f" (accuracy {fmt(d['accuracy'])})" if "accuracy" in d else ""
        parts.append(f"<details><summary><code>{_text(n)}</code>{_text(acc)}</summary>"
                     f"{_figure(png, n + ': rows true, columns predicted')}{table}</details>")
    return _section("confusion", "".join(parts),
                    "Test set, from reports/details.json; open a variant to see its matrix.")


def _top_k(metrics) -> str:
    pat = re.compile(r"test_top_(\d+)_accuracy$")
    ks = sorted({int(m.group(1)) for v in metrics.values() for k in v if (m := pat.match(k))})
    names = sorted(n for n, v in metrics.items() if any(pat.match(k) for k in v))
    if not ks:
        return ""
    rows = [[n, *(metrics[n].get(f"{s}_top_{k}_accuracy") for k in ks for s in ("train", "test"))]
            for n in names]
    head = ["variant", *(f"{s} top-{k}" for k in ks for s in ("train", "test"))]
    return _section("top-k", _table(head, rows),
                    "A prediction counts as right when the true class is among the k highest "
                    "scores.")


def _multilabel(params: Params, metrics) -> str:
    names = [n for n in metrics if variant_task(params, n) == "multilabel"]
    if not names:
        return ""
    keys = sorted({k.removeprefix("test_") for n in names for k in metrics[n]
                   if k.startswith("test_")})
    rows = [[k, *(metrics[n].get(f"test_{k}") for n in names)] for k in keys]
    return _section("multilabel", _table(["test metric", *names], rows),
                    "Thresholded predictions (evaluate.multilabel_threshold) and the top-k "
                    "labels per row (top2_*).")


def _selection(searches: Sequence[SearchSummary]) -> str:
    body = "".join(_search(s) for s in searches)
    if not body:
        return ""
    return _section("selection", body,
                    "Each named search of params.yaml's select section: every configuration "
                    "scored on the same folds (reports/selection/NAME.json), the best refitted "
                    "on the whole training split.")


def _search(s: SearchSummary) -> str:
    """One search: its sentences, every configuration's fold scores (the chosen row marked),
    their means as a figure."""
    head = ["config", *s.axes, "parameters", "path", "epochs",
            *(f"fold {i}" for i in range(s.n_folds)), f"val {s.metric} mean", "sd",
            f"train {s.metric} mean"]
    rows, classes = [], []
    for c in s.configs:
        lead = [c.config, *(c.settings[a] for a in s.axes), c.n_parameters, c.path, c.epochs]
        if c.diverged:
            rows.append(lead[:-1] + ["diverged"] * (s.n_folds + 4))
        else:
            rows.append(lead + c.val + [None] * (s.n_folds - len(c.val))
                        + [c.mean, c.sd, c.train_mean])
        classes.append("chosen" if c.config == s.chosen and not c.diverged else "")
    sentences = [*s.sentences, *([s.runner_up] if s.runner_up else [])]
    return (f"<h3>select@{_text(s.name)}</h3>" + "".join(f"<p>{_text(t)}</p>" for t in sentences)
            + _table(head, rows, left=1 + len(s.axes), classes=classes)
            + _figure(search_png(s), f"validation score per configuration of {s.name}"))


def _repeats(params: Params, details: Mapping[str, Mapping[str, Any]]) -> str:
    rows = repeat_rows(dict(details))
    sentences = comparison_sentences(params, dict(details))
    if not rows and not sentences:
        return ""
    body = ""
    if rows:
        body = _table(["variant", "metric", "seeds", "mean", "sd", "95% low", "95% high"],
                      [[r["variant"], r["metric"], ", ".join(map(str, r["seeds"])), r["mean"],
                        r["sd"], r["ci_low"], r["ci_high"]] for r in rows], left=3)
    body += "".join(f"<p>{_text(s)}</p>" for s in sentences)
    return _section("repeats", body, "Variants trained once per seed of their `seeds` (the data "
                    "and split fixed; initial weights, batch order and dropout masks vary), and "
                    "the report.compare pairs: paired over shared seeds or shared folds, with a "
                    "t interval of the mean difference.")


def _contrasts(rows) -> str:
    """params.report.contrasts as measured (content.contrast_rows): claim, verdict, numbers."""
    if not rows:
        return ""
    body = "".join(
        f"<li><strong>{_text(r.title)}</strong> (<em>{_text(r.source)}</em>, "
        f"<code>{_text(r.a)}</code> against <code>{_text(r.b)}</code>). Claim: "
        f"{_text(r.claim)} <strong>{verdict_words(r.verdict)}</strong>: "
        f"{_text(r.measured.replace('`', ''))}</li>" for r in rows)
    return _section("contrasts", f"<ul>{body}</ul>",
                    "Each pair is trained alike but for the setting the claim is about.")


def _lessons(lessons: Sequence[Mapping[str, Any]], pngs: Mapping[str, bytes]) -> str:
    """Each lesson: claim, verdict, what was measured, its tables and figures (embedded)."""
    if not lessons:
        return ""
    held = sum(bool(e["holds"]) for e in lessons)
    body = []
    for e in lessons:
        lid = e["id"]
        verdict = "holds" if e["holds"] else "does not hold as stated"
        tables = "".join(f"<p>{_text(t['title'])}</p>" + _table(t["columns"], t["rows"])
                         for t in e.get("tables", []))
        figs = "".join(_figure(pngs[f], e["title"]) for f in e.get("figures", []) if f in pngs)
        body.append(f"<h3>{_text(e['title'])}</h3><p><em>{_text(e['source'])}</em> "
                    f"(<code>{_text(lid)}</code>). Claim: {_text(e['claim'])} "
                    f"<strong>{verdict}</strong>: {_text(e['measured'])}</p>{tables}{figs}")
    intro = (f"{len(lessons)} lessons computed by the lessons stage; {held} hold as their "
             "source states them. Wall-clock figures go to the MLflow run named lessons and to "
             "make bench, never into this page.")
    return _section("lessons", "".join(body), intro)


def _fits(figures: Mapping[str, bytes]) -> str:
    """file 001's plot of each 1-D regression: training points, fitted and true lines."""
    fits = {n: png for n, png in sorted(figures.items()) if n.endswith("_fit.png")}
    if not fits:
        return ""
    body = "".join(_figure(png, name.removesuffix(".png")) for name, png in fits.items())
    return _section("fits", body, "Each 1-D regression's training points, its fitted line and "
                    "the true one (dashed).")


def _figures(figures: Mapping[str, bytes]) -> str:
    figures = {n: png for n, png in figures.items() if not n.endswith("_fit.png")}
    if not figures:
        return ""
    body = "".join(_figure(png, name.removesuffix(".png")) for name, png in sorted(figures.items()))
    return _section("figures", body, "Samples and test predictions (true / predicted, wrong ones "
                    "in red), from reports/figures/.")


def _provenance(manifests: Mapping[str, Mapping[str, Any]]) -> str:
    if not manifests:
        return ""
    rows, files = [], []
    for name in sorted(manifests):
        m = manifests[name]
        source = m.get("source")
        if not isinstance(source, (str, type(None))):
            source = json.dumps(source, sort_keys=True)
        sizes = m.get("sizes", {})
        rows.append([name, m.get("kind", ""), source or "generated from params", m.get("task"),
                     sizes.get("train"), sizes.get("val"), sizes.get("test"),
                     m.get("n_features"), manifest_digest(m)[:16]])
        files += [[name, f, d] for f, d in sorted(m.get("sha256", {}).items())]
    table = _table(["dataset", "kind", "source", "task", "train", "val", "test", "features",
                    "digest"], rows, left=4)
    detail = ""
    if files:
        detail = ("<details><summary>every prepared file's sha256</summary>"
                  + _table(["dataset", "file", "sha256"], files, left=3) + "</details>")
    return _section("provenance", table + detail,
                    "From data/prepared/<dataset>/manifest.json; the digest (first 16 hex digits) "
                    "is the one MLflow records with each run.")


def _environment(environment: Mapping[str, Any]) -> str:
    if not environment:
        return ""
    return _section("environment", _table(["", "value"], list(environment.items()), left=2))


# ----------------------------------------------------------------------------- the page


def render_html(
    params: Params,
    metrics: Mapping[str, Mapping[str, float]],
    series: Mapping[str, list[dict[str, Any]]] | None = None,
    searches: Mapping[str, Mapping[str, Any]] | None = None,
    details: Mapping[str, Mapping[str, Any]] | None = None,
    histories: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    figures: Mapping[str, bytes] | None = None,
    environment: Mapping[str, Any] | None = None,
    manifests: Mapping[str, Mapping[str, Any]] | None = None,
    curves: Mapping[str, bytes] | None = None,
    confusions: Mapping[str, bytes] | None = None,
    lessons: Sequence[Mapping[str, Any]] | None = None,
    lesson_pngs: Mapping[str, bytes] | None = None,
    submission: Mapping[str, Any] | None = None,
) -> str:
    """The whole report as one HTML page (str), deterministic for the same inputs.

    metrics: reports/metrics.json ({variant: {"test_<metric>": value}}); series:
    reports/series.json; searches: {name: {"info": data/select/NAME/model.json, "rows":
    reports/selection/NAME.json}};
    details: reports/details.json; histories: {variant: reports/history/<variant>.json
    records}; figures: {file name: PNG bytes}; environment: {label: value} (package versions,
    device, threads, git commit); manifests: {dataset: prepared manifest.json}; curves and
    confusions: {variant: PNG bytes} already drawn (reports/figures/curves, .../confusion).
    """
    details = details or {}
    # Variants of params.yaml only: a persisted history of a removed variant is stale.
    histories = {n: h for n, h in (histories or {}).items() if n in params.train}
    summaries = [s for name, search in (searches or {}).items()
                 if (s := search_summary(name, search, metrics, details)) is not None]
    parts = [
        _answer(answer(params, metrics, details, searches, lessons)),
        _book(params, metrics, details),
        _overview(params, metrics, histories),
        _learning_curves(params, histories, curves or {}),
        _fitting(params, metrics, histories),
        _weight_decay(series or {}),
        _sparsity(params, metrics),
        *_comparisons(params, metrics, histories),
        _confusion(details, confusions or {}),
        _top_k(metrics),
        _multilabel(params, metrics),
        _selection(summaries),
        _repeats(params, details),
        _section("submission", f"<p>{_text(submission_text(submission).replace('`', ''))}</p>")
        if submission_text(submission) else "",
        _contrasts(contrast_rows(params, metrics, details)),
        _lessons(lessons or [], lesson_pngs or {}),
        _fits(figures or {}),
        _figures(figures or {}),
        _provenance(manifests or {}),
        _environment(environment or {}),
    ]
    return _page(params, [p for p in parts if p])


def _comparisons(params: Params, metrics, histories) -> list[str]:
    """The sections that set the variants of one params.report.groups entry side by side."""
    activations = params.report.groups.activations
    act_png = activations_png() if sum(bool(histories.get(n)) for n in activations) >= 2 else b""
    act_intro = _figure(act_png, "the activations and their derivatives") if act_png else ""
    return [
        _overlay_section(params, "dropout", metrics, histories,
                         "The same network with and without dropout; train solid, test dashed."),
        _overlay_section(params, "activations", metrics, histories,
                         "The hidden-unit functions and their derivatives (analytic, equal to "
                         "torch autograd's), "
                         "then the same MLP trained with each.", extra=act_intro),
        _overlay_section(params, "optimisers", metrics, histories,
                         "The same MLP trained by each optimiser."),
        _overlay_section(params, "initialisations", metrics, histories,
                         "The same MLP from each initialisation."),
    ]


def _page(params: Params, sections: Sequence[str]) -> str:
    """The page around its sections (each an HTML <section>, in page order): head, title,
    contents list."""
    present = [sid for sid in SECTIONS if f'<h2 id="{sid}">' in "".join(sections)]
    nav = "<nav><ol>" + "".join(f'<li><a href="#{s}">{_text(SECTIONS[s])}</a></li>'
                                for s in present) + "</ol></nav>"
    # The answer first, then the contents list and every other section.
    first = [s for s in sections if '<h2 id="answer">' in s]
    rest = [s for s in sections if s not in first]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>dlbasics report</title><style>{_CSS}</style></head><body>"
            f"<h1>dlbasics report</h1><p>Seed {params.seed}. Every number comes from the DVC "
            "outputs in reports/; this page embeds every figure and fetches nothing.</p>"
            + "\n".join(first) + nav + "\n" + "\n".join(rest) + "\n</body></html>\n")
