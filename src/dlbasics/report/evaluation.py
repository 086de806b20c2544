"""How a model is judged: the metrics, per-class details and figures of one trained model, from
its files (dlbasics.learn.modelfiles) and the prepared data. Deterministic for the same files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics.config.params import Params
from dlbasics.data.prepared import Prepared, load_variant_data
from dlbasics.io import HISTORY
from dlbasics.learn.modelfiles import load_model, model_spec, read_model_info
from dlbasics.learn.models import linear_weights
from dlbasics.learn.tasks import PRIMARY, predicted_labels
from dlbasics.learn.training import predict

SCORED_SPLITS = ("train", "test")


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
    from dlbasics.learn.metrics import (
        binary_metrics,
        classification_metrics,
        multilabel_metrics,
        multilabel_predict,
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
            pred = predicted_labels(out, data.task)
            from dlbasics.learn.metrics import classification_details

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


def repeated_scores(
    params: Params, name: str, data: Prepared, model_dir: Path
) -> dict[str, Any] | None:
    """Test metrics of the models a variant trained once per seed of its `seeds`:
    {"seeds": [s, ...], "metric": m, "test": {metric: [value per seed]}}, None without seeds."""
    info = read_model_info(model_dir)
    entries = info.get("seeds")
    if not entries:
        return None
    test = data.splits["test"]
    per_metric: dict[str, list[float]] = {}
    for entry in entries:
        model = load_model(params, name, model_dir, weights=entry["file"])
        scores = score(params, data.task, info["n_outputs"], test.y, predict(model, test.X))
        for k, v in scores.items():
            per_metric.setdefault(k, []).append(float(v))
    return {"seeds": [e["seed"] for e in entries], "metric": PRIMARY[data.task].name,
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
    from dlbasics.report.stats import mean_interval

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
    from dlbasics.report import figures

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
        pred = predicted_labels(predict(load_model(params, name, model_dir), test.X[:24]),
                                "classification")
        pngs["predictions.png"] = figures.prediction_grid(
            shown, test.y[:24].numpy(), pred.numpy(), man["class_names"], man["image_shape"])
    if data.task == "regression" and man["n_features"] == 1:
        x, y, grid, fitted = fit_line(load_model(params, name, model_dir), data.splits["train"])
        truth = man.get("true_w"), man.get("true_b")
        pngs["fit.png"] = figures.fit_png(
            name, x, y, grid, fitted,
            (truth[0][0], truth[1]) if truth[0] and len(truth[0]) == 1 else None)
    return {"metrics": metrics, "details": d, "predictions": predictions, "figures": pngs}


def fit_line(model: torch.nn.Module, train, points: int = 100):
    """A 1-D regression's training points x [N], y [N] and its predictions fitted [points] on an
    even grid [points] across the training x range (float64 NumPy arrays)."""
    x = train.X[:, 0].double().numpy()
    grid = np.linspace(x.min(), x.max(), points)
    fitted = predict(model, torch.from_numpy(grid).float().reshape(-1, 1)).reshape(-1)
    return x, train.y.reshape(-1).double().numpy(), grid, fitted.double().numpy()
