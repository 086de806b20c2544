"""Lessons that demonstrate a mechanism by computing it (the `lessons` stage; floor 4: imports
any floor below, no other floor imports it).

Each lesson is a pure function in one of the modules here (descent: differences and gradient
descent, file 003 and the book's 3.3; gradients: why training follows a loss, numerical
gradients against backpropagation, file 003; networks: stacking, symmetry, gradient flow, activations; losses: file 001's BCE and class
weights; preliminaries: d2l ch. 2-3)
returning a `LessonResult`. This module maps the `lessons:` entries of params to those
functions, runs the enabled ones and writes their results (see `write_results`).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Callable

from dlbasics.lessons.base import LessonResult, Table

__all__ = ["LessonResult", "Table", "defaults", "run_all", "run_tracked", "write_results",
           "RESULTS_FILE"]

RESULTS_FILE = "lessons.json"


def defaults(name: str) -> dict[str, Any]:
    """The keyword arguments of lesson `name` (a key of `lessons:`, also its function's name) at
    the defaults of its settings in dlbasics.config.lessons, less the dataset: the one place they live."""
    from dlbasics.config.lessons import LessonsSpec

    field = LessonsSpec.model_fields[name]
    (kind,) = [a for a in field.annotation.__args__ if hasattr(a, "model_fields")]
    return {k: v for k, v in kind().model_dump().items() if k != "dataset"}


def _registry() -> dict[str, Callable[[Any, dict[str, Any]], LessonResult | list]]:
    """lessons key -> fn(settings, context) -> LessonResult (or a list of them).

    context: {"seed": int, "data": name -> Prepared}."""
    from dlbasics.lessons import descent, gradients, losses, networks, preliminaries

    def settings(s) -> dict[str, Any]:  # the lesson's keyword arguments (data comes apart)
        return {k: v for k, v in s.model_dump().items() if k != "dataset"}

    def with_data(fn):
        return lambda s, ctx: fn(data=ctx["data"](s.dataset), seed=ctx["seed"], **settings(s))

    return {
        "rounding": lambda s, ctx: descent.rounding(**settings(s)),
        "gradient_descent_2d": lambda s, ctx: descent.gradient_descent_2d(**settings(s)),
        "learning_rates": lambda s, ctx: descent.learning_rates(**settings(s)),
        "accuracy_signal": with_data(gradients.accuracy_signal),
        "numerical_training": with_data(gradients.numerical_training),
        "stacked_linear": with_data(networks.stacked_linear),
        "symmetry": with_data(networks.symmetry),
        "gradient_flow": with_data(networks.gradient_flow),
        "activations": lambda s, ctx: networks.activations(**settings(s)),
        "vectorisation": lambda s, ctx: preliminaries.vectorisation(**settings(s)),
        "cross_entropy_is_nll": lambda s, ctx: preliminaries.cross_entropy_is_nll(
            seed=ctx["seed"], **settings(s)),
        "bce_saturation": lambda s, ctx: losses.bce_saturation(seed=ctx["seed"], **settings(s)),
        "weighted_cross_entropy": lambda s, ctx: losses.weighted_cross_entropy(
            seed=ctx["seed"], **settings(s)),
        "house_tiny": lambda s, ctx: preliminaries.house_tiny(),
        "preliminaries": lambda s, ctx: [
            preliminaries.broadcasting(), preliminaries.indexing_in_place(),
            preliminaries.numpy_round_trip(), preliminaries.reductions(),
            preliminaries.autograd(), preliminaries.pick_and_accuracy()],
    }


def run_all(params, prepared_root: Path, log=print) -> dict[str, LessonResult]:
    """Every enabled lesson of params.lessons, in params order: {lesson id: result}.

    A lesson entry that yields several results (the preliminaries) gets ids "<key>.<n>"."""
    from dlbasics.data.prepared import load_prepared

    cache: dict[str, Any] = {}

    def data(name: str):
        if name not in cache:
            cache[name] = load_prepared(prepared_root / name)
        return cache[name]

    ctx = {"seed": params.seed, "data": data}
    registry = _registry()
    out: dict[str, LessonResult] = {}
    for key in type(params.lessons).model_fields:
        spec = getattr(params.lessons, key)
        if spec is None or spec is False:  # not listed, null, or preliminaries: false
            continue
        result = registry[key](spec, ctx)
        results = result if isinstance(result, list) else [result]
        for i, r in enumerate(results):
            lid = key if len(results) == 1 else f"{key}.{i + 1}"
            out[lid] = r
            log(f"lessons: {lid}: {'holds' if r.holds else 'does not hold as stated'}")
    return out


def write_results(results: dict[str, LessonResult], out_dir: Path) -> None:
    """out_dir/lessons.json ([{"id": lesson id, every result field but figures and timings,
    "figures": [file names]}] in params order) and one PNG per figure (see figure_name), swapped
    in as one directory."""
    from dlbasics.io import atomic_directory, write_bytes_atomic, write_json_atomic

    with atomic_directory(out_dir) as tmp:
        doc = []  # a list: the lessons in params order (a JSON object's keys get sorted)
        for lid, r in results.items():
            names = {stem: figure_name(lid, stem) for stem in sorted(r.figures)}
            doc.append({"id": lid, **r.as_json(), "figures": list(names.values())})
            for stem, png in sorted(r.figures.items()):
                write_bytes_atomic(tmp / names[stem], png)
        write_json_atomic(tmp / RESULTS_FILE, doc)


def figure_name(lesson_id: str, stem: str) -> str:
    """The file of one lesson's figure: <lesson id>.png, or <lesson id>_<stem>.png."""
    return f"{lesson_id}.png" if stem == lesson_id else f"{lesson_id}_{stem}.png"


def _metric_key(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-/ ]", "_", text)[:250]


def run_tracked(params, prepared_root: Path, out_dir: Path, log=print) -> dict[str, LessonResult]:
    """run_all and write_results inside one MLflow run named `lessons` (tag kind=lessons): each
    lesson's numeric values and wall-clock timings as metrics (`<lesson id>.<name>`), whether
    it holds as a tag, its figures as artifacts under figures/."""
    import tempfile

    import mlflow

    from dlbasics.tracking import runs

    from dlbasics import trace

    with trace.span("lessons: MLflow run", "tracking"), \
            runs.run(params.tracking.experiment, "lessons", {"kind": "lessons"}):
        with trace.span("lessons: compute", "compute"):
            results = run_all(params, prepared_root, log=log)
        write_results(results, out_dir)
        metrics = {}
        for lid, r in results.items():
            for k, v in {**r.values, **{f"seconds.{t}": x for t, x in r.timings.items()}}.items():
                if isinstance(v, (int, float)) and math.isfinite(float(v)):
                    metrics[_metric_key(f"{lid}.{k}")] = float(v)
            for t, x in r.timings.items():
                log(f"lessons: {lid}: {t} = {x:.4g} (wall clock: MLflow only, not in the report)")
        mlflow.log_metrics(metrics)
        mlflow.set_tags({_metric_key(f"holds.{lid}"): str(r.holds) for lid, r in results.items()})
        with tempfile.TemporaryDirectory(prefix="dlbasics-lessons-") as tmp:
            for lid, r in results.items():
                for stem, png in r.figures.items():
                    (Path(tmp) / figure_name(lid, stem)).write_bytes(png)
            if any(r.figures for r in results.values()):
                mlflow.log_artifacts(tmp, "figures")
    return results
