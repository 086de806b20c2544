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
from dlbasics.selection import fold_indices, grid_search, n_parameters


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


def _scored_by_size(monkeypatch, scores: dict[int, float]) -> list[int]:
    """Replace the cross-validation grid_search calls with one that scores a configuration by
    its model's size (`scores`: n_parameters -> validation accuracy), so the scores tie or
    differ exactly as a test says. Returns the sizes in the order they were scored."""
    import dlbasics.selection as selection

    seen: list[int] = []

    def scored(data, k, seed, make_model, train_fn):
        size = n_parameters(make_model())
        seen.append(size)
        acc = scores[size]
        folds = [{"fold": i, "train_accuracy": acc, "val_accuracy": acc, "epochs": 0}
                 for i in range(k)]
        return {"k": k, "metric": "accuracy", "folds": folds,
                "train_accuracy_mean": acc, "train_accuracy_std": 0.0,
                "val_accuracy_mean": acc, "val_accuracy_std": 0.0}

    monkeypatch.setattr(selection, "cross_validate", scored)
    return seen


# Digits: 64 features, 10 classes. n_parameters of hidden [16], [] and [4].
WIDE, NONE, NARROW = 64 * 16 + 16 + 16 * 10 + 10, 64 * 10 + 10, 64 * 4 + 4 + 4 * 10 + 10


def test_ties_go_to_the_smaller_model(digits, monkeypatch):
    # Three configurations of three sizes, the largest first and the smallest in the middle,
    # with exactly the same validation score: the smallest wins (not the first, not the last,
    # not the largest).
    seen = _scored_by_size(monkeypatch, {WIDE: 0.9, NONE: 0.9, NARROW: 0.9})
    params = parse_params(_params({"model.hidden": [[16], [], [4]]}))
    table, best, spec, model, _ = grid_search(params, digits)
    assert seen == [WIDE, NONE, NARROW]  # every configuration scored once, in grid order
    assert [r["n_parameters"] for r in table] == [WIDE, NONE, NARROW]
    assert len({r["val_accuracy_mean"] for r in table}) == 1  # a real tie ...
    assert len({r["n_parameters"] for r in table}) == 3  # ... between different sizes
    assert best["config"] == 2 and best["n_parameters"] == NARROW
    assert spec.model.hidden == [4]
    assert n_parameters(model) == NARROW  # the refit is the smaller model


def test_a_better_score_beats_a_smaller_model(digits, monkeypatch):
    # Size only breaks ties: the larger model wins when it scores higher, by any margin.
    _scored_by_size(monkeypatch, {WIDE: 0.901, NONE: 0.9, NARROW: 0.9})
    params = parse_params(_params({"model.hidden": [[], [4], [16]]}))
    table, best, spec, *_ = grid_search(params, digits)
    assert [r["n_parameters"] for r in table] == [NONE, NARROW, WIDE]
    assert best["config"] == 2 and spec.model.hidden == [16]


def test_a_deduplicated_configuration_is_scored_once_and_ties_to_the_first(digits, monkeypatch):
    # Dropout on a model with no hidden layer changes nothing: all four grid points resolve to
    # the same settings, are cross-validated once, and tie at the same size; the first wins.
    import dlbasics.selection as selection

    real, calls = selection.cross_validate, []
    monkeypatch.setattr(selection, "cross_validate",
                        lambda *a, **kw: calls.append(1) or real(*a, **kw))
    params = parse_params(_params({"model.hidden": [[], []], "model.dropout": [0.5, 0.7]}))
    table, best, *_ = grid_search(params, digits)
    assert len(calls) == 1 and len(table) == 4
    assert [r["n_parameters"] for r in table] == [NONE] * 4
    assert best["config"] == 0


def test_every_fit_starts_from_the_configurations_initial_weights(digits):
    from dlbasics.experiment import make_trainer

    params = parse_params(_params({"optimizer.lr": [0.1]}))
    (_, spec), = grid_variants(params)
    make_model, _ = make_trainer(params, spec, "select", digits, None)
    a, b = make_model(), make_model()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.gpu
def test_training_on_cuda_runs_there_and_matches_cpu(digits):
    # The same variant trained on the CPU and on CUDA: on CUDA every forward pass (training
    # batches and evaluation) sees tensors resident on the GPU, and the result is the CPU's to
    # float tolerance (same initial weights and batch order: both draw from CPU generators).
    from dlbasics.experiment import make_trainer
    from dlbasics.training import predict

    params = parse_params(_params({"optimizer.lr": [0.1]}))
    spec = params.train["mlp"]
    X_test, y_test = digits.splits["test"].X, digits.splits["test"].y
    result = {}
    for device in (torch.device("cpu"), torch.device("cuda")):
        make_model, train_fn = make_trainer(params, spec, "mlp", digits, device)
        model = make_model()
        seen: set[str] = set()
        model.register_forward_pre_hook(lambda m, args: seen.add(args[0].device.type))
        history = train_fn(model, digits.splits)
        assert seen == {device.type}
        assert {p.device.type for p in model.parameters()} == {device.type}
        result[device.type] = history, predict(model.cpu(), X_test)
    (h_cpu, out_cpu), (h_gpu, out_gpu) = result["cpu"], result["cuda"]
    assert len(h_gpu) == len(h_cpu) == spec.epochs
    for a, b in zip(h_cpu, h_gpu):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    torch.testing.assert_close(out_gpu, out_cpu, rtol=1e-3, atol=1e-3)
    agree = (out_gpu.argmax(1) == out_cpu.argmax(1)).double().mean().item()
    assert agree >= 0.995
    assert (out_gpu.argmax(1) == y_test).double().mean().item() > 0.5  # and it learned
