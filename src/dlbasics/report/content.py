"""What the report says, in both of its forms: the numbers and sentences of its model-selection,
repeated-run and book sections, its one number format and the environment it names. report.md
(reporting) and report.html (html_report) only lay these out, so the two cannot disagree.

Built from DVC outputs only; importing this module loads neither torch nor matplotlib.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dlbasics.config.datasets import DATASET_TASKS, OFFICIAL_TEST
from dlbasics.config.params import Params
from dlbasics.learn.tasks import PRIMARY, Metric, choose
from dlbasics.report.stats import describe_difference, mean_interval, paired_difference

# Fold tables, repeated runs and paired comparisons name the metric they were scored by: always
# the primary metric of their task, found here by that name.
_PRIMARY_BY_NAME = {m.name: m for m in PRIMARY.values()}


def fmt(v: Any) -> str:
    """A value in a table cell or a sentence: a float to 4 significant digits (scientific
    notation outside [1e-3, 1e5)), anything else as str()."""
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.3e}"
    return str(v)


def variant_task(params: Params, name: str) -> str | None:
    """The task of the variant `name` of params.train; None for a name that is not there."""
    spec = params.train.get(name)
    return DATASET_TASKS[params.data[spec.dataset].kind] if spec is not None else None


def primary_metric(name: str) -> Metric:
    """The tasks.PRIMARY entry whose metric is `name` (e.g. "rmse", "accuracy")."""
    return _PRIMARY_BY_NAME[name]


def difference_units(metric: Metric) -> tuple[float, str, int]:
    """(scale, unit, digits) to state a difference of `metric` in words: a score that rises to 1
    (accuracy, exact match) in percentage points, an error that falls to 0 in its own units."""
    return (100.0, "points", 1) if metric.higher_is_better else (1.0, "", 4)


def _state_difference(a: str, b: str, xa: Sequence[float], xb: Sequence[float],
                      metric: Metric) -> str:
    """The paired difference of scores xa and xb ([n] each, the same folds or seeds) in words."""
    scale, unit, digits = difference_units(metric)
    return describe_difference(a, b, paired_difference(xa, xb), unit=unit, scale=scale,
                               digits=digits, higher_is_better=metric.higher_is_better)


# ----------------------------------------------------------------------------- model selection


@dataclass(frozen=True)
class ConfigScores:
    """One configuration of a search, over its folds."""

    config: int
    settings: dict[str, Any]  # grid axis (e.g. "optimizer.lr") -> this configuration's value
    n_parameters: int | None
    path: str  # how it trained: "batched" or "sequential"
    epochs: int | None  # the epochs it was scored at
    diverged: bool
    val: list[float]  # validation score per fold, [K] in fold order; [] when diverged
    mean: float  # of val
    sd: float  # of val, ddof 1; 0 with one fold
    train_mean: float  # training score, mean over folds


@dataclass(frozen=True)
class SearchSummary:
    """What one named search found: every configuration's scores, the choice, in words."""

    name: str
    metric: str  # the primary metric it selects by
    axes: list[str]  # the grid's key paths
    n_folds: int
    configs: list[ConfigScores]  # in configuration order
    chosen: int  # the configuration the select stage chose (data/select/NAME/model.json)
    sentences: list[str]  # the choice and its test score, in words
    runner_up: str | None  # the chosen configuration against the next best, fold by fold


def search_summary(name: str, search: Mapping[str, Any], metrics: Mapping[str, Any],
                   details: Mapping[str, Any]) -> SearchSummary | None:
    """The selection section's content for one named search; None if no configuration has a
    validation score.

    search: {"info": data/select/NAME/model.json, "rows": reports/selection/NAME.json (one row
    per configuration and fold)}; metrics, details: reports/metrics.json, details.json."""
    rows = search["rows"]
    metric = next((k.removeprefix("val_") for r in rows for k in r if k.startswith("val_")),
                  None)
    if metric is None:
        return None
    axes = list(dict.fromkeys(k for r in rows for k in r if "." in k))
    by_config: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append(r)
    configs = [_config_scores(c, folds, axes, metric) for c, folds in sorted(by_config.items())]
    chosen = search["info"]["chosen"]["config"]
    return SearchSummary(
        name=name, metric=metric, axes=axes, n_folds=max(len(f) for f in by_config.values()),
        configs=configs, chosen=chosen,
        sentences=_search_sentences(name, search, metrics, details),
        runner_up=_runner_up(configs, chosen, primary_metric(metric)))


def _config_scores(config: int, folds: Sequence[Mapping[str, Any]], axes: Sequence[str],
                   metric: str) -> ConfigScores:
    folds = sorted(folds, key=lambda f: -1 if f.get("fold") is None else f["fold"])
    first = folds[0]
    diverged = bool(first.get("diverged"))
    val = [] if diverged else [f[f"val_{metric}"] for f in folds]
    train = [f.get(f"train_{metric}", math.nan) for f in folds]
    mean = sum(val) / len(val) if val else math.nan
    sd = math.sqrt(sum((v - mean) ** 2 for v in val) / (len(val) - 1)) if len(val) > 1 else 0.0
    return ConfigScores(
        config=config, settings={a: first.get(a, "") for a in axes},
        n_parameters=first.get("n_parameters"), path=first.get("path", ""),
        epochs=first.get("epochs_chosen"), diverged=diverged, val=val, mean=mean, sd=sd,
        train_mean=sum(train) / len(train))


def _runner_up(configs: Sequence[ConfigScores], chosen: int, metric: Metric) -> str | None:
    """The chosen configuration against the one the selection rule picks from the rest. Every
    configuration is scored on the same folds, so the comparison is paired."""
    alive = {c.config: c for c in configs if not c.diverged}
    others = [{"config": c.config, "n_parameters": c.n_parameters,
               f"val_{metric.name}_mean": c.mean} for c in alive.values() if c.config != chosen]
    if chosen not in alive or not others:
        return None
    best, runner = alive[chosen], alive[choose(others, metric)["config"]]
    if len(best.val) < 2 or len(runner.val) != len(best.val):
        return None
    return ("Against the runner-up, fold by fold: " + _state_difference(
        f"configuration {chosen}", f"configuration {runner.config}", best.val, runner.val,
        metric) + ".")


def _search_sentences(name: str, search: Mapping[str, Any], metrics: Mapping[str, Any],
                      details: Mapping[str, Any]) -> list[str]:
    """What one named search chose and how it scored, in words, from the select stage's own
    record of its choice (info["chosen"])."""
    info = search["info"]
    chosen = info["chosen"]
    metric = next(k.removeprefix("val_").removesuffix("_mean") for k in chosen
                  if k.startswith("val_") and k.endswith("_mean"))
    mean, sd = chosen[f"val_{metric}_mean"], chosen[f"val_{metric}_std"]
    own = metrics.get(f"select@{name}", {}).get(f"test_{metric}")
    epochs = (f"{chosen['epochs_chosen']} epochs chosen by validation, of at most "
              f"{chosen['epochs_max']}" if info.get("patience")
              else f"{chosen['epochs_chosen']} epochs, fixed by the search")
    out = [info["description"].strip()] if info.get("description") else []
    paths = ", ".join(f"{n} {p}" for p, n in sorted(info.get("paths", {}).items()))
    out.append(f"Chosen from {len({r['config'] for r in search['rows']})} configurations "
               f"({paths}): configuration {chosen['config']}, {info['chosen_words']} "
               f"({epochs}).")
    rows = (f" of a {info['max_rows']}-row subset" if info.get("max_rows") else "")
    out.append(f"Mean validation {metric} over {len(chosen['folds'])} folds{rows} {mean:.4f} "
               f"+/- {sd:.4f} (sd); refitted on the whole training split, test {metric} "
               f"{fmt(own)}.")
    against = _against_base(name, info.get("base"), primary_metric(metric), metrics, details)
    return out + ([against] if against else [])


def _against_base(name: str, base: str | None, metric: Metric, metrics: Mapping[str, Any],
                  details: Mapping[str, Any]) -> str | None:
    """select@NAME's test score against its hand-set base variant's, in words."""
    m = metric.name
    own = metrics.get(f"select@{name}", {}).get(f"test_{m}")
    theirs = metrics.get(base, {}).get(f"test_{m}") if base else None
    if own is None or theirs is None:
        return None
    scale, unit, digits = difference_units(metric)
    diff = (own - theirs) if metric.higher_is_better else (theirs - own)
    n_test = _n_test(details.get(f"select@{name}"))
    samples = (f" ({round(abs(own - theirs) * n_test)} of {n_test} test samples)"
               if n_test and m == "accuracy" else "")
    if abs(diff) * scale < 0.5 * 10 ** -digits:
        verdict = "the same as"
    else:
        verdict = (f"{abs(diff) * scale:.{digits}f}{' ' + unit if unit else ''} "
                   f"{'better' if diff > 0 else 'worse'} than")
    line = (f"Its test {m} is {verdict} the hand-set base variant `{base}` "
            f"({fmt(theirs)}){samples}.")
    tr_own = metrics.get(f"select@{name}", {}).get(f"train_{m}")
    tr_base = metrics.get(base, {}).get(f"train_{m}")
    if diff < 0 and tr_own is not None and tr_base is not None and (
            (tr_own < tr_base) == metric.higher_is_better):
        line += (f" It also fits its training rows worse ({m} {fmt(tr_own)} against "
                 f"{fmt(tr_base)}): at these settings the configurations are undertrained.")
    return line


def _n_test(details: Mapping[str, Any] | None) -> int | None:
    cm = (details or {}).get("confusion_matrix")
    return int(sum(sum(row) for row in cm)) if cm else None


# ----------------------------------------------------------------------------- repeated runs


def repeat_rows(details: Mapping[str, Any]) -> list[dict[str, Any]]:
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


def _over_shared_seeds(details: Mapping[str, Any], a: str, b: str):
    """(metric, seeds, a's per-seed test scores, b's) when both variants were trained over the
    same seeds and scored by the same metric; else None (not trained yet, or not paired)."""
    ra, rb = details.get(a, {}).get("seeds"), details.get(b, {}).get("seeds")
    if not (ra and rb and ra["seeds"] == rb["seeds"] and ra["metric"] == rb["metric"]):
        return None
    return ra["metric"], ra["seeds"], ra["test"][ra["metric"]], rb["test"][rb["metric"]]


def comparison_sentences(params: Params, details: Mapping[str, Any]) -> list[str]:
    """One sentence per `report.compare` pair: the paired difference of their test metric over
    shared seeds, or of their validation metric over shared folds, with its 95% interval."""
    out = []
    for a, b in params.report.compare:
        da, db = details.get(a, {}), details.get(b, {})
        fa, fb = da.get("folds"), db.get("folds")
        if (paired := _over_shared_seeds(details, a, b)) is not None:
            metric, seeds, xa, xb = paired
            over = f"test {metric} over seeds {', '.join(map(str, seeds))}"
        elif fa and fb and fa["k"] == fb["k"] and fa["metric"] == fb["metric"]:
            metric, xa, xb = fa["metric"], fa["val"], fb["val"]
            over = f"validation {metric} over the same {fa['k']} folds"
        else:
            continue  # not trained yet, or no longer paired
        out.append(f"{over}: " + _state_difference(a, b, xa, xb, primary_metric(metric)))
    return out


# ----------------------------------------------------------------------------- the book's figures

# The section's heading in both reports.
BOOK_TITLE = "The book's figures beside the measured test accuracy"
# A data set's kind in a sentence.
_KIND_WORDS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
# How prepare scaled the pixels (PrepareSpec.scale), in words.
_SCALE_WORDS = {"unit": "pixels in [0, 1]", "standard": "pixels standardised",
                "minmax": "pixels min-max scaled", "none": "raw pixel values"}
# A mean exactly `tolerance` from the stated figure reproduces it; 0.85 - 0.83 is a rounding
# error above 0.02 in floats, so the comparison allows for it.
_TOLERANCE_SLACK = 1e-9


@dataclass(frozen=True)
class BookSection:
    """The book section: what it was measured at, one row per params.report.book entry (see
    book_rows), each scratch version against its concise twin in words."""

    intro: str
    rows: list[dict[str, Any]]
    sentences: list[str]


def book_section(params: Params, metrics: Mapping[str, Any],
                 details: Mapping[str, Any]) -> BookSection | None:
    """The book section's content; None when report.book is empty or none of its variants has
    been trained (then neither report shows the section)."""
    if not any(fig.variant in metrics for fig in params.report.book):
        return None
    rows = book_rows(params, metrics, details)
    return BookSection(intro=book_intro(params, rows), rows=rows,
                       sentences=book_sentences(params, details))


def book_rows(params: Params, metrics: Mapping[str, Any],
              details: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per params.report.book entry, in order: the source's figure beside the measured
    test metric (mean over the variant's seeds, or its one run) and a verdict.

    Row keys: source, stated, value, tolerance (the figure and how near counts), variant,
    dataset (the kind it trained on), n (runs: its seeds, else 1), mean, sd (ddof 1; None for
    one run), difference (mean - value) and verdict; n, mean, sd and difference are None when
    nothing was measured on the data set the figure is about."""
    rows = []
    for fig in params.report.book:
        spec = params.train[fig.variant]
        kind = params.data[spec.dataset].kind
        row: dict[str, Any] = {
            "source": fig.reference, "stated": fig.stated, "value": fig.value,
            "tolerance": fig.tolerance, "variant": fig.variant, "dataset": kind, "n": None,
            "mean": None, "sd": None, "difference": None}
        if kind != fig.on:
            how = ("`make fashion` trains it on Fashion-MNIST" if fig.on == "fashion_mnist"
                   else f"data.{spec.dataset}.kind {fig.on} trains it on {_kind(fig.on)}")
            row["verdict"] = f"not measured: trained on {_kind(kind)} ({how})"
        elif fig.variant not in metrics:
            row["verdict"] = "not trained"
        else:
            scores = _test_scores(fig.variant, fig.metric, metrics, details)
            if len(scores) > 1:
                res = mean_interval(scores)
                mean, sd = res["mean"], res["sd"]
            else:
                mean, sd = scores[0], None
            d = mean - fig.value
            row |= {"n": len(scores), "mean": mean, "sd": sd, "difference": d,
                    "verdict": _book_verdict(d, fig.tolerance)}
        rows.append(row)
    return rows


def _kind(kind: str) -> str:
    return _KIND_WORDS.get(kind, kind)


def _test_scores(name: str, metric: str, metrics: Mapping[str, Any],
                 details: Mapping[str, Any]) -> list[float]:
    """A trained variant's test `metric`: one per seed when it lists seeds, else its one run."""
    rep = details.get(name, {}).get("seeds")
    if rep and rep["metric"] == metric:
        return [float(x) for x in rep["test"][metric]]
    return [float(metrics[name][f"test_{metric}"])]


def _book_verdict(difference: float, tolerance: float) -> str:
    """Measured mean minus stated figure (accuracy) against the figure's tolerance, in words."""
    if abs(difference) <= tolerance + _TOLERANCE_SLACK:
        return "reproduces"
    side = "above" if difference > 0 else "below"
    return f"{side} the stated figure ({100 * difference:+.1f} points)"


def book_intro(params: Params, rows: Sequence[Mapping[str, Any]]) -> str:
    """What the book rows were measured at (batch, epochs, learning rate, pixel scale, test
    set) when any was measured on the data set it is about, and the verdict rule."""
    measured = [r for r in rows if r["mean"] is not None]
    about = ", ".join(dict.fromkeys(_kind(f.on) for f in params.report.book))
    tolerances = sorted({f.tolerance for f in params.report.book})
    within = (f"within ±{tolerances[0]:g} (±{100 * tolerances[0]:.1f} points)"
              if len(tolerances) == 1 else "within the tolerance params.yaml gives it "
              f"(±{tolerances[0]:g} to ±{tolerances[-1]:g})")
    rule = (f"A figure reproduces when the measured mean test accuracy is {within} of it; "
            "mean and sd are over the variant's n seeds, or its one run (n 1).")
    if not measured:
        trained = ", ".join(dict.fromkeys(_kind(r["dataset"]) for r in rows))
        return (f"The sources' test accuracy on {about}, set beside this project's. This run "
                f"trains the variants on {trained}, so none is measured here. {rule}")
    groups: dict[str, list[str]] = {}
    for r in measured:
        groups.setdefault(_measured_at(params, r["variant"]), []).append(r["variant"])
    at = (next(iter(groups)) if len(groups) == 1
          else "; ".join(f"{s} ({', '.join(names)})" for s, names in groups.items()))
    return (f"The sources' test accuracy on {about}, set beside this project's, measured at "
            f"{at}. {rule}")


def _measured_at(params: Params, name: str) -> str:
    """A variant's training settings and test set in words, e.g. "batch 256, 10 epochs, lr
    0.1, pixels in [0, 1], the official test set"."""
    spec = params.train[name]
    test = ("the official test set" if params.data[spec.dataset].kind in OFFICIAL_TEST
            else "a held-out test split")
    scale = _SCALE_WORDS[params.prepare[spec.dataset].scale]
    return (f"batch {spec.batch_size}, {spec.epochs} epochs, lr {spec.optimizer.lr:g}, {scale}, "
            f"{test}")


def book_sentences(params: Params, details: Mapping[str, Any]) -> list[str]:
    """For each report.book entry with `same_as` whose two variants list the same seeds (on the
    same dataset): the paired difference of their test metric over those seeds, in words, with
    its 95% interval: whether the scratch version agrees with its concise twin."""
    out = []
    for fig in params.report.book:
        a, b = fig.variant, fig.same_as
        if b is None or params.train[a].dataset != params.train[b].dataset:
            continue
        paired = _over_shared_seeds(details, a, b)
        if paired is None or paired[0] != fig.metric:
            continue  # not trained yet, or not over the same seeds
        _, seeds, xa, xb = paired
        kind = _kind(params.data[params.train[a].dataset].kind)
        over = f"test {fig.metric} on {kind} over seeds {', '.join(map(str, seeds))}"
        out.append(f"{a} against {b}, {over}: " + _state_difference(
            a, b, xa, xb, primary_metric(fig.metric)))
    return out


# ----------------------------------------------------------------------------- environment


def package_versions(names: Sequence[str] = ("torch", "dvc", "mlflow", "scikit-learn", "numpy")
                     ) -> dict[str, str]:
    """{python: version, package: version} of the running interpreter, for the report's
    environment section."""
    import platform
    from importlib import metadata

    out = {"python": platform.python_version()}
    for n in names:
        try:
            out[n] = metadata.version(n)
        except metadata.PackageNotFoundError:
            out[n] = "not installed"
    return out


# ----------------------------------------------------------------------------- the answer first


@dataclass(frozen=True)
class BestRow:
    """The best test score on one dataset, among the variants (and search winners) on it."""

    dataset: str
    task: str
    metric: str  # the task's primary metric, e.g. "accuracy", "rmse"
    best: list[str]  # every model at the best score (a tie names them all)
    score: float
    spread: str  # "sd 0.0028 over 5 seeds", or "one run"
    of: int  # how many models were trained on the dataset
    resolution: str  # what one test row is worth, where a score counts rows ("1 of 360 rows")


@dataclass(frozen=True)
class Answer:
    best: list[BestRow]
    searches: list[str]  # per search: its winner against the hand-set base, one line
    lessons: list[tuple[str, bool]]  # (title, holds as its source states it)


def dataset_of(params: Params, name: str) -> str:
    """The dataset of a variant, or of a search's winner (select@NAME: its base variant's)."""
    if name.startswith("select@"):
        name = params.select.searches[name.removeprefix("select@")].base
    return params.train[name].dataset


def _spread(m: Mapping[str, float], metric: str) -> str:
    sd, n = m.get(f"seeds_test_{metric}_sd"), m.get("seeds_n")
    return f"sd {fmt(sd)} over {int(n)} seeds" if sd is not None and n else "one run"


def best_rows(params: Params, metrics: Mapping[str, Mapping[str, float]],
              details: Mapping[str, Any]) -> list[BestRow]:
    """Per dataset (in params.train order), the model(s) with the best primary test score."""
    by_dataset: dict[str, list[str]] = {}
    for name in metrics:
        if name in params.train or (name.startswith("select@") and params.select is not None
                                    and name.removeprefix("select@") in params.select.searches):
            by_dataset.setdefault(dataset_of(params, name), []).append(name)
    rows = []
    for dataset in dict.fromkeys(spec.dataset for spec in params.train.values()):
        names = [n for n in by_dataset.get(dataset, [])
                 if f"test_{task_metric(params, dataset).name}" in metrics[n]]
        if not names:
            continue
        metric = task_metric(params, dataset)
        key = f"test_{metric.name}"
        score = (max if metric.higher_is_better else min)(metrics[n][key] for n in names)
        best = [n for n in names if math.isclose(metrics[n][key], score, rel_tol=1e-12,
                                                 abs_tol=1e-15)]
        n_test = _n_test(details.get(best[0]))
        resolution = (f"1 of {n_test} test rows = {100 / n_test:.2f} points"
                      if n_test and metric.name == "accuracy" else "")
        rows.append(BestRow(dataset, DATASET_TASKS[params.data[dataset].kind], metric.name, best,
                            score, _spread(metrics[best[0]], metric.name), len(names),
                            resolution))
    return rows


def task_metric(params: Params, dataset: str) -> Metric:
    """The primary metric of the task a dataset poses."""
    return PRIMARY[DATASET_TASKS[params.data[dataset].kind]]


def search_lines(params: Params, metrics: Mapping[str, Mapping[str, float]],
                 searches: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Per named search, one line: its refitted winner's test score against its base's."""
    out = []
    for name, search in searches.items():
        info = search["info"]
        base = info.get("base")
        if base not in params.train:
            continue
        metric = task_metric(params, params.train[base].dataset)
        own = metrics.get(f"select@{name}", {}).get(f"test_{metric.name}")
        theirs = metrics.get(base, {}).get(f"test_{metric.name}") if base else None
        if own is None:
            continue
        line = (f"select@{name} chose {info.get('chosen_words', 'its configuration')}: "
                f"test {metric.name} {fmt(own)}")
        if theirs is not None:
            scale, unit, digits = difference_units(metric)
            diff = (own - theirs) if metric.higher_is_better else (theirs - own)
            if abs(diff) * scale < 0.5 * 10 ** -digits:
                line += f", the same as its hand-set base {base} ({fmt(theirs)})"
            else:
                line += (f", {abs(diff) * scale:.{digits}f}{' ' + unit if unit else ''} "
                         f"{'better' if diff > 0 else 'worse'} than its hand-set base {base} "
                         f"({fmt(theirs)})")
        out.append(line + ".")
    return out


def answer(params: Params, metrics: Mapping[str, Mapping[str, float]],
           details: Mapping[str, Any] | None = None,
           searches: Mapping[str, Mapping[str, Any]] | None = None,
           lessons: Sequence[Mapping[str, Any]] | None = None) -> Answer:
    """What a reader came for, before any table: the best model per dataset, each search's
    winner against its base, each lesson's verdict."""
    return Answer(best_rows(params, metrics, details or {}),
                  search_lines(params, metrics, searches or {}),
                  [(e["title"], bool(e["holds"])) for e in lessons or []])


# ----------------------------------------------------------------------------- contrasts


@dataclass(frozen=True)
class ContrastRow:
    """One params.report.contrasts entry as measured: verdict None where none is claimed."""

    title: str
    source: str
    claim: str
    a: str
    b: str
    measured: str
    verdict: bool | None


def _recall(details: Mapping[str, Any], name: str, classes: Sequence[int]) -> list[float] | None:
    per = (details.get(name) or {}).get("per_class")
    if not per:
        return None
    return [float(per[str(c)]["recall"]) for c in classes if str(c) in per]


def contrast_rows(params: Params, metrics: Mapping[str, Mapping[str, float]],
                  details: Mapping[str, Any]) -> list[ContrastRow]:
    """Each params.report.contrasts entry whose two variants have results, with what they show."""
    rows = []
    for c in params.report.contrasts:
        ma, mb = metrics.get(c.a), metrics.get(c.b)
        verdict: bool | None = None
        if not ma or not mb:  # a pair that did not run (both must have results) is left out
            continue
        task = variant_task(params, c.a)
        metric = PRIMARY[task].name if task else "loss"
        ta, tb = ma.get(f"test_{metric}"), mb.get(f"test_{metric}")
        scores = f"test {metric} {fmt(ta)} (`{c.a}`) against {fmt(tb)} (`{c.b}`)"
        if "test_log_loss" in ma and "test_log_loss" in mb:
            scores += (f", test log-loss {fmt(ma['test_log_loss'])} against "
                       f"{fmt(mb['test_log_loss'])}")
        if c.measure == "fit_error":
            wa, wb = ma.get("w_error"), mb.get("w_error")
            ba, bb = ma.get("b_error"), mb.get("b_error")
            text = (f"|w - w*| {fmt(wa)} against {fmt(wb)}, |b - b*| {fmt(ba)} against "
                    f"{fmt(bb)} (`{c.a}` against `{c.b}`: w = {fmt(ma.get('w_0'))} and "
                    f"{fmt(mb.get('w_0'))}, b = {fmt(ma.get('b'))} and {fmt(mb.get('b'))}); "
                    + scores)
            if None not in (wa, wb, ba, bb):
                verdict = wa < wb and ba < bb
        elif c.measure == "rare_recall":
            spec = params.data[params.train[c.a].dataset]
            rare = list(getattr(spec, "imbalance", None).classes) if getattr(
                spec, "imbalance", None) else []
            ra, rb = _recall(details, c.a, rare), _recall(details, c.b, rare)
            if ra and rb:
                per = ", ".join(f"{k}: {fmt(x)} against {fmt(y)}"
                                for k, x, y in zip(rare, ra, rb))
                mean_a, mean_b = sum(ra) / len(ra), sum(rb) / len(rb)
                text = (f"test recall of the rare classes ({per}; mean {fmt(mean_a)} against "
                        f"{fmt(mean_b)}); " + scores)
                verdict = mean_a > mean_b
            else:
                text = "no per-class recall for these variants; " + scores
        elif c.measure == "same":
            text = scores
            if ta is not None and tb is not None:
                verdict = abs(ta - tb) <= 1e-6
        else:
            text = scores
        rows.append(ContrastRow(c.title, c.source, c.claim, c.a, c.b, text, verdict))
    return rows


def verdict_words(verdict: bool | None) -> str:
    """A contrast's verdict as the report words it."""
    return {True: "holds", False: "does not hold as stated", None: "measured"}[verdict]


# ----------------------------------------------------------------------------- submission


def submission_text(summary: Mapping[str, Any] | None) -> str:
    """The submit stage's choice (its submission.json) in one paragraph; "" without one."""
    if not summary or not summary.get("chosen"):
        return ""
    cands = ", ".join(f"`{r['variant']}` {fmt(r['val_rmse_mean'])} +/- {fmt(r['val_rmse_std'])}"
                      for r in summary["candidates"])
    if not summary.get("rows"):
        return (f"Chosen by K-fold log-RMSE ({cands}): `{summary['chosen']}`. The dataset has no "
                "test table, so `data/submission/submission.csv` holds its header only.")
    first = "; ".join(", ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}"
                                for k, v in row.items()) for row in summary["first_rows"])
    return (f"Chosen by mean validation log-RMSE over the folds of the training rows ({cands}): "
            f"`{summary['chosen']}`, refitted on all {summary['train_rows']} training rows "
            f"(training log-RMSE {fmt(summary['refit_train_log_rmse'])}). "
            f"`data/submission/submission.csv` has {summary['rows']} rows, one per test row in "
            f"the test file's order; the first: {first}.")
