"""How a model is judged: test metrics of every trained variant, from the DVC outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dlbasics import tracking
from dlbasics.config import Params
from dlbasics.data import DataError, Prepared, load_prepared
from dlbasics.metrics import classification_metrics, regression_metrics
from dlbasics.models import build_model, load_state_dict
from dlbasics.training import predict


def _read_model_info(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "model.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the train stage first (dvc repro)") from None


def parameter_errors(model: torch.nn.Module, manifest: dict[str, Any]) -> dict[str, float]:
    """For a linear model on data with known truth: max |w - w_true| and |b - b_true|."""
    if "true_w" not in manifest or not isinstance(model, torch.nn.Linear):
        return {}
    w_true = torch.tensor(manifest["true_w"], dtype=model.weight.dtype)
    return {
        "w_error": float((model.weight.detach().reshape(-1) - w_true).abs().max()),
        "b_error": float((model.bias.detach().reshape(-1)[0] - manifest["true_b"]).abs()),
    }


def evaluate_variant(
    params: Params, name: str, data: Prepared, model_dir: Path
) -> dict[str, float]:
    """Test metrics of one variant as {"test_<metric>": value, ...} plus parameter errors."""
    info = _read_model_info(model_dir)
    spec = params.train[name]
    model = build_model(spec.model, info["n_features"], info["n_outputs"], torch.Generator())
    load_state_dict(model, str(model_dir / "model.pt"))
    test = data.splits["test"]
    out = predict(model, test.X)
    if data.task == "regression":
        metrics = regression_metrics(test.y.numpy(), out.numpy())
    else:
        metrics = classification_metrics(
            test.y.numpy(), out.numpy(), n_classes=info["n_outputs"], top_k=tuple(params.evaluate.top_k)
        )
    result = {f"test_{k}": float(v) for k, v in metrics.items()}
    result.update(parameter_errors(model, data.manifest))
    return result


def evaluate_all(params: Params, prepared_root: Path, models_root: Path) -> dict[str, dict[str, float]]:
    """Variant name -> test metrics, for every variant in params."""
    cache: dict[str, Prepared] = {}
    results = {}
    for name, spec in params.train.items():
        if spec.dataset not in cache:
            cache[spec.dataset] = load_prepared(prepared_root / spec.dataset, splits=("test",))
        results[name] = evaluate_variant(params, name, cache[spec.dataset], models_root / name)
    return results


def log_test_metrics(params: Params, models_root: Path, results: dict[str, dict[str, float]]) -> list[str]:
    """Add each variant's test metrics to the MLflow run that trained its weights.

    The run is found by the sha256 of the weights, so cached variants are matched to the run that
    produced them; a run that already holds these values gets nothing new. Returns the variants
    whose run could not be found (trained with another store, or with tracking off).
    """
    import mlflow

    missing = []
    client = None
    for name, metrics in results.items():
        info = _read_model_info(models_root / name)
        run = tracking.find_run(
            params.tracking.experiment, {"variant": name, "model_sha256": info["model_sha256"]}
        )
        if run is None:
            missing.append(name)
            continue
        client = client or mlflow.MlflowClient()
        new = {k: v for k, v in metrics.items() if run.data.metrics.get(k) != v}
        if new:
            from mlflow.entities import Metric

            stamp = int(run.info.end_time or run.info.start_time)
            client.log_batch(run.info.run_id, metrics=[Metric(k, v, stamp, 0) for k, v in new.items()])
    return missing
