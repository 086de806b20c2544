"""The first half of the `report` stage: every model's evaluation, written beside its weights by
`train` and `select`, gathered into the DVC metrics, plots and figures files. It reads JSON and
copies PNG bytes; it imports no torch, so it costs well under a second however many variants
there are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dlbasics.config.params import Params
from dlbasics.errors import DataError
from dlbasics.io import EVAL_DIR, HISTORY, atomic_directory, write_bytes_atomic, write_json_atomic
from dlbasics.report.content import dataset_of, task_metric


def search_names(params: Params) -> list[str]:
    """The named searches of params.select, in params order."""
    return list(params.select.searches) if params.select is not None else []


def collected_names(params: Params) -> list[str]:
    """Every variant, then select@NAME (the refitted winner) of every named search."""
    return [*params.train, *(f"select@{s}" for s in search_names(params))]


def primary_key(params: Params, name: str) -> str:
    """`test_<metric>` of the task's primary metric for a variant or a search's winner
    (select@NAME: its base variant's task)."""
    return f"test_{task_metric(params, dataset_of(params, name)).name}"


def scores(params: Params, metrics: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The metrics file DVC shows (`dvc exp show`, `dvc metrics diff`): for each variant and each
    search's winner its primary test metric only, {name: {"test_<metric>": value}}, so that a
    table of experiments has one metric column per model. metrics.json keeps every metric."""
    out = {}
    for name, m in metrics.items():
        key = primary_key(params, name)
        if key in m:
            out[name] = {key: m[key]}
    return out


def model_dir(name: str, models_root: Path, select_root: Path) -> Path:
    """Where `train` (models_root/<variant>) or `select@NAME` (select_root/NAME) put a model."""
    return select_root / name.removeprefix("select@") if name.startswith("select@") \
        else models_root / name


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the train and select stages first "
                        "(dvc repro)") from None


def check_submission(params: Params, submission: dict[str, Any], path: Path) -> None:
    """The submission chose among the candidates params.yaml has now (DataError otherwise): the
    submit stage depends only on the candidates dvc.yaml declares (`make deps` derives them), so
    a candidate added without `make deps` would leave it out unseen."""
    from dlbasics.config.params import submission_candidates

    among = [r["variant"] for r in submission.get("candidates") or []]
    now = submission_candidates(params)[1]
    if among != now:
        raise DataError(f"{path}: chosen among {among or 'no variant'}, but params.yaml's "
                        f"candidates (kfold variants on the house-prices table) are "
                        f"{now or 'none'}; run `make deps` (dvc.yaml's submit deps), then "
                        "`dvc repro`")


def read_json(path: Path) -> Any:
    """The JSON file at path; a missing one is a DataError that says which stages write it."""
    return json.loads(_read_bytes(path))


def series_table(params: Params, results: dict[str, dict[str, float]]) -> dict[str, list]:
    """Variants marked with `series` grouped into named series, ordered by x."""
    table: dict[str, list] = {}
    for name, spec in params.train.items():
        if spec.series is not None:
            table.setdefault(spec.series.name, []).append(
                {"x": spec.series.x, "variant": name, **results[name]}
            )
    return {k: sorted(v, key=lambda r: r["x"]) for k, v in sorted(table.items())}


def collect(
    params: Params, models_root: Path, select_dir: Path, metrics_path: Path,
    details_path: Path, series_path: Path, figures_dir: Path, predictions_dir: Path,
    history_dir: Path, scores_path: Path | None = None,
) -> dict[str, dict[str, float]]:
    """Write reports/metrics.json ({variant: metrics}), scores.json (the primary test metric of
    each, see `scores`), details.json (classifier details,
    seeds, folds), series.json, predictions/<variant>.json (per-row test predictions, for the
    confusion plots) and figures/ (per image dataset a sample grid, per image classifier its
    prediction grid; curves/<variant>.png and confusion/<variant>.png for the report) and
    history/<variant>.json (per-epoch records of each variant's final fit, DVC plots data).
    Returns the metrics."""
    results: dict[str, dict[str, float]] = {}
    details: dict[str, Any] = {}
    drawn: set[str] = set()
    with (atomic_directory(figures_dir) as figs, atomic_directory(predictions_dir) as preds,
          atomic_directory(history_dir) as hist):
        for name in params.train:
            write_bytes_atomic(hist / f"{name}.json",
                               _read_bytes(models_root / name / HISTORY))
        for name in collected_names(params):
            where = model_dir(name, models_root, select_dir)
            ev = where / EVAL_DIR
            results[name] = read_json(ev / "metrics.json")
            d = read_json(ev / "details.json")
            has_predictions = (ev / "predictions.json").is_file()
            if d or has_predictions:
                details[name] = d
            if has_predictions:
                write_bytes_atomic(preds / f"{name}.json", (ev / "predictions.json").read_bytes())
            dataset = read_json(where / "model.json")["spec"]["dataset"]
            if (ev / "samples.png").is_file() and dataset not in drawn:
                drawn.add(dataset)
                write_bytes_atomic(figs / f"{dataset}_samples.png",
                                   (ev / "samples.png").read_bytes())
            for src, dst in (("predictions.png", f"{name}_predictions.png"),
                             ("fit.png", f"{name}_fit.png"),
                             ("curves.png", f"curves/{name}.png"),
                             ("confusion.png", f"confusion/{name}.png")):
                if (ev / src).is_file():
                    write_bytes_atomic(figs / dst, (ev / src).read_bytes())
    write_json_atomic(metrics_path, results)
    if scores_path is not None:
        write_json_atomic(scores_path, scores(params, results))
    write_json_atomic(details_path, details)
    write_json_atomic(series_path, series_table(params, results))
    return results
