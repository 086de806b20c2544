"""What the train stage must redo (dlbasics.dvc.changes), fast and in-process: what a variant's
training and evaluation depend on, the fingerprint of it, the record beside the weights and
the digests of a model's files, each against an independent computation (hashlib, json,
platform). tests/test_train_reuse.py runs the same decisions through the train stage."""

from __future__ import annotations

import copy
import hashlib
import json
import platform

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from dlbasics.config.loading import parse_params
from dlbasics.dvc import changes
from dlbasics.dvc.codedeps import code_digest


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))


@pytest.fixture(scope="module")
def params(raw):
    return parse_params(copy.deepcopy(raw), source="p.yaml")


def test_versions_are_the_running_stack():
    assert changes.versions() == {"python": platform.python_version(),
                                  "torch": torch.__version__, "numpy": np.__version__}


def test_training_inputs_hold_every_setting_but_the_report_only(raw, params):
    name = "mlp"
    got = changes.training_inputs(params, name, "d" * 64, "c" * 64, {"torch": "x"})
    spec = dict(raw["train"][name])
    assert got == {"variant": name, "seed": raw["seed"],
                   "spec": params.train[name].training_settings(), "dataset_sha256": "d" * 64,
                   "code_sha256": "c" * 64, "versions": {"torch": "x"}}
    assert set(spec) - {"series"} <= set(got["spec"]) and "series" not in got["spec"]
    assert got["spec"]["optimizer"]["lr"] == spec["optimizer"]["lr"]


def test_evaluation_inputs_hold_the_training_and_the_evaluate_settings(raw, params):
    got = changes.evaluation_inputs(params, "f" * 64, "e" * 64)
    assert got == {"training": "f" * 64, "code_sha256": "e" * 64,
                   "evaluate": params.evaluate.model_dump(mode="json")}
    assert got["evaluate"]["multilabel_threshold"] == raw["evaluate"]["multilabel_threshold"]


def test_fingerprint_is_the_sha256_of_stable_json():
    inputs = {"b": [1, 2.5], "a": {"y": None, "x": "s"}}
    want = hashlib.sha256((json.dumps(inputs, indent=2, sort_keys=True) + "\n").encode())
    assert changes.fingerprint(inputs) == want.hexdigest()
    assert changes.fingerprint(dict(reversed(list(inputs.items())))) == want.hexdigest()
    assert changes.fingerprint({**inputs, "b": [1, 2.5000001]}) != want.hexdigest()


def test_a_changed_input_changes_the_fingerprint(raw, params):
    base = changes.fingerprint(changes.training_inputs(params, "mlp", "d", "c", {"v": "1"}))
    edited = copy.deepcopy(raw)
    edited["train"]["mlp"]["optimizer"]["lr"] = edited["train"]["mlp"]["optimizer"]["lr"] / 2
    other = parse_params(edited, source="p.yaml")
    for p, name, d, c, v in [(other, "mlp", "d", "c", {"v": "1"}),
                             (params, "mlp", "D", "c", {"v": "1"}),
                             (params, "mlp", "d", "C", {"v": "1"}),
                             (params, "mlp", "d", "c", {"v": "2"})]:
        assert changes.fingerprint(changes.training_inputs(p, name, d, c, v)) != base


def test_the_record_lives_in_the_models_folder_and_bad_ones_read_as_empty(tmp_path):
    path = changes.record_path(tmp_path)
    assert path == tmp_path / ".trained.json"
    assert changes.read_record(path) == {}  # none yet
    path.write_text('{"mlp": {"training": "f"}}')
    assert changes.read_record(path) == {"mlp": {"training": "f"}}
    for bad in ("{not json", "[1, 2]", '"text"', ""):
        path.write_text(bad)
        assert changes.read_record(path) == {}, bad
    path.unlink()
    path.mkdir()  # unreadable as a file
    assert changes.read_record(path) == {}


def test_output_digests_are_every_file_by_relative_path(tmp_path):
    assert changes.output_digests(tmp_path / "absent") is None
    (tmp_path / "m" / "eval" / "deep").mkdir(parents=True)
    files = {"model.pt": b"w", "eval/metrics.json": b"{}", "eval/deep/x.bin": b"\0\1"}
    for rel, data in files.items():
        (tmp_path / "m" / rel).write_bytes(data)
    got = changes.output_digests(tmp_path / "m")
    assert got == {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    assert list(got) == sorted(got)  # a stable order, folders left out
    (tmp_path / "m" / "model.pt").write_bytes(b"W")
    assert changes.output_digests(tmp_path / "m")["model.pt"] != got["model.pt"]


def test_code_digests_are_the_training_and_evaluation_closures():
    training, evaluation = changes.code_digests()
    assert training == code_digest(*changes.TRAINING_CODE)
    assert evaluation == code_digest(*changes.EVALUATION_CODE)
    assert training != evaluation
