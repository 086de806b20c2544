"""How a model is judged: train and test metrics of every trained variant, from the DVC outputs,
and the finishing touches on each variant's MLflow run (test metrics, logged model)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics import tracking
from dlbasics.config import Params, VariantSpec
from dlbasics.data import DataError, Prepared
from dlbasics.experiment import load_variant_data
from dlbasics.metrics import (
    binary_metrics,
    classification_details,
    classification_metrics,
    multilabel_metrics,
    multilabel_predict,
    regression_metrics,
)
from dlbasics.models import build_model, linear_weights, load_state_dict
from dlbasics.training import predict

SCORED_SPLITS = ("train", "test")


def read_model_info(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "model.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the train stage first (dvc repro)") from None


def model_spec(params: Params, name: str, model_dir: Path) -> VariantSpec:
    """The settings a saved model was trained with (recorded beside it; else from params)."""
    info = read_model_info(model_dir)
    return VariantSpec.model_validate(info["spec"]) if "spec" in info else params.train[name]


def load_model(params: Params, name: str, model_dir: Path) -> torch.nn.Module:
    """Rebuild variant `name`'s network and load its trained weights (weights_only)."""
    info = read_model_info(model_dir)
    model = build_model(
        model_spec(params, name, model_dir).model, info["n_features"], info["n_outputs"],
        torch.Generator(),
    )
    return load_state_dict(model, str(model_dir / "model.pt")).eval()


def parameter_summary(model: torch.nn.Module, manifest: dict[str, Any], zero_tol: float):
    """For one-output linear models: the learned weights against the truth, norm and sparsity."""
    lw = linear_weights(model)
    if lw is None:
        return {}
    w, b = lw
    out: dict[str, float] = {
        "w_norm": float(w.norm()),
        "n_weights": float(w.numel()),
        "n_near_zero": float((w.abs() < zero_tol).sum()),
    }
    if w.numel() <= 8:
        out.update({f"w_{i}": float(v) for i, v in enumerate(w)})
    if b is not None:
        out["b"] = float(b)
    if manifest.get("true_w") is not None:
        true = torch.tensor(manifest["true_w"][: w.numel()], dtype=w.dtype)
        out["w_error"] = float((w[: true.numel()] - true).abs().max())
        if b is not None and manifest.get("true_b") is not None:
            out["b_error"] = float((b - manifest["true_b"]).abs())
    return out


def score(params: Params, task: str, n_outputs: int, y: torch.Tensor, out: torch.Tensor):
    """Metrics of outputs `out` against targets `y` for the dataset's task."""
    ev = params.evaluate
    y_np, out_np = y.numpy(), out.numpy()
    if task == "regression":
        return regression_metrics(y_np, out_np)
    if task == "classification":
        return classification_metrics(y_np, out_np, n_classes=n_outputs, top_k=tuple(ev.top_k))
    if task == "binary":
        return binary_metrics(y_np, out_np.reshape(-1))
    by_threshold = multilabel_metrics(
        y_np, multilabel_predict(out_np, threshold=ev.multilabel_threshold)
    )
    by_top_k = multilabel_metrics(y_np, multilabel_predict(out_np, top_k=ev.multilabel_top_k))
    return {**by_threshold, **{f"top{ev.multilabel_top_k}_{k}": v for k, v in by_top_k.items()}}


def evaluate_variant(
    params: Params, name: str, data: Prepared, model_dir: Path
) -> tuple[dict[str, float], dict[str, Any]]:
    """({"train_<metric>", "test_<metric>", parameter summary}, details for classifiers)."""
    model = load_model(params, name, model_dir)
    info = read_model_info(model_dir)
    result: dict[str, float] = {}
    details: dict[str, Any] = {}
    for split in SCORED_SPLITS:
        s = data.splits[split]
        out = predict(model, s.X)
        result.update(
            {f"{split}_{k}": float(v)
             for k, v in score(params, data.task, info["n_outputs"], s.y, out).items()}
        )
        if split == "test" and data.task in ("classification", "binary"):
            pred = out.argmax(1) if data.task == "classification" else (out.reshape(-1) > 0).long()
            details = classification_details(
                s.y.numpy(), pred.numpy(), class_names=data.manifest["class_names"]
            )
            names = data.manifest["class_names"]
            # Per-row (actual, predicted) for DVC's confusion-matrix template.
            details["predictions"] = [
                {"actual": names[int(a)], "predicted": names[int(b)]}
                for a, b in zip(s.y.tolist(), pred.tolist())
            ]
    if str(data.manifest.get("target", "")).startswith("log("):
        # The target is log(price): its RMSE is the log-RMSE the sources score house prices by.
        for split in SCORED_SPLITS:
            result[f"{split}_log_rmse"] = result[f"{split}_rmse"]
    for k, v in (info.get("cv") or {}).items():
        if k.endswith(("_mean", "_std")):
            result[f"cv_{k}"] = float(v)
    result.update(parameter_summary(model, data.manifest, params.evaluate.zero_tol))
    return result, details


# The test metric that repeated runs (seeds) and paired comparisons are stated in, per task.
REPEAT_METRIC = {"regression": "rmse", "classification": "accuracy", "binary": "accuracy",
                 "multilabel": "exact_match"}


def repeated_scores(
    params: Params, name: str, data: Prepared, model_dir: Path
) -> dict[str, Any] | None:
    """Test metrics of the models a variant trained once per seed of its `seeds`:
    {"seeds": [s, ...], "metric": m, "test": {metric: [value per seed]}}, None without seeds."""
    info = read_model_info(model_dir)
    entries = info.get("seeds")
    if not entries:
        return None
    spec = model_spec(params, name, model_dir)
    test = data.splits["test"]
    per_metric: dict[str, list[float]] = {}
    for entry in entries:
        model = build_model(spec.model, info["n_features"], info["n_outputs"], torch.Generator())
        model = load_state_dict(model, str(model_dir / entry["file"])).eval()
        scores = score(params, data.task, info["n_outputs"], test.y, predict(model, test.X))
        for k, v in scores.items():
            per_metric.setdefault(k, []).append(float(v))
    return {"seeds": [e["seed"] for e in entries], "metric": REPEAT_METRIC[data.task],
            "test": per_metric}


def fold_scores(model_dir: Path) -> dict[str, Any] | None:
    """A K-fold variant's per-fold validation scores: {"metric", "val": [per fold]}."""
    cv = read_model_info(model_dir).get("cv")
    if not cv:
        return None
    metric = cv["metric"]
    return {"k": cv["k"], "metric": metric, "val": [r[f"val_{metric}"] for r in cv["folds"]]}


def repeat_summary(rep: dict[str, Any]) -> dict[str, float]:
    """metrics.json entries of repeated runs: mean and sd (ddof 1) of the test metric."""
    from dlbasics.stats import mean_interval

    m = rep["metric"]
    res = mean_interval(rep["test"][m])
    return {f"seeds_test_{m}_mean": res["mean"], f"seeds_test_{m}_sd": res["sd"],
            "seeds_n": float(res["n"])}


def displayable(X: np.ndarray, manifest: dict[str, Any]) -> np.ndarray:
    """Prepared image rows [N, H*W] back in pixel units (the scaling undone) for showing."""
    undo = manifest.get("unscale")
    if not undo:
        return X
    return X * np.asarray(undo["scale"], dtype=np.float32) + np.asarray(undo["offset"], np.float32)


def evaluated_names(params: Params, models_root: Path) -> list[str]:
    """Every variant, and `select` (the refitted winner of the grid search) when configured."""
    return [*params.train, *(["select"] if params.select is not None else [])]


def model_dir(models_root: Path, name: str, select_dir: Path | None = None) -> Path:
    """Where the weights of `name` are: the train stage's models_root/<variant>, or the select
    stage's own directory for `select`."""
    if name == "select":
        return select_dir if select_dir is not None else models_root.with_name("select")
    return models_root / name


def evaluate_all(
    params: Params, prepared_root: Path, models_root: Path, figures_dir: Path | None = None,
    select_dir: Path | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """(variant -> metrics, variant -> classification details) for every variant in params.

    With `figures_dir`, also writes `<dataset>_samples.png` for every image dataset used and
    `<variant>_predictions.png` for every image classifier (true / predicted labels).
    """
    from dlbasics import figures
    from dlbasics.io import write_bytes_atomic

    results, details = {}, {}
    drawn: set[str] = set()
    for name in evaluated_names(params, models_root):
        where = model_dir(models_root, name, select_dir)
        spec = model_spec(params, name, where)
        data = load_variant_data(params, name, prepared_root / spec.dataset, splits=SCORED_SPLITS,
                                 spec=spec)
        results[name], d = evaluate_variant(params, name, data, where)
        rep = repeated_scores(params, name, data, where)
        if rep is not None:
            results[name].update(repeat_summary(rep))
            d["seeds"] = rep
        folds = fold_scores(where)
        if folds is not None:
            d["folds"] = folds
        if d:
            details[name] = d
        man = data.manifest
        if figures_dir is None or not man.get("image_shape") or data.task != "classification":
            continue
        test = data.splits["test"]
        shown = displayable(test.X[:24].numpy(), man)
        if spec.dataset not in drawn:
            drawn.add(spec.dataset)
            write_bytes_atomic(
                figures_dir / f"{spec.dataset}_samples.png",
                figures.sample_grid(shown, test.y[:24].numpy(), man["class_names"],
                                    man["image_shape"]),
            )
        pred = predict(load_model(params, name, where), test.X[:24]).argmax(1)
        write_bytes_atomic(
            figures_dir / f"{name}_predictions.png",
            figures.prediction_grid(shown, test.y[:24].numpy(), pred.numpy(),
                                    man["class_names"], man["image_shape"]),
        )
    return results, details


def write_predictions(details: dict[str, Any], out_dir: Path) -> dict[str, Any]:
    """Move each classifier's per-row predictions out of `details` into out_dir/<variant>.json."""
    from dlbasics.io import write_json_atomic

    for name, d in details.items():
        if "predictions" in d:
            write_json_atomic(out_dir / f"{name}.json", d.pop("predictions"))
    return details


def series_table(params: Params, results: dict[str, dict[str, float]]) -> dict[str, list]:
    """Variants marked with `series` grouped into named series, ordered by x."""
    table: dict[str, list] = {}
    for name, spec in params.train.items():
        if spec.series is not None:
            table.setdefault(spec.series.name, []).append(
                {"x": spec.series.x, "variant": name, **results[name]}
            )
    return {k: sorted(v, key=lambda r: r["x"]) for k, v in sorted(table.items())}


def variant_figures(name: str, history_root: Path | None, figures_root: Path | None,
                    details: dict[str, Any]) -> dict[str, bytes]:
    """The figures of one variant for its MLflow run, {file name: PNG bytes}: learning curves
    (from its history), the test confusion matrix (classifiers) and the prediction grid
    (image classifiers, drawn by evaluate)."""
    from dlbasics.html_report import confusion_png, curves_png

    out: dict[str, bytes] = {}
    history = history_root / f"{name}.json" if history_root is not None else None
    if history is not None and history.exists():
        out["curves.png"] = curves_png(name, json.loads(history.read_text()))
    d = details.get(name) or {}
    if d.get("confusion_matrix"):
        classes = d.get("class_names") or [str(i) for i in range(len(d["confusion_matrix"]))]
        out["confusion.png"] = confusion_png(d["confusion_matrix"], classes, name)
    grid = figures_root / f"{name}_predictions.png" if figures_root is not None else None
    if grid is not None and grid.exists():
        out["predictions.png"] = grid.read_bytes()
    return out


def _log_figures(client: Any, run_id: str, figures: dict[str, bytes]) -> None:
    """Log `figures` under figures/ of run `run_id`, skipping those it already holds."""
    import tempfile

    have = {Path(a.path).name for a in client.list_artifacts(run_id, "figures")}
    todo = {k: v for k, v in figures.items() if k not in have}
    if not todo:
        return
    with tempfile.TemporaryDirectory(prefix="dlbasics-figures-") as tmp:
        for fname, png in todo.items():
            (Path(tmp) / fname).write_bytes(png)
            client.log_artifact(run_id, str(Path(tmp) / fname), "figures")


def finish_runs(
    params: Params, models_root: Path, results: dict[str, dict[str, float]], data_root: Path,
    details: dict[str, Any] | None = None, history_root: Path | None = None,
    figures_root: Path | None = None, select_dir: Path | None = None,
) -> list[str]:
    """Add each variant's metrics and model to the MLflow run that trained its weights.

    The run is found by the sha256 of the weights, so cached variants are matched to the run that
    produced them, and a run that already holds these values and a model gets nothing new.
    Logging the models here, in one process, pays mlflow's environment scan once instead of
    once per train stage. Each run also gets its figures (see variant_figures) under figures/.
    Returns the variants whose run could not be found.
    """
    import mlflow
    from mlflow.entities import Metric

    missing = []
    client = None
    for name, metrics in results.items():
        where = model_dir(models_root, name, select_dir)
        info = read_model_info(where)
        run = tracking.find_run(
            params.tracking.experiment, {"variant": name, "model_sha256": info["model_sha256"]}
        )
        if run is None:
            missing.append(name)
            continue
        client = client or mlflow.MlflowClient()
        new = {k: v for k, v in metrics.items() if run.data.metrics.get(k) != v}
        if new:
            stamp = int(run.info.end_time or run.info.start_time)
            client.log_batch(
                run.info.run_id, metrics=[Metric(k, v, stamp, 0) for k, v in new.items()]
            )
        if params.tracking.log_models and not run.outputs.model_outputs:
            spec = model_spec(params, name, where)
            data = load_variant_data(params, name, data_root / spec.dataset, splits=("test",),
                                     spec=spec)
            _log_model(run.info.run_id, load_model(params, name, where), data.splits["test"].X[:5])
        _log_figures(client, run.info.run_id,
                     variant_figures(name, history_root, figures_root, details or {}))
    return missing


def _log_model(run_id: str, model: torch.nn.Module, example: torch.Tensor) -> None:
    """Log `model` (CPU, eval mode) to run `run_id` with a signature and an input example."""
    import mlflow
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    status = mlflow.MlflowClient().get_run(run_id).info.status
    with mlflow.start_run(run_id=run_id):
        mlflow.pytorch.log_model(
            model,
            name="model",
            signature=signature,
            input_example=np.asarray(example.numpy()),
            # Explicit requirements: mlflow's inference would import-scan in a subprocess.
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        )
    mlflow.MlflowClient().set_terminated(run_id, status=status)
