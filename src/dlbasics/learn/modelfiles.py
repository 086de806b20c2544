"""The files of one trained model, in its directory: what they are called, what model.json
records, how they are written (swapped in whole) and read back.

    model.pt         state_dict (torch.save; loaded weights_only)
    seed_<s>.pt      the same variant trained again with seed s (a variant's `seeds`)
    model.json       what rebuilding and judging it needs: sizes, task, settings, digests
    history.json     one record per epoch of its final fit
    eval/            its evaluation (written by the train or select stage, gathered by report)
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from dlbasics.errors import DataError
from dlbasics.io import (
    EVAL_DIR,
    HISTORY,
    atomic_directory,
    sha256_bytes,
    write_bytes_atomic,
    write_json_atomic,
)

WEIGHTS = "model.pt"
INFO = "model.json"


def model_record(name: str, dataset: str, data, spec, blob: bytes,
                 history: list[dict[str, float]], **extra: Any) -> dict[str, Any]:
    """model.json's content for weights `blob` trained with `spec` (a VariantSpec) on `data`
    (a Prepared) as `name`; `extra` adds what the producing stage knows besides (cv, seeds, the
    search's choice)."""
    return {
        "variant": name,
        "dataset": dataset,
        "dataset_sha256": data.digest,
        "n_features": data.manifest["n_features"],
        "n_outputs": data.manifest["n_outputs"],
        "task": data.task,
        "spec": spec.training_settings(),  # the report-only keys left out
        "model_sha256": sha256_bytes(blob),
        "final": history[-1],
        **extra,
    }


@contextmanager
def writing(model_dir: Path, blob: bytes, info: dict[str, Any],
            history: list[dict[str, float]]) -> Iterator[Path]:
    """Write the weights, model.json and history.json into a temporary directory, yield it (for
    more files: other seeds' weights, the evaluation), then swap it in for model_dir whole: a
    failure never leaves old and new files mixed."""
    with atomic_directory(model_dir) as tmp:
        write_bytes_atomic(tmp / WEIGHTS, blob)
        write_json_atomic(tmp / INFO, info)
        write_json_atomic(tmp / HISTORY, history)
        yield tmp


def read_model_info(model_dir: Path) -> dict[str, Any]:
    path = model_dir / INFO
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the train stage first (dvc repro)") from None


def model_spec(params, name: str, model_dir: Path):
    """The settings (VariantSpec) a saved model was trained with: recorded beside it, else
    params.train[name]."""
    from dlbasics.config.variants import VariantSpec

    info = read_model_info(model_dir)
    return VariantSpec.model_validate(info["spec"]) if "spec" in info else params.train[name]


def load_model(params, name: str, model_dir: Path, weights: str = WEIGHTS):
    """Rebuild variant `name`'s network and load its trained weights (weights_only), eval mode."""
    import torch

    from dlbasics.learn.models import build_model, load_state_dict

    info = read_model_info(model_dir)
    model = build_model(model_spec(params, name, model_dir).model, info["n_features"],
                        info["n_outputs"], torch.Generator())
    return load_state_dict(model, str(model_dir / weights)).eval()


def write_evaluation(model_dir: Path, ev: dict[str, Any]) -> None:
    """An evaluation (evaluation.evaluate_model's result) into model_dir/eval/, swapped in
    whole: metrics.json, details.json, predictions.json (classifiers) and the figures."""
    with atomic_directory(model_dir / EVAL_DIR) as tmp:
        write_json_atomic(tmp / "metrics.json", ev["metrics"])
        write_json_atomic(tmp / "details.json", ev["details"])
        if ev["predictions"] is not None:
            write_json_atomic(tmp / "predictions.json", ev["predictions"])
        for fname, png in ev["figures"].items():
            write_bytes_atomic(tmp / fname, png)
