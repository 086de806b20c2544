"""The house-prices submission (file 002, 4.10 to the end): the variant with the best K-fold
log-RMSE, refitted on every training row, predicts the test table's prices.

Reads the raw table (`table.csv`, with its target) and `test.csv` (no target) that `generate`
wrote, and the cross-validation scores the train stage left in each variant's eval/metrics.json.
Writes `submission.csv` (Id, SalePrice; one row per test row, in the test file's order) and
`submission.json` (the choice and the scores it was made on) into one directory, swapped in whole.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics.config.params import Params, kfold_variants, submission_candidates
from dlbasics.data.prepared import Prepared, Split
from dlbasics.errors import DataError
from dlbasics.io import atomic_directory, sha256_file, write_bytes_atomic, write_json_atomic
from dlbasics.learn.tasks import PRIMARY, choose
from dlbasics.learn.training import make_trainer, predict

SUBMISSION = "submission.csv"
CHOICE = "submission.json"


def choose_variant(params: Params, dataset: str, models: Path) -> tuple[str, list[dict]]:
    """The candidate with the best mean validation log-RMSE over its folds (tasks.choose; a tie
    goes to the earlier in params), and every candidate's record."""
    metric = PRIMARY["regression"]
    records = []
    for i, name in enumerate(kfold_variants(params, dataset)):
        path = models / name / "eval" / "metrics.json"
        try:
            m = json.loads(path.read_text())
        except FileNotFoundError:
            raise DataError(f"{path}: missing; run the train stage first (make pipeline)") from None
        # n_parameters 0 for all: a tie goes to the candidate listed first in params.
        records.append({"variant": name, "config": i, "n_parameters": 0,
                        f"val_{metric.name}_mean": float(m[f"cv_val_{metric.name}_mean"]),
                        f"val_{metric.name}_std": float(m[f"cv_val_{metric.name}_std"])})
    if not records:
        raise DataError(f"no variant under train is cross-validated (kfold) on {dataset!r}: "
                        "nothing to choose a submission from")
    return choose(records, metric)["variant"], records


def _checked(path: Path, meta: dict[str, Any], name: str) -> Path:
    if sha256_file(path) != meta["sha256"][name]:
        raise DataError(f"{path}: content does not match its recorded sha256 (truncated or "
                        "altered); run `dvc repro --force generate`")
    return path


def _write(out: Path, frame, summary: dict[str, Any]) -> dict[str, Any]:
    """submission.csv and submission.json into `out`, swapped in whole."""
    with atomic_directory(out) as tmp:
        write_bytes_atomic(tmp / SUBMISSION, frame.to_csv(
            index=False, lineterminator="\n", float_format="%.2f").encode())
        summary["first_rows"] = json.loads(frame.head(3).to_json(orient="records"))
        write_json_atomic(tmp / CHOICE, summary)
    return summary


def write_submission(params: Params, raw: Path, models: Path, out: Path) -> dict[str, Any]:
    """Choose, refit on all of raw/<dataset>/table.csv, predict its test.csv, write out/; the
    dataset is the house-prices table under data. Without one, without a cross-validated
    variant on it or without test rows, submission.csv holds its header only."""
    import pandas as pd

    from dlbasics.data.tabular import TabularPreprocessor, log_target

    dataset, names = submission_candidates(params)
    if not names:
        summary = {"dataset": dataset, "chosen": None, "rows": 0}
        return _write(out, pd.DataFrame({"Id": [], "SalePrice": []}), summary)
    meta = json.loads((raw / dataset / "meta.json").read_text())
    id_col, target = meta["id_column"], meta["target_column"]
    chosen, records = choose_variant(params, dataset, models)
    summary: dict[str, Any] = {"dataset": dataset, "chosen": chosen, "candidates": records,
                               "metric": "log-RMSE over the K folds of the training rows"}
    if "test.csv" not in meta["sha256"]:
        summary["rows"] = 0
        return _write(out, pd.DataFrame({id_col or "Id": [], target: []}), summary)
    train = pd.read_csv(_checked(raw / dataset / "table.csv", meta, "table.csv"))
    test = pd.read_csv(_checked(raw / dataset / "test.csv", meta, "test.csv"))
    # Refit on every training row, as the chapter's last step does; the encoding too.
    pre = TabularPreprocessor(id_column=id_col, target_column=target).fit(train)
    X = torch.from_numpy(pre.transform(train))
    y = torch.from_numpy(log_target(train[target].to_numpy())).reshape(-1, 1)
    empty = Split(X[:0], y[:0])
    data = Prepared({"task": "regression", "n_features": X.shape[1], "n_outputs": 1,
                     "identity": meta["identity"]},
                    {"train": Split(X, y), "val": empty, "test": empty})
    spec = params.train[chosen]
    spec = spec.model_copy(update={"batch_size": min(spec.batch_size, len(y))})
    make_model, train_fn = make_trainer(params, spec, f"submit {chosen}", data, None)
    model = make_model()
    train_fn(model, data.splits)
    fitted = predict(model, X).reshape(-1).double()
    log_price = predict(model, torch.from_numpy(pre.transform(test))).reshape(-1).double()
    frame = pd.DataFrame({id_col: test[id_col].to_numpy(),
                          target: np.round(torch.exp(log_price).numpy(), 2)})
    summary.update(rows=len(frame), train_rows=len(train),
                   refit_train_log_rmse=float(torch.sqrt(torch.mean(
                       (fitted - y.reshape(-1).double()) ** 2))))
    return _write(out, frame, summary)
