"""What the train stage must redo: the record of each variant's inputs beside its files.

What makes a variant retrain is defined once, here (training_inputs): its own settings as DVC
sees them (less the report-only keys), the seed, its prepared dataset's digest, the code its
training executes (the import closure of dlbasics.pipeline.variant) and the numeric stack's versions.
Not the runtime settings (device, threads) and not report-only keys. What makes a trained
variant re-evaluated without retraining (evaluation_inputs): its training inputs, the
`evaluate` settings and the code evaluation executes (the closure of dlbasics.report.evaluation).
Both code sets are parts of what dvc.yaml declares for the stage (tests/test_stage_deps.py), so
DVC and this record watch the same files.

The record (`data/models/.trained.json`) lives inside the stage's DVC output, so it travels
with the weights through the DVC cache and remotes (`dvc exp run --temp`, CI's `dvc pull`).
"""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any

from dlbasics.config.params import Params
from dlbasics.io import dumps_json, sha256_bytes, sha256_file

TRAINING_CODE = ("dlbasics.pipeline.variant",)
EVALUATION_CODE = ("dlbasics.report.evaluation",)
RECORD = ".trained.json"


def versions() -> dict[str, str]:
    import numpy as np
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "numpy": np.__version__}


def training_inputs(params: Params, name: str, dataset_sha256: str, code_sha256: str,
                    versions: dict[str, str]) -> dict[str, Any]:
    """Everything variant `name`'s trained files depend on. The variant's name is one of them:
    its dropout masks and its MLflow run derive from it."""
    return {"variant": name, "seed": params.seed,
            "spec": params.train[name].training_settings(),
            "dataset_sha256": dataset_sha256, "code_sha256": code_sha256, "versions": versions}


def evaluation_inputs(params: Params, training_fp: str, code_sha256: str) -> dict[str, Any]:
    """Everything a trained variant's evaluation files depend on besides its trained files."""
    return {"training": training_fp, "evaluate": params.evaluate.model_dump(mode="json"),
            "code_sha256": code_sha256}


def fingerprint(inputs: dict[str, Any]) -> str:
    return sha256_bytes(dumps_json(inputs).encode())


def record_path(models_root: Path) -> Path:
    return models_root / RECORD


def read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def output_digests(model_dir: Path) -> dict[str, str] | None:
    """sha256 of every file a variant's training and evaluation wrote (all in its model
    directory), None when there is none."""
    if not model_dir.is_dir():
        return None
    return {p.relative_to(model_dir).as_posix(): sha256_file(p)
            for p in sorted(model_dir.rglob("*")) if p.is_file()}


def code_digests() -> tuple[str, str]:
    """(training code digest, evaluation code digest): the source each executes."""
    from dlbasics.dvc.codedeps import code_digest

    return code_digest(*TRAINING_CODE), code_digest(*EVALUATION_CODE)
