"""The model people use: a trained network wrapped as an MLflow pyfunc model that checks its
input and answers in the task's terms (labels and probabilities, or values), not in logits.

The registry (dlbasics.tracking.registry) logs it beside the plain pytorch model of a run and registers
it; `mlflow models serve` and `mlflow.pyfunc.load_model` run it. Its input is rows of the
prepared data, as `prepare` wrote them (scaled): float32 [N, n_features]. The wrapper applies
the variant's own feature steps (`features`, `poly_features`) as training did.

Why a wrapper and not the pytorch flavour alone: that flavour answers with the network's raw
outputs (logits for a classifier), which a user has to turn into a class with the pipeline's
rule, and it answers a malformed request with a stack trace. Here the rule is applied once, the
answer names the classes, and a bad request gets one line saying what was expected.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# Artifact keys of the logged model: the weights, the settings that rebuild them (model.json as
# the stage wrote it) and what the answer needs (SERVED_JSON, written at logging time).
WEIGHTS, MODEL_JSON, SERVED_JSON = "model.pt", "model.json", "served.json"


def served_info(model_info: dict[str, Any], manifest: dict[str, Any],
                multilabel_threshold: float) -> dict[str, Any]:
    """What the served model needs besides its weights: the task, the prepared input width
    (before the variant's feature steps), the class names and the multilabel threshold."""
    return {"task": model_info["task"], "n_inputs": manifest["n_features"],
            "class_names": manifest.get("class_names"), "threshold": multilabel_threshold}


class InputError(MlflowException):
    """A request the model cannot answer; the scoring server returns it as 400."""

    def __init__(self, message: str):
        super().__init__(message, error_code=INVALID_PARAMETER_VALUE)


def checked_rows(model_input: Any, width: int) -> np.ndarray:
    """`model_input` (array-like or DataFrame) as float32 [N, width], N >= 1, all finite; an
    InputError naming what was expected and what was found otherwise."""
    if hasattr(model_input, "to_numpy"):  # a pandas DataFrame
        model_input = model_input.to_numpy()
    if isinstance(model_input, dict):
        raise InputError(f"expected one array of rows [N, {width}], found named inputs "
                         f"{sorted(model_input)}")
    try:
        X = np.asarray(model_input)
    except ValueError as exc:  # ragged rows
        raise InputError(f"expected rows [N, {width}] of equal length, found {exc}") from None
    if X.dtype.kind not in "fiu":
        raise InputError(f"expected numbers (float32 rows [N, {width}]), found dtype {X.dtype}")
    if X.ndim != 2 or X.shape[1] != width or X.shape[0] == 0:
        raise InputError(f"expected rows [N, {width}] with N >= 1 (the prepared columns), "
                         f"found shape {list(X.shape)}")
    X = X.astype(np.float32, copy=False)
    bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
    if bad.size:
        raise InputError(f"expected finite numbers, found NaN or infinity in rows "
                         f"{bad[:10].tolist()}")
    return X


def answer(task: str, out: Any, class_names: list[str] | None, threshold: float):
    """The served answer for model outputs `out` [N, K] (torch): a DataFrame with, per row,
    `label` (the class name) and `probabilities` (one per class name, in their order) for
    classifiers; `labels` and `probabilities` per label for multilabel; `prediction` for
    regression. The labels are tasks.predicted_labels', the rule the evaluation uses."""
    import pandas as pd
    import torch

    from dlbasics.learn.tasks import predicted_labels

    z = out.detach().double()  # probabilities in float64, as metrics computes them
    if task == "regression":
        return pd.DataFrame({"prediction": out[:, 0].tolist()})
    if task == "classification":
        return pd.DataFrame({"label": [class_names[i] for i in
                                       predicted_labels(out, task).tolist()],
                             "probabilities": torch.softmax(z, dim=1).tolist()})
    if task == "binary":
        p1 = torch.sigmoid(z[:, 0])
        return pd.DataFrame({"label": [class_names[i] for i in
                                       predicted_labels(out, task).tolist()],
                             "probabilities": torch.stack([1 - p1, p1], 1).tolist()})
    from dlbasics.learn.metrics import multilabel_predict

    chosen = multilabel_predict(z.numpy(), threshold=threshold)
    return pd.DataFrame({
        "labels": [[class_names[j] for j in np.flatnonzero(row)] for row in chosen],
        "probabilities": torch.sigmoid(z).tolist()})


class ServedModel(mlflow.pyfunc.PythonModel):
    """A trained dlbasics network as a pyfunc model (see the module's docstring)."""

    def load_context(self, context) -> None:
        import torch

        from dlbasics.config.variants import VariantSpec
        from dlbasics.learn.models import build_model, load_state_dict

        info = json.loads(Path(context.artifacts[MODEL_JSON]).read_text())
        self.served = json.loads(Path(context.artifacts[SERVED_JSON]).read_text())
        self.spec = VariantSpec.model_validate(info["spec"])
        model = build_model(self.spec.model, info["n_features"], info["n_outputs"],
                            torch.Generator())
        self.model = load_state_dict(model, context.artifacts[WEIGHTS]).eval()

    def _features(self, X: np.ndarray):
        """Rows [N, n_inputs] -> the network's inputs [N, n_features] (torch), by the steps of
        experiment.load_variant_data."""
        import torch

        from dlbasics.data.prepared import Prepared, Split, poly_features, take_features

        data = Prepared({"name": "request", "n_features": X.shape[1]},
                        {"request": Split(torch.from_numpy(X), torch.zeros(len(X)))})
        data = poly_features(take_features(data, self.spec.features), self.spec.poly_features)
        return data.splits["request"].X

    def predict(self, context, model_input: np.ndarray, params=None):
        import torch

        from dlbasics.learn.training import predict

        s = self.served
        X = checked_rows(model_input, s["n_inputs"])
        with torch.no_grad():
            out = predict(self.model, self._features(X))
        return answer(s["task"], out, s["class_names"], s["threshold"])


# The model's code as logged: what `mlflow.pyfunc.load_model` runs to build it.
MODEL_SOURCE = """from mlflow.models import set_model

from dlbasics.tracking.serving import ServedModel

set_model(ServedModel())
"""


def log_served_model(run_id: str, model_dir: Path, served: dict[str, Any],
                     example: np.ndarray) -> Any:
    """Log the model in model_dir (model.pt, model.json) as a ServedModel named `served` to
    run `run_id` (running or finished), with a signature and `example` rows [n, n_inputs] as the
    input example; mlflow's ModelInfo."""
    import tempfile

    from mlflow.models import Model, infer_signature

    with tempfile.TemporaryDirectory(prefix="dlbasics-served-") as tmp:
        code = _bundled_code(Path(tmp) / "code")
        served_path = Path(tmp) / SERVED_JSON
        served_path.write_text(json.dumps(served, sort_keys=True))
        artifacts = {WEIGHTS: str(model_dir / WEIGHTS), MODEL_JSON: str(model_dir / MODEL_JSON),
                     SERVED_JSON: str(served_path)}
        loaded = ServedModel()
        loaded.load_context(mlflow.pyfunc.PythonModelContext(artifacts, None))
        signature = infer_signature(example, loaded.predict(None, example))
        # A model from code (MLflow's recommended form): the model is this file's class, built
        # when loaded, so no pickled object is stored or unpickled.
        source = Path(tmp) / "served_model.py"
        source.write_text(MODEL_SOURCE)
        return Model.log(
            artifact_path=None, name="served", flavor=mlflow.pyfunc, run_id=run_id,
            python_model=str(source), artifacts=artifacts, signature=signature,
            input_example=example,
            # Explicit requirements: mlflow's inference would import-scan in a subprocess.
            pip_requirements=_requirements(),
            # The code this module executes, beside the model, so that it loads where dlbasics
            # is not installed (the class and the network builders are dlbasics code).
            code_paths=[str(code)],
        )


def _bundled_code(dest: Path) -> Path:
    """A copy of the package's files that importing this module executes (dlbasics.dvc.codedeps),
    under dest/dlbasics/: the package as the served model imports it, and nothing else."""
    import shutil

    from dlbasics.dvc import codedeps

    package = dest / codedeps.PACKAGE
    for f in codedeps.closure([__name__]):
        target = package / f.relative_to(codedeps.PACKAGE_DIR)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f, target)
    return package


def _requirements() -> list[str]:
    """The pinned packages the served model imports (for an environment built from them)."""
    from importlib.metadata import version

    return [f"{dist}=={version(dist).split('+')[0]}" for dist in
            ("mlflow", "numpy", "pandas", "pydantic", "pyyaml", "scikit-learn", "torch")]
