"""Datasets beyond the embedded ones: MNIST-format files read from a local folder through the
whole `dvc repro`, an offline download that fails fast and cleanly, the official test split,
house prices (generated and from a user's CSV) with K-fold cross-validation, and damaged raw
files.

Oracles: the arrays the tests write themselves (IDX files, a Kaggle-style CSV), hashlib for
every digest, pandas and numpy for the targets and the fold statistics, a numpy forward pass
and sklearn's accuracy_score for the trained MLP's test accuracy, a preprocessor refitted
here on the training rows only, and a model that records the rows it is trained on.
Everything is offline: nothing is downloaded.
"""

from __future__ import annotations

import copy
import gzip
import hashlib
import importlib.util
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, make_project, run, small_lessons, tool_env
from sklearn.metrics import accuracy_score
from torch import nn

from dlbasics.config.datasets import PrepareSpec
from dlbasics.config.loading import parse_params
from dlbasics.errors import ConfigError
from dlbasics.data.idx import FILES, write_idx
from dlbasics.data.prepared import Prepared, Split, prepare_all, split_indices
from dlbasics.data.sources import generate_all
from dlbasics.data.tabular import TabularPreprocessor
from dlbasics.errors import DataError
from dlbasics.pipeline.variant import fit_variant
from dlbasics.search.selection import cross_validate, fold_indices

EXIT_CONFIG, EXIT_DATA = 2, 3  # dlbasics.cli's exit codes, restated: they are the contract
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
N_TRAIN, N_TEST = 300, 100


# ----------------------------------------------------------------------------- helpers


def base_params() -> dict:
    return yaml.safe_load((REPO / "params.yaml").read_text())


def only(params: dict, data: dict, prepare: dict, variants: dict) -> dict:
    """params with exactly these datasets, prepare entries and variants (notes of the rest
    dropped), everything else as the repository has it."""
    params = copy.deepcopy(params)
    params["data"], params["prepare"], params["train"] = data, prepare, variants
    notes = params.get("report", {}).get("notes", {})
    params["report"] = {"notes": {k: v for k, v in notes.items() if k in variants}}
    if "images" not in data:
        params["lessons"] = {}  # several train on the images (dvc.yaml tracks the key)
    if any(s["base"] not in variants for s in params.get("select", {}).get("searches", {}).values()):
        params.pop("select", None)  # the grid search is optional, and about another variant
    return params


def tiny_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images, labels 0..9 balanced and shuffled; label k lights a 6x6 block at
    its own place over dim noise, so a linear classifier can learn it in a few epochs."""
    y = rng.permutation(np.arange(n) % 10).astype(np.uint8)
    X = rng.integers(0, 40, (n, 28, 28), dtype=np.uint8)
    for i, k in enumerate(y):
        r, c = 2 + (k // 5) * 12, 1 + (k % 5) * 5
        X[i, r : r + 6, c : c + 5] = rng.integers(200, 256, (6, 5), dtype=np.uint8)
    return X, y


def write_tiny_mnist(folder: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """The four MNIST files, two gzip-compressed and two raw; returns the arrays written."""
    rng = np.random.default_rng(seed)
    X_train, y_train = tiny_images(N_TRAIN, rng)
    X_test, y_test = tiny_images(N_TEST, rng)
    arrays = {"X_train": X_train, "y_train": y_train, "X_test": X_test, "y_test": y_test}
    gz = {"X_train", "y_test"}
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in FILES.items():
        write_idx(folder / (f"{stem}.gz" if key in gz else stem), arrays[key])
    return arrays


def mnist_local(path: Path) -> dict:
    return {"kind": "mnist", "source": "local", "path": str(path), "verify_checksums": False,
            "official_sizes": False}


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def start_stage(script: str, args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(REPO / "stages" / script), *args], cwd=cwd,
        env=tool_env(PYTHONPATH=str(REPO / "src"), MLFLOW_TRACKING_URI=(cwd / "mlruns").as_uri()),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


# ---------------------------------------------------------------- 1. dvc repro on local MNIST files


@pytest.fixture(scope="module")
def mnist_repro(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnist")
    arrays = write_tiny_mnist(root / "idx")

    def edit(params: dict) -> dict:
        variants = {k: params["train"][k] for k in ("softmax", "mlp")}
        for spec in variants.values():
            spec["epochs"] = 3
        variants["mlp"]["model"]["hidden"] = [32]
        params = small_lessons(only(params, {"images": mnist_local(root / "idx")},
                                    {"images": {"val_fraction": 0.1, "scale": "unit"}}, variants))
        # Models are logged to MLflow by evaluate; test_pipeline_e2e checks that, here it
        # only costs time.
        params["tracking"]["log_models"] = False
        if "select" in params:  # dvc.yaml's select stage needs the section: one tiny config
            params["select"] = {"searches": {"tiny": {
                "base": "mlp", "k": 2, "overrides": {"epochs": 1},
                "grid": {"optimizer.lr": [0.1]}}}}
        return params

    proj = make_project(root / "proj", params_edit=edit)
    run(["dvc", "repro"], proj)
    return proj, arrays, root / "idx"


@pytest.mark.slow
def test_repro_on_local_mnist_keeps_the_official_test_set(mnist_repro):
    proj, arrays, _ = mnist_repro
    prep = proj / "data/prepared/images"
    X = {s: np.load(prep / f"X_{s}.npy") for s in ("train", "val", "test")}
    y = {s: np.load(prep / f"y_{s}.npy") for s in ("train", "val", "test")}
    # The official test rows, all of them, in their order.
    np.testing.assert_array_equal(y["test"], arrays["y_test"].astype(np.int64))
    np.testing.assert_array_equal(
        np.rint(X["test"] * 255.0).astype(np.uint8), arrays["X_test"].reshape(N_TEST, 784)
    )
    # Training and validation rows are the official training rows, each once.
    assert len(y["train"]) + len(y["val"]) == N_TRAIN
    assert len(y["val"]) == N_TRAIN // 10
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([y["train"], y["val"]]), minlength=10),
        np.bincount(arrays["y_train"], minlength=10),
    )
    seen = np.rint(np.concatenate([X["train"], X["val"]]) * 255.0).astype(np.uint8)
    expected = arrays["X_train"].reshape(N_TRAIN, 784)
    assert sorted(map(bytes, seen)) == sorted(map(bytes, expected))
    assert np.bincount(y["val"], minlength=10).tolist() == [3] * 10  # stratified
    for s in X:
        assert X[s].dtype == np.float32 and X[s].shape[1] == 784
        assert X[s].min() >= 0.0 and X[s].max() <= 1.0


@pytest.mark.slow
def test_repro_on_local_mnist_manifest_metrics_and_figures(mnist_repro):
    proj, _, idx_dir = mnist_repro
    manifest = json.loads((proj / "data/prepared/images/manifest.json").read_text())
    assert manifest["class_names"] == [str(d) for d in range(10)]
    assert manifest["sizes"] == {"train": 270, "val": 30, "test": N_TEST}
    assert manifest["scale"] == "unit"
    # Two files raw and two gzipped here: each is known by its stem and the sha256 of its
    # IDX bytes (decompressed), so the record does not depend on the compression.
    assert [s["file"] for s in manifest["source"]] == list(FILES.values())
    for s in manifest["source"]:
        path = idx_dir / s["file"]
        blob = path.read_bytes() if path.exists() else gzip.decompress(
            (idx_dir / f"{s['file']}.gz").read_bytes())
        assert s["sha256"] == hashlib.sha256(blob).hexdigest()

    metrics = json.loads((proj / "reports/metrics.json").read_text())
    assert {"softmax", "mlp"} <= set(metrics)
    # The softmax accuracy recomputed from the saved weights; the set is easy, so it learned.
    state = torch.load(proj / "data/models/softmax/model.pt", weights_only=True)
    X = np.load(proj / "data/prepared/images/X_test.npy")
    y = np.load(proj / "data/prepared/images/y_test.npy")
    pred = (X @ state["weight"].numpy().T + state["bias"].numpy()).argmax(1)
    assert metrics["softmax"]["test_accuracy"] == pytest.approx(float((pred == y).mean()), abs=1e-9)
    assert metrics["softmax"]["test_accuracy"] >= 0.5
    # The MLP's too, by a forward pass written here in numpy (Linear, ReLU, Linear) and
    # sklearn's accuracy_score; it must have learned as well (chance is 0.1, the untrained
    # network scores about that; after these 3 epochs it scores about 0.6).
    mlp = torch.load(proj / "data/models/mlp/model.pt", weights_only=True)
    assert sorted(mlp) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert mlp["0.weight"].shape == (32, 784) and mlp["2.weight"].shape == (10, 32)
    hidden = np.maximum(X @ mlp["0.weight"].numpy().T + mlp["0.bias"].numpy(), 0.0)
    pred_mlp = (hidden @ mlp["2.weight"].numpy().T + mlp["2.bias"].numpy()).argmax(1)
    assert metrics["mlp"]["test_accuracy"] == pytest.approx(accuracy_score(y, pred_mlp), abs=1e-9)
    assert metrics["mlp"]["test_accuracy"] >= 0.3

    for fig in ("images_samples.png", "softmax_predictions.png", "mlp_predictions.png"):
        blob = (proj / "reports/figures" / fig).read_bytes()
        assert blob[:8] == PNG_SIGNATURE, fig


@pytest.mark.slow
def test_repro_on_local_mnist_mlflow_records_the_prepared_digest(mnist_repro):
    proj, _, _ = mnist_repro
    prep = proj / "data/prepared/images"
    # Prepared.digest, recomputed from the files: sha256 of the sorted {file: sha256} JSON.
    files = {p.name: sha256_of(p) for p in sorted(prep.glob("*.npy"))}
    assert files == json.loads((prep / "manifest.json").read_text())["sha256"]
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()

    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    runs = [r for r in mlflow.search_runs(experiment_names=["dlbasics"], output_format="list")
            if r.data.tags.get("variant") in ("softmax", "mlp")]
    assert sorted(r.data.tags["variant"] for r in runs) == ["mlp", "softmax"]
    for r in runs:
        assert r.data.tags["dataset_sha256"] == digest
        assert r.data.tags["dataset"] == "images"
        inputs = r.inputs.dataset_inputs
        assert len(inputs) == 1
        assert inputs[0].dataset.name == "images"
        assert inputs[0].dataset.digest == digest[:16]
        assert any(t.key == "mlflow.data.context" and t.value == "training" for t in inputs[0].tags)


# ----------------------------------------------------------------------------- 2. offline download


def _reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def _load_stage(script: str):
    spec = importlib.util.spec_from_file_location(f"stage_{script[:-3]}", REPO / "stages" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def offline_run(tmp_path_factory):
    """The generate stage as a subprocess, asked to download fashion_mnist with no network.
    -> (tmp parent, project dir, returncode, stderr, seconds, listing before)"""
    if _reachable("fashion-mnist.s3-website.eu-central-1.amazonaws.com", 80):
        pytest.skip("the network is up: this test is for the offline case")
    base = base_params()
    parent = tmp_path_factory.mktemp("offline")
    params = only(
        base,
        {"images": {"kind": "fashion_mnist", "source": "download",
                    "path": str(parent / "downloads"), "timeout": 2}},
        {"images": {"val_fraction": 0.1, "scale": "unit"}}, {"softmax": base["train"]["softmax"]})
    proj = parent / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = listing(parent)
    t0 = time.monotonic()
    proc = start_stage("generate.py", ["--params", "params.yaml", "--out", "data/raw"], proj)
    _, stderr = proc.communicate(timeout=120)
    return parent, proj, proc.returncode, stderr, time.monotonic() - t0, before


def test_offline_download_exits_3_fast_with_one_line_and_leaves_nothing(offline_run):
    parent, proj, rc, stderr, seconds, before = offline_run
    assert rc == EXIT_DATA, stderr
    assert seconds < 15  # Python, torch and the 2 s probe; not a network timeout
    line = one_line(stderr)
    assert line.startswith("error: fashion_mnist: cannot be fetched"), line
    for stem in FILES.values():
        assert stem in line
    # The params key the user edits (data.images), not the kind.
    assert "data.images.source: local" in line and "data.images.path" in line
    assert not (proj / "data/raw").exists()
    # No downloads/, no half-fetched or temporary folder.
    assert set(listing(parent)) - set(before) == set()


def test_offline_download_leaves_no_new_directory(offline_run):
    parent, _, rc, _, _, before = offline_run
    assert rc == EXIT_DATA
    assert listing(parent) == before


# ----------------------------------------------------------------------------- 5. a user's CSV


HOUSE_CSV = pd.DataFrame({
    "Id": np.arange(1, 41),
    "LotArea": np.linspace(5000, 15000, 40).round(),
    "Neighborhood": (["NAmes", "OldTown", None, "Edwards"] * 10),
    "SalePrice": np.linspace(100_000, 300_000, 40).round(),
})


def generate_csv(tmp_path: Path, frame: pd.DataFrame, monkeypatch) -> tuple[Path, int]:
    """The generate stage's entry point, in-process, on params naming a CSV the test wrote.
    -> (project dir, exit code)"""
    from dlbasics.cli import run_stage

    frame.to_csv(tmp_path / "train.csv", index=False)
    base = base_params()
    params = only(base, {"house_prices": {"kind": "house_prices", "source": "csv",
                                          "path": str(tmp_path / "train.csv")}},
                  {"house_prices": {"test_fraction": 0.2}},
                  {"house_linear": base["train"]["house_linear"]})
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    monkeypatch.chdir(proj)
    code = run_stage(_load_stage("generate.py").main,
                     ["--params", "params.yaml", "--out", "data/raw"])
    return proj, code


def test_user_csv_is_generated_as_given(tmp_path, monkeypatch, capsys):
    proj, code = generate_csv(tmp_path, HOUSE_CSV, monkeypatch)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "generate: house_prices" in out.out
    raw = proj / "data/raw/house_prices"
    table = pd.read_csv(raw / "table.csv")
    pd.testing.assert_frame_equal(table, HOUSE_CSV, check_dtype=False)
    meta = json.loads((raw / "meta.json").read_text())
    assert meta["sha256"] == {"table.csv": sha256_of(raw / "table.csv")}
    assert meta["n_samples"] == len(HOUSE_CSV) and meta["target_column"] == "SalePrice"


def test_user_csv_without_its_target_column_exits_3_naming_file_and_column(
    tmp_path, monkeypatch, capsys
):
    before = listing(tmp_path)
    proj, code = generate_csv(tmp_path, HOUSE_CSV.drop(columns="SalePrice"), monkeypatch)
    assert code == EXIT_DATA  # missing data, not a bad setting: the file lacks the column
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {tmp_path / 'train.csv'}: ") and "'SalePrice'" in line
    assert "data.house_prices.target_column" in line
    assert not (proj / "data/raw").exists()
    new = set(listing(tmp_path)) - set(before)
    assert new <= {"train.csv", "proj", "proj/params.yaml", "proj/data"}  # data/: the bug above


# ------------------------------------------------------------------------- 3. official test split


def test_split_keeps_the_official_test_rows_and_stratifies_validation():
    labels = np.concatenate([np.arange(100) % 10, np.arange(30) % 10])
    spec = PrepareSpec(val_fraction=0.2, scale="unit")
    parts = split_indices(130, spec, 0, "images", stratify=labels, n_official_test=30)
    np.testing.assert_array_equal(parts["test"], np.arange(100, 130))
    np.testing.assert_array_equal(np.sort(np.concatenate([parts["train"], parts["val"]])),
                                  np.arange(100))
    assert len(parts["val"]) == 20
    assert np.bincount(labels[parts["val"]], minlength=10).tolist() == [2] * 10
    again = split_indices(130, spec, 0, "images", stratify=labels, n_official_test=30)
    other = split_indices(130, spec, 1, "images", stratify=labels, n_official_test=30)
    np.testing.assert_array_equal(again["val"], parts["val"])
    assert not np.array_equal(other["val"], parts["val"])  # the seed decides, nothing else


@pytest.mark.parametrize("test_size", [{"test_fraction": 0.2}, {"n_train": 50, "n_test": 10}])
def test_a_test_size_for_mnist_is_a_config_error(tmp_path, test_size):
    base = base_params()
    params = only(base, {"images": mnist_local(tmp_path)},
                  {"images": {"scale": "unit", **test_size}},
                  {"softmax": base["train"]["softmax"]})
    with pytest.raises(ConfigError) as err:
        parse_params(params)
    msg = str(err.value)
    assert "\n" not in msg and "prepare.images" in msg and "official test set" in msg


# ----------------------------------------------------------------------------- 4. house prices


@pytest.fixture(scope="module")
def house(tmp_path_factory):
    root = tmp_path_factory.mktemp("house")
    base = base_params()
    variant = copy.deepcopy(base["train"]["house_linear"])
    variant["epochs"] = 3
    raw = only(base, {"house_prices": {"kind": "house_prices", "source": "generated",
                                       "n_rows": 300}},
               {"house_prices": {"test_fraction": 0.2}}, {"house_linear": variant})
    params = parse_params(raw)
    generate_all(params, root / "raw")
    prepare_all(params, root / "raw", root / "prepared")
    return params, root


def _rows(X: np.ndarray, y: np.ndarray) -> list[bytes]:
    return [X[i].tobytes() + y[i : i + 1].tobytes() for i in range(len(y))]


def test_house_prices_prepared_targets_and_disjoint_rows(house):
    _, root = house
    frame = pd.read_csv(root / "raw/house_prices/table.csv")
    assert frame.isna().any().any()  # the raw table does have missing values
    prep = root / "prepared/house_prices"
    X_train, X_test = np.load(prep / "X_train.npy"), np.load(prep / "X_test.npy")
    y_train, y_test = np.load(prep / "y_train.npy"), np.load(prep / "y_test.npy")
    assert len(y_train) == 240 and len(y_test) == 60
    assert len(np.load(prep / "y_val.npy")) == 0
    for X in (X_train, X_test):
        assert X.dtype == np.float32 and not np.isnan(X).any()
    # Every generated row once, as log(SalePrice): the multiset of targets is the table's.
    np.testing.assert_allclose(np.sort(np.concatenate([y_train, y_test])),
                               np.sort(np.log(frame["SalePrice"].to_numpy())), rtol=1e-6)
    train_rows, test_rows = _rows(X_train, y_train), _rows(X_test, y_test)
    assert not set(train_rows) & set(test_rows)
    assert len(set(train_rows)) + len(set(test_rows)) == len(frame)


def test_house_prices_features_use_training_statistics_only(house):
    params, root = house
    frame = pd.read_csv(root / "raw/house_prices/table.csv")
    meta = json.loads((root / "raw/house_prices/meta.json").read_text())
    prep = root / "prepared/house_prices"
    X_train, X_test = np.load(prep / "X_train.npy"), np.load(prep / "X_test.npy")
    y_train, y_test = np.load(prep / "y_train.npy"), np.load(prep / "y_test.npy")
    parts = split_indices(len(frame), params.prepare["house_prices"], params.seed,
                          "house_prices", None, stream=meta["identity"])
    # These are the rows prepare used: their targets and sizes say so.
    np.testing.assert_allclose(y_train, np.log(frame["SalePrice"].to_numpy()[parts["train"]]),
                               rtol=1e-6)
    np.testing.assert_allclose(y_test, np.log(frame["SalePrice"].to_numpy()[parts["test"]]),
                               rtol=1e-6)
    own = TabularPreprocessor(id_column="Id", target_column="SalePrice")
    own.fit(frame.iloc[parts["train"]])
    np.testing.assert_allclose(X_test, own.transform(frame.iloc[parts["test"]]), atol=1e-6)
    np.testing.assert_allclose(X_train, own.transform(frame.iloc[parts["train"]]), atol=1e-6)
    manifest = json.loads((prep / "manifest.json").read_text())
    assert manifest["feature_names"] == own.feature_names_
    # The oracle discriminates: statistics of all rows give other test features.
    leaky = TabularPreprocessor(id_column="Id", target_column="SalePrice").fit(frame)
    assert np.abs(leaky.transform(frame.iloc[parts["test"]]) - X_test).max() > 1e-3
    # Standardised on training rows, missing -> 0: each numeric column sums to 0 over train.
    numeric = len(own.numeric_columns_)
    assert numeric == 5
    np.testing.assert_allclose(X_train[:, :numeric].mean(0), 0.0, atol=1e-5)
    assert np.abs(X_test[:, :numeric].mean(0)).max() > 1e-3


def test_house_linear_kfold_summary_is_the_numpy_mean_and_std(house):
    params, root = house
    model, history, data, cv = fit_variant(params, "house_linear", root / "prepared/house_prices")
    assert len(history) == 3
    assert cv["k"] == 5 and cv["metric"] == "rmse"
    assert [f["fold"] for f in cv["folds"]] == [0, 1, 2, 3, 4]
    assert all(f["epochs"] == 3 for f in cv["folds"])
    for part in ("train", "val"):
        vals = np.array([f[f"{part}_rmse"] for f in cv["folds"]])
        assert np.isfinite(vals).all() and (vals > 0).all()
        assert cv[f"{part}_rmse_mean"] == pytest.approx(float(np.mean(vals)), rel=1e-12)
        assert cv[f"{part}_rmse_std"] == pytest.approx(float(np.std(vals, ddof=1)), rel=1e-12)
    assert len(set(f["val_rmse"] for f in cv["folds"])) == 5  # five different folds


class RecordingModel(nn.Module):
    """y = w x[:, 1] + b; column 0 of the input is the row id, recorded in training mode."""

    def __init__(self, generator: torch.Generator):
        super().__init__()
        self.lin = nn.Linear(1, 1)
        with torch.no_grad():
            self.lin.weight.normal_(0.0, 1.0, generator=generator)
            self.lin.bias.normal_(0.0, 1.0, generator=generator)
        self.trained_on: set[int] = set()

    def forward(self, X: torch.Tensor) -> torch.Tensor:  # X [N, 2] -> [N, 1]
        if self.training:
            self.trained_on.update(X[:, 0].long().tolist())
        return self.lin(X[:, 1:])


def test_cross_validate_never_trains_on_its_validation_rows_and_restarts_each_fold():
    n, k, seed = 53, 5, 11
    feature = torch.from_numpy(np.random.default_rng(0).normal(size=(n, 1))).float()
    X = torch.cat([torch.arange(n, dtype=torch.float32)[:, None], feature], dim=1)  # [N, 2]
    y = 3.0 * feature + 1.0  # [N, 1]
    data = Prepared({"name": "ids", "task": "regression"}, {"train": Split(X, y)})
    made: list[RecordingModel] = []
    starts, vals, given = [], [], []

    def make_model() -> nn.Module:
        made.append(RecordingModel(torch.Generator().manual_seed(7)))
        return made[-1]

    def train_fn(model, splits):
        starts.append({k: v.clone() for k, v in model.state_dict().items()})
        vals.append(set(splits["val"].X[:, 0].long().tolist()))
        given.append(set(splits["train"].X[:, 0].long().tolist()))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        history = []
        for epoch in range(2):
            for i in range(0, len(splits["train"].y), 8):
                opt.zero_grad()
                xb, yb = splits["train"].X[i : i + 8], splits["train"].y[i : i + 8]
                loss = ((model(xb) - yb) ** 2).mean()
                loss.backward()
                opt.step()
            history.append({"epoch": epoch + 1})
        return history

    cv = cross_validate(data, k, seed, make_model, train_fn)
    assert len(made) == k and len({id(m) for m in made}) == k  # a fresh model per fold
    for m, val, tr in zip(made, vals, given):
        assert m.trained_on == tr  # trained on every row given, and only those
        assert not m.trained_on & val
        assert tr | val == set(range(n))
    all_val = sorted(i for v in vals for i in v)
    assert all_val == list(range(n))  # each row validated exactly once
    expected = fold_indices(y.numpy(), k, seed, stratify=False)
    assert [set(va.tolist()) for _, va in expected] == vals
    for s in starts[1:]:  # the same initial weights in every fold ...
        for name in s:
            torch.testing.assert_close(s[name], starts[0][name], rtol=0, atol=0)
    # ... although training moved them (a reused model would start elsewhere).
    assert not torch.equal(made[0].lin.weight, starts[0]["lin.weight"])
    assert [f["epochs"] for f in cv["folds"]] == [2] * k


# ----------------------------------------------------------------------------- 6. damaged raw files


def test_truncated_raw_images_are_named_by_prepare(tmp_path):
    write_tiny_mnist(tmp_path / "idx")
    base = base_params()
    params = parse_params(only(base, {"images": mnist_local(tmp_path / "idx")},
                               {"images": {"val_fraction": 0.1, "scale": "unit"}},
                               {"softmax": base["train"]["softmax"]}))
    generate_all(params, tmp_path / "raw")
    target = tmp_path / "raw/images/X.npy"
    blob = target.read_bytes()
    assert np.load(target).shape == (N_TRAIN + N_TEST, 784)
    target.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError) as err:
        prepare_all(params, tmp_path / "raw", tmp_path / "prepared")
    msg = str(err.value)
    assert str(target) in msg and "sha256" in msg and "\n" not in msg
    assert not (tmp_path / "prepared/images").exists()
