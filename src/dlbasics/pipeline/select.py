"""A `select@NAME` stage end to end: one named K-fold search, its DVC outputs, one MLflow parent
run with a nested run per configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dlbasics.config.params import Params
from dlbasics.data.prepared import load_prepared
from dlbasics.io import write_json_atomic
from dlbasics.learn import modelfiles
from dlbasics.learn.models import state_dict_bytes
from dlbasics import trace
from dlbasics.report.evaluation import evaluate_model
from dlbasics.runtime import configure
from dlbasics.search.gridsearch import run_search
from dlbasics.search.selection import describe
from dlbasics.tracking import runs
from dlbasics.tracking.model_logging import log_evaluation
from dlbasics.tracking.registry import register


def _label(values: dict[str, Any]) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v}" for k, v in values.items())


def _executor(params: Params):
    """A connected Ray for runtime.executor ray (dlbasics.search.cluster), else nothing."""
    from contextlib import nullcontext

    if params.runtime.executor != "ray":
        return nullcontext(None)
    from dlbasics.search import cluster

    return cluster.connected(params.runtime.ray, params.runtime.threads)


def select(params: Params, search: str, prepared_root: Path, model_dir: Path,
           table_path: Path) -> dict:
    """Run the named search of params.select; write the refitted model and its evaluation
    (model_dir), the table of every configuration and fold (table_path, DVC plots data); return
    model.json's content (the chosen configuration, in values and in words)."""
    import time

    import mlflow

    sel = params.select.searches[search]
    name = f"select@{search}"
    base = params.train[sel.base]
    device = configure(params.runtime)
    data = load_prepared(prepared_root / base.dataset)
    tags = {"variant": name, "search": search, "dataset": base.dataset, "device": str(device),
            "task": data.task, "executor": params.runtime.executor}
    # The cluster first: one that cannot be used stops the stage before any run or file.
    with _executor(params) as ray, trace.span(f"{name}: MLflow run", "tracking"), \
            runs.run(params.tracking.experiment, name, tags) as parent:
        mlflow.log_params({"base": sel.base, "k": sel.k, "patience": str(sel.patience),
                           "batched": sel.batched,
                           **{f"grid.{k}": str(v) for k, v in sel.grid.items()},
                           **{f"overrides.{k}": str(v) for k, v in sel.overrides.items()}})
        t0 = time.perf_counter()
        with trace.span(f"{name}: search and refit", "compute"):
            table, best, spec, model, history = run_search(params, search, data, device, ray=ray)
        # Wall time goes to MLflow only: DVC outputs hold nothing that differs between runs.
        mlflow.log_metric("search_seconds", time.perf_counter() - t0)
        _log_configurations(parent, name, table)
        blob = state_dict_bytes(model)
        paths = sorted({r["path"] for r in table})
        info = modelfiles.model_record(
            name, base.dataset, data, spec, blob, history,
            search=search, description=sel.description,
            chosen={k: v for k, v in best.items() if k != "val_curve"},
            chosen_words=describe(spec), base=sel.base, k=sel.k, patience=sel.patience,
            max_rows=sel.max_rows, paths={p: sum(r["path"] == p for r in table) for p in paths})
        # The refitted model is evaluated before its directory is swapped in: weights and
        # evaluation land together or not at all.
        with modelfiles.writing(model_dir, blob, info, history) as tmp:
            with trace.span(f"{name}: evaluate", "compute"):
                ev = evaluate_model(params, name, prepared_root, tmp)
            modelfiles.write_evaluation(tmp, ev)
        write_json_atomic(table_path, _fold_rows(table))
        mlflow.log_params({f"chosen.{k}": str(v) for k, v in best["values"].items()})
        mlflow.log_param("chosen.epochs", best["epochs_chosen"])
        mlflow.set_tag("chosen", info["chosen_words"])
        mlflow.log_metrics({f"cv_{k}": v for k, v in best.items() if k.endswith(("_mean", "_std"))})
        mlflow.set_tag("model_sha256", info["model_sha256"])
        log_evaluation(params, name, parent.info.run_id, model_dir, prepared_root, ev)
        register(params, name, parent.info.run_id, model_dir, prepared_root)
    return info


def _log_configurations(parent, name: str, table: list[dict]) -> None:
    """One nested run per configuration under run `parent`: the parallel-coordinates view
    compares them. Everything a run holds goes in one batch (one database write, not one per
    value)."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param, RunTag

    client = mlflow.MlflowClient()
    origin, now = runs.dvc_tags(), int(time.time() * 1000)
    for record in table:
        child = client.create_run(
            parent.info.experiment_id, run_name=_label(record["values"]),
            tags={"mlflow.parentRunId": parent.info.run_id, "variant": name,
                  "config": str(record["config"]), "path": record["path"],
                  "parent": parent.info.run_id, **origin})
        params_ = [Param(k, str(v)) for k, v in record["values"].items()]
        metrics: list[Metric] = []
        child_tags = []
        if record["diverged"]:
            child_tags.append(RunTag("diverged_epoch", str(record["diverged_epoch"])))
        else:
            metrics += [Metric(k, float(v), now, 0) for k, v in record.items()
                        if k.endswith(("_mean", "_std"))
                        or k in ("epochs_chosen", "epochs_trained")]
            metrics += [Metric(k, float(v), now, f["fold"]) for f in record["folds"]
                        for k, v in f.items() if k not in ("fold", "epochs")]
            metrics += [Metric("val_curve_mean", float(v), now, step)
                        for step, v in enumerate(record["val_curve"], start=1)]
        client.log_batch(child.info.run_id, metrics=metrics, params=params_, tags=child_tags)
        client.set_terminated(child.info.run_id, "FINISHED")


def _fold_rows(table: list[dict]) -> list[dict]:
    """The search's DVC plots data: one row per configuration and fold."""
    rows = []
    for r in table:
        for f in r.get("folds") or [{"fold": None}]:
            rows.append({"config": r["config"], **{k: str(v) for k, v in r["values"].items()},
                         "diverged": r["diverged"], "n_parameters": r["n_parameters"],
                         "path": r["path"], "epochs_max": r["epochs_max"],
                         "epochs_chosen": r.get("epochs_chosen"),
                         "epochs_trained": r.get("epochs_trained"), **f})
    return rows
