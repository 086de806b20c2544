"""The grid search's parts at toy size (gridsearch.py; make mutate runs these against its mutants):
folds against fold_indices, both trainers against each fold trained by hand with train_epoch,
the early-stopping loop against a scripted runner and hand-worked records, the jobs' grouping and
order against hand-computed costs. Tiny data (40-42 rows x 4 features), 3 folds, 3 epochs."""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import torch
import torch._dynamo  # (a first optimiser imports it: 1.5 s, once, before mutmut forks)
import yaml
from conftest import REPO
from sklearn.model_selection import train_test_split  # (imported once, before mutmut forks)

from dlbasics.config.loading import parse_params
from dlbasics.config.params import grid_variants
from dlbasics.data.prepared import Prepared, Split
from dlbasics.search import gridsearch as gs
from dlbasics.search.selection import fold_indices

pytestmark = pytest.mark.usefixtures("one_thread")

F, C = 4, 3  # features, classes
SEED = 11  # the folds' seed
PARAMS_YAML = json.dumps(yaml.safe_load((REPO / "params.yaml").read_text()))  # read once


def _params(grid: dict, base: str = "clf", overrides: dict | None = None, **search):
    """params.yaml with two tiny bases (clf: classification, reg: regression; 4-5-out MLPs,
    batch 8, 3 epochs) and one search `s` over `grid`."""
    raw = json.loads(PARAMS_YAML)
    raw["runtime"] = {"device": "cpu", "threads": 1}
    raw["data"] = {k: raw["data"][k] for k in ("images", "house")}
    raw["prepare"] = {k: raw["prepare"][k] for k in ("images", "house")}
    common = {"model": {"kind": "mlp", "hidden": [5], "activation": "relu", "init": "normal",
                        "init_std": 0.3},
              "optimizer": {"name": "sgd", "lr": 0.1}, "batch_size": 8, "epochs": 3}
    raw["train"] = {"clf": {"dataset": "images", "loss": "cross_entropy", **common},
                    "reg": {"dataset": "house", "loss": "mse", **common}}
    raw["report"] = {"notes": {}}
    raw["select"] = {"searches": {"s": {"base": base, "k": 3, "overrides": overrides or {},
                                        "grid": grid, **search}}}
    return parse_params(raw)


def _specs(grid: dict, **kw) -> list:
    return [spec for _, spec in grid_variants(_params(grid, **kw), "s")]


def _data(task: str, n: int) -> Prepared:
    """n rows x F features; balanced classes (with the class as a signal in one column), or a
    noisy linear target [n, 1]."""
    g = torch.Generator().manual_seed(n)
    X = torch.randn(n, F, generator=g)
    if task == "regression":
        y = X @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]) + 0.1 * torch.randn(n, 1, generator=g)
        n_out = 1
    else:
        y = torch.arange(n) % (C if task == "classification" else 2)
        X[torch.arange(n), y] += 2.0
        n_out = C if task == "classification" else 1
    empty = Split(X[:0], y[:0])
    return Prepared({"task": task, "n_features": F, "n_outputs": n_out,
                     "identity": f"tiny-{task}-{n}"}, {"train": Split(X, y), "val": empty,
                                                       "test": empty})


def _folds(data: Prepared, k: int = 3, **kw) -> gs._Folds:
    return gs._Folds(data, k, SEED, torch.device("cpu"), **kw)


# --------------------------------------------------------------------------- _Folds


@pytest.mark.parametrize("task, stratified", [("classification", True), ("binary", True),
                                              ("regression", False)])
def test_folds_are_fold_indices_rows(task, stratified):
    data = _data(task, 40)
    X, y = data.splits["train"].X, data.splits["train"].y
    want = fold_indices(y.numpy(), 3, SEED, stratify=stratified)
    if stratified:  # it matters (a regression target cannot be stratified)
        other = fold_indices(y.numpy(), 3, SEED, stratify=False)
        assert any(not np.array_equal(a[1], b[1]) for a, b in zip(want, other))
    folds = _folds(data)
    assert len(folds.splits) == 3
    for (train, val), (tr, va) in zip(folds.splits, want):
        for split, rows in ((train, tr), (val, va)):
            assert torch.equal(split.X, X[torch.from_numpy(rows)])
            assert torch.equal(split.y, y[torch.from_numpy(rows)])


@pytest.mark.parametrize("task, stratified", [("classification", True), ("regression", False)])
def test_folds_of_a_seeded_subset(task, stratified):
    data = _data(task, 42)
    X, y = data.splits["train"].X, data.splits["train"].y
    rows, _ = train_test_split(np.arange(42), train_size=30, random_state=SEED,
                               stratify=y.numpy() if stratified else None)
    rows = np.sort(rows)
    Xs, ys = X[torch.from_numpy(rows)], y[torch.from_numpy(rows)]
    folds = _folds(data, max_rows=30)
    want = fold_indices(ys.numpy(), 3, SEED, stratify=stratified)
    for (train, val), (tr, va) in zip(folds.splits, want):
        for split, r in ((train, tr), (val, va)):
            assert torch.equal(split.X, Xs[torch.from_numpy(r)])
            assert torch.equal(split.y, ys[torch.from_numpy(r)])
    if stratified:  # the subset keeps the classes' shares: 10 of each
        assert np.bincount(ys.numpy()).tolist() == [10, 10, 10]


@pytest.mark.parametrize("max_rows", [42, 50, None])
def test_folds_without_a_smaller_subset_use_every_row(max_rows):
    data = _data("classification", 42)
    y = data.splits["train"].y
    want = fold_indices(y.numpy(), 3, SEED, stratify=True)
    for (train, val), (tr, va) in zip(_folds(data, max_rows=max_rows).splits, want):
        assert torch.equal(train.y, y[torch.from_numpy(tr)])
        assert torch.equal(val.X, data.splits["train"].X[torch.from_numpy(va)])


def test_folds_are_on_the_device():
    folds = gs._Folds(_data("classification", 42), 3, SEED, torch.device("meta"))
    assert {t.device.type for split in folds.splits for s in split for t in (s.X, s.y)} == {
        "meta"}


# --------------------------------------------------------------------------- the oracle


def _score(task: str, out: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy (argmax) or RMSE, by numpy."""
    out, y = out.detach().double().numpy(), y.numpy()
    if task == "regression":
        return float(np.sqrt(np.mean((out - y) ** 2)))
    return float(np.mean(out.argmax(1) == y))


def _by_hand(params, spec, data, folds, epochs, name="select@s"):
    """The oracle: each fold's model from make_trainer's seeded initial weights, trained with
    training.train_epoch one epoch at a time, the folds in turn (dropout masks from the global
    generator, seeded once as make_trainer's train_fn seeds it), each fold's batch order from
    its own generator of the batches seed. Returns ([epoch][fold] (loss, val score),
    [epoch][fold] train score, [fold] final state_dict)."""
    from dlbasics.learn.training import (
        build_loss,
        build_optimizer,
        build_penalty,
        make_trainer,
        train_epoch,
    )
    from dlbasics.rng import derive_seed

    make_model, _ = make_trainer(params, spec, name, data, None)
    torch.manual_seed(derive_seed(params.seed, "dropout", name))
    fits = []
    for _ in folds.splits:
        model = make_model()
        gen = torch.Generator().manual_seed(derive_seed(params.seed, "batches",
                                                        data.manifest["identity"]))
        fits.append((model, build_optimizer(spec.optimizer, model),
                     build_penalty(spec.penalty, model), gen))
    scores, trains = [], []
    for _ in range(epochs):
        row, trow = [], []
        for (model, opt, pen, gen), (train, val) in zip(fits, folds.splits):
            loss, _ = train_epoch(model, build_loss(spec.loss), opt, train.X, train.y,
                                  penalty=pen, batch_size=spec.batch_size, generator=gen)
            with torch.no_grad():
                model.eval()
                row.append((loss, _score(data.task, model(val.X), val.y)
                            if math.isfinite(loss) else math.nan))
                trow.append(_score(data.task, model(train.X), train.y))
                model.train()
        scores.append(row)
        trains.append(trow)
    return scores, trains, [{k: v.clone() for k, v in m.state_dict().items()}
                            for m, *_ in fits]


def _assert_state(got: dict, want: dict):
    assert got.keys() == want.keys()
    for key, value in want.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=1e-6)


def _close(got, want):
    """Nested lists of floats equal within 1e-6, NaN where NaN."""
    np.testing.assert_allclose(np.array(got, dtype=float), np.array(want, dtype=float), rtol=0,
                               atol=1e-6)


# --------------------------------------------------------------------------- _Sequential


@pytest.mark.parametrize("overrides", [
    {},
    {"model.dropout": 0.5, "optimizer.momentum": 0.9},
    {"penalty": {"kind": "l2", "strength": 0.5}, "optimizer.weight_decay": 0.1},
])
def test_sequential_trains_each_fold_as_by_hand(overrides):
    params = _params({"optimizer.lr": [0.3]}, overrides=overrides)
    (spec,) = _specs({"optimizer.lr": [0.3]}, overrides=overrides)
    data = _data("classification", 40)
    folds = _folds(data)
    want, want_train, want_state = _by_hand(params, spec, data, folds, 3)
    seq = gs._Sequential(params, spec, "select@s", data, folds, torch.device("cpu"))
    assert seq.alive == [0]
    for e in range(3):
        _close(seq.epoch(), [want[e]])
        _close(seq.train_scores([0]), [want_train[e]])
    for (model, *_), state in zip(seq.fits, want_state):
        _assert_state(model.state_dict(), state)
    # The configurations did learn, and the folds differ (the test would be vacuous otherwise).
    init = gs._Sequential(params, spec, "select@s", data, folds, torch.device("cpu"))
    first = next(iter(want_state[0]))
    assert not torch.allclose(init.fits[0][0].state_dict()[first], want_state[0][first])
    assert not torch.allclose(want_state[0][first], want_state[1][first])


def test_sequential_regression_scores_rmse_and_a_diverged_fold_scores_nan():
    data = _data("regression", 40)
    folds = _folds(data)
    for lr, finite in ((0.05, True), (100.0, False)):
        params = _params({"optimizer.lr": [lr]}, base="reg")
        (spec,) = _specs({"optimizer.lr": [lr]}, base="reg")
        want, want_train, _ = _by_hand(params, spec, data, folds, 2)
        seq = gs._Sequential(params, spec, "select@s", data, folds, torch.device("cpu"))
        got = [seq.epoch()[0] for _ in range(2)]
        losses = [loss for row in got for loss, _ in row]
        assert all(map(math.isfinite, losses)) is finite
        _close(got, want)
        if finite:
            _close(seq.train_scores([0]), [want_train[1]])
        else:  # a non-finite loss scores NaN, its loss as it came
            assert all(math.isnan(v) for row in got[1:] for _, v in row)


def test_sequential_epoch_without_scoring_gives_losses_and_nan():
    params = _params({"optimizer.lr": [0.3]})
    (spec,) = _specs({"optimizer.lr": [0.3]})
    data = _data("classification", 42)
    folds = _folds(data)
    want, *_ = _by_hand(params, spec, data, folds, 2)
    seq = gs._Sequential(params, spec, "select@s", data, folds, torch.device("cpu"))
    (first,) = seq.epoch(score=False)
    assert [loss for loss, _ in first] == pytest.approx([loss for loss, _ in want[0]], abs=1e-6)
    assert all(math.isnan(v) for _, v in first)
    _close(seq.epoch(score=True), [want[1]])


def test_sequential_positions_and_keep():
    params = _params({"optimizer.lr": [0.3]})
    (spec,) = _specs({"optimizer.lr": [0.3]})
    data = _data("classification", 42)
    seq = gs._Sequential(params, spec, "select@s", data, _folds(data), torch.device("cpu"))
    assert seq.train_scores([]) == []
    assert len(seq.train_scores([0])) == 1 and len(seq.train_scores([0])[0]) == 3
    seq.keep([0])
    assert seq.alive == [0]
    seq.keep([])
    assert seq.alive == []


def test_sequential_models_are_on_the_device():
    params = _params({"optimizer.lr": [0.3]})
    (spec,) = _specs({"optimizer.lr": [0.3]})
    data = _data("classification", 42)
    folds = gs._Folds(data, 3, SEED, torch.device("meta"))
    seq = gs._Sequential(params, spec, "select@s", data, folds, torch.device("meta"))
    assert len(seq.fits) == 3
    assert {p.device.type for model, *_ in seq.fits for p in model.parameters()} == {"meta"}


# --------------------------------------------------------------------------- _Batched

# lr, momentum, weight decay and init_std differ: one architecture, three configurations.
BATCH_GRID = [{"optimizer.lr": 0.3}, {"optimizer.lr": 0.1, "optimizer.momentum": 0.9},
              {"optimizer.lr": 0.5, "optimizer.weight_decay": 0.05, "model.init_std": 0.5}]


def _batch_specs():
    return [_specs({k: [v] for k, v in changes.items()})[0] for changes in BATCH_GRID]


@pytest.mark.parametrize("n", [42, 40])  # 42: three folds of 14; 40: 14, 13, 13 (two sizes)
def test_batched_trains_each_configuration_and_fold_as_by_hand(n):
    params = _params({"optimizer.lr": [0.3]})
    specs = _batch_specs()
    data = _data("classification", n)
    folds = _folds(data)
    wants = [_by_hand(params, s, data, folds, 3) for s in specs]
    bat = gs._Batched(params, specs, data, folds, torch.device("cpu"))
    assert len(bat.groups) == (1 if n == 42 else 2)
    assert bat.alive == [0, 1, 2]
    for e in range(3):
        _close(bat.epoch(), [w[0][e] for w in wants])
        _close(bat.train_scores(range(3)), [w[1][e] for w in wants])
        _close(bat.train_scores([2, 0]), [wants[2][1][e], wants[0][1][e]])
    trainers = bat.trainers
    assert len(trainers) == 3
    for g, (*_, states) in enumerate(wants):
        for fold, state in enumerate(states):
            _assert_state(trainers[fold].state_dict(g), state)
    # They learned different things.
    first = next(iter(wants[0][2][0]))
    assert not torch.allclose(wants[0][2][0][first], wants[1][2][0][first])


def test_batched_divergence_scores_nan_keep_drops_and_the_rest_train_on():
    # Regression, 40 rows: two fold sizes. Configuration 3 (lr 100) diverges; after its
    # first epoch it is dropped and the others go on as by hand.
    params = _params({"optimizer.lr": [0.1]}, base="reg")
    specs = [_specs({k: [v] for k, v in changes.items()}, base="reg")[0] for changes in (
        {"optimizer.lr": 0.05}, {"optimizer.lr": 0.02, "optimizer.momentum": 0.9},
        {"optimizer.lr": 0.1, "optimizer.weight_decay": 0.05, "model.init_std": 0.5},
        {"optimizer.lr": 100.0})]
    data = _data("regression", 40)
    folds = _folds(data)
    wants = [_by_hand(params, s, data, folds, 3) for s in specs]
    bat = gs._Batched(params, specs, data, folds, torch.device("cpu"))
    first = bat.epoch()
    assert len(first) == 4 and all(len(c) == 3 for c in first)
    _close(first[:3], [w[0][0] for w in wants[:3]])
    assert not all(math.isfinite(loss) for loss, _ in wants[3][0][0])
    assert not all(math.isfinite(loss) for loss, _ in first[3])
    assert all(math.isnan(v) for _, v in first[3])
    bat.keep([0, 2])
    assert bat.alive == [0, 2]
    assert all(trainer.alive == [0, 2] for _, trainer, _, _ in bat.groups)
    for e in (1, 2):
        _close(bat.epoch(), [wants[0][0][e], wants[2][0][e]])
        _close(bat.train_scores([0, 1]), [wants[0][1][e], wants[2][1][e]])
        _close(bat.train_scores([1]), [wants[2][1][e]])
    for fold in range(3):
        _assert_state(bat.trainers[fold].state_dict(1), wants[2][2][fold])
    bat.keep([])
    assert bat.alive == []


def test_batched_epoch_without_scoring_gives_losses_and_nan():
    params = _params({"optimizer.lr": [0.3]})
    specs = _batch_specs()[:2]
    data = _data("classification", 40)
    folds = _folds(data)
    wants = [_by_hand(params, s, data, folds, 1) for s in specs]
    bat = gs._Batched(params, specs, data, folds, torch.device("cpu"))
    got = bat.epoch(score=False)
    assert len(got) == 2
    for config, (want, *_) in zip(got, wants):
        assert [loss for loss, _ in config] == pytest.approx([loss for loss, _ in want[0]],
                                                             abs=1e-6)
        assert len(config) == 3 and all(math.isnan(v) for _, v in config)


def test_batched_one_configuration_trains_as_by_hand():
    params = _params({"optimizer.lr": [0.3]})
    spec = _batch_specs()[2]
    data = _data("classification", 40)
    folds = _folds(data)
    want, want_train, states = _by_hand(params, spec, data, folds, 2)
    bat = gs._Batched(params, [spec], data, folds, torch.device("cpu"))
    for e in range(2):
        _close(bat.epoch(), [want[e]])
        _close(bat.train_scores([0]), [want_train[e]])
    for fold, state in enumerate(states):
        _assert_state(bat.trainers[fold].state_dict(0), state)


# --------------------------------------------------------------------------- _run


class Scripted:
    """A runner of our own for _run: configuration g's epoch e gives script[g][e - 1], one
    (loss, val score) per fold (val NaN when not scored, as the real runners give); its training
    score on fold f at epoch e is train(g, e, f). It notes every call."""

    def __init__(self, script: list[list[list[tuple[float, float]]]]):
        self.script, self.alive, self.now, self.calls = script, list(range(len(script))), 0, []

    @staticmethod
    def train(g: int, e: int, f: int) -> float:
        return 0.5 + g / 10 + e / 100 + f / 1000

    def epoch(self, score: bool = True):
        self.now += 1
        self.calls.append(("epoch", score))
        return [[(loss, val if score else math.nan) for loss, val in self.script[g][self.now - 1]]
                for g in self.alive]

    def train_scores(self, positions):
        positions = list(positions)
        self.calls.append(("train", positions))
        return [[self.train(self.alive[p], self.now, f) for f in range(2)] for p in positions]

    def keep(self, positions):
        self.calls.append(("keep", list(positions)))
        self.alive = [self.alive[p] for p in positions]


def _curve(*means, d=0.125, loss=0.3):
    """Two folds per epoch whose val scores are mean -/+ d (exact in binary), finite losses."""
    return [[(loss, m - d), (loss, m + d)] for m in means]


def _want(g, chosen, trained, curve, metric="accuracy", d=0.125, m=None):
    """The record _run should give: the folds' scores at the chosen epoch (mean m, by default
    the curve's value there, -/+ d), by hand."""
    m = curve[chosen - 1] if m is None else m
    trains = [Scripted.train(g, chosen, f) for f in range(2)]
    vals = [m - d, m + d]
    return {"diverged": False,
            "folds": [{"fold": f, f"train_{metric}": trains[f], f"val_{metric}": vals[f],
                       "epochs": chosen} for f in range(2)],
            "epochs_chosen": chosen, "epochs_trained": trained, "val_curve": curve,
            f"train_{metric}_mean": (trains[0] + trains[1]) / 2,
            f"train_{metric}_std": abs(trains[0] - trains[1]) / math.sqrt(2),
            f"val_{metric}_mean": m, f"val_{metric}_std": 2 * d / math.sqrt(2)}


def _assert_records(got: dict, want: dict):
    """Equal records: exactly, but the means and sds within 1e-12 (numpy's rounding)."""
    assert got.keys() == want.keys()
    for g, rec in want.items():
        assert got[g].keys() == rec.keys(), g
        for key, value in rec.items():
            if key.endswith(("_mean", "_std")):
                assert got[g][key] == pytest.approx(value, abs=1e-12), (g, key)
            else:
                assert got[g][key] == value, (g, key)


def test_run_stops_each_configuration_patience_epochs_after_its_best_mean():
    # Higher is better, patience 2, at most 6 epochs.
    # 0: best 0.75 at epoch 2; epoch 3 ties (not better), epoch 4 is lower: stops at 4.
    # 1: one fold's loss is infinite at epoch 3: diverged there.
    # 2: better every epoch: trains all 6, chosen 6.
    # 3: best at 1, then lower: stops at 3 (3 - 1 >= 2).
    c0 = [0.5, 0.75, 0.75, 0.625]
    c2 = [0.25, 0.375, 0.5, 0.625, 0.75, 0.875]
    c3 = [0.5, 0.25, 0.375]
    s1 = _curve(0.5, 0.625, 0.75, 0.875)
    s1[2] = [(0.3, 0.7), (math.inf, 0.8)]
    runner = Scripted([_curve(*c0), s1, _curve(*c2), _curve(*c3)])
    got = gs._run(runner, 6, 2, True, "accuracy", 2)
    _assert_records(got, {0: _want(0, 2, 4, c0), 1: {"diverged": True, "diverged_epoch": 3},
                          2: _want(2, 6, 6, c2), 3: _want(3, 1, 3, c3)})
    # Training scores asked only where a configuration reached a new best; the finished and
    # the diverged dropped as they end.
    assert runner.calls == [
        ("epoch", True), ("train", [0, 1, 2, 3]), ("keep", [0, 1, 2, 3]),
        ("epoch", True), ("train", [0, 1, 2]), ("keep", [0, 1, 2, 3]),
        ("epoch", True), ("train", [2]), ("keep", [0, 2]),  # 1 diverged, 3 ended
        ("epoch", True), ("train", [1]), ("keep", [1]),  # 0 ended
        ("epoch", True), ("train", [0]), ("keep", [0]),
        ("epoch", True), ("train", [0]), ("keep", []),
    ]


def test_run_lower_is_better_and_ties_keep_the_first_best():
    # RMSE: lower is better. 0: best 1.5 at epoch 2, epoch 4 equals it (no improvement): with
    # patience 2 it stops at 4. 1: lower every epoch until the last (5).
    c0 = [2.0, 1.5, 1.75, 1.5, 1.0]
    c1 = [3.0, 2.5, 2.0, 1.5, 1.25]
    runner = Scripted([_curve(*c0), _curve(*c1)])
    got = gs._run(runner, 5, 2, False, "rmse", 2)
    _assert_records(got, {0: _want(0, 2, 4, c0[:4], "rmse"), 1: _want(1, 5, 5, c1, "rmse")})
    assert runner.calls == [
        ("epoch", True), ("train", [0, 1]), ("keep", [0, 1]),
        ("epoch", True), ("train", [0, 1]), ("keep", [0, 1]),
        ("epoch", True), ("train", [1]), ("keep", [0, 1]),
        ("epoch", True), ("train", [1]), ("keep", [1]),  # 0 ended: its tie is no improvement
        ("epoch", True), ("train", [0]), ("keep", []),
    ]


def test_run_higher_is_better_is_not_lower():
    # The same curve read both ways: its best epoch is the maximum, or the minimum.
    c = [0.5, 0.75, 0.25, 0.625]
    assert gs._run(Scripted([_curve(*c)]), 4, None, True, "accuracy", 2)[0]["epochs_chosen"] == 4
    hi = gs._run(Scripted([_curve(*c)]), 4, 5, True, "accuracy", 2)[0]
    lo = gs._run(Scripted([_curve(*c)]), 4, 5, False, "rmse", 2)[0]
    assert (hi["epochs_chosen"], lo["epochs_chosen"]) == (2, 3)
    assert hi["epochs_trained"] == lo["epochs_trained"] == 4  # patience 5 never reached


def test_run_without_patience_scores_only_the_last_epoch():
    # No early stopping: every epoch trains, only the last is scored and reported; a
    # configuration that diverges on the way is still caught (its loss is seen every epoch).
    c0 = [0.5, 0.75, 0.375]
    s1 = _curve(0.5, 0.5, 0.5)
    s1[1] = [(math.nan, 0.5), (0.3, 0.5)]
    runner = Scripted([_curve(*c0), s1, _curve(0.25, 0.5, 0.625)])
    got = gs._run(runner, 3, None, True, "accuracy", 2)
    _assert_records(got, {0: _want(0, 3, 3, [0.375], m=0.375),
                          1: {"diverged": True, "diverged_epoch": 2},
                          2: _want(2, 3, 3, [0.625], m=0.625)})
    assert runner.calls == [
        ("epoch", False), ("keep", [0, 1, 2]),
        ("epoch", False), ("keep", [0, 2]),
        ("epoch", True), ("train", [0, 1]), ("keep", []),
    ]


def test_run_one_fold_reports_no_sd_and_stops_when_none_is_left():
    # k = 1: the sd is 0; everything ends at epoch 3 of at most 10: no fourth epoch.
    runner = Scripted([[[(0.3, 0.5)], [(0.3, 0.25)], [(0.3, 0.25)], [(0.3, 0.9)]]])
    runner.train_scores = lambda positions: [[0.75] for _ in positions]
    got = gs._run(runner, 10, 2, True, "accuracy", 1)
    assert got == {0: {"diverged": False,
                       "folds": [{"fold": 0, "train_accuracy": 0.75, "val_accuracy": 0.5,
                                  "epochs": 1}],
                       "epochs_chosen": 1, "epochs_trained": 3, "val_curve": [0.5, 0.25, 0.25],
                       "train_accuracy_mean": 0.75, "train_accuracy_std": 0.0,
                       "val_accuracy_mean": 0.5, "val_accuracy_std": 0.0}}
    assert runner.now == 3


def test_run_every_configuration_diverged():
    bad = [[(math.inf, 0.5), (0.3, 0.5)]]
    runner = Scripted([bad * 3, _curve(0.5) + bad * 2])
    assert gs._run(runner, 3, 1, True, "accuracy", 2) == {
        0: {"diverged": True, "diverged_epoch": 1}, 1: {"diverged": True, "diverged_epoch": 2}}
    assert runner.now == 2 and runner.alive == []


# --------------------------------------------------------------------------- _record


@pytest.mark.parametrize("k", [2, 3])
def test_record_mean_and_sample_sd(k):
    folds = [(0.9, 0.8), (0.7, 0.5), (0.8, 0.65)][:k]
    rec = gs._record(folds, 4, 7, [0.1, 0.2], "accuracy", k)
    trains, vals = [t for t, _ in folds], [v for _, v in folds]
    assert rec == {
        "diverged": False,
        "folds": [{"fold": i, "train_accuracy": t, "val_accuracy": v, "epochs": 4}
                  for i, (t, v) in enumerate(folds)],
        "epochs_chosen": 4, "epochs_trained": 7, "val_curve": [0.1, 0.2],
        "train_accuracy_mean": pytest.approx(statistics.mean(trains), abs=1e-15),
        "train_accuracy_std": pytest.approx(statistics.stdev(trains), abs=1e-15),
        "val_accuracy_mean": pytest.approx(statistics.mean(vals), abs=1e-15),
        "val_accuracy_std": pytest.approx(statistics.stdev(vals), abs=1e-15),
    }


def test_record_of_one_fold_has_sd_zero():
    rec = gs._record([(2.0, 3.0)], 1, 1, [3.0], "rmse", 1)
    assert (rec["train_rmse_mean"], rec["train_rmse_std"], rec["val_rmse_mean"],
            rec["val_rmse_std"]) == (2.0, 0.0, 3.0, 0.0)


# --------------------------------------------------------------------------- the grid's jobs


def test_unique_settings_score_a_duplicate_once_and_tie_it_to_the_first():
    # Dropout on a model without hidden layers resolves to no dropout: ([], 0.0) and
    # ([], 0.5) are one configuration; ([4], 0.0) and ([4], 0.5) are two.
    params = _params({"model.hidden": [[4], []], "model.dropout": [0.0, 0.5]})
    configs, unique, specs = gs._unique_settings(params, "s")
    assert configs == grid_variants(params, "s")
    assert [c[0] for c in configs] == [{"model.hidden": h, "model.dropout": d}
                                       for h in ([4], []) for d in (0.0, 0.5)]
    assert specs == [configs[0][1], configs[1][1], configs[2][1]]
    assert [unique[spec.model_dump_json()] for _, spec in configs] == [0, 1, 2, 2]
    assert len(unique) == 3


def _arch(spec_a, spec_b) -> bool:
    return gs._arch_key(spec_a) == gs._arch_key(spec_b)


def test_arch_key_leaves_out_the_optimisers_numbers_only():
    base, *same = _specs({"optimizer.lr": [0.1, 0.5]}, overrides={
        "optimizer.momentum": 0.5, "optimizer.weight_decay": 0.01})
    (other,) = _specs({"optimizer.momentum": [0.9]})
    (decayed,) = _specs({"optimizer.weight_decay": [0.2]})
    assert _arch(base, same[0]) and _arch(base, other) and _arch(base, decayed)
    for changes in ({"model.hidden": [6]}, {"model.init_std": 0.5}, {"batch_size": 4},
                    {"epochs": 4}, {"optimizer.name": "adam"}, {"model.activation": "tanh"},
                    {"model.dropout": 0.5}):
        (spec,) = _specs({k: [v] for k, v in changes.items()})
        assert not _arch(base, spec), changes
    # The key is the settings themselves, the optimiser named only.
    raw = json.loads(gs._arch_key(base))
    assert raw == {**base.model_dump(mode="json"), "optimizer": {"name": "sgd"}}


def test_batchable_needs_a_plain_gradient_fit_of_a_supported_architecture():
    (plain,) = _specs({"optimizer.lr": [0.1]})
    (reg,) = _specs({"optimizer.lr": [0.1]}, base="reg")
    (linear,) = _specs({"model.kind": ["linear"]}, overrides={"model.hidden": []})
    assert gs._batchable(plain) and gs._batchable(reg) and gs._batchable(linear)
    for grid, kw in (
        ({"solver": ["lstsq"]}, {"base": "reg", "overrides": {"model.kind": "linear",
                                                              "model.hidden": []}}),
        ({"penalty": [{"kind": "l2", "strength": 0.1}]}, {}),
        ({"features": [2]}, {}),
        ({"poly_features": [2]}, {}),
        ({"model.dropout": [0.5]}, {}),
        ({"model.activation": ["prelu"]}, {}),
        ({"optimizer.name": ["adam"]}, {}),
        ({"loss": ["nll"]}, {}),
    ):
        (spec,) = _specs(grid, **kw)
        assert not gs._batchable(spec), grid


MAN = {"n_features": F, "n_outputs": C}


def _variant(**changes):
    (spec,) = _specs({k: [v] for k, v in changes.items()} or {"optimizer.lr": [0.1]})
    return spec


def test_jobs_batch_one_architecture_and_go_largest_first():
    # Weights (no biases) per fit: hidden [5]: 4*5 + 5*3 = 35; [3]: 4*3 + 3*3 = 21.
    specs = [
        _variant(),  # 0: [5], 3 epochs
        _variant(**{"model.hidden": [3]}),  # 1: [3]
        _variant(**{"optimizer.lr": 0.2}),  # 2: [5], with 0
        _variant(**{"model.dropout": 0.5}),  # 3: not batchable
        _variant(**{"model.hidden": [3], "optimizer.lr": 0.3}),  # 4: [3], with 1
        _variant(**{"optimizer.lr": 0.3, "epochs": 4}),  # 5: [5], 4 epochs: alone
        _variant(**{"model.dropout": 0.3}),  # 6: not batchable, as costly as 3
    ]
    # Costs: [0, 2] 35*3*2 = 210; [5] 35*4 = 140; [1, 4] 21*3*2 = 126; [3], [6] 35*3 = 105.
    assert gs._jobs(specs, MAN, "auto") == [
        ("batched", [0, 2]), ("sequential", [5]), ("batched", [1, 4]), ("sequential", [3]),
        ("sequential", [6])]
    # never: every configuration on its own, by cost (hidden [5]: 35 * 3, [3]: 21 * 3).
    assert gs._jobs(specs, MAN, "never") == [
        ("sequential", [5]), ("sequential", [0]), ("sequential", [2]), ("sequential", [3]),
        ("sequential", [6]), ("sequential", [1]), ("sequential", [4])]


def test_jobs_tie_in_cost_goes_to_the_earlier_configuration():
    # 0 and 2 share an architecture, 1 (tanh) has the same widths and epochs: equal costs.
    specs = [_variant(), _variant(**{"model.activation": "tanh"}),
             _variant(**{"optimizer.lr": 0.2})]
    assert gs._jobs(specs, MAN, "never") == [("sequential", [0]), ("sequential", [1]),
                                             ("sequential", [2])]


def test_jobs_follow_the_size_rule():
    from dlbasics.learn.batched import BATCHED_MAX_WEIGHTS, n_weights

    specs = [_variant(**{"model.hidden": [200]}), _variant(**{"model.hidden": [200],
                                                              "optimizer.lr": 0.2})]
    small, big = {"n_features": 4, "n_outputs": 3}, {"n_features": 400, "n_outputs": 3}
    assert n_weights(specs[0].model, 400, 3) > BATCHED_MAX_WEIGHTS >= n_weights(
        specs[0].model, 4, 3)
    assert gs._jobs(specs, small, "auto") == [("batched", [0, 1])]
    assert gs._jobs(specs, big, "auto") == [("sequential", [0]), ("sequential", [1])]
