"""Where the data comes from: the embedded and generated sets, written as raw files.

Every dataset under params.yaml's `data:` is drawn (or read: scikit-learn's bundled sets, IDX
files) from the seed and the dataset's identity, and written by `write_raw`:
  raw/<name>/   X.npy [N, F] float32, y.npy [N] (int64 labels or float32 targets), meta.json
                (or table.csv for a table), with the files' sha256 in meta.json
raw/ is the generate stage's DVC output.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from dlbasics.config.datasets import BreastCancer, Digits, HousePrices, ImageDataset, Multilabel, Polynomial, Sine, SyntheticLinear, Trapezoid
from dlbasics.io import (
    npy_bytes,
    sha256_bytes,
    write_bytes_atomic,
    write_json_atomic,
)
from dlbasics.rng import derive_seed, numpy_rng

# Where `source: download` keeps what torchvision fetched (a cache outside DVC's outputs).
DOWNLOADS = "data/downloads"


# ----------------------------------------------------------------------------- generate


def generate_synthetic_linear(name: str, spec: SyntheticLinear, seed: int, stream: str | None = None) -> dict[str, Any]:
    """X [N, d] ~ N(x_mean, x_std^2) or U(x_low, x_high); y = X w + b + N(0, noise_sd^2) [N]."""
    rng = numpy_rng(seed, "data", stream or name)
    if spec.true_w is not None:
        w = np.asarray(spec.true_w, dtype=np.float64)
    elif spec.w_fill is not None:
        w = np.full(spec.n_features, spec.w_fill)
    else:
        w = numpy_rng(seed, "data", stream or name, "w").normal(0.0, spec.w_std, spec.n_features)
    shape = (spec.n_samples, w.size)
    if spec.x_dist == "normal":
        X = rng.normal(spec.x_mean, spec.x_std, shape)
    else:
        X = rng.uniform(spec.x_low, spec.x_high, shape)
    y = X @ w + spec.true_b + rng.normal(0.0, spec.noise_sd, spec.n_samples)
    meta = {"task": "regression", "true_w": w.tolist(), "true_b": spec.true_b}
    if spec.outliers is not None:  # drawn after X and y: the clean rows stay those of no outliers
        n_out = round(spec.outliers.fraction * spec.n_samples)
        rows = rng.choice(spec.n_samples, n_out, replace=False)
        y[rows] += spec.outliers.shift
        meta["outlier_rows"] = sorted(int(r) for r in rows)
    return {"X": X.astype(np.float32), "y": y.astype(np.float32), "meta": meta}


def generate_polynomial(name: str, spec: Polynomial, seed: int, stream: str | None = None) -> dict[str, Any]:
    """Features x^i / i! for i < max_degree [N, max_degree] (the 1/i! keeps high powers small);
    y = features @ w + noise with w = true_w padded with zeros."""
    rng = numpy_rng(seed, "data", stream or name)
    x = rng.standard_normal(spec.n_samples)
    powers = np.arange(spec.max_degree)
    X = np.power(x[:, None], powers) / np.array([math.factorial(int(i)) for i in powers])
    w = np.zeros(spec.max_degree)
    w[: len(spec.true_w)] = spec.true_w
    y = X @ w + rng.normal(0.0, spec.noise_sd, spec.n_samples)
    # No bias: the constant feature x^0 / 0! = 1 plays its part.
    meta = {"task": "regression", "true_w": w.tolist()}
    return {"X": X.astype(np.float32), "y": y.astype(np.float32), "meta": meta}


def generate_trapezoid(name: str, spec: Trapezoid, seed: int, stream: str | None = None) -> dict[str, Any]:
    """Top x1 and bottom x2 ~ U(low, high) [N, 2]; area 0.5 (x1 + x2) x1 [N] (height = top)."""
    rng = numpy_rng(seed, "data", stream or name)
    X = rng.uniform(spec.low, spec.high, (spec.n_samples, 2))
    y = 0.5 * (X[:, 0] + X[:, 1]) * X[:, 0]
    return {"X": X.astype(np.float32), "y": y.astype(np.float32), "meta": {"task": "regression"}}


def generate_sine(name: str, spec: Sine, seed: int, stream: str | None = None) -> dict[str, Any]:
    """x ~ U(x_low, x_high) [N, 1]; y = sin(x) + N(0, noise_sd^2) [N]."""
    rng = numpy_rng(seed, "data", stream or name)
    X = rng.uniform(spec.x_low, spec.x_high, (spec.n_samples, 1))
    y = np.sin(X[:, 0]) + rng.normal(0.0, spec.noise_sd, spec.n_samples)
    return {"X": X.astype(np.float32), "y": y.astype(np.float32), "meta": {"task": "regression"}}


def generate_digits(name: str, spec: Digits, seed: int, stream: str | None = None) -> dict[str, Any]:
    """scikit-learn's bundled 8x8 digits: X [1797, 64] in 0..16, y [1797] in 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    X, y = bunch.data, bunch.target
    if spec.imbalance is not None:  # keep a seeded share of each rare class's rows, in order
        rng = numpy_rng(seed, "data", stream or name)
        keep = np.ones(len(y), dtype=bool)
        for c in spec.imbalance.classes:
            rows = np.flatnonzero(y == c)
            dropped = rng.permutation(rows)[round(spec.imbalance.keep * len(rows)):]
            keep[dropped] = False
        X, y = X[keep], y[keep]
    meta = {
        "task": "classification",
        "class_names": [str(c) for c in bunch.target_names],
        "image_shape": [8, 8],
        "pixel_max": 16,
        "source": "sklearn.datasets.load_digits",
    }
    return {"X": X.astype(np.float32), "y": y.astype(np.int64), "meta": meta}


def generate_breast_cancer(name: str, spec: BreastCancer, seed: int, stream: str | None = None) -> dict[str, Any]:
    """scikit-learn's bundled breast-cancer set: X [569, 30], y [569] in {0, 1}."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer()
    meta = {
        "task": "binary",
        "class_names": [str(c) for c in bunch.target_names],
        "source": "sklearn.datasets.load_breast_cancer",
    }
    return {"X": bunch.data.astype(np.float32), "y": bunch.target.astype(np.int64), "meta": meta}


def generate_multilabel(name: str, spec: Multilabel, seed: int, stream: str | None = None) -> dict[str, Any]:
    """make_multilabel_classification: X [N, F] counts, Y [N, L] in {0, 1}."""
    from sklearn.datasets import make_multilabel_classification

    X, Y = make_multilabel_classification(
        n_samples=spec.n_samples, n_features=spec.n_features, n_classes=spec.n_classes,
        n_labels=spec.n_labels, random_state=derive_seed(seed, "data", stream or name),
    )
    meta = {
        "task": "multilabel",
        "class_names": [f"label_{i}" for i in range(spec.n_classes)],
        "source": "sklearn.datasets.make_multilabel_classification",
    }
    return {"X": X.astype(np.float32), "y": Y.astype(np.float32), "meta": meta}


def generate_images(name: str, spec: ImageDataset, seed: int, stream: str | None = None) -> dict[str, Any]:
    """MNIST / Fashion-MNIST from local IDX files or a torchvision download (checked):
    X [70000, 784] uint8 (the 60000 training images first), y [70000] int64."""
    from dlbasics.data import idx

    sizes = idx.OFFICIAL_SIZES if spec.official_sizes else None
    if spec.source == "local":
        directory = Path(spec.path)
    else:
        directory = idx.fetch(spec.kind, Path(spec.path or DOWNLOADS), timeout=spec.timeout,
                              expected_sizes=sizes, params_key=name,
                              verify_checksums=spec.verify_checksums)
    raw = idx.load_idx_dataset(directory, spec.kind, expected_sizes=sizes,
                               verify_checksums=spec.verify_checksums, params_key=name)
    X = np.concatenate([raw["X_train"], raw["X_test"]]).reshape(-1, 28 * 28)
    y = np.concatenate([raw["y_train"], raw["y_test"]]).astype(np.int64)
    meta = {
        "task": "classification",
        "class_names": list(raw["class_names"]),
        "image_shape": [28, 28],
        "pixel_max": 255,
        "n_official_test": int(len(raw["y_test"])),
        "source": raw["source"],  # each file's stem and the sha256 of its IDX bytes
        "identity": raw["identity"],  # from the contents: no path, no compression
    }
    return {"X": X, "y": y, "meta": meta}


def generate_house_prices(name: str, spec: HousePrices, seed: int, stream: str | None = None) -> dict[str, Any]:
    """A house-prices table: generated, or read (and checked) from a Kaggle-style CSV."""
    from dlbasics.data.tabular import make_house_prices, make_test_rows, read_table, read_test_table

    test = None
    if spec.source == "generated":
        frame = make_house_prices(spec.n_rows, numpy_rng(seed, "data", stream or name))
        source = "dlbasics.data.tabular.make_house_prices"
        if spec.n_test_rows:  # drawn from their own stream: the training rows stay the same
            test = make_test_rows(spec.n_test_rows, spec.n_rows,
                                  numpy_rng(seed, "data", stream or name, "test"))
    else:
        frame = read_table(spec.path, id_column=spec.id_column,
                           target_column=spec.target_column, dataset=name)
        source = str(spec.path)
        if spec.test_path:
            test = read_test_table(spec.test_path, frame, id_column=spec.id_column,
                                   target_column=spec.target_column, dataset=name)
    meta = {"task": "regression", "id_column": spec.id_column,
            "target_column": spec.target_column, "source": source}
    return {"frame": frame, "meta": meta, **({"test_frame": test} if test is not None else {})}


GENERATORS = {
    "synthetic_linear": generate_synthetic_linear,
    "polynomial": generate_polynomial,
    "trapezoid": generate_trapezoid,
    "sine": generate_sine,
    "digits": generate_digits,
    "mnist": generate_images,
    "fashion_mnist": generate_images,
    "house_prices": generate_house_prices,
    "breast_cancer": generate_breast_cancer,
    "multilabel": generate_multilabel,
}


def write_raw(out_dir: Path, name: str, kind: str, arrays: dict[str, Any]) -> None:
    """Write one generated dataset into out_dir/name with its meta.json and digests."""
    target = out_dir / name
    if "frame" in arrays:  # a table: kept as CSV, encoded by prepare (fitted on training rows)
        blobs = {"table.csv": arrays["frame"].to_csv(index=False, lineterminator="\n").encode()}
        if "test_frame" in arrays:  # the rows a submission predicts, in their file's order
            blobs["test.csv"] = arrays["test_frame"].to_csv(
                index=False, lineterminator="\n").encode()
        shape = arrays["frame"].shape
    else:
        blobs = {"X.npy": npy_bytes(arrays["X"]), "y.npy": npy_bytes(arrays["y"])}
        shape = arrays["X"].shape
    for fname, blob in blobs.items():
        write_bytes_atomic(target / fname, blob)
    meta = {
        "name": name,
        "kind": kind,
        "n_samples": int(shape[0]),
        "n_features": int(shape[1]),
        "sha256": {f: sha256_bytes(b) for f, b in blobs.items()},
        **arrays["meta"],
    }
    write_json_atomic(target / "meta.json", meta)


# Settings added to a kind after its sets were in use: a set without them keeps its identity.
OPTIONAL_KEYS = ("outliers", "imbalance")
# Settings of the rows to predict, not of the set trained on: never part of its identity.
NOT_IDENTITY = ("test_path", "n_test_rows")


def data_identity(spec) -> str:
    """What a dataset *is*, independent of its key in params: the kind for a bundled set, the
    kind and a digest of the settings for a generated one. Random streams (data, split,
    initialisation, batch order, folds) derive from it, so renaming a key changes nothing.
    An IDX set read from files is known by its contents instead (idx.content_identity, set by
    generate_images): its folder, compression and checks are not what it is."""
    fields = spec.model_dump(mode="json")
    for key in OPTIONAL_KEYS:  # unset, they leave the identity as it was before they existed
        if key in fields and fields[key] is None:
            del fields[key]
    for key in NOT_IDENTITY:
        fields.pop(key, None)
    if set(fields) == {"kind"} or isinstance(spec, ImageDataset):
        return spec.kind
    return f"{spec.kind}-{sha256_bytes(json.dumps(fields, sort_keys=True).encode())[:12]}"


def generate_all(params, out_dir: Path) -> list[str]:
    """Write every dataset under `data:` in params into out_dir/<name>/."""
    for name, spec in params.data.items():
        identity = data_identity(spec)
        arrays = GENERATORS[spec.kind](name, spec, params.seed, stream=identity)
        arrays["meta"].setdefault("identity", identity)
        write_raw(out_dir, name, spec.kind, arrays)
    return list(params.data)
