"""Tests for dlbasics.data (sources and the prepared form), and for the seeds (dlbasics.rng) and atomic writes (dlbasics.io)
that the data stages rely on.

Oracles: the generating equation y = X w + b (+ noise of known sd), scikit-learn's own
StandardScaler fitted on the training rows, class proportions of the full set, and file
digests that must catch an altered byte.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from dlbasics.config.datasets import Digits, PrepareSpec, SyntheticLinear
from dlbasics.data.prepared import SPLITS, DataError, load_prepared, prepare_dataset
from dlbasics.data.sources import generate_digits, generate_synthetic_linear, write_raw
from dlbasics.io import atomic_directory, dumps_json, write_bytes_atomic
from dlbasics.rng import derive_seed, numpy_rng, torch_generator

# =========================================================================== #
# rng: one derived stream per purpose
# =========================================================================== #


@settings(max_examples=200, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), purpose=st.lists(st.text(max_size=12), max_size=3))
def test_derive_seed_is_stable_and_31_bit(seed, purpose):
    s = derive_seed(seed, *purpose)
    assert s == derive_seed(seed, *purpose)
    assert isinstance(s, int) and 0 <= s < 2**31


def test_derive_seed_separates_purposes_and_seeds():
    seeds = {derive_seed(0, p) for p in ("data", "split", "init", "batches", "folds")}
    assert len(seeds) == 5
    assert derive_seed(0, "init", "mlp") != derive_seed(0, "init", "softmax")
    assert derive_seed(0, "init") != derive_seed(1, "init")


def test_derive_seed_matches_its_documented_construction():
    # sha256 of "seed:purpose..." -> first 4 bytes big-endian -> drop one bit (stable everywhere).
    import hashlib

    digest = hashlib.sha256(b"7:init:mlp").digest()
    assert derive_seed(7, "init", "mlp") == int.from_bytes(digest[:4], "big") >> 1


def test_generators_are_reproducible_per_purpose():
    a = torch.randn(5, generator=torch_generator(3, "init"))
    b = torch.randn(5, generator=torch_generator(3, "init"))
    c = torch.randn(5, generator=torch_generator(3, "batches"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    x = numpy_rng(3, "data").standard_normal(5)
    y = numpy_rng(3, "data").standard_normal(5)
    z = numpy_rng(4, "data").standard_normal(5)
    assert np.array_equal(x, y) and not np.array_equal(x, z)


def test_generators_do_not_touch_the_global_rng():
    torch_state, np_state = torch.get_rng_state(), np.random.get_state()[1].copy()
    torch.rand(3, generator=torch_generator(0, "x"))
    numpy_rng(0, "x").random(3)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)


# =========================================================================== #
# io: atomic output
# =========================================================================== #


def test_write_bytes_atomic_replaces_content_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "blob.bin"
    write_bytes_atomic(target, b"first")
    write_bytes_atomic(target, b"second, longer")
    assert target.read_bytes() == b"second, longer"
    assert sorted(p.name for p in target.parent.iterdir()) == ["blob.bin"]


def test_atomic_directory_keeps_previous_content_on_error(tmp_path):
    out = tmp_path / "raw"
    with atomic_directory(out) as tmp:
        (tmp / "a.txt").write_text("old")
    assert (out / "a.txt").read_text() == "old"

    with pytest.raises(RuntimeError, match="boom"):
        with atomic_directory(out) as tmp:
            (tmp / "a.txt").write_text("new")
            (tmp / "b.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt"]
    assert (out / "a.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw"]  # no temporary sibling left


def test_atomic_directory_replaces_whole(tmp_path):
    out = tmp_path / "d"
    with atomic_directory(out) as tmp:
        (tmp / "stale.txt").write_text("x")
    with atomic_directory(out) as tmp:
        (tmp / "fresh.txt").write_text("y")
    assert sorted(p.name for p in out.iterdir()) == ["fresh.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_dumps_json_rejects_non_finite(bad):
    with pytest.raises(ValueError):
        dumps_json({"loss": bad})


def test_dumps_json_is_stable():
    assert dumps_json({"b": 1, "a": [1.5]}) == dumps_json({"a": [1.5], "b": 1})
    assert json.loads(dumps_json({"b": 1, "a": [1.5]})) == {"a": [1.5], "b": 1}
    assert dumps_json({}).endswith("\n")


# =========================================================================== #
# generate
# =========================================================================== #

LIN = SyntheticLinear(
    kind="synthetic_linear", n_samples=4000, true_w=[2.0, -3.4, 0.5], true_b=4.2, noise_sd=0.1
)


def test_synthetic_linear_follows_its_equation():
    out = generate_synthetic_linear("lin", LIN, seed=0)
    X, y = out["X"].astype(np.float64), out["y"].astype(np.float64)
    assert out["X"].shape == (4000, 3) and out["y"].shape == (4000,)
    assert out["X"].dtype == np.float32 and out["y"].dtype == np.float32
    resid = y - (X @ np.array(LIN.true_w) + LIN.true_b)
    # The residual is the noise: mean 0 within 4 standard errors, sd within 5% of noise_sd.
    assert abs(resid.mean()) < 4 * LIN.noise_sd / math.sqrt(LIN.n_samples)
    assert resid.std() == pytest.approx(LIN.noise_sd, rel=0.05)
    # Features are standard normal.
    assert np.allclose(X.mean(axis=0), 0, atol=0.1) and np.allclose(X.std(axis=0), 1, atol=0.1)
    # Least squares recovers the true parameters.
    A = np.hstack([X, np.ones((len(X), 1))])
    coef = np.linalg.lstsq(A, y, rcond=None)[0]
    assert np.allclose(coef, [*LIN.true_w, LIN.true_b], atol=0.02)
    assert out["meta"]["true_w"] == LIN.true_w and out["meta"]["true_b"] == LIN.true_b


def test_synthetic_linear_without_noise_is_exact():
    spec = LIN.model_copy(update={"noise_sd": 0.0})
    out = generate_synthetic_linear("lin", spec, seed=5)
    expected = out["X"].astype(np.float64) @ np.array(spec.true_w) + spec.true_b
    assert np.allclose(out["y"], expected, atol=1e-5)


def test_synthetic_linear_is_deterministic_per_seed():
    a, b, c = (generate_synthetic_linear("lin", LIN, s) for s in (1, 1, 2))
    assert np.array_equal(a["X"], b["X"]) and np.array_equal(a["y"], b["y"])
    assert not np.array_equal(a["X"], c["X"]) and not np.array_equal(a["y"], c["y"])


def test_digits_shape_and_labels():
    out = generate_digits("digits", Digits(kind="digits"), seed=0)
    assert out["X"].shape == (1797, 64) and out["X"].dtype == np.float32
    assert out["y"].shape == (1797,) and out["y"].dtype == np.int64
    assert set(np.unique(out["y"])) == set(range(10))
    assert out["X"].min() == 0 and out["X"].max() == 16
    assert out["meta"]["task"] == "classification" and len(out["meta"]["class_names"]) == 10


# =========================================================================== #
# prepare
# =========================================================================== #


def _toy_raw(root: Path, n: int = 301) -> tuple[Path, np.ndarray, np.ndarray]:
    """A classification set whose column 0 is the row index, so a split's rows can be named.

    Three imbalanced classes (about 55/30/15%), features with offsets and scales far from
    (0, 1), and one constant column.
    """
    rng = np.random.default_rng(123)
    y = rng.choice(3, size=n, p=[0.55, 0.30, 0.15]).astype(np.int64)
    feats = rng.normal(loc=[5.0, -2.0, 0.0], scale=[3.0, 0.5, 10.0], size=(n, 3)) + y[:, None]
    X = np.hstack([np.arange(n)[:, None], feats, np.full((n, 1), 7.0)]).astype(np.float32)
    meta = {"task": "classification", "class_names": ["a", "b", "c"]}
    write_raw(root, "toy", "toy", {"X": X, "y": y, "meta": meta})
    return root / "toy", X, y


def _rows(prepared: Path) -> dict[str, np.ndarray]:
    """Row indices of each split, recovered from the (monotonically scaled) index column."""
    cols = {s: np.load(prepared / f"X_{s}.npy")[:, 0].astype(np.float64) for s in SPLITS}
    every = np.concatenate([cols[s] for s in SPLITS])
    rank = np.argsort(np.argsort(every))  # index column rank == row index
    out, at = {}, 0
    for s in SPLITS:
        out[s] = rank[at : at + len(cols[s])]
        at += len(cols[s])
    return out


def _spec(scale: str = "standard", val: float = 0.1, test: float = 0.2) -> PrepareSpec:
    return PrepareSpec(val_fraction=val, test_fraction=test, scale=scale)


def test_prepare_splits_partition_the_rows(tmp_path):
    raw, X, y = _toy_raw(tmp_path / "raw")
    man = prepare_dataset(raw, tmp_path / "p", _spec(val=0.15, test=0.25), seed=0)
    rows = _rows(tmp_path / "p")
    n = len(y)
    assert sum(man["sizes"].values()) == n
    assert {s: len(r) for s, r in rows.items()} == man["sizes"]
    assert np.array_equal(np.sort(np.concatenate(list(rows.values()))), np.arange(n))
    for a in SPLITS:
        for b in SPLITS:
            if a < b:
                assert not set(rows[a]) & set(rows[b])
    assert man["sizes"]["test"] == math.ceil(0.25 * n)
    assert abs(man["sizes"]["val"] - 0.15 * n) <= 1
    # Labels travel with their rows.
    for s in SPLITS:
        assert np.array_equal(np.load(tmp_path / "p" / f"y_{s}.npy"), y[np.sort(rows[s])])


def _assert_stratified(prepared: Path, y: np.ndarray, sizes: dict[str, int]) -> None:
    classes, full = np.unique(y, return_counts=True)
    for s in SPLITS:
        ys = np.load(prepared / f"y_{s}.npy")
        counts = np.array([(ys == c).sum() for c in classes])
        expected = full * sizes[s] / len(y)
        # Two nested stratified splits: each class is within 1.5 rows of its share.
        assert np.all(np.abs(counts - expected) <= 1.5), (s, counts, expected)


def test_prepare_is_stratified_on_toy(tmp_path):
    raw, _, y = _toy_raw(tmp_path / "raw")
    man = prepare_dataset(raw, tmp_path / "p", _spec(val=0.1, test=0.2), seed=3)
    _assert_stratified(tmp_path / "p", y, man["sizes"])


def test_prepare_digits_is_stratified_and_sized(tmp_path):
    write_raw(tmp_path / "raw", "digits", "digits", generate_digits("digits", Digits(kind="digits"), 0))
    man = prepare_dataset(tmp_path / "raw" / "digits", tmp_path / "p", _spec(), seed=0)
    assert sum(man["sizes"].values()) == 1797
    assert man["n_features"] == 64 and man["n_outputs"] == 10 and man["task"] == "classification"
    y = np.load(tmp_path / "raw" / "digits" / "y.npy")
    _assert_stratified(tmp_path / "p", y, man["sizes"])
    Xtr = np.load(tmp_path / "p" / "X_train.npy").astype(np.float64)
    live = Xtr.std(axis=0) > 0
    assert live.sum() > 50  # digits has a few constant pixels, most are not
    assert np.allclose(Xtr[:, live].mean(axis=0), 0, atol=1e-5)
    assert np.allclose(Xtr[:, live].std(axis=0), 1, atol=1e-4)


@pytest.mark.parametrize("scale, Scaler", [("standard", StandardScaler), ("minmax", MinMaxScaler)])
def test_scaler_is_fitted_on_train_rows_only(tmp_path, scale, Scaler):
    raw, X, _ = _toy_raw(tmp_path / "raw")
    prepare_dataset(raw, tmp_path / "p", _spec(scale=scale), seed=0)
    rows = _rows(tmp_path / "p")
    ref = Scaler().fit(X[np.sort(rows["train"])].astype(np.float64))
    for s in SPLITS:
        got = np.load(tmp_path / "p" / f"X_{s}.npy")
        want = ref.transform(X[np.sort(rows[s])].astype(np.float64)).astype(np.float32)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if scale == "standard":
        Xtr = np.load(tmp_path / "p" / "X_train.npy").astype(np.float64)
        assert np.allclose(Xtr[:, :4].mean(axis=0), 0, atol=1e-5)
        assert np.allclose(Xtr[:, :4].std(axis=0), 1, atol=1e-5)
        assert np.all(Xtr[:, 4] == 0)  # the constant column is centred, not divided by 0
        # The held-out parts were not standardised by their own statistics.
        Xva = np.load(tmp_path / "p" / "X_val.npy").astype(np.float64)
        assert np.abs(Xva[:, 1:4].mean(axis=0)).max() > 1e-3


def test_scale_none_keeps_raw_rows(tmp_path):
    raw, X, _ = _toy_raw(tmp_path / "raw")
    prepare_dataset(raw, tmp_path / "p", _spec(scale="none"), seed=0)
    for s in SPLITS:
        got = np.load(tmp_path / "p" / f"X_{s}.npy")
        assert np.array_equal(got, X[got[:, 0].astype(int)])


def test_prepare_is_bytewise_deterministic(tmp_path):
    raw, _, _ = _toy_raw(tmp_path / "raw")
    for out in ("a", "b"):
        prepare_dataset(raw, tmp_path / out, _spec(), seed=11)
    prepare_dataset(raw, tmp_path / "c", _spec(), seed=12)
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert names == sorted([f"{k}_{s}.npy" for k in "Xy" for s in SPLITS] + ["manifest.json"])
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    # A different seed gives a different split.
    a, c = (tmp_path / d / "y_test.npy" for d in "ac")
    assert a.read_bytes() != c.read_bytes()


def test_generate_then_write_raw_is_bytewise_deterministic(tmp_path):
    for out in ("a", "b"):
        write_raw(tmp_path / out, "lin", "synthetic_linear", generate_synthetic_linear("lin", LIN, 9))
    for name in ("X.npy", "y.npy", "meta.json"):
        a, b = (tmp_path / d / "lin" / name for d in "ab")
        assert a.read_bytes() == b.read_bytes(), name


# =========================================================================== #
# load
# =========================================================================== #


def test_load_prepared_classification_dtypes(tmp_path):
    raw, X, y = _toy_raw(tmp_path / "raw")
    man = prepare_dataset(raw, tmp_path / "p", _spec(), seed=0)
    data = load_prepared(tmp_path / "p")
    assert data.task == "classification"
    for s in SPLITS:
        split = data.splits[s]
        assert split.X.dtype == torch.float32 and split.X.shape == (man["sizes"][s], X.shape[1])
        assert split.y.dtype == torch.int64 and split.y.shape == (man["sizes"][s],)
        assert np.array_equal(split.y.numpy(), np.load(tmp_path / "p" / f"y_{s}.npy"))


def _linear_prepared(tmp_path: Path, scale: str) -> tuple[Path, dict]:
    spec = LIN.model_copy(update={"n_samples": 200})
    write_raw(tmp_path / "raw", "lin", "synthetic_linear", generate_synthetic_linear("lin", spec, 0))
    out = tmp_path / f"p_{scale}"
    man = prepare_dataset(tmp_path / "raw" / "lin", out, _spec(scale=scale), seed=0)
    return out, man


def test_load_prepared_regression_targets_are_columns(tmp_path):
    out, man = _linear_prepared(tmp_path, "none")
    data = load_prepared(out)
    assert data.task == "regression" and man["n_outputs"] == 1
    for s in SPLITS:
        split = data.splits[s]
        assert split.X.dtype == torch.float32 and split.X.shape == (man["sizes"][s], 3)
        assert split.y.dtype == torch.float32 and split.y.shape == (man["sizes"][s], 1)


def test_load_prepared_only_the_requested_splits(tmp_path):
    out, _ = _linear_prepared(tmp_path, "none")
    (out / "X_test.npy").unlink()  # not needed when only train and val are asked for
    assert set(load_prepared(out, splits=("train", "val")).splits) == {"train", "val"}


def test_true_w_only_in_unscaled_manifest(tmp_path):
    _, plain = _linear_prepared(tmp_path, "none")
    _, scaled = _linear_prepared(tmp_path, "standard")
    assert plain["true_w"] == LIN.true_w and plain["true_b"] == LIN.true_b
    assert "true_w" not in scaled and "true_b" not in scaled
    on_disk = json.loads((tmp_path / "p_none" / "manifest.json").read_text())
    assert on_disk == plain


@pytest.mark.parametrize("damage", ["truncate", "flip_byte"])
def test_damaged_prepared_file_raises_naming_it(tmp_path, damage):
    out, _ = _linear_prepared(tmp_path, "none")
    victim = out / "X_train.npy"
    blob = bytearray(victim.read_bytes())
    if damage == "truncate":
        victim.write_bytes(bytes(blob[: len(blob) // 2]))
    else:
        blob[-1] ^= 0x01  # the last float's lowest mantissa bit: still a loadable array
        victim.write_bytes(bytes(blob))
    with pytest.raises(DataError) as info:
        load_prepared(out)
    msg = str(info.value)
    assert "\n" not in msg and str(victim) in msg


def test_missing_prepared_file_and_manifest(tmp_path):
    out, _ = _linear_prepared(tmp_path, "none")
    (out / "y_val.npy").unlink()
    with pytest.raises(DataError, match="y_val.npy"):
        load_prepared(out)
    with pytest.raises(DataError, match="manifest.json"):
        load_prepared(tmp_path / "nowhere")


def test_damaged_raw_file_is_caught_by_prepare(tmp_path):
    raw, _, _ = _toy_raw(tmp_path / "raw")
    blob = bytearray((raw / "y.npy").read_bytes())
    blob[-1] ^= 0x01
    (raw / "y.npy").write_bytes(bytes(blob))
    with pytest.raises(DataError, match="y.npy"):
        prepare_dataset(raw, tmp_path / "p", _spec(), seed=0)
    assert not (tmp_path / "p").exists()
