"""The report as one self-contained HTML file: every figure embedded, no external reference.

Built from DVC outputs only (metrics, series, selection, details, per-epoch histories, image
grids, dataset manifests) and a few facts about the environment passed in, so the same inputs
give the same bytes: no timestamps, PNGs without version metadata, stable ordering.

A section appears only when the variants it talks about ran (their keys are in the inputs):
a comparison of named variants needs at least two of them.
"""

from __future__ import annotations

import base64
import html
import json
import math
import re
from typing import Any, Iterable, Mapping, Sequence

from dlbasics.config import DATASET_TASKS, Params
from dlbasics.figures import (  # noqa: F401 - curves_png, confusion_png: re-exported
    _SPLIT_STYLE, _layout, _log_if_positive, _plot_splits, confusion_png, curves_png, png_bytes,
    pyplot,
)
from dlbasics.stats import describe_difference, paired_difference

# Variant groups compared side by side (the names shipped in params.yaml).
DROPOUT = ("dropout", "dropout_off")
ACTIVATIONS = ("mlp", "mlp_sigmoid", "mlp_tanh", "mlp_leaky_relu", "mlp_prelu")
OPTIMISERS = ("mlp", "mlp_momentum", "mlp_rmsprop", "mlp_adam")
INITS = ("mlp", "mlp_xavier", "mlp_default_init")
# The headline metric of each task: (metric name, higher is better).
PRIMARY = {"regression": ("mse", False), "classification": ("accuracy", True),
           "binary": ("accuracy", True), "multilabel": ("exact_match", True)}

# Section id -> heading, in page order (ids are the anchors of the contents list).
SECTIONS = {
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
    "lessons": "Lessons: mechanisms computed",
    "figures": "Image grids",
    "provenance": "Dataset provenance",
    "environment": "Environment",
}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;
max-width:72rem;padding:0 1rem;color:#1b1b1b;line-height:1.45}
h1{font-size:1.7rem}h2{font-size:1.3rem;border-bottom:1px solid #ccc;padding-bottom:.2rem;
margin-top:2.2rem}h3{font-size:1.05rem}
table{border-collapse:collapse;margin:.6rem 0;font-size:.85rem}
th,td{border:1px solid #d0d0d0;padding:.2rem .5rem;text-align:right;vertical-align:top}
th{background:#f3f3f3}td.l,th.l{text-align:left}tr.chosen td{background:#e8f4e8;font-weight:600}
code{font-size:.85em;background:#f5f5f5;padding:0 .2em}
figure{display:inline-block;margin:.4rem;vertical-align:top}figcaption{font-size:.8rem;
text-align:center}img{max-width:100%}nav ol{columns:2}details{margin:.3rem 0}
summary{cursor:pointer}p.note{color:#555;font-size:.85rem}
"""

# ----------------------------------------------------------------------------- small helpers


def _text(value: Any) -> str:
    """HTML-escaped text. A URL's colon is written as an entity: the page shows the address
    but holds nothing a browser or a checker could take for a link to fetch."""
    return html.escape(str(value)).replace("://", "&#58;//")


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{_text(alt)}">'


def _figure(png: bytes, caption: str) -> str:
    return f"<figure>{_img(png, caption)}<figcaption>{_text(caption)}</figcaption></figure>"


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]], left: int = 1,
           classes: Sequence[str] | None = None) -> str:
    """An HTML table; the first `left` columns are left-aligned text, the rest numbers."""
    def cells(tag: str, values: Sequence[Any]) -> str:
        return "".join(
            f'<{tag}{" class=l" if i < left else ""}>{_text(_fmt(v))}</{tag}>'
            for i, v in enumerate(values))

    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>{cells('td', r)}</tr>")
    return (f"<table><thead><tr>{cells('th', head)}</tr></thead><tbody>"
            + "".join(body) + "</tbody></table>")


def _section(sid: str, body: str, intro: str = "") -> str:
    p = f"<p>{_text(intro)}</p>" if intro else ""
    return f'<section><h2 id="{sid}">{_text(SECTIONS[sid])}</h2>{p}{body}</section>'


def _task(params: Params, name: str) -> str | None:
    spec = params.train.get(name)
    return DATASET_TASKS[params.data[spec.dataset].kind] if spec is not None else None


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


# ----------------------------------------------------------------------------- plots


def overlay_png(histories: Mapping[str, Sequence[Mapping[str, Any]]], title: str,
                splits: Sequence[str] = ("train", "test")) -> bytes:
    """Several variants' curves on shared axes: one colour per variant, one line style per
    split (train solid, val dotted, test dashed); loss on a log scale when positive. A
    one-epoch history (a closed-form fit) is one marker."""
    plt = pyplot()
    has_acc = any(k.endswith("_accuracy") for h in histories.values() for r in h for k in r)
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(8.4 if has_acc else 6.4, 3.0),
                             squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    metrics = ["loss", "accuracy"] if has_acc else ["loss"]
    for ax, what in zip(axes[0], metrics):
        for i, (name, h) in enumerate(histories.items()):
            epochs = [r["epoch"] for r in h]
            for split in splits:
                ys = [r.get(f"{split}_{what}") for r in h]
                if all(y is None for y in ys):
                    continue
                ax.plot(epochs, [math.nan if y is None else y for y in ys],
                        linestyle=_SPLIT_STYLE[split], color=colors[i % len(colors)],
                        marker="o" if len(epochs) == 1 else None, linewidth=1.2,
                        label=f"{name} {split}")
        if what == "loss":
            _log_if_positive(ax, histories.values(), "loss")
        ax.set(xlabel="epoch", ylabel=what, title=f"{title}: {what}")
        if has_acc:
            ax.legend(fontsize=6, ncol=2)
        else:  # one panel: the legend beside it, clear of the curves
            ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    _layout(fig)
    if not has_acc:
        fig.subplots_adjust(right=0.68)
    return png_bytes(fig)


def activations_png() -> bytes:
    """relu, sigmoid, tanh, leaky_relu (slope 0.2) and prelu (at its initial slope 0.25) and
    their derivatives on x in [-6, 6], from
    figures.ACTIVATION_FORMULAS (checked against torch autograd of the models' own modules by
    tests/test_html_report.py; numpy here keeps torch out of the report stage)."""
    import numpy as np

    from dlbasics.figures import ACTIVATION_FORMULAS

    plt = pyplot()
    x = np.linspace(-6.0, 6.0, 241)  # (241,)
    fig, (ax_f, ax_d) = plt.subplots(1, 2, figsize=(8.4, 3.0))
    for name, (f, df) in ACTIVATION_FORMULAS.items():
        ax_f.plot(x, f(x), label=name, linewidth=1.2)
        ax_d.plot(x, df(x), label=name, linewidth=1.2)
    ax_f.set(xlabel="x", ylabel="f(x)", title="activation")
    ax_d.set(xlabel="x", ylabel="f'(x)", title="derivative")
    for ax in (ax_f, ax_d):
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def _symlog_x(ax, xs: Sequence[float]) -> None:
    positive = [x for x in xs if x > 0]
    if positive and min(xs) == 0:
        ax.set_xscale("symlog", linthresh=min(positive))
        ax.set_xlim(left=0, right=max(xs) * 1.5)  # lambda is never negative
    elif positive and len(positive) == len(xs):
        ax.set_xscale("log")


# ----------------------------------------------------------------------------- sections


def _overview(params: Params, metrics, histories) -> str:
    names = [n for n in params.train if n in metrics or n in histories]
    if not names:
        return ""
    head = ["variant", "task", "dataset", "model", "optimiser", "batch", "epochs", "metric",
            "train", "val", "test", "train loss", "val loss", "test loss"]
    rows = []
    for n in names:
        task = _task(params, n)
        metric, _ = PRIMARY[task]
        m, h = metrics.get(n, {}), histories.get(n, [])
        rows.append([n, task, params.train[n].dataset, *_hyper(params, n), metric,
                     m.get(f"train_{metric}"), _last(h, f"val_{metric}"), m.get(f"test_{metric}"),
                     _last(h, "train_loss"), _last(h, "val_loss"), _last(h, "test_loss")])
    return _section("overview", _table(head, rows, left=8),
                    "Settings from params.yaml; train and test scores from reports/metrics.json; "
                    "validation scores and losses from the last epoch of reports/history/.")


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
    # One polynomial variant is enough: its own train-test gap is the point.
    names = [n for n in params.train if n.startswith("poly") and histories.get(n)]
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
    plt = pyplot()
    xs = [r["x"] for r in rows]
    fig, (ax_l, ax_w) = plt.subplots(1, 2, figsize=(8.4, 3.0))
    for key, style in (("train_mse", "-"), ("test_mse", "--")):
        ax_l.plot(xs, [r.get(key, math.nan) for r in rows], linestyle=style, marker="o",
                  label=key.replace("_", " "))
    if all(r.get(k, 0) > 0 for r in rows for k in ("train_mse", "test_mse")):
        ax_l.set_yscale("log")
    ax_w.plot(xs, [r.get("w_norm", math.nan) for r in rows], marker="o", color="C2")
    for ax in (ax_l, ax_w):
        _symlog_x(ax, xs)
        ax.set_xlabel("lambda")
    ax_l.set(ylabel="mse", title="loss against lambda")
    ax_l.legend(fontsize=7)
    ax_w.set(ylabel="||w||", title="weight norm against lambda")
    fig.tight_layout()
    table = _table(["lambda", "variant", "train mse", "test mse", "test/train", "||w||"],
                   [[r["x"], r["variant"], r.get("train_mse"), r.get("test_mse"),
                     r["test_mse"] / r["train_mse"] if r.get("train_mse") else None,
                     r.get("w_norm")] for r in rows], left=0)
    return _section("weight-decay", _figure(png_bytes(fig), "weight decay sweep") + table,
                    "The weight-decay series (reports/series.json): a larger lambda shrinks the "
                    "weights and closes the gap between training and test loss.")


def _sparsity(params: Params, metrics) -> str:
    names = [n for n in params.train if n.startswith("sparse_") and n in metrics]
    if len(names) < 2:
        return ""
    plt = pyplot()
    fig, (ax_z, ax_m) = plt.subplots(1, 2, figsize=(8.4, 2.8))
    ax_z.bar(names, [metrics[n].get("n_near_zero", 0) for n in names], color="C0")
    ax_z.set(ylabel="weights near zero", title="sparsity")
    ax_m.bar(names, [metrics[n].get("test_mse", math.nan) for n in names], color="C1")
    ax_m.set(ylabel="test mse", title="test error")
    fig.tight_layout()
    rows = [[n, _hyper(params, n)[1], metrics[n].get("n_near_zero"),
             metrics[n].get("n_weights"), metrics[n].get("w_norm"), metrics[n].get("train_mse"),
             metrics[n].get("test_mse")] for n in names]
    table = _table(["variant", "optimiser", "near zero", "weights", "||w||", "train mse",
                    "test mse"], rows, 2)
    return _section("sparsity", _figure(png_bytes(fig), "L1 against L2") + table,
                    "Weights with |w| below evaluate.zero_tol count as near zero: L1 drives "
                    "weights to zero, L2 shrinks every weight a little.")


def _final_table(names: Sequence[str], metrics, histories, metric: str = "accuracy") -> str:
    rows = [[n, metrics.get(n, {}).get(f"train_{metric}"), _last(histories.get(n, []),
             f"val_{metric}"), metrics.get(n, {}).get(f"test_{metric}"),
             _last(histories.get(n, []), "train_loss"), _last(histories.get(n, []), "test_loss")]
            for n in names]
    return _table(["variant", f"train {metric}", f"val {metric}", f"test {metric}",
                   "train loss", "test loss"], rows)


def _overlay_section(sid: str, group: Sequence[str], metrics, histories, intro: str,
                     extra: str = "") -> str:
    names = [n for n in group if histories.get(n)]
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
        acc = f" (accuracy {_fmt(d['accuracy'])})" if "accuracy" in d else ""
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
    names = [n for n in metrics if _task(params, n) == "multilabel"]
    if not names:
        return ""
    keys = sorted({k.removeprefix("test_") for n in names for k in metrics[n]
                   if k.startswith("test_")})
    rows = [[k, *(metrics[n].get(f"test_{k}") for n in names)] for k in keys]
    return _section("multilabel", _table(["test metric", *names], rows),
                    "Thresholded predictions (evaluate.multilabel_threshold) and the top-k "
                    "labels per row (top2_*).")


def _selection(searches: Mapping[str, Mapping[str, Any]], metrics, details) -> str:
    from dlbasics.reporting import difference_units, search_sentences

    body = []
    for name, search in searches.items():
        rows = search["rows"]
        chosen = search["info"]["chosen"]["config"]  # as the select stage chose it
        by_config: dict[int, list[dict]] = {}
        for r in rows:
            by_config.setdefault(r["config"], []).append(dict(r))
        for folds in by_config.values():
            folds.sort(key=lambda f: -1 if f.get("fold") is None else f["fold"])
        metric = next((k.removeprefix("val_") for r in rows for k in r if k.startswith("val_")),
                      None)
        if metric is None:
            continue
        axes = list(dict.fromkeys(k for r in rows for k in r if "." in k))
        n_folds = max(len(f) for f in by_config.values())
        head = ["config", *axes, "parameters", "path", "epochs",
                *(f"fold {i}" for i in range(n_folds)), f"val {metric} mean", "sd",
                f"train {metric} mean"]
        table_rows, classes, stats_by = [], [], {}
        for cfg, folds in sorted(by_config.items()):
            first = folds[0]
            lead = [cfg, *(first.get(a, "") for a in axes), first.get("n_parameters"),
                    first.get("path", ""), first.get("epochs_chosen")]
            if first.get("diverged"):
                table_rows.append(lead[:-1] + ["diverged"] * (n_folds + 4))
                classes.append("")
                continue
            va = [f[f"val_{metric}"] for f in folds]
            tr = [f.get(f"train_{metric}", math.nan) for f in folds]
            mean = sum(va) / len(va)
            sd = (math.sqrt(sum((v - mean) ** 2 for v in va) / (len(va) - 1)) if len(va) > 1
                  else 0.0)
            stats_by[cfg] = (mean, sd, va)
            table_rows.append(lead + va + [None] * (n_folds - len(va))
                              + [mean, sd, sum(tr) / len(tr)])
            classes.append("chosen" if cfg == chosen else "")
        # Every configuration is scored on the same folds: the runner-up comparison is paired.
        scale, unit, digits, higher = difference_units(metric)
        sentences = search_sentences(name, search, dict(metrics), dict(details))
        others = sorted((c for c in stats_by if c != chosen), key=lambda c: stats_by[c][0],
                        reverse=higher)
        if chosen in stats_by and others and len(stats_by[chosen][2]) >= 2 \
                and len(stats_by[others[0]][2]) == len(stats_by[chosen][2]):
            runner = others[0]
            res = paired_difference(stats_by[chosen][2], stats_by[runner][2])
            sentences.append("Against the runner-up, fold by fold: " + describe_difference(
                f"configuration {chosen}", f"configuration {runner}", res, unit=unit,
                scale=scale, digits=digits, higher_is_better=higher) + ".")
        # Mean and sd of each configuration: a glance at how much the grid matters.
        plt = pyplot()
        cfgs = sorted(stats_by)
        fig, ax = plt.subplots(figsize=(min(9.0, 2.5 + 0.35 * len(cfgs)), 2.6))
        means = [stats_by[c][0] for c in cfgs]
        sds = [stats_by[c][1] for c in cfgs]
        ax.errorbar(range(len(cfgs)), means, yerr=sds, fmt="o", capsize=3)
        if chosen in stats_by:
            i = cfgs.index(chosen)
            ax.plot([i], [means[i]], "o", color="C2", markersize=9, label="chosen")
            ax.legend(fontsize=7)
        ax.set_xticks(range(len(cfgs)), [str(c) for c in cfgs], fontsize=7)
        ax.set(xlabel="configuration", ylabel=f"val {metric}",
               title=f"select@{name}: mean +/- sd over folds")
        fig.tight_layout()
        body.append(f"<h3>select@{_text(name)}</h3>"
                    + "".join(f"<p>{_text(t)}</p>" for t in sentences)
                    + _table(head, table_rows, left=1 + len(axes), classes=classes)
                    + _figure(png_bytes(fig), f"validation score per configuration of {name}"))
    if not body:
        return ""
    return _section("selection", "".join(body),
                    "Each named search of params.yaml's select section: every configuration "
                    "scored on the same folds (reports/selection/NAME.json), the best refitted "
                    "on the whole training split.")


def _repeats(params: Params, details: Mapping[str, Mapping[str, Any]]) -> str:
    from dlbasics.reporting import comparison_sentences, repeat_rows

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


def _figures(figures: Mapping[str, bytes]) -> str:
    if not figures:
        return ""
    body = "".join(_figure(png, name.removesuffix(".png")) for name, png in sorted(figures.items()))
    return _section("figures", body, "Samples and test predictions (true / predicted, wrong ones "
                    "in red), from reports/figures/.")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """The prepared data's one digest: sha256 of its files' sha256 map (= Prepared.digest, the
    value MLflow records as the dataset digest)."""
    from dlbasics.io import sha256_bytes

    return sha256_bytes(json.dumps(manifest.get("sha256", {}), sort_keys=True).encode())


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


def package_versions(names: Sequence[str] = ("torch", "dvc", "mlflow", "scikit-learn", "numpy")
                     ) -> dict[str, str]:
    """{python: version, package: version} of the running interpreter, for `environment`."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


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
    series, searches, details = series or {}, searches or {}, details or {}
    figures, environment, manifests = figures or {}, environment or {}, manifests or {}
    # Variants of params.yaml only: a persisted history of a removed variant is stale.
    histories = {n: h for n, h in (histories or {}).items() if n in params.train}
    act_png = activations_png() if sum(bool(histories.get(n)) for n in ACTIVATIONS) >= 2 else b""
    act_intro = _figure(act_png, "the activations and their derivatives") if act_png else ""
    parts = [
        _overview(params, metrics, histories),
        _learning_curves(params, histories, curves or {}),
        _fitting(params, metrics, histories),
        _weight_decay(series),
        _sparsity(params, metrics),
        _overlay_section("dropout", DROPOUT, metrics, histories,
                         "The same network with and without dropout; train solid, test dashed."),
        _overlay_section("activations", ACTIVATIONS, metrics, histories,
                         "The hidden-unit functions and their derivatives (analytic, equal to "
                         "torch autograd's), "
                         "then the same MLP trained with each.", extra=act_intro),
        _overlay_section("optimisers", OPTIMISERS, metrics, histories,
                         "The same MLP trained by each optimiser."),
        _overlay_section("initialisations", INITS, metrics, histories,
                         "The same MLP from each initialisation."),
        _confusion(details, confusions or {}),
        _top_k(metrics),
        _multilabel(params, metrics),
        _selection(searches, metrics, details),
        _repeats(params, details),
        _lessons(lessons or [], lesson_pngs or {}),
        _figures(figures),
        _provenance(manifests),
        _environment(environment),
    ]
    present = [sid for sid in SECTIONS if f'<h2 id="{sid}">' in "".join(parts)]
    nav = "<nav><ol>" + "".join(f'<li><a href="#{s}">{_text(SECTIONS[s])}</a></li>'
                                for s in present) + "</ol></nav>"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>dlbasics report</title><style>{_CSS}</style></head><body>"
            f"<h1>dlbasics report</h1><p>Seed {params.seed}. Every number comes from the DVC "
            "outputs in reports/; this page embeds every figure and fetches nothing.</p>"
            + nav + "\n" + "\n".join(p for p in parts if p) + "\n</body></html>\n")
