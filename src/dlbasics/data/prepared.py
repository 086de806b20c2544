"""The prepared form of the data: splitting, scaling, and loading it for a variant.

  prepared/<name>/  X_<split>.npy, y_<split>.npy for split in train/val/test, manifest.json
prepared/ is the prepare stage's DVC output; `load_variant_data` reads one dataset back with the
features a variant asks for, every file checked against its recorded digest.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dlbasics.config.datasets import PrepareSpec
from dlbasics.config.params import Params
from dlbasics.config.variants import VariantSpec
from dlbasics.errors import ConfigError
from dlbasics.errors import DataError
from dlbasics.io import (
    manifest_digest,
    npy_bytes,
    sha256_bytes,
    sha256_file,
    write_bytes_atomic,
    write_json_atomic,
)
from dlbasics.rng import derive_seed

SPLITS = ("train", "val", "test")


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


def split_indices(
    n: int, spec: PrepareSpec, seed: int, name: str, stratify: np.ndarray | None,
    n_official_test: int = 0, stream: str | None = None,
) -> dict[str, np.ndarray]:
    """Seeded train / val / test row indices (sorted), by fractions or by counts.

    With `n_official_test`, the last rows are the official test set, kept as it is; only the
    validation rows are carved (stratified) out of the training rows.
    """
    from sklearn.model_selection import train_test_split

    stream = stream or name  # random streams follow the data's identity, messages its key
    idx = np.arange(n)
    if n_official_test:
        rest, test = idx[: n - n_official_test], idx[n - n_official_test:]
        if spec.n_train is not None:
            n_val = spec.n_val or 0
            if spec.n_train + n_val > len(rest):
                raise ConfigError(
                    f"params.yaml: prepare.{name}: expected n_train + n_val <= {len(rest)} (the "
                    f"training rows of data.{name}), found {spec.n_train + n_val}"
                )
            rest_size, val_size = spec.n_train + n_val, n_val
        else:
            rest_size, val_size = None, spec.val_fraction or 0
        if rest_size is not None and rest_size < len(rest):
            rest, _ = train_test_split(
                rest, train_size=rest_size, random_state=derive_seed(seed, "split", stream, "sub"),
                stratify=stratify[rest] if stratify is not None else None,
            )
    else:
        if spec.n_train is not None:
            n_val = spec.n_val or 0
            need = spec.n_train + n_val + (spec.n_test or 0)
            if need > n:
                raise ConfigError(
                    f"params.yaml: prepare.{name}: expected n_train + n_val + n_test <= {n} (the "
                    f"rows of data.{name}), found {need}; lower the counts or raise the rows"
                )
            test_size, rest_size, val_size = spec.n_test, spec.n_train + n_val, n_val
        else:
            val_frac = spec.val_fraction or 0.0
            test_size, rest_size = spec.test_fraction, None
            val_size = val_frac / (1.0 - spec.test_fraction) if val_frac > 0 else 0
        # Two seeded splits: test first, then validation out of the rest.
        rest, test = train_test_split(
            idx, test_size=test_size, train_size=rest_size,
            random_state=derive_seed(seed, "split", stream, "test"), stratify=stratify,
        )
    if val_size:
        train, val = train_test_split(
            rest, test_size=val_size,
            random_state=derive_seed(seed, "split", stream, "val"),
            stratify=stratify[rest] if stratify is not None else None,
        )
    else:
        train, val = rest, rest[:0]
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _scaler(spec: PrepareSpec, meta: dict[str, Any]):
    """(a fitted-later scaler or None, its name); `unit` divides by the largest pixel value."""
    from sklearn.preprocessing import FunctionTransformer, MinMaxScaler, StandardScaler

    if spec.scale == "unit":
        if "pixel_max" not in meta:
            raise ConfigError(
                f"params.yaml: prepare.{meta['name']}.scale: expected none, standard or minmax "
                f"(unit is for images), found 'unit'"
            )
        top = float(meta["pixel_max"])
        return FunctionTransformer(lambda a: a / top, inverse_func=lambda a: a * top)
    return {"standard": StandardScaler(), "minmax": MinMaxScaler(), "none": None}[spec.scale]


def _scaler_state(scaler) -> dict[str, list[float]]:
    """What undoes the scaling (for showing images): x = scaled * scale + offset."""
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if isinstance(scaler, StandardScaler):
        return {"scale": scaler.scale_.tolist(), "offset": scaler.mean_.tolist()}
    if isinstance(scaler, MinMaxScaler):
        return {"scale": (1.0 / scaler.scale_).tolist(),
                "offset": (-scaler.min_ / scaler.scale_).tolist()}
    return {}


def _prepare_table(raw_dir: Path, meta: dict[str, Any], spec: PrepareSpec, seed: int):
    """A table: rows split, then encoded with pandas fitted on the training rows only;
    the target becomes log(price) for the log-RMSE score. -> (X, y, parts, extra manifest)."""
    import pandas as pd

    from dlbasics.data.tabular import TabularPreprocessor, log_target

    path = raw_dir / "table.csv"
    if sha256_file(path) != meta["sha256"]["table.csv"]:
        raise DataError(f"{path}: content does not match its recorded sha256 (truncated or "
                        "altered); run `dvc repro --force generate`")
    frame = pd.read_csv(path)
    parts = split_indices(len(frame), spec, seed, meta["name"], None,
                          stream=meta.get("identity"))
    pre = TabularPreprocessor(id_column=meta["id_column"], target_column=meta["target_column"])
    pre.fit(frame.iloc[parts["train"]])
    X = pre.transform(frame)
    y = log_target(frame[meta["target_column"]].to_numpy())
    extra = {"feature_names": list(pre.feature_names_),
             "target": f"log({meta['target_column']})"}
    return X, y, parts, extra


def prepare_dataset(raw_dir: Path, out_dir: Path, spec: PrepareSpec, seed: int) -> dict[str, Any]:
    """Split raw_dir (seeded, stratified for classification) and scale on train only."""
    meta = _read_json(raw_dir / "meta.json")
    sums = meta.get("sha256", {})
    task = meta["task"]
    extra: dict[str, Any] = {}
    if "table.csv" in sums:
        X, y, parts, extra = _prepare_table(raw_dir, meta, spec, seed)
        scaler = None
    else:
        X = _load_checked(raw_dir / "X.npy", sums.get("X.npy"))
        y = _load_checked(raw_dir / "y.npy", sums.get("y.npy"))
        # Stratify where there is one label per row; multi-label rows cannot be stratified simply.
        strat = y if task in ("classification", "binary") else None
        parts = split_indices(len(y), spec, seed, meta["name"], strat,
                              n_official_test=meta.get("n_official_test", 0),
                              stream=meta.get("identity"))
        scaler = _scaler(spec, meta)
        if scaler is not None:
            scaler.fit(X[parts["train"]].astype(np.float64))
            extra["unscale"] = _scaler_state(scaler) or {
                "scale": [float(meta["pixel_max"])], "offset": [0.0]}

    blobs: dict[str, bytes] = {}
    for split, rows in parts.items():
        Xs = X[rows].astype(np.float64)
        Xs = scaler.transform(Xs) if scaler is not None else Xs
        blobs[f"X_{split}.npy"] = npy_bytes(Xs.astype(np.float32))
        blobs[f"y_{split}.npy"] = npy_bytes(y[rows])
        del Xs  # one split in float64 at a time bounds the peak memory
    for fname, blob in blobs.items():
        write_bytes_atomic(out_dir / fname, blob)

    n_outputs = {"classification": len(meta.get("class_names") or []),
                 "multilabel": int(y.shape[1]) if y.ndim == 2 else 0}.get(task, 1)
    manifest = {
        "name": meta["name"],
        "identity": meta.get("identity", meta["name"]),
        "kind": meta["kind"],
        "task": meta["task"],
        "n_features": int(X.shape[1]),
        "n_outputs": n_outputs,
        "class_names": meta.get("class_names"),
        "image_shape": meta.get("image_shape"),
        "sizes": {split: int(len(rows)) for split, rows in parts.items()},
        "scale": spec.scale,
        "source": meta.get("source"),
        "raw_sha256": sums,
        "sha256": {f: sha256_bytes(b) for f, b in blobs.items()},
        **extra,
    }
    # The true parameters are only meaningful in the original (unscaled) feature units.
    if "true_w" in meta and spec.scale == "none":
        manifest["true_w"], manifest["true_b"] = meta["true_w"], meta.get("true_b")
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def prepare_all(params, raw_dir: Path, out_dir: Path) -> dict[str, dict[str, Any]]:
    """Prepare every dataset under `prepare:` from raw_dir/<name> into out_dir/<name>."""
    return {
        name: prepare_dataset(raw_dir / name, out_dir / name, spec, params.seed)
        for name, spec in params.prepare.items()
    }


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
        return manifest_digest(self.manifest)


def take_features(data: Prepared, k: int | None, key: str = "features") -> Prepared:
    """The same data with only the first `k` input columns (all when k is None)."""
    if k is None or k == data.manifest["n_features"]:
        return data
    if k > data.manifest["n_features"]:
        raise ConfigError(
            f"params.yaml: {key}: expected at most {data.manifest['n_features']} (the columns "
            f"of {data.manifest['name']}), found {k}"
        )
    splits = {name: Split(s.X[:, :k].contiguous(), s.y) for name, s in data.splits.items()}
    return Prepared({**data.manifest, "n_features": k}, splits)


def poly_features(data: Prepared, degree: int | None) -> Prepared:
    """The same data with every monomial of its inputs up to `degree` as the features
    (scikit-learn's PolynomialFeatures without the constant column; computed in float64)."""
    if degree is None:
        return data
    from sklearn.preprocessing import PolynomialFeatures

    expand = PolynomialFeatures(degree=degree, include_bias=False)
    expand.fit(np.zeros((1, data.manifest["n_features"])))
    names = [str(n) for n in expand.get_feature_names_out()]

    def grow(X: torch.Tensor) -> torch.Tensor:  # [N, F] -> [N, len(names)]
        if X.shape[0] == 0:  # an empty split (no validation rows): scikit-learn refuses it
            return X.new_zeros((0, len(names)))
        return torch.from_numpy(expand.transform(X.double().numpy())).to(X.dtype)

    splits = {name: Split(grow(s.X), s.y) for name, s in data.splits.items()}
    return Prepared({**data.manifest, "n_features": len(names), "feature_names": names}, splits)


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


def load_variant_data(params: Params, name: str, data_dir: Path, splits: tuple[str, ...] = SPLITS,
                      spec: VariantSpec | None = None) -> Prepared:
    """The prepared dataset of variant `name` (or of `spec`), restricted to its `features`, then
    expanded to its `poly_features`."""
    spec = spec or params.train[name]
    data = load_prepared(data_dir, splits=splits)
    data = take_features(data, spec.features, key=f"train.{name}.features")
    return poly_features(data, spec.poly_features)
