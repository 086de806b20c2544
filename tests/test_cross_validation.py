"""K-fold cross-validation's parts (search/selection.py) on small arrays, in milliseconds: the
folds against their partition and strata, the scores against scikit-learn's metrics. The grid
search that uses them is tests/test_selection.py (on digits) and tests/test_gridsearch.py (toy
size); make mutate runs these two files against selection's mutants."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dlbasics.data.prepared import Split
from dlbasics.search.selection import fold_indices, n_parameters


def test_folds_partition_the_training_rows_and_are_stratified():
    y = np.repeat(np.arange(5), 30)
    folds = fold_indices(y, 3, seed=7, stratify=True)
    vals = np.concatenate([va for _, va in folds])
    assert sorted(vals.tolist()) == list(range(len(y)))
    for tr, va in folds:
        assert not set(tr) & set(va)  # no fold trains on its own validation rows
        assert np.bincount(y[va]).tolist() == [10] * 5


@pytest.mark.parametrize("n, k", [(10, 3), (101, 5), (7, 7)])
def test_fold_indices_partition(n, k):
    folds = fold_indices(np.zeros(n), k, 3, stratify=False)
    assert len(folds) == k
    vals = np.concatenate([val for _, val in folds])
    np.testing.assert_array_equal(np.sort(vals), np.arange(n))  # each row validated once
    for train, val in folds:
        assert np.intersect1d(train, val).size == 0
        np.testing.assert_array_equal(np.sort(np.concatenate([train, val])), np.arange(n))
        assert abs(len(val) - n / k) < 1


def test_fold_indices_deterministic_per_seed():
    a, b, c = (fold_indices(np.zeros(50), 5, s, stratify=False) for s in (0, 0, 1))
    for (ta, va), (tb, vb) in zip(a, b):
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(va, vb)
    assert any(not np.array_equal(va, vc) for (_, va), (_, vc) in zip(a, c))
    # Shuffled: the first fold is not simply the first rows.
    assert not np.array_equal(a[0][1], np.arange(10))


# --------------------------------------------------------------------------- cross_validate


def _cv_data(task: str, n: int = 60):
    from dlbasics.data.prepared import Prepared

    g = torch.Generator().manual_seed(5)
    X = torch.randn(n, 4, generator=g)
    y = (torch.randn(n, 1, generator=g) if task == "regression" else
         torch.randint(0, 3 if task == "classification" else 2, (n,), generator=g))
    empty = Split(X[:0], y[:0])
    return Prepared({"task": task}, {"train": Split(X, y), "val": empty, "test": empty})


@pytest.mark.parametrize("task, outputs", [("classification", 3), ("binary", 1),
                                           ("regression", 1)])
def test_cross_validate_scores_each_fold_like_sklearn(task, outputs):
    """Fixed weights (train_fn learns nothing): each fold's scores are scikit-learn's metric of
    the model's answers on that fold's rows; the summary is their mean and sample sd."""
    from sklearn.metrics import accuracy_score, mean_squared_error

    from dlbasics.learn.tasks import PRIMARY
    from dlbasics.search.selection import cross_validate, primary_score

    data = _cv_data(task)
    make = lambda: torch.nn.Linear(4, outputs).requires_grad_(False)  # noqa: E731
    torch.manual_seed(0)
    model = make()
    seen = []

    def train_fn(m, splits):
        # No test rows inside a fold: an empty split with the data's columns.
        seen.append((len(splits["train"].y), len(splits["val"].y), tuple(splits["test"].X.shape),
                     tuple(splits["test"].y.shape)))
        m.load_state_dict(model.state_dict())
        return [{}, {}]  # two epochs

    # Two folds: the smallest K there is (KFold refuses one), still with a sample sd.
    two = cross_validate(data, 2, 11, make, train_fn)
    vals = np.array([r[f"val_{PRIMARY[task].name}"] for r in two["folds"]])
    assert len(vals) == 2 and two[f"val_{PRIMARY[task].name}_std"] == pytest.approx(
        abs(vals[0] - vals[1]) / 2 ** 0.5, abs=1e-12)
    seen.clear()
    out = cross_validate(data, 4, 11, make, train_fn)
    metric = PRIMARY[task].name
    X, y = data.splits["train"].X, data.splits["train"].y
    folds = fold_indices(y.numpy(), 4, 11, stratify=task != "regression")
    assert seen == [(len(tr), len(va), (0, 4), (0, *y.shape[1:])) for tr, va in folds]
    with torch.no_grad():
        z = model(X)
    for rec, (tr, va) in zip(out["folds"], folds):
        for part, rows in (("train", tr), ("val", va)):
            if task == "regression":
                want = mean_squared_error(y[rows].numpy(), z[rows].numpy()) ** 0.5
            else:
                answers = z[rows].argmax(1) if task == "classification" else z[rows, 0] > 0
                want = accuracy_score(y[rows].numpy(), answers.long().numpy())
            assert rec[f"{part}_{metric}"] == pytest.approx(want, abs=1e-6)
            assert primary_score(task, z[rows], y[rows]) == pytest.approx(want, abs=1e-6)
        assert rec["epochs"] == 2
    assert [r["fold"] for r in out["folds"]] == [0, 1, 2, 3]
    assert out["k"] == 4 and out["metric"] == metric
    for part in ("train", "val"):
        vals = np.array([r[f"{part}_{metric}"] for r in out["folds"]])
        assert out[f"{part}_{metric}_mean"] == pytest.approx(vals.mean(), abs=1e-12)
        assert out[f"{part}_{metric}_std"] == pytest.approx(vals.std(ddof=1), abs=1e-12)


def test_n_parameters_counts_every_weight_and_bias():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    assert n_parameters(model) == 4 * 3 + 3 + 3 * 2 + 2
