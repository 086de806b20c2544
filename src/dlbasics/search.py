"""The `select` stage end to end: grid search, DVC outputs, MLflow parent and child runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlbasics import tracking
from dlbasics.config import Params
from dlbasics.data import load_prepared
from dlbasics.evaluation import evaluate_model, log_evaluation, write_evaluation
from dlbasics.io import atomic_directory, sha256_bytes, write_bytes_atomic, write_json_atomic
from dlbasics.models import state_dict_bytes
from dlbasics.runtime import configure
from dlbasics.selection import grid_search


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())


def select(params: Params, prepared_root: Path, model_dir: Path, table_path: Path) -> dict:
    """Run params.select; write the refitted model and its evaluation (model_dir), the table of
    every configuration and fold (table_path, DVC plots data); return the chosen
    configuration's summary."""
    import mlflow

    sel = params.select
    base = params.train[sel.base]
    device = configure(params.runtime)
    data = load_prepared(prepared_root / base.dataset)
    tags = {"variant": "select", "dataset": base.dataset, "device": str(device),
            "task": data.task}
    with tracking.run(params.tracking.experiment, "select", tags) as parent:
        mlflow.log_params({"base": sel.base, "k": sel.k,
                           **{f"grid.{k}": str(v) for k, v in sel.grid.items()}})

        def child(record: dict[str, Any], spec) -> None:
            # One nested run per configuration: the parallel-coordinates view compares them.
            with mlflow.start_run(run_name=_label(record["values"]), nested=True,
                                  experiment_id=parent.info.experiment_id,
                                  tags={"variant": "select", "config": str(record["config"]),
                                        "parent": parent.info.run_id}):
                mlflow.log_params({k: str(v) for k, v in record["values"].items()})
                if record["diverged"]:
                    mlflow.set_tag("diverged_epoch", str(record["diverged_epoch"]))
                    return
                mlflow.log_metrics({k: v for k, v in record.items()
                                    if k.endswith(("_mean", "_std"))})
                for f in record["folds"]:
                    mlflow.log_metrics({k: v for k, v in f.items() if k not in ("fold", "epochs")},
                                       step=f["fold"])

        table, best, spec, model, history = grid_search(params, data, device, on_config=child)
        blob = state_dict_bytes(model)
        info = {
            "variant": "select",
            "dataset": base.dataset,
            "dataset_sha256": data.digest,
            "n_features": data.manifest["n_features"],
            "n_outputs": data.manifest["n_outputs"],
            "task": data.task,
            "spec": spec.training_settings(),
            "model_sha256": sha256_bytes(blob),
            "final": history[-1],
            "chosen": best,
        }
        # The refitted model is evaluated before its directory is swapped in: weights and
        # evaluation land together or not at all.
        with atomic_directory(model_dir) as tmp:
            write_bytes_atomic(tmp / "model.pt", blob)
            write_json_atomic(tmp / "model.json", info)
            ev = evaluate_model(params, "select", prepared_root, tmp)
            write_evaluation(tmp, ev)
        rows = []
        for r in table:
            for f in r.get("folds") or [{"fold": None}]:
                rows.append({"config": r["config"], **{k: str(v) for k, v in r["values"].items()},
                             "diverged": r["diverged"], "n_parameters": r["n_parameters"], **f})
        write_json_atomic(table_path, rows)
        mlflow.log_params({f"chosen.{k}": str(v) for k, v in best["values"].items()})
        mlflow.log_metrics({f"cv_{k}": v for k, v in best.items() if k.endswith(("_mean", "_std"))})
        mlflow.set_tag("model_sha256", info["model_sha256"])
        log_evaluation(params, "select", parent.info.run_id, model_dir, prepared_root, ev)
    return info
