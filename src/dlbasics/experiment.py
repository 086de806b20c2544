"""One trained variant from end to end: data, model, loop, DVC outputs, MLflow run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dlbasics import tracking
from dlbasics.config import Params
from dlbasics.data import Prepared, Split, load_prepared
from dlbasics.io import atomic_directory, sha256_bytes, write_bytes_atomic, write_json_atomic
from dlbasics.models import build_model, state_dict_bytes
from dlbasics.rng import derive_seed, torch_generator
from dlbasics.runtime import configure
from dlbasics.training import build_loss, build_optimizer, fit


def variant_params(params: Params, name: str) -> dict[str, Any]:
    """The hyper-parameters of one variant, flattened for MLflow (seed included)."""
    spec = params.train[name].model_dump(mode="json")
    return {"seed": params.seed, **tracking.flatten(spec)}


def _to(split: Split, device: torch.device) -> Split:
    return Split(split.X.to(device), split.y.to(device))


def _log_dataset(data: Prepared) -> None:
    import mlflow

    ds = mlflow.data.from_numpy(
        data.splits["train"].X.numpy(),
        targets=data.splits["train"].y.numpy(),
        name=data.manifest["name"],
        digest=data.digest[:16],
    )
    mlflow.log_input(ds, context="training")


def _log_model(model: torch.nn.Module, example: torch.Tensor) -> None:
    import mlflow
    from mlflow.models import infer_signature

    model = model.cpu().eval()
    with torch.no_grad():
        out = model(example)
    signature = infer_signature(example.numpy(), out.numpy())
    mlflow.pytorch.log_model(
        model,
        name="model",
        signature=signature,
        input_example=example.numpy(),
        # Explicit requirements: mlflow's inference would import-scan in a subprocess (slow).
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
    )


def train_variant(
    params: Params, name: str, data_dir: Path, model_dir: Path, history_path: Path
) -> dict[str, Any]:
    """Train variant `name` on the prepared data in `data_dir`.

    Writes model_dir/model.pt (state_dict), model_dir/model.json (what is needed to rebuild it)
    and history_path (one record per epoch). Logs the run to MLflow. Returns model.json's content.
    """
    spec = params.train[name]
    device = configure(params.runtime)
    data = load_prepared(data_dir, splits=("train", "val"))
    task, man = data.task, data.manifest
    n_in, n_out = man["n_features"], man["n_outputs"]

    model = build_model(spec.model, n_in, n_out, torch_generator(params.seed, "init", name))
    model = model.to(device)
    # nn.Dropout can only draw from the global generator: seed it per variant.
    torch.manual_seed(derive_seed(params.seed, "dropout", name))
    loss_fn = build_loss(spec.loss)
    optimizer = build_optimizer(spec.optimizer, model)
    train, val = _to(data.splits["train"], device), _to(data.splits["val"], device)

    tags = {"variant": name, "dataset": man["name"], "device": str(device), "task": task}
    with tracking.run(params.tracking.experiment, name, tags) as run:
        import mlflow

        mlflow.log_params(variant_params(params, name))
        _log_dataset(data)
        buffer = tracking.MetricBuffer(run.info.run_id)
        history = fit(
            model, loss_fn, optimizer, train, val,
            epochs=spec.epochs, batch_size=spec.batch_size,
            generator=torch_generator(params.seed, "batches", name),
            task=task, label=f"train@{name}",
            on_epoch=lambda rec: buffer.add(rec, step=rec["epoch"]),
        )
        buffer.flush()

        blob = state_dict_bytes(model)
        info = {
            "variant": name,
            "dataset": man["name"],
            "dataset_sha256": data.digest,
            "n_features": n_in,
            "n_outputs": n_out,
            "task": task,
            "model": spec.model.model_dump(mode="json"),
            "loss": spec.loss,
            "model_sha256": sha256_bytes(blob),
            "final": history[-1],
        }
        # The directory is swapped in whole, so a failure never mixes old and new files.
        with atomic_directory(model_dir) as tmp:
            write_bytes_atomic(tmp / "model.pt", blob)
            write_json_atomic(tmp / "model.json", info)
        write_json_atomic(history_path, history)
        # evaluate finds this run again by the digest of the weights it produced.
        mlflow.set_tag("model_sha256", info["model_sha256"])
        if params.tracking.log_models:
            _log_model(model, data.splits["train"].X[:5].cpu())
    return info
