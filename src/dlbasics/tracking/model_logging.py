"""What a trained model's MLflow run holds besides its training curves: the logged model (with
a signature and an input example), the test metrics and the figures of its evaluation. Works
on a running or a finished run, by id, adding only what the run lacks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics.config.params import Params
from dlbasics.data.prepared import load_variant_data
from dlbasics.learn.modelfiles import load_model, model_spec

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
        code_paths=[str(Path(__file__).resolve().parents[1])],  # src/dlbasics
    )
