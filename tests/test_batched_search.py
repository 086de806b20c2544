"""The search's batched runner: folds as batch members (folds of unequal size in groups of one
size) and configurations differing in initialisation in one group. The oracle is the one-by-one
runner (_Sequential), which trains each fold with training.train_epoch as training.fit does."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_selection import (  # noqa: F401  (the digits fixture)
    _params,
    assert_batched_trains_as_sequential,
    digits,
    grid_search,
)

from dlbasics.config.loading import parse_params
from dlbasics.config.params import grid_variants
from dlbasics.rng import derive_seed
from dlbasics.search import gridsearch


pytestmark = pytest.mark.usefixtures("one_thread")


GRID = {"model.hidden": [[16]], "model.init": ["normal", "default"],
        "optimizer.lr": [0.05, 0.3], "optimizer.weight_decay": [0.0, 0.001]}


def test_folds_of_unequal_size_and_mixed_inits_train_as_one_by_one(digits):  # noqa: F811
    params = parse_params(_params(GRID, overrides={"epochs": 4, "batch_size": 64}))
    specs = [spec for _, spec in grid_variants(params, "s")]
    assert len({s.model.init for s in specs}) == 2
    # 1000 rows in 3 folds: training sets of 666, 667 and 667 rows, two sizes.
    folds = gridsearch._Folds(digits, 3, derive_seed(params.seed, "folds", "x"),
                              torch.device("cpu"), max_rows=1000)
    assert len({len(tr.y) for tr, _ in folds.splits}) == 2
    batched, seqs = assert_batched_trains_as_sequential(params, specs, digits, folds, epochs=4)
    assert sorted(len(members) for members, *_ in batched.groups) == [1, 2]
    # The two inits did start apart (the test would not see a shared init otherwise).
    first = [seqs[0].fits[0][0].state_dict(), seqs[4].fits[0][0].state_dict()]
    assert specs[0].model.init != specs[4].model.init
    assert (first[0]["0.weight"] - first[1]["0.weight"]).abs().max() > 1e-3


def test_a_search_over_inits_is_batched_per_init_and_answers_as_one_by_one(digits):  # noqa: F811
    got = {}
    for mode in ("auto", "never"):
        params = parse_params(_params(GRID, overrides={"epochs": 8, "batch_size": 64},
                                      patience=2, batched=mode))
        got[mode] = grid_search(params, digits)
    _, _, specs = gridsearch._unique_settings(params, "s")
    assert sorted(gridsearch._jobs(specs, digits.manifest, "auto")) == [
        ("batched", [0, 1, 2, 3]), ("batched", [4, 5, 6, 7])]
    (t_b, best_b, spec_b, model_b, _), (t_s, best_s, spec_s, model_s, _) = got["auto"], got["never"]
    assert {r["path"] for r in t_b} == {"batched"} and {r["path"] for r in t_s} == {"sequential"}
    assert best_b["config"] == best_s["config"] and spec_b == spec_s
    for rb, rs in zip(t_b, t_s):
        assert (rb["epochs_chosen"], rb["epochs_trained"]) == (rs["epochs_chosen"],
                                                               rs["epochs_trained"])
        np.testing.assert_allclose(rb["val_curve"], rs["val_curve"], rtol=0, atol=1e-6)
    for vb, vs in zip(model_b.state_dict().values(), model_s.state_dict().values()):
        assert torch.equal(vb, vs)  # the refit is one fit either way: the same bits
