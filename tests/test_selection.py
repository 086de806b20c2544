"""The K-fold grid search: folds done right, divergence excluded, ties to the smaller model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml
from conftest import REPO

from dlbasics.config.loading import parse_params
from dlbasics.config.params import grid_variants
from dlbasics.errors import ConfigError
from dlbasics.data.prepared import Split, load_prepared, prepare_all
from dlbasics.data.sources import generate_all
from dlbasics.search.gridsearch import run_search
from dlbasics.search.selection import describe, fold_indices, n_parameters


def _params(grid: dict, **search) -> dict:
    raw = json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))
    raw["runtime"] = {"device": "cpu", "threads": 1}
    raw["data"] = {"images": raw["data"]["images"]}
    raw["prepare"] = {"images": raw["prepare"]["images"]}
    raw["train"] = {"mlp": {**raw["train"]["mlp"], "epochs": 2, "batch_size": 64}}
    raw["report"] = {"notes": {}}
    raw["select"] = {"searches": {"s": {"base": "mlp", "k": 3, "overrides": {}, "grid": grid,
                                        **search}}}
    return raw


def grid_search(params, data, **kw):
    """The search `s` of _params."""
    return run_search(params, "s", data, log=lambda line: None, **kw)


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
    configs = grid_variants(params, "s")
    assert [c[0] for c in configs] == [
        {"model.hidden": h, "optimizer.lr": lr} for h in ([], [8, 8]) for lr in (0.01, 0.03)
    ]
    assert all(spec.epochs == 1 and spec.dataset == "images" for _, spec in configs)
    assert configs[3][1].model.hidden == [8, 8] and configs[3][1].optimizer.lr == 0.03


def test_a_grid_value_that_makes_no_valid_variant_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        parse_params(_params({"optimizer.lr": [0.1, -1.0]}))
    assert "select.searches.s.grid" in str(info.value) and "lr" in str(info.value)


@pytest.mark.parametrize("batched", ["auto", "never"])
def test_divergence_is_recorded_and_excluded_and_the_best_is_refitted(digits, batched):
    params = parse_params(_params({"optimizer.lr": [0.1, 100.0]}, batched=batched))
    table, best, spec, model, history = grid_search(params, digits)
    assert {r["path"] for r in table} == {"batched" if batched == "auto" else "sequential"}
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
    """Replace the training of each configuration with a score by its model's size (`scores`:
    n_parameters -> validation accuracy), so the scores tie or differ exactly as a test says.
    Returns the sizes in the order they were scored."""
    import dlbasics.search.gridsearch as selection

    seen: list[int] = []

    def scored(runner, max_epochs, patience, higher, metric, k):
        size = n_parameters(runner.fits[0][0])
        seen.append(size)
        acc = scores[size]
        return {0: selection._record([(acc, acc)] * k, 1, 1, [acc], metric, k)}

    monkeypatch.setattr(selection, "_run", scored)
    return seen


# Digits: 64 features, 10 classes. n_parameters of hidden [16], [] and [4].
WIDE, NONE, NARROW = 64 * 16 + 16 + 16 * 10 + 10, 64 * 10 + 10, 64 * 4 + 4 + 4 * 10 + 10


def test_ties_go_to_the_smaller_model(digits, monkeypatch):
    # Three configurations of three sizes, the largest first and the smallest in the middle,
    # with exactly the same validation score: the smallest wins (not the first, not the last,
    # not the largest).
    seen = _scored_by_size(monkeypatch, {WIDE: 0.9, NONE: 0.9, NARROW: 0.9})
    params = parse_params(_params({"model.hidden": [[16], [], [4]]}, batched="never"))
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
    params = parse_params(_params({"model.hidden": [[], [4], [16]]}, batched="never"))
    table, best, spec, *_ = grid_search(params, digits)
    assert [r["n_parameters"] for r in table] == [NONE, NARROW, WIDE]
    assert best["config"] == 2 and spec.model.hidden == [16]


def test_a_deduplicated_configuration_is_scored_once_and_ties_to_the_first(digits, monkeypatch):
    # Dropout on a model with no hidden layer changes nothing: all four grid points resolve to
    # the same settings, are cross-validated once, and tie at the same size; the first wins.
    import dlbasics.search.gridsearch as selection

    real, calls = selection._run, []
    monkeypatch.setattr(selection, "_run", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    params = parse_params(_params({"model.hidden": [[], []], "model.dropout": [0.5, 0.7]}))
    table, best, *_ = grid_search(params, digits)
    assert len(calls) == 1 and len(table) == 4
    assert [r["n_parameters"] for r in table] == [NONE] * 4
    assert best["config"] == 0


GRID = {"model.hidden": [[16], [32]], "optimizer.lr": [0.05, 0.3],
        "optimizer.weight_decay": [0.0, 0.001]}


@pytest.fixture(scope="module")
def both_paths(digits):
    """The same early-stopped search on the batched and on the sequential path."""
    out = {}
    for mode in ("auto", "never"):
        params = parse_params(_params(GRID, overrides={"epochs": 15, "batch_size": 64},
                                      patience=3, batched=mode))
        out[mode] = params, grid_search(params, digits)
    return out


def test_batched_and_sequential_give_the_same_choice_scores_and_weights(both_paths):
    (_, (t_b, best_b, spec_b, model_b, _)), (_, (t_s, best_s, spec_s, model_s, _)) = (
        both_paths["auto"], both_paths["never"])
    assert {r["path"] for r in t_b} == {"batched"} and {r["path"] for r in t_s} == {"sequential"}
    assert best_b["config"] == best_s["config"] and spec_b == spec_s
    for rb, rs in zip(t_b, t_s):
        assert rb["epochs_chosen"] == rs["epochs_chosen"]
        assert rb["epochs_trained"] == rs["epochs_trained"]
        np.testing.assert_allclose(rb["val_curve"], rs["val_curve"], rtol=0, atol=1e-6)
        for fb, fs in zip(rb["folds"], rs["folds"]):
            assert fb["val_accuracy"] == pytest.approx(fs["val_accuracy"], abs=1e-6)
    for (kb, vb), (ks, vs) in zip(model_b.state_dict().items(), model_s.state_dict().items()):
        assert kb == ks
        torch.testing.assert_close(vb, vs, rtol=0, atol=1e-6)


def test_the_batched_runner_trains_each_fold_as_the_sequential_one_does(digits):
    # Weights, not only scores: after 6 epochs every configuration's fold model of the batched
    # runner equals its sequential twin within 1e-6.
    import dlbasics.search.gridsearch as selection
    from dlbasics.rng import derive_seed

    params = parse_params(_params(GRID, overrides={"epochs": 6, "batch_size": 64}))
    specs = [spec for _, spec in grid_variants(params, "s")][:4]  # hidden [16]: one architecture
    folds = selection._Folds(digits, 3, derive_seed(params.seed, "folds", "x"), torch.device("cpu"))
    assert_batched_trains_as_sequential(params, specs, digits, folds, epochs=6)


def assert_batched_trains_as_sequential(params, specs, data, folds, epochs: int):
    """`epochs` epochs of the batched runner over `specs` and of one sequential runner per
    spec on the same folds: every epoch's validation and training scores, then every fold
    model's weights, equal within 1e-6. Returns the sequential runners."""
    import dlbasics.search.gridsearch as selection

    batched = selection._Batched(params, specs, data, folds, torch.device("cpu"))
    seqs = [selection._Sequential(params, s, "select@s", data, folds, torch.device("cpu"))
            for s in specs]
    for _ in range(epochs):
        scores_b = batched.epoch()
        trains_b = batched.train_scores(range(len(specs)))
        for g, seq in enumerate(seqs):
            np.testing.assert_allclose(scores_b[g], seq.epoch()[0], rtol=1e-6, atol=1e-6)
            np.testing.assert_allclose(trains_b[g], seq.train_scores([0])[0], rtol=0, atol=1e-6)
    for g, seq in enumerate(seqs):
        for fold, (model, *_rest) in enumerate(seq.fits):
            got = batched.trainers[fold].state_dict(g)
            for key, value in model.state_dict().items():
                torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6)
    return batched, seqs


def test_early_stopping_picks_the_best_mean_epoch_and_the_refit_trains_that_long(both_paths):
    params, (table, best, spec, _, history) = both_paths["never"]
    patience, most = 3, 15
    for r in table:
        curve = r["val_curve"]
        chosen = r["epochs_chosen"]
        assert chosen == int(np.argmax(curve)) + 1  # the first of equal best means
        assert r["epochs_trained"] == len(curve) == min(chosen + patience, most)
        assert r["val_accuracy_mean"] == pytest.approx(curve[chosen - 1], abs=1e-12)
        assert all(f["epochs"] == chosen for f in r["folds"])
    assert any(r["epochs_trained"] < most for r in table)  # some stopped early
    assert spec.epochs == best["epochs_chosen"] and len(history) == best["epochs_chosen"]


def test_the_lockstep_folds_equal_training_each_fold_with_fit(both_paths, digits):
    # The oracle: each fold trained on its own with training.fit for the chosen number of
    # epochs scores exactly what the search recorded for it.
    from dlbasics.learn.training import make_trainer, predict
    from dlbasics.rng import derive_seed

    params, (table, best, *_) = both_paths["never"]
    _, spec = grid_variants(params, "s")[best["config"]]
    spec = spec.model_copy(update={"epochs": best["epochs_chosen"]})
    make_model, train_fn = make_trainer(params, spec, "select@s", digits, None)
    y = digits.splits["train"].y
    X = digits.splits["train"].X
    for (tr, va), rec in zip(fold_indices(y.numpy(), 3, derive_seed(
            params.seed, "folds", digits.manifest["identity"]), stratify=True), best["folds"]):
        tr_t, va_t = torch.from_numpy(tr), torch.from_numpy(va)
        model = make_model()
        empty = Split(X[:0], y[:0])
        train_fn(model, {"train": Split(X[tr_t], y[tr_t]), "val": empty, "test": empty})
        acc = float((predict(model, X[va_t]).argmax(1) == y[va_t]).double().mean())
        assert acc == rec["val_accuracy"]


def test_parallel_workers_give_the_same_bits_as_one_process(digits):
    # A batched group, and dropout configurations trained on their own (their masks come from
    # the global generator, seeded per configuration): two worker processes reproduce one
    # process to the bit.
    got = {}
    for workers in (1, 2):
        raw = _params({"model.hidden": [[16]], "model.dropout": [0.0, 0.3],
                       "optimizer.lr": [0.05, 0.3]},
                      overrides={"epochs": 4, "batch_size": 64}, patience=2)
        raw["runtime"]["workers"] = workers
        got[workers] = grid_search(parse_params(raw), digits)
    (t1, b1, s1, m1, h1), (t2, b2, s2, m2, h2) = got[1], got[2]
    assert {r["path"] for r in t1} == {"batched", "sequential"}
    assert t1 == t2 and b1 == b2 and s1 == s2 and h1 == h2
    for v1, v2 in zip(m1.state_dict().values(), m2.state_dict().values()):
        assert torch.equal(v1, v2)


def test_without_patience_every_configuration_trains_its_epochs(digits):
    params = parse_params(_params({"optimizer.lr": [0.05, 0.1]}, overrides={"epochs": 3}))
    table, best, spec, _, history = grid_search(params, digits)
    assert all(r["epochs_chosen"] == r["epochs_trained"] == 3 for r in table)
    assert spec.epochs == 3 and len(history) == 3


def test_a_configuration_in_words():
    params = parse_params(_params({"model.hidden": [[256, 128]], "model.dropout": [0.5],
                                   "optimizer.weight_decay": [0.01]}))
    (_, spec), = grid_variants(params, "s")
    assert describe(spec, epochs=7) == (
        "2 hidden layers of 256 + 128 relu units, dropout 0.5/0.5; sgd lr 0.1, weight decay "
        "0.01; batch 64, 7 epochs")
    params = parse_params(_params({"model.hidden": [[]]}))
    (_, spec), = grid_variants(params, "s")
    assert describe(spec).startswith("no hidden layer (a linear model); sgd lr 0.1, no weight "
                                     "decay; batch 64, 2 epochs")


def test_every_fit_starts_from_the_configurations_initial_weights(digits):
    from dlbasics.learn.training import make_trainer

    params = parse_params(_params({"optimizer.lr": [0.1]}))
    (_, spec), = grid_variants(params, "s")
    make_model, _ = make_trainer(params, spec, "select", digits, None)
    a, b = make_model(), make_model()
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


@pytest.mark.gpu
def test_training_on_cuda_runs_there_and_matches_cpu(digits):
    # The same variant trained on the CPU and on CUDA: on CUDA every forward pass (training
    # batches and evaluation) sees tensors resident on the GPU, and the result is the CPU's to
    # float tolerance (same initial weights and batch order: both draw from CPU generators).
    from dlbasics.learn.training import make_trainer, predict

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
