"""One variant of params.train fitted and tracked: its data, its fit (with K-fold
cross-validation and repeated seeds when it asks), its model directory, its MLflow run.

Its import closure is the code that decides a variant's trained files (dlbasics.dvc.changes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dlbasics.config.params import Params
from dlbasics.data.prepared import Prepared, load_variant_data
from dlbasics import trace
from dlbasics.io import write_bytes_atomic
from dlbasics.learn import modelfiles
from dlbasics.learn.models import state_dict_bytes
from dlbasics.learn.training import Progress, make_trainer
from dlbasics.rng import derive_seed
from dlbasics.runtime import configure
from dlbasics.search.selection import cross_validate
from dlbasics.tracking import runs


def variant_params(params: Params, name: str) -> dict[str, Any]:
    """The hyper-parameters of one variant, flattened for MLflow (seed included)."""
    spec = params.train[name].model_dump(mode="json", exclude_none=True)
    return {"seed": params.seed, **runs.flatten(spec)}


def _log_dataset(data: Prepared) -> None:
    import mlflow

    ds = mlflow.data.from_numpy(
        data.splits["train"].X.numpy(),
        targets=data.splits["train"].y.numpy(),
        name=data.manifest["name"],
        digest=data.digest[:16],
    )
    mlflow.log_input(ds, context="training")
    # Where the data came from and its full digest, as the prepared manifest records them.
    mlflow.set_tags({
        "dataset_sha256": data.digest,
        "dataset_source": str(data.manifest.get("source") or data.manifest["kind"])[:5000],
        "dataset_shape": str({k: v for k, v in data.manifest["sizes"].items()}),
    })


def fit_variant(
    params: Params, name: str, data_dir: Path, device: torch.device | None = None, on_epoch=None,
    with_cv: bool = True, progress: Progress | None = None,
) -> tuple[nn.Module, list[dict[str, float]], Prepared, dict[str, Any] | None]:
    """Build and train variant `name` on the prepared data in `data_dir`, without tracking.

    With `kfold`, K-fold cross-validation on the training rows comes first (a fresh model from
    the same initial weights per fold). Returns (trained model, per-epoch history of the final
    fit, the data it saw, the cross-validation summary or None). Deterministic on CPU. Every
    epoch is reported to `progress` when given, else each fit prints its own line of results.
    """
    spec = params.train[name]
    device = device or torch.device("cpu")
    data = load_variant_data(params, name, data_dir, splits=("train", "val", "test"))
    n_train = len(data.splits["train"].y)
    if spec.batch_size is not None and spec.batch_size > n_train:
        # Larger than the data is a typo, not "full batch": that is batch_size = the row count.
        raise params.error(
            f"train.{name}.batch_size",
            f"expected at most {n_train} (the training rows of {spec.dataset}), found "
            f"{spec.batch_size}; for full-batch training set it to {n_train}",
        )
    make_model, train_fn = make_trainer(params, spec, name, data, device, progress)
    cv = None
    if spec.kfold and with_cv:
        cv = cross_validate(data, spec.kfold,
                            derive_seed(params.seed, "folds", data.manifest["identity"]),
                            make_model, train_fn)
    model = make_model()
    history = train_fn(model, data.splits, on_epoch or (lambda rec: None))
    return model.cpu(), history, data, cv


def _repeat_seeds(
    params: Params, name: str, data_dir: Path, device: torch.device, model: nn.Module,
    history: list[dict[str, float]], progress: Progress | None = None,
) -> dict[int, tuple[bytes, list[dict[str, float]]]]:
    """The variant trained again once per seed of its `seeds` (the data and split unchanged):
    seed -> (state_dict bytes, history). The top-level seed reuses the model already trained."""
    out = {}
    for seed in params.train[name].seeds or []:
        if seed == params.seed:
            out[seed] = (state_dict_bytes(model), history)
            continue
        m, h, _, _ = fit_variant(params.model_copy(update={"seed": seed}), name, data_dir, device,
                                 with_cv=False, progress=progress)
        out[seed] = (state_dict_bytes(m.cpu()), h)
    return out


def _fit_logged(params: Params, name: str, data_dir: Path, device, run_id: str,
                progress: Progress):
    """fit_variant with each epoch's record sent to MLflow run `run_id` in batches."""
    buffer = runs.MetricBuffer(run_id)
    try:
        result = fit_variant(params, name, data_dir, device,
                             on_epoch=lambda rec: buffer.add(rec, rec["epoch"]), progress=progress)
    except BaseException as exc:
        # A diverged or interrupted run keeps the curves of the epochs it finished (unless
        # the server is what failed: sending to it would only wait through the retries).
        if not runs.tracking_lost(exc):
            buffer.flush(quiet=True)
        raise
    buffer.flush()
    return result


def _epochs_to_train(params: Params, name: str) -> int:
    """The epochs variant `name` trains in all: its folds, its fit, its other seeds."""
    spec = params.train[name]
    fits = (spec.kfold or 0) + 1 + sum(seed != params.seed for seed in spec.seeds or [])
    return fits * (1 if spec.solver == "lstsq" else spec.epochs)


def train_variant(
    params: Params, name: str, data_dir: Path, model_dir: Path,
    finish: Callable[[str, str], None] | None = None,
) -> dict[str, Any]:
    """Train variant `name` (see fit_variant) and track it.

    Writes its model directory (dlbasics.learn.modelfiles: weights, model.json, history.json, the
    other seeds' weights). Logs the run to MLflow, which ends with the training: its duration
    is the variant's own work. `finish(run_id, results)`, when given, runs after that with the
    line of results (`30 epochs in 0.8 s: train_loss=...`; the train stage evaluates the model
    then and logs the evaluation to the finished run). The epochs of all its fits show as one
    Progress. Returns model.json's content.
    """
    import mlflow

    spec = params.train[name]
    device = configure(params.runtime)
    tags = {"variant": name, "dataset": spec.dataset, "device": str(device)}
    with trace.span(f"{name}: MLflow run", "tracking"), \
            runs.run(params.tracking.experiment, name, tags) as run:
        mlflow.log_params(variant_params(params, name))
        with Progress(f"train {name}", _epochs_to_train(params, name)) as progress, \
                trace.span(f"{name}: fit", "compute"):
            model, history, data, cv = _fit_logged(params, name, data_dir, device,
                                                   run.info.run_id, progress)
            repeats = _repeat_seeds(params, name, data_dir, device, model, history, progress)
            results = progress.close(history[-1])
        _log_dataset(data)
        mlflow.set_tag("task", data.task)
        if cv is not None:
            mlflow.log_metrics({f"cv_{k}": v for k, v in cv.items() if k.endswith(("_mean", "_std"))})
        for seed, (_, rep_history) in repeats.items():
            mlflow.log_metrics({f"seed_{seed}/{k}": v for k, v in rep_history[-1].items()
                                if k != "epoch"})
        blob = state_dict_bytes(model)
        extra: dict[str, Any] = {"cv": cv}
        if repeats:
            extra["seeds"] = [{"seed": seed, "file": f"seed_{seed}.pt", "final": h[-1]}
                              for seed, (_, h) in repeats.items()]
        info = modelfiles.model_record(name, data.manifest["name"], data, spec, blob, history,
                                       **extra)
        with trace.span(f"{name}: write", "io"), \
                modelfiles.writing(model_dir, blob, info, history) as tmp:
            for seed, (blob_s, _) in repeats.items():
                write_bytes_atomic(tmp / f"seed_{seed}.pt", blob_s)
        # A re-evaluation finds this run again by the digest of the weights it produced.
        mlflow.set_tag("model_sha256", info["model_sha256"])
    # After the run has ended: the evaluation is not part of its duration.
    if finish is not None:
        finish(run.info.run_id, results)
    return info
