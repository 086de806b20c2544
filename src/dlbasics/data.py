"""Where the data comes from: generation of the embedded sets, splitting, scaling, loading.

Layout (both directories are DVC outputs):
  raw/<name>/       X.npy [N, F] float32, y.npy [N] (int64 labels or float32 targets), meta.json
  prepared/<name>/  X_<split>.npy, y_<split>.npy for split in train/val/test, manifest.json
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics.config import Digits, PrepareSpec, SyntheticLinear
from dlbasics.io import npy_bytes, sha256_bytes, sha256_file, write_bytes_atomic, write_json_atomic
from dlbasics.rng import derive_seed, numpy_rng

SPLITS = ("train", "val", "test")


class DataError(Exception):
    """Data that cannot be used; the message is one line naming the file and the problem."""


# ----------------------------------------------------------------------------- generate


def generate_synthetic_linear(spec: SyntheticLinear, seed: int) -> dict[str, Any]:
    """X ~ N(0, 1) [N, d]; y = X w + b + N(0, noise_sd^2) [N]."""
    rng = numpy_rng(seed, "data", "synthetic_linear")
    w = np.asarray(spec.true_w, dtype=np.float64)
    X = rng.standard_normal((spec.n_samples, w.size))
    y = X @ w + spec.true_b + rng.normal(0.0, spec.noise_sd, spec.n_samples)
    meta = {"task": "regression", "true_w": list(spec.true_w), "true_b": spec.true_b}
    return {"X": X.astype(np.float32), "y": y.astype(np.float32), "meta": meta}


def generate_digits(spec: Digits, seed: int) -> dict[str, Any]:
    """scikit-learn's bundled 8x8 digits: X [1797, 64] in 0..16, y [1797] in 0..9."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    meta = {
        "task": "classification",
        "class_names": [str(c) for c in bunch.target_names],
        "image_shape": [8, 8],
        "source": "sklearn.datasets.load_digits",
    }
    return {"X": bunch.data.astype(np.float32), "y": bunch.target.astype(np.int64), "meta": meta}


GENERATORS = {"synthetic_linear": generate_synthetic_linear, "digits": generate_digits}


def write_raw(out_dir: Path, name: str, kind: str, arrays: dict[str, Any]) -> None:
    """Write one generated dataset into out_dir/name with its meta.json and digests."""
    target = out_dir / name
    X, y = arrays["X"], arrays["y"]
    blobs = {"X.npy": npy_bytes(X), "y.npy": npy_bytes(y)}
    for fname, blob in blobs.items():
        write_bytes_atomic(target / fname, blob)
    meta = {
        "name": name,
        "kind": kind,
        "n_samples": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "sha256": {f: sha256_bytes(b) for f, b in blobs.items()},
        **arrays["meta"],
    }
    write_json_atomic(target / "meta.json", meta)


# ----------------------------------------------------------------------------- prepare


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: missing; run the stage that writes it (dvc repro)") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None


def _load_checked(path: Path, expected_sha256: str | None) -> np.ndarray:
    """np.load with a digest check, so a truncated or altered file is named, not trusted."""
    if not path.exists():
        raise DataError(f"{path}: missing; re-run the stage that writes it (dvc repro)")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256:
        raise DataError(
            f"{path}: content does not match its recorded sha256 (truncated or altered); "
            "run `dvc repro --force` on the stage that writes it"
        )
    return np.load(path, allow_pickle=False)


def prepare_dataset(raw_dir: Path, out_dir: Path, spec: PrepareSpec, seed: int) -> dict[str, Any]:
    """Split raw_dir (seeded, stratified for classification) and scale on train only."""
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    meta = _read_json(raw_dir / "meta.json")
    sums = meta.get("sha256", {})
    X = _load_checked(raw_dir / "X.npy", sums.get("X.npy"))
    y = _load_checked(raw_dir / "y.npy", sums.get("y.npy"))
    classification = meta["task"] == "classification"
    idx = np.arange(len(y))
    # Two seeded splits: test first, then validation out of the rest.
    rest, test = train_test_split(
        idx,
        test_size=spec.test_fraction,
        random_state=derive_seed(seed, "split", meta["name"], "test"),
        stratify=y if classification else None,
    )
    train, val = train_test_split(
        rest,
        test_size=spec.val_fraction / (1.0 - spec.test_fraction),
        random_state=derive_seed(seed, "split", meta["name"], "val"),
        stratify=y[rest] if classification else None,
    )
    parts = {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    scaler = {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": None}[spec.scale]
    if scaler is not None:
        scaler.fit(X[parts["train"]].astype(np.float64))

    blobs: dict[str, bytes] = {}
    for split, rows in parts.items():
        Xs = X[rows].astype(np.float64)
        Xs = scaler.transform(Xs) if scaler is not None else Xs
        blobs[f"X_{split}.npy"] = npy_bytes(Xs.astype(np.float32))
        blobs[f"y_{split}.npy"] = npy_bytes(y[rows])
    for fname, blob in blobs.items():
        write_bytes_atomic(out_dir / fname, blob)

    n_classes = len(meta["class_names"]) if classification else None
    manifest = {
        "name": meta["name"],
        "kind": meta["kind"],
        "task": meta["task"],
        "n_features": int(X.shape[1]),
        "n_outputs": n_classes if classification else 1,
        "class_names": meta.get("class_names"),
        "image_shape": meta.get("image_shape"),
        "sizes": {split: int(len(rows)) for split, rows in parts.items()},
        "scale": spec.scale,
        "raw_sha256": sums,
        "sha256": {f: sha256_bytes(b) for f, b in blobs.items()},
    }
    # The true parameters are only meaningful in the original (unscaled) feature units.
    if "true_w" in meta and spec.scale == "none":
        manifest["true_w"], manifest["true_b"] = meta["true_w"], meta["true_b"]
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


# ----------------------------------------------------------------------------- load


@dataclass(frozen=True)
class Split:
    X: torch.Tensor  # [N, F] float32
    y: torch.Tensor  # [N] int64 labels, or [N, 1] float32 targets


@dataclass(frozen=True)
class Prepared:
    manifest: dict[str, Any]
    splits: dict[str, Split]

    @property
    def task(self) -> str:
        return self.manifest["task"]

    @property
    def digest(self) -> str:
        """One content digest for the whole prepared dataset."""
        return sha256_bytes(json.dumps(self.manifest["sha256"], sort_keys=True).encode())


def load_prepared(path: str | Path, splits: tuple[str, ...] = SPLITS) -> Prepared:
    """Load a prepared dataset whole into memory as tensors, checking every file's digest."""
    path = Path(path)
    manifest = _read_json(path / "manifest.json")
    sums = manifest.get("sha256", {})
    out = {}
    for split in splits:
        X = _load_checked(path / f"X_{split}.npy", sums.get(f"X_{split}.npy"))
        y = _load_checked(path / f"y_{split}.npy", sums.get(f"y_{split}.npy"))
        yt = torch.from_numpy(y)
        if manifest["task"] == "regression":
            yt = yt.reshape(-1, 1)  # [N, 1] to match a model's [N, 1] output
        out[split] = Split(torch.from_numpy(X), yt)
    return Prepared(manifest, out)
