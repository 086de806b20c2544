"""How a model is judged: train and test metrics of every trained variant, from the DVC outputs,
and the finishing touches on each variant's MLflow run (test metrics, logged model)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics.config import Params, VariantSpec
from dlbasics.data import DataError, Prepared
from dlbasics.experiment import load_variant_data
from dlbasics.io import EVAL_DIR, HISTORY, atomic_directory, write_bytes_atomic, write_json_atomic
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
    # Imported here: scikit-learn takes a second to import, and the train stage's main process
    # (which logs evaluations to MLflow) never scores anything itself.
    from dlbasics.metrics import (
        binary_metrics, classification_metrics, multilabel_metrics, multilabel_predict,
        regression_metrics,
    )

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
            from dlbasics.metrics import classification_details

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


def evaluate_model(params: Params, name: str, prepared_root: Path, model_dir: Path
                   ) -> dict[str, Any]:
    """Everything one trained model is judged by, from its files and the prepared data.

    Returns {"metrics": {"train_<m>", "test_<m>", ...}, "details": classifier details, seeds and
    folds (no per-row predictions), "predictions": per-row (actual, predicted) of the test set
    or None, "figures": {file name: PNG bytes}}. The figures: learning curves (from the model
    directory's history.json, when it has one), the test confusion matrix (classifiers), and
    for image classifiers the first 24 test images with their labels (samples.png) and with the
    predictions (predictions.png). Deterministic for the same files and settings.
    """
    from dlbasics import figures

    spec = model_spec(params, name, model_dir)
    data = load_variant_data(params, name, prepared_root / spec.dataset, splits=SCORED_SPLITS,
                             spec=spec)
    metrics, d = evaluate_variant(params, name, data, model_dir)
    rep = repeated_scores(params, name, data, model_dir)
    if rep is not None:
        metrics.update(repeat_summary(rep))
        d["seeds"] = rep
    folds = fold_scores(model_dir)
    if folds is not None:
        d["folds"] = folds
    predictions = d.pop("predictions", None)
    pngs: dict[str, bytes] = {}
    history = model_dir / HISTORY
    if history.exists():
        pngs["curves.png"] = figures.curves_png(name, json.loads(history.read_text()))
    if d.get("confusion_matrix"):
        classes = d.get("class_names") or [str(i) for i in range(len(d["confusion_matrix"]))]
        pngs["confusion.png"] = figures.confusion_png(d["confusion_matrix"], classes, name)
    man = data.manifest
    if man.get("image_shape") and data.task == "classification":
        test = data.splits["test"]
        shown = displayable(test.X[:24].numpy(), man)
        pngs["samples.png"] = figures.sample_grid(shown, test.y[:24].numpy(), man["class_names"],
                                                  man["image_shape"])
        pred = predict(load_model(params, name, model_dir), test.X[:24]).argmax(1)
        pngs["predictions.png"] = figures.prediction_grid(
            shown, test.y[:24].numpy(), pred.numpy(), man["class_names"], man["image_shape"])
    return {"metrics": metrics, "details": d, "predictions": predictions, "figures": pngs}


def write_evaluation(model_dir: Path, ev: dict[str, Any]) -> None:
    """evaluate_model's result into model_dir/eval/ (swapped in whole): metrics.json,
    details.json, predictions.json (classifiers) and the figures; the report stage gathers them
    (dlbasics.collect)."""
    with atomic_directory(model_dir / EVAL_DIR) as tmp:
        write_json_atomic(tmp / "metrics.json", ev["metrics"])
        write_json_atomic(tmp / "details.json", ev["details"])
        if ev["predictions"] is not None:
            write_json_atomic(tmp / "predictions.json", ev["predictions"])
        for fname, png in ev["figures"].items():
            write_bytes_atomic(tmp / fname, png)


# The figures a variant's MLflow run holds (under figures/).
RUN_FIGURES = ("curves.png", "confusion.png", "predictions.png")


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


def log_evaluation(
    params: Params, name: str, run_id: str, model_dir: Path, prepared_root: Path,
    ev: dict[str, Any],
) -> None:
    """Add one model's evaluation to MLflow run `run_id` (the run that trained it; running or
    finished): the model unless logged (see log_model), the metrics it does not hold yet, and
    the figures it lacks."""
    import mlflow
    from mlflow.entities import Metric

    log_model(params, name, run_id, model_dir, prepared_root)
    client = mlflow.MlflowClient()
    run = client.get_run(run_id)
    new = {k: v for k, v in ev["metrics"].items() if run.data.metrics.get(k) != v}
    if new:
        stamp = int(run.info.end_time or run.info.start_time)
        client.log_batch(run_id, metrics=[Metric(k, v, stamp, 0) for k, v in new.items()])
    _log_figures(client, run_id, {k: v for k, v in ev["figures"].items() if k in RUN_FIGURES})


def log_model(params: Params, name: str, run_id: str, model_dir: Path, prepared_root: Path
              ) -> None:
    """Log the model in model_dir to MLflow run `run_id` unless the run holds one already (or
    tracking.log_models is off), with a signature and an input example of 5 test rows."""
    import mlflow

    if not params.tracking.log_models:
        return
    if mlflow.MlflowClient().get_run(run_id).outputs.model_outputs:
        return
    spec = model_spec(params, name, model_dir)
    data = load_variant_data(params, name, prepared_root / spec.dataset, splits=("test",),
                             spec=spec)
    _log_model(run_id, load_model(params, name, model_dir), data.splits["test"].X[:5])


class _NotPickleWarning:
    def filter(self, record) -> bool:
        return "by Pickle or CloudPickle" not in record.getMessage()


_NOT_PICKLE_WARNING = _NotPickleWarning()


def _log_model(run_id: str, model: torch.nn.Module, example: torch.Tensor) -> None:
    """Log `model` (CPU, eval mode) to run `run_id` with a signature and an input example."""
    import mlflow
    from mlflow.models import infer_signature

    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    # The pickle format is chosen (see below); mlflow warns about it on every model.
    logger = logging.getLogger("mlflow.pytorch")
    if _NOT_PICKLE_WARNING not in logger.filters:
        logger.addFilter(_NOT_PICKLE_WARNING)
    mlflow.pytorch.log_model(
        model,
        name="model",
        run_id=run_id,  # no active run needed: the train stage logs from its evaluation process
        signature=signature,
        input_example=np.asarray(example.numpy()),
        # Explicit requirements: mlflow's inference would import-scan in a subprocess.
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
        # The whole module pickled, with this package's code bundled beside it so that it
        # loads anywhere (the scratch models are classes of dlbasics). MLflow's default,
        # torch.export, costs 2.3 s against 0.6 s for the first model of a process (an
        # edit loop retrains one variant; a clean repro logs 43 models).
        serialization_format="pickle",
        code_paths=[str(Path(__file__).resolve().parent)],
    )
