"""The train stage's per-variant reuse (dlbasics.pipeline.train.train_all), in process, on a real sqlite
MLflow store: what is retrained, what is skipped, and that skipping never keeps stale or
damaged files. (The DVC side, one stage re-run and one new run, is in test_pipeline_e2e.)"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import mlflow
import pytest
import yaml

from dlbasics.config.loading import load_params
from dlbasics.errors import ConfigError
from dlbasics.data.prepared import prepare_all
from dlbasics.data.sources import generate_all
from dlbasics.dvc import changes, codedeps
from dlbasics.pipeline.train import train_all

REPO = Path(__file__).resolve().parents[1]
BASE = yaml.safe_load((REPO / "params.yaml").read_text())


def small() -> dict:
    """Three linear variants of the synthetic set, two epochs each."""
    params = copy.deepcopy(BASE)
    linreg = {**params["train"]["linreg"], "epochs": 2}
    params["train"] = {"a": copy.deepcopy(linreg), "b": copy.deepcopy(linreg),
                       "c": {**copy.deepcopy(linreg), "batch_size": 20}}
    params["data"] = {"synthetic_linear": params["data"]["synthetic_linear"]}
    params["prepare"] = {"synthetic_linear": params["prepare"]["synthetic_linear"]}
    params.pop("select", None)
    params["lessons"] = {}  # several train on the images (dvc.yaml tracks the key)
    params["report"] = {"notes": {}}
    return params


def write(root: Path, params: dict):
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return load_params(path)


def digests(*roots: Path) -> dict[str, str]:
    return {str(p.relative_to(r.parent)): hashlib.sha256(p.read_bytes()).hexdigest()
            for r in roots for p in sorted(r.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("prepared")
    params = write(root, small())
    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    return root / "prepared"


@pytest.fixture
def proj(tmp_path, prepared, monkeypatch):
    for key in ("MLFLOW_TRACKING_URI", "DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return tmp_path


def train(proj: Path, prepared: Path, params, only=None) -> dict[str, str]:
    return train_all(params, prepared, proj / "models", only=only)


def n_runs(proj: Path, variant: str) -> int:
    runs = mlflow.search_runs(experiment_names=[BASE["tracking"]["experiment"]],
                              filter_string=f"tags.variant = '{variant}'", output_format="list")
    return len(runs)


def test_unchanged_variants_are_skipped_and_an_edited_one_retrained(proj, prepared):
    params = write(proj, small())
    assert train(proj, prepared, params) == {"a": "trained", "b": "trained", "c": "trained"}
    first = digests(proj / "models")
    assert train(proj, prepared, params) == {"a": "up to date", "b": "up to date",
                                             "c": "up to date"}
    assert digests(proj / "models") == first
    assert [n_runs(proj, v) for v in "abc"] == [1, 1, 1]  # a skipped variant logs nothing

    edited = small()
    edited["train"]["b"]["optimizer"]["lr"] = 0.01
    params = write(proj, edited)
    assert train(proj, prepared, params) == {"a": "up to date", "b": "trained",
                                             "c": "up to date"}
    now = digests(proj / "models")
    changed = {k for k in first if first[k] != now.get(k)}
    assert {k.split("/")[1] for k in changed if k.startswith("models/")} == {"b", ".trained.json"}
    assert "models/b/history.json" in changed and "models/a/history.json" not in changed
    assert [n_runs(proj, v) for v in "abc"] == [1, 2, 1]


def test_a_damaged_or_missing_file_is_retrained_back_to_the_same_bytes(proj, prepared):
    params = write(proj, small())
    train(proj, prepared, params)
    first = digests(proj / "models")
    weights = proj / "models/a/model.pt"
    blob = weights.read_bytes()
    weights.write_bytes(blob[:-1] + bytes([blob[-1] ^ 1]))
    (proj / "models/c/history.json").unlink()
    assert train(proj, prepared, params) == {"a": "trained", "b": "up to date", "c": "trained"}
    assert digests(proj / "models") == first  # deterministic: same bytes


def test_new_training_code_retrains_everything_new_evaluation_code_only_evaluates(
        proj, prepared, monkeypatch):
    params = write(proj, small())
    train(proj, prepared, params)
    real = codedeps.code_digest

    def edited(*modules):  # as after an edit of a module that the given closure holds
        return "0" * 64 if modules == edited.which else real(*modules)

    monkeypatch.setattr(codedeps, "code_digest", edited)
    edited.which = changes.EVALUATION_CODE
    assert set(train(proj, prepared, params).values()) == {"evaluated"}
    assert [n_runs(proj, v) for v in "abc"] == [1, 1, 1]  # added to the runs that trained
    edited.which = changes.TRAINING_CODE
    assert set(train(proj, prepared, params).values()) == {"trained"}


def test_runtime_and_report_only_settings_retrain_nothing(proj, prepared):
    params = write(proj, small())
    train(proj, prepared, params)
    first = digests(proj / "models")
    edited = small()
    edited["runtime"]["threads"] = 1
    edited["runtime"]["device"] = "cpu"
    edited["train"]["a"]["series"] = {"name": "s", "x": 1.0}
    assert set(train(proj, prepared, write(proj, edited)).values()) == {"up to date"}
    assert digests(proj / "models") == first


def test_evaluation_settings_reevaluate_without_retraining(proj, prepared):
    params = write(proj, small())
    train(proj, prepared, params)
    first = digests(proj / "models")
    edited = small()
    edited["evaluate"]["zero_tol"] = 10.0  # n_near_zero of the linear models' weights
    assert set(train(proj, prepared, write(proj, edited)).values()) == {"evaluated"}
    now = digests(proj / "models")
    changed = {k for k in first if first[k] != now.get(k)}
    assert changed == {"models/.trained.json", *(f"models/{v}/eval/metrics.json" for v in "abc")}
    metrics = json.loads((proj / "models/a/eval/metrics.json").read_text())
    assert metrics["n_near_zero"] == 2.0  # |w| near (2, 3.4): both below 10
    assert [n_runs(proj, v) for v in "abc"] == [1, 1, 1]
    run = mlflow.search_runs(experiment_names=[BASE["tracking"]["experiment"]],
                             filter_string="tags.variant = 'a'", output_format="list")[0]
    assert run.data.metrics["n_near_zero"] == 2.0


def test_a_removed_variant_loses_its_files_and_only_trains_the_named(proj, prepared):
    params = write(proj, small())
    assert train(proj, prepared, params, only=["c"]) == {"c": "trained"}
    assert sorted(p.name for p in (proj / "models").iterdir()) == [".trained.json", "c"]
    train(proj, prepared, params)
    fewer = small()
    del fewer["train"]["c"]
    assert train(proj, prepared, write(proj, fewer)) == {"a": "up to date", "b": "up to date"}
    assert sorted(p.name for p in (proj / "models").iterdir()) == [".trained.json", "a", "b"]
    record = json.loads((proj / "models/.trained.json").read_text())
    assert sorted(record) == ["a", "b"]


def test_an_unknown_variant_is_one_config_error(proj, prepared):
    params = write(proj, small())
    with pytest.raises(ConfigError, match=r"train\.nosuch: no such variant"):
        train(proj, prepared, params, only=["nosuch"])
    assert not (proj / "models").exists()
