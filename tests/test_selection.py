"""The K-fold grid search: folds done right, divergence excluded, ties to the smaller model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from conftest import REPO
from dlbasics.config import ConfigError, grid_variants, parse_params
from dlbasics.data import generate_all, load_prepared, prepare_all
from dlbasics.selection import fold_indices, grid_search


def _params(grid: dict, **select) -> dict:
    raw = json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))
    raw["runtime"] = {"device": "cpu", "threads": 1}
    raw["data"] = {"images": raw["data"]["images"]}
    raw["prepare"] = {"images": raw["prepare"]["images"]}
    raw["train"] = {"mlp": {**raw["train"]["mlp"], "epochs": 2, "batch_size": 64}}
    raw["report"] = {"notes": {}}
    raw["select"] = {"base": "mlp", "k": 3, "overrides": {}, "grid": grid, **select}
    return raw


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    root = tmp_path_factory.mktemp("sel")
    params = parse_params(_params({"optimizer.lr": [0.1]}))
    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prep")
    return load_prepared(root / "prep" / "images")


def test_grid_is_the_product_of_axes_applied_to_the_base():
    params = parse_params(_params({"model.hidden": [[], [8, 8]], "optimizer.lr": [0.01, 0.03]},
                                  overrides={"epochs": 1}))
    configs = grid_variants(params)
    assert [c[0] for c in configs] == [
        {"model.hidden": h, "optimizer.lr": lr} for h in ([], [8, 8]) for lr in (0.01, 0.03)
    ]
    assert all(spec.epochs == 1 and spec.dataset == "images" for _, spec in configs)
    assert configs[3][1].model.hidden == [8, 8] and configs[3][1].optimizer.lr == 0.03


def test_a_grid_value_that_makes_no_valid_variant_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        parse_params(_params({"optimizer.lr": [0.1, -1.0]}))
    assert "select.grid" in str(info.value) and "lr" in str(info.value)


def test_folds_partition_the_training_rows_and_are_stratified():
    y = np.repeat(np.arange(5), 30)
    folds = fold_indices(y, 3, seed=7, stratify=True)
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(len(y)))
    for tr, va in folds:
        assert not set(tr) & set(va)  # no fold trains on its own validation rows
        assert np.bincount(y[va]).tolist() == [10] * 5


def test_divergence_is_recorded_and_excluded_and_the_best_is_refitted(digits):
    params = parse_params(_params({"optimizer.lr": [0.1, 100.0]}))
    table, best, spec, model, history = grid_search(params, digits)
    assert [r["config"] for r in table] == [0, 1]
    assert table[1]["diverged"] and table[1]["diverged_epoch"] >= 1
    assert not table[0]["diverged"] and best["config"] == 0
    assert spec.optimizer.lr == 0.1
    folds = table[0]["folds"]
    assert len(folds) == 3
    vals = [f["val_accuracy"] for f in folds]
    assert table[0]["val_accuracy_mean"] == pytest.approx(np.mean(vals))
    assert table[0]["val_accuracy_std"] == pytest.approx(np.std(vals, ddof=1))
    # The refit trains on the whole training split.
    assert len(history) == spec.epochs
    out = model(digits.splits["test"].X).argmax(1)
    assert float((out == digits.splits["test"].y).float().mean()) > 0.5


def test_ties_go_to_the_smaller_model(digits):
    # Dropout on a model with no hidden layer changes nothing: both points resolve to the same
    # settings and score the same; a wider second axis value is strictly larger.
    params = parse_params(_params({"model.hidden": [[], []], "model.dropout": [0.5, 0.7]}))
    table, best, *_ = grid_search(params, digits)
    scores = {r["val_accuracy_mean"] for r in table}
    assert len(scores) == 1  # identical settings, identical (deduplicated) results
    assert best["config"] == 0


def test_every_fit_starts_from_the_configurations_initial_weights(digits):
    from dlbasics.experiment import make_trainer

    params = parse_params(_params({"optimizer.lr": [0.1]}))
    (_, spec), = grid_variants(params)
    make_model, _ = make_trainer(params, spec, "select", digits, None)
    a, b = make_model(), make_model()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
