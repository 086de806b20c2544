"""The prepared form's checks and split, whole (tests/test_data.py covers them through
prepare_dataset): each refusal's one line, a digest checked only when recorded, and the split's
sizes, disjointness, strata, seeds and counts against independent counting."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlbasics.config.datasets import PrepareSpec
from dlbasics.data.prepared import (
    DataError,
    _load_checked,
    _read_json,
    load_prepared,
    split_indices,
)
from dlbasics.errors import ConfigError
from dlbasics.io import npy_bytes, sha256_bytes


def test_read_json_names_the_file_and_the_fix(tmp_path):
    with pytest.raises(DataError) as info:
        _read_json(tmp_path / "m.json")
    assert str(info.value) == f"{tmp_path / 'm.json'}: missing; run the stage that writes it " \
                              "(dvc repro)"
    (tmp_path / "m.json").write_text('{"a": 1,\n oops}')
    with pytest.raises(DataError) as info:
        _read_json(tmp_path / "m.json")
    assert str(info.value) == (f"{tmp_path / 'm.json'}: not valid JSON (Expecting property name "
                               "enclosed in double quotes at line 2)")
    (tmp_path / "m.json").write_text('{"a": [1, 2]}')
    assert _read_json(tmp_path / "m.json") == {"a": [1, 2]}


def test_load_checked_checks_the_digest_only_when_recorded(tmp_path):
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    data = npy_bytes(a)
    (tmp_path / "a.npy").write_bytes(data)
    assert np.array_equal(_load_checked(tmp_path / "a.npy", sha256_bytes(data)), a)
    assert np.array_equal(_load_checked(tmp_path / "a.npy", None), a)
    with pytest.raises(DataError) as info:
        _load_checked(tmp_path / "a.npy", "0" * 64)
    assert str(info.value) == (
        f"{tmp_path / 'a.npy'}: content does not match its recorded sha256 (truncated or "
        "altered); run `dvc repro --force` on the stage that writes it")
    with pytest.raises(DataError) as info:
        _load_checked(tmp_path / "b.npy", None)
    assert str(info.value) == (f"{tmp_path / 'b.npy'}: missing; re-run the stage that writes it "
                               "(dvc repro)")
    # A pickle is never loaded, even when its digest is the recorded one.
    obj = tmp_path / "o.npy"
    np.save(obj, np.array([{"x": 1}], dtype=object))  # np.save pickles objects by default
    with pytest.raises(ValueError):
        _load_checked(obj, sha256_bytes(obj.read_bytes()))


def _write_prepared(root, task: str, n: int = 5):
    root.mkdir()
    sums = {}
    for split in ("train", "val", "test"):
        X = np.arange(n * 2, dtype=np.float32).reshape(n, 2)
        y = np.arange(n, dtype=np.float32 if task == "regression" else np.int64)
        for name, arr in ((f"X_{split}.npy", X), (f"y_{split}.npy", y)):
            (root / name).write_bytes(npy_bytes(arr))
            sums[name] = sha256_bytes(npy_bytes(arr))
    (root / "manifest.json").write_text(json.dumps({"task": task, "sha256": sums}))


@pytest.mark.parametrize("task, y_shape", [("regression", (5, 1)), ("classification", (5,)),
                                           ("binary", (5,))])
def test_load_prepared_shapes_the_targets_by_task(tmp_path, task, y_shape):
    _write_prepared(tmp_path / "p", task)
    data = load_prepared(tmp_path / "p", splits=("train", "test"))
    assert set(data.splits) == {"train", "test"} and data.manifest["task"] == task
    assert tuple(data.splits["test"].y.shape) == y_shape
    assert tuple(data.splits["train"].X.shape) == (5, 2)
    # Each file is checked against its own digest: an altered one is named.
    (tmp_path / "p" / "y_test.npy").write_bytes(npy_bytes(np.zeros(5, dtype=np.int64)))
    with pytest.raises(DataError, match="y_test.npy: content does not match"):
        load_prepared(tmp_path / "p", splits=("test",))
    assert set(load_prepared(tmp_path / "p", splits=("train",)).splits) == {"train"}


def _check_split(parts, n):
    rows = np.concatenate([parts["train"], parts["val"], parts["test"]])
    assert sorted(rows.tolist()) == list(range(n))  # disjoint and covering
    for p in parts.values():
        assert np.array_equal(p, np.sort(p))


def test_split_by_fractions_sizes_seeds_and_strata():
    spec = PrepareSpec(val_fraction=0.2, test_fraction=0.25)
    y = np.repeat([0, 1], [60, 140])
    parts = split_indices(200, spec, seed=3, name="d", stratify=y)
    _check_split(parts, 200)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [110, 40, 50]
    for s, n in (("val", 40), ("test", 50)):
        assert (y[parts[s]] == 0).sum() == round(n * 0.3)  # each part keeps the 30/70 strata
    again = split_indices(200, spec, seed=3, name="d", stratify=y)
    assert all(np.array_equal(again[s], parts[s]) for s in parts)
    other = split_indices(200, spec, seed=4, name="d", stratify=y)
    assert not np.array_equal(other["test"], parts["test"])
    # The random streams follow `stream` (the data's identity), not the key in messages.
    renamed = split_indices(200, spec, seed=3, name="e", stratify=y, stream="d")
    assert all(np.array_equal(renamed[s], parts[s]) for s in parts)
    moved = split_indices(200, spec, seed=3, name="d", stratify=y, stream="x")
    assert not np.array_equal(moved["test"], parts["test"])
    assert not np.array_equal(moved["val"], parts["val"])


def test_split_without_validation_rows():
    parts = split_indices(40, PrepareSpec(test_fraction=0.25), seed=0, name="d", stratify=None)
    _check_split(parts, 40)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [30, 0, 10]


def test_split_by_counts_leaves_the_rest_out():
    spec = PrepareSpec(n_train=12, n_val=3, n_test=5)
    parts = split_indices(100, spec, seed=1, name="d", stratify=None)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [12, 3, 5]
    rows = np.concatenate(list(parts.values()))
    assert len(set(rows.tolist())) == 20
    exact = split_indices(20, spec, seed=1, name="d", stratify=None)
    _check_split(exact, 20)
    with pytest.raises(ConfigError) as info:
        split_indices(19, spec, seed=1, name="d", stratify=None)
    assert str(info.value) == (
        "params.yaml: prepare.d: expected n_train + n_val + n_test <= 19 (the rows of data.d), "
        "found 20; lower the counts or raise the rows")


def test_an_official_test_set_is_kept_whole_and_last():
    y = np.tile([0, 1, 2, 3], 30)
    parts = split_indices(120, PrepareSpec(val_fraction=0.25), seed=2, name="img", stratify=y,
                          n_official_test=20)
    assert np.array_equal(parts["test"], np.arange(100, 120))
    assert [len(parts["train"]), len(parts["val"])] == [75, 25]
    _check_split(parts, 120)
    assert np.bincount(y[parts["val"]], minlength=4).min() >= 6  # stratified: 25 over 4 classes
    counted = split_indices(120, PrepareSpec(n_train=30, n_val=10), seed=2, name="img",
                            stratify=y, n_official_test=20)
    assert [len(counted[s]) for s in ("train", "val", "test")] == [30, 10, 20]
    assert np.array_equal(counted["test"], np.arange(100, 120))
    assert counted["train"].max() < 100 and counted["val"].max() < 100
    assert np.bincount(y[counted["train"]], minlength=4).min() >= 7
    whole = split_indices(120, PrepareSpec(n_train=100), seed=2, name="img", stratify=y,
                          n_official_test=20)
    assert np.array_equal(whole["train"], np.arange(100)) and len(whole["val"]) == 0
    with pytest.raises(ConfigError) as info:
        split_indices(120, PrepareSpec(n_train=95, n_val=6), seed=2, name="img", stratify=y,
                      n_official_test=20)
    assert str(info.value) == (
        "params.yaml: prepare.img: expected n_train + n_val <= 100 (the training rows of "
        "data.img), found 101")


def test_a_manifest_without_digests_loads_unchecked(tmp_path):
    _write_prepared(tmp_path / "p", "classification")
    manifest = json.loads((tmp_path / "p" / "manifest.json").read_text())
    manifest.pop("sha256")
    (tmp_path / "p" / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "p" / "y_val.npy").write_bytes(npy_bytes(np.zeros(5, dtype=np.int64)))
    data = load_prepared(tmp_path / "p")
    assert data.splits["val"].y.tolist() == [0] * 5


# The split's seeds, against scikit-learn itself: each draw is train_test_split with the seed
# derived for its purpose, derive_seed(seed, "split", <stream>, "test" | "val" | "sub") (rng.py:
# one named stream per purpose, so no draw shifts another's numbers).


def _draw(rows, seed, stream, purpose, labels, **sizes):
    from sklearn.model_selection import train_test_split

    from dlbasics.rng import derive_seed

    return train_test_split(rows, random_state=derive_seed(seed, "split", stream, purpose),
                            stratify=None if labels is None else labels[rows], **sizes)


def _same_parts(parts, train, val, test):
    for s, rows in (("train", train), ("val", val), ("test", test)):
        assert np.array_equal(parts[s], np.sort(rows)), s


@pytest.mark.parametrize("stratified", [True, False])
def test_split_by_fractions_draws_test_then_validation_with_their_own_seeds(stratified):
    y = np.repeat([0, 1, 2], [50, 60, 90]) if stratified else None
    spec = PrepareSpec(val_fraction=0.15, test_fraction=0.2)
    parts = split_indices(200, spec, seed=5, name="key", stratify=y, stream="ident")
    rest, test = _draw(np.arange(200), 5, "ident", "test", y, test_size=0.2)
    train, val = _draw(rest, 5, "ident", "val", y, test_size=0.15 / 0.8)
    _same_parts(parts, train, val, test)


def test_split_by_counts_draws_each_part_with_its_seed():
    spec = PrepareSpec(n_train=40, n_val=10, n_test=25)
    parts = split_indices(100, spec, seed=9, name="key", stratify=None, stream="ident")
    rest, test = _draw(np.arange(100), 9, "ident", "test", None, test_size=25, train_size=50)
    train, val = _draw(rest, 9, "ident", "val", None, test_size=10)
    _same_parts(parts, train, val, test)
    # Without n_val there are no validation rows: exactly n_train train the model.
    no_val = split_indices(100, PrepareSpec(n_train=40, n_test=25), seed=9, name="key",
                           stratify=None, stream="ident")
    assert [len(no_val[s]) for s in ("train", "val", "test")] == [40, 0, 25]
    rest, test = _draw(np.arange(100), 9, "ident", "test", None, test_size=25, train_size=40)
    _same_parts(no_val, rest, rest[:0], test)


def test_validation_rows_out_of_an_official_training_set_follow_seed_and_stream():
    # The official test rows are fixed, so the validation rows depend on their own seed only.
    y = np.tile([0, 1, 2, 3], 30)
    spec = PrepareSpec(val_fraction=0.25)
    parts = split_indices(120, spec, seed=2, name="img", stratify=y, n_official_test=20,
                          stream="mnist")
    train, val = _draw(np.arange(100), 2, "mnist", "val", y, test_size=0.25)
    _same_parts(parts, train, val, np.arange(100, 120))
    reseeded = split_indices(120, spec, seed=3, name="img", stratify=y, n_official_test=20,
                             stream="mnist")
    assert not np.array_equal(reseeded["val"], parts["val"])
    moved = split_indices(120, spec, seed=2, name="img", stratify=y, n_official_test=20,
                          stream="fashion")
    assert not np.array_equal(moved["val"], parts["val"])
    renamed = split_indices(120, spec, seed=2, name="other", stratify=y, n_official_test=20,
                            stream="mnist")
    assert all(np.array_equal(renamed[s], parts[s]) for s in parts)


@pytest.mark.parametrize("spec", [PrepareSpec(), PrepareSpec(val_fraction=0.0),
                                  PrepareSpec(n_train=100), PrepareSpec(n_train=100, n_val=0)])
def test_an_official_training_set_without_validation_trains_on_every_row(spec):
    parts = split_indices(120, spec, seed=2, name="img", stratify=np.tile([0, 1], 60),
                          n_official_test=20)
    _same_parts(parts, np.arange(100), np.arange(0), np.arange(100, 120))


@pytest.mark.parametrize("stratified", [True, False])
def test_counts_out_of_an_official_training_set_subsample_it_with_their_own_seed(stratified):
    # Multi-label or regression rows come unstratified (stratify=None): the same draws.
    y = np.tile([0, 1, 2, 3], 30)
    labels = y if stratified else None
    spec = PrepareSpec(n_train=30, n_val=10)
    parts = split_indices(120, spec, seed=4, name="img", stratify=labels, n_official_test=20,
                          stream="mnist")
    kept, _ = _draw(np.arange(100), 4, "mnist", "sub", labels, train_size=40)
    train, val = _draw(kept, 4, "mnist", "val", labels, test_size=10)
    _same_parts(parts, train, val, np.arange(100, 120))
    # The kept rows change with the seed, and only with it.
    again = split_indices(120, spec, seed=4, name="img", stratify=labels, n_official_test=20,
                          stream="mnist")
    assert all(np.array_equal(again[s], parts[s]) for s in parts)
    reseeded = split_indices(120, spec, seed=5, name="img", stratify=labels, n_official_test=20,
                             stream="mnist")
    assert not np.array_equal(np.union1d(reseeded["train"], reseeded["val"]),
                              np.union1d(parts["train"], parts["val"]))
