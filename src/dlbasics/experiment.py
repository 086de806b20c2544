"""Trained variants from end to end: data, model, loop, DVC outputs, MLflow runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from dlbasics import tracking
from dlbasics.config import Params, VariantSpec
from dlbasics.data import Prepared, Split, load_prepared, poly_features, take_features
from dlbasics.io import (
    HISTORY, atomic_directory, sha256_bytes, write_bytes_atomic, write_json_atomic,
)
from dlbasics.models import build_model, state_dict_bytes
from dlbasics.rng import derive_seed, torch_generator
from dlbasics.runtime import configure
from dlbasics.training import build_loss, build_optimizer, build_penalty, evaluate_split, fit


def variant_params(params: Params, name: str) -> dict[str, Any]:
    """The hyper-parameters of one variant, flattened for MLflow (seed included)."""
    spec = params.train[name].model_dump(mode="json", exclude_none=True)
    return {"seed": params.seed, **tracking.flatten(spec)}


def load_variant_data(params: Params, name: str, data_dir: Path, splits,
                      spec: VariantSpec | None = None) -> Prepared:
    """The prepared dataset of variant `name` (or of `spec`), restricted to its `features`, then
    expanded to its `poly_features`."""
    spec = spec or params.train[name]
    data = load_prepared(data_dir, splits=splits)
    data = take_features(data, spec.features, key=f"train.{name}.features")
    return poly_features(data, spec.poly_features)


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
    # Where the data came from and its full digest, as the prepared manifest records them.
    mlflow.set_tags({
        "dataset_sha256": data.digest,
        "dataset_source": str(data.manifest.get("source") or data.manifest["kind"])[:5000],
        "dataset_shape": str({k: v for k, v in data.manifest["sizes"].items()}),
    })


@torch.no_grad()
def fit_lstsq(model: nn.Linear, train: Split) -> None:
    """Set a linear model's weights to the closed-form least-squares solution (float64)."""
    X, y = train.X.double(), train.y.double()  # [N, F], [N, 1]
    if model.bias is not None:
        X = torch.cat([X, torch.ones(X.shape[0], 1, dtype=X.dtype, device=X.device)], dim=1)
    # gelsd: the minimum-norm solution via SVD, exact even when the system is ill-conditioned.
    sol = torch.linalg.lstsq(X.cpu(), y.cpu(), driver="gelsd").solution  # [F (+1), 1]
    n_in = model.in_features
    model.weight.copy_(sol[:n_in].T.to(model.weight))
    if model.bias is not None:
        model.bias.copy_(sol[n_in].to(model.bias))


def _train(
    spec: VariantSpec, model: nn.Module, splits: dict[str, Split], task: str, seed: int,
    name: str, on_epoch, stream: str,
) -> list[dict[str, float]]:
    loss_fn = build_loss(spec.loss)
    if spec.solver == "lstsq":
        fit_lstsq(model, splits["train"])
        record: dict[str, float] = {"epoch": 1}
        for split in ("train", "val", "test"):
            if splits[split].X.shape[0]:
                record.update(
                    {f"{split}_{k}": v
                     for k, v in evaluate_split(model, loss_fn, splits[split], task).items()}
                )
        on_epoch(record)
        return [record]
    return fit(
        model, loss_fn, build_optimizer(spec.optimizer, model), splits["train"], splits["val"],
        test=splits["test"], penalty=build_penalty(spec.penalty, model),
        epochs=spec.epochs, batch_size=spec.batch_size,
        generator=torch_generator(seed, "batches", stream),
        task=task, label=f"train {name}", on_epoch=on_epoch,
    )


def make_trainer(params: Params, spec: VariantSpec, name: str, data: Prepared, device):
    """(make_model, train_fn) for one variant's settings on `data`.

    make_model() builds a fresh model with the seeded initial weights (the same on every call);
    train_fn(model, splits, on_epoch) trains it in place and returns the per-epoch history.
    Initial weights and batch order derive from the seed and the dataset's identity (what the
    data is, not its key), not from the variant, so variants of one dataset share them.
    """
    man = data.manifest
    device = device or torch.device("cpu")

    def make_model() -> nn.Module:
        return build_model(
            spec.model, man["n_features"], man["n_outputs"],
            torch_generator(params.seed, "init", man["identity"]),
        ).to(device)

    def train_fn(model, splits, on_epoch=lambda rec: None):
        # nn.Dropout can only draw from the global generator: seed it per variant (and fit).
        torch.manual_seed(derive_seed(params.seed, "dropout", name))
        splits = {k: _to(v, device) for k, v in splits.items()}
        return _train(spec, model, splits, data.task, params.seed, name, on_epoch=on_epoch,
                      stream=man["identity"])

    return make_model, train_fn


def fit_variant(
    params: Params, name: str, data_dir: Path, device: torch.device | None = None, on_epoch=None,
    with_cv: bool = True,
) -> tuple[nn.Module, list[dict[str, float]], Prepared, dict[str, Any] | None]:
    """Build and train variant `name` on the prepared data in `data_dir`, without tracking.

    With `kfold`, K-fold cross-validation on the training rows comes first (a fresh model from
    the same initial weights per fold). Returns (trained model, per-epoch history of the final
    fit, the data it saw, the cross-validation summary or None). Deterministic on CPU.
    """
    spec = params.train[name]
    device = device or torch.device("cpu")
    data = load_variant_data(params, name, data_dir, splits=("train", "val", "test"))
    man = data.manifest
    n_train = len(data.splits["train"].y)
    if spec.batch_size is not None and spec.batch_size > n_train:
        # Larger than the data is a typo, not "full batch": that is batch_size = the row count.
        raise params.error(
            f"train.{name}.batch_size",
            f"expected at most {n_train} (the training rows of {spec.dataset}), found "
            f"{spec.batch_size}; for full-batch training set it to {n_train}",
        )
    # Initial weights and batch order derive from the seed and the dataset's identity (what the
    # data is, not its key), not from the variant:
    # variants of one dataset share them (common random numbers), so a scratch variant and its
    # torch.nn twin, or two optimisers, differ only in what the variants say.
    make_model, train_fn = make_trainer(params, spec, name, data, device)
    cv = None
    if spec.kfold and with_cv:
        from dlbasics.selection import cross_validate

        cv = cross_validate(data, spec.kfold, derive_seed(params.seed, "folds", man["identity"]),
                            make_model, train_fn)
    model = make_model()
    history = train_fn(model, data.splits, on_epoch or (lambda rec: None))
    return model.cpu(), history, data, cv


def _repeat_seeds(
    params: Params, name: str, data_dir: Path, device: torch.device, model: nn.Module,
    history: list[dict[str, float]],
) -> dict[int, tuple[bytes, list[dict[str, float]]]]:
    """The variant trained again once per seed of its `seeds` (the data and split unchanged):
    seed -> (state_dict bytes, history). The top-level seed reuses the model already trained."""
    out = {}
    for seed in params.train[name].seeds or []:
        if seed == params.seed:
            out[seed] = (state_dict_bytes(model), history)
            continue
        m, h, _, _ = fit_variant(params.model_copy(update={"seed": seed}), name, data_dir, device,
                                 with_cv=False)
        out[seed] = (state_dict_bytes(m.cpu()), h)
        print(f"train {name}: seed {seed}: {h[-1]}")
    return out


def train_variant(
    params: Params, name: str, data_dir: Path, model_dir: Path,
    finish: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train variant `name` (see fit_variant) and track it.

    Writes model_dir/model.pt (state_dict), model_dir/model.json (what is needed to rebuild it)
    and model_dir/history.json (one record per epoch). Logs the run to MLflow; `finish(run_id)`,
    when given, runs inside the same run once the files are written (the train stage evaluates
    the model there). Returns model.json's content.
    """
    spec = params.train[name]
    device = configure(params.runtime)
    tags = {"variant": name, "dataset": spec.dataset, "device": str(device)}
    with tracking.run(params.tracking.experiment, name, tags) as run:
        import mlflow

        mlflow.log_params(variant_params(params, name))
        buffer = tracking.MetricBuffer(run.info.run_id)
        try:
            model, history, data, cv = fit_variant(
                params, name, data_dir, device, on_epoch=lambda rec: buffer.add(rec, rec["epoch"])
            )
        except BaseException as exc:
            # A diverged or interrupted run keeps the curves of the epochs it finished (unless
            # the server is what failed: sending to it would only wait through the retries).
            if not tracking.tracking_lost(exc):
                buffer.flush(quiet=True)
            raise
        buffer.flush()
        _log_dataset(data)
        mlflow.set_tag("task", data.task)
        if cv is not None:
            mlflow.log_metrics({f"cv_{k}": v for k, v in cv.items() if k.endswith(("_mean", "_std"))})

        repeats = _repeat_seeds(params, name, data_dir, device, model, history)
        for seed, (_, rep_history) in repeats.items():
            mlflow.log_metrics({f"seed_{seed}/{k}": v for k, v in rep_history[-1].items()
                                if k != "epoch"})

        blob = state_dict_bytes(model)
        info = {
            "variant": name,
            "dataset": data.manifest["name"],
            "dataset_sha256": data.digest,
            "n_features": data.manifest["n_features"],
            "n_outputs": data.manifest["n_outputs"],
            "task": data.task,
            "spec": spec.training_settings(),  # the report-only keys left out
            "model_sha256": sha256_bytes(blob),
            "final": history[-1],
            "cv": cv,
        }
        if repeats:
            info["seeds"] = [{"seed": seed, "file": f"seed_{seed}.pt", "final": h[-1]}
                             for seed, (_, h) in repeats.items()]
        # The directory is swapped in whole, so a failure never mixes old and new files.
        with atomic_directory(model_dir) as tmp:
            write_bytes_atomic(tmp / "model.pt", blob)
            for seed, (blob_s, _) in repeats.items():
                write_bytes_atomic(tmp / f"seed_{seed}.pt", blob_s)
            write_json_atomic(tmp / "model.json", info)
            write_json_atomic(tmp / HISTORY, history)
        # A re-evaluation finds this run again by the digest of the weights it produced.
        mlflow.set_tag("model_sha256", info["model_sha256"])
        if finish is not None:
            finish(run.info.run_id)
    return info
