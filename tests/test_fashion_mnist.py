"""The real Fashion-MNIST, as Debian installs it (apt-get install dataset-fashion-mnist).

Oracles: the data set's published facts (60000 + 10000 images, 6000 and 1000 per class, the
training pixels' mean 72.94 on 0-255), torchvision's own IDX parser and class names, the
official sha256 of each file's decompressed bytes, and the outputs of the same stages on the
same contents in other folders and other compressions. Skipped with a reason where the data is
absent, except where $DLBASICS_REQUIRE_FASHION_MNIST is 1 (CI), where that fails.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from conftest import (
    REPO,
    digest_tree,
    make_project,
    ran,
    require_fashion_mnist,
    run,
    small_lessons,
    tool_env,
)

from dlbasics.config.loading import parse_params
from dlbasics.data.idx import DATASETS, FILES, load_idx_dataset
from dlbasics.data.prepared import prepare_all
from dlbasics.data.sources import generate_all


@pytest.fixture(scope="module")
def fashion() -> Path:
    return require_fashion_mnist()


@pytest.fixture(scope="module")
def loaded(fashion):
    return load_idx_dataset(fashion, "fashion_mnist")


def test_the_official_files_as_debian_installs_them(loaded):
    assert loaded["X_train"].shape == (60000, 28, 28) and loaded["X_train"].dtype == np.uint8
    assert loaded["X_test"].shape == (10000, 28, 28)
    assert np.bincount(loaded["y_train"], minlength=10).tolist() == [6000] * 10
    assert np.bincount(loaded["y_test"], minlength=10).tolist() == [1000] * 10
    assert round(float(loaded["X_train"].mean()), 2) == 72.94
    # Known by their contents: the official digests, so the identity is the bare kind.
    assert loaded["identity"] == "fashion_mnist"
    assert {s["file"]: s["sha256"] for s in loaded["source"]} == dict(
        DATASETS["fashion_mnist"].sha256)


def test_torchvision_reads_the_same_arrays(fashion, loaded, tmp_path):
    from torchvision.datasets import FashionMNIST
    from torchvision.datasets.mnist import read_image_file, read_label_file

    for key, stem in FILES.items():
        raw = tmp_path / stem
        raw.write_bytes(gzip.decompress((fashion / f"{stem}.gz").read_bytes())
                        if (fashion / f"{stem}.gz").exists() else (fashion / stem).read_bytes())
        theirs = (read_image_file if key.startswith("X") else read_label_file)(str(raw))
        np.testing.assert_array_equal(theirs.numpy(), loaded[key])
    assert loaded["class_names"] == FashionMNIST.classes


def _idx_bytes(fashion: Path, stem: str) -> bytes:
    gz = fashion / f"{stem}.gz"
    return gzip.decompress(gz.read_bytes()) if gz.exists() else (fashion / stem).read_bytes()


def _copies(fashion: Path, root: Path, which=("raw", "recompressed", "moved")) -> dict[str, Path]:
    """The same four files in other folders: raw, re-compressed (gzip -1, a name and a date in
    the header), and Debian's files moved elsewhere; with Debian's own folder."""
    out = {"debian": fashion}
    folders = {"raw": root / "raw", "recompressed": root / "gz", "moved": root / "else" / "fm"}
    for name in which:
        out[name] = folders[name]
        out[name].mkdir(parents=True)
    for stem in FILES.values():
        if "moved" in which:
            for f in (fashion / stem, fashion / f"{stem}.gz"):
                if f.exists():
                    shutil.copy2(f, out["moved"])
        if "raw" in which or "recompressed" in which:
            blob = _idx_bytes(fashion, stem)
        if "raw" in which:
            (out["raw"] / stem).write_bytes(blob)
        if "recompressed" in which:
            with (out["recompressed"] / f"{stem}.gz").open("wb") as f, gzip.GzipFile(
                    filename=stem, mode="wb", compresslevel=1, mtime=1234567890, fileobj=f) as fh:
                fh.write(blob)
    return out


def _image_params(folder: Path) -> dict:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["profile"] = None
    raw["data"] = {"images": {"kind": "fashion_mnist", "source": "local", "path": str(folder)}}
    raw["prepare"] = {"images": {"val_fraction": 0.1, "scale": "unit"}}
    raw["train"] = {"softmax": raw["train"]["softmax"]}
    raw["select"] = None
    raw["lessons"] = {}
    raw["report"] = {}
    return raw


def test_compression_and_folder_change_no_output_byte(fashion, tmp_path):
    """The generate stage on the same contents, raw, re-compressed, Debian's and moved: its DVC
    output (data/raw) is byte-identical, identity included, so every later stage's is too
    (each reads only data/raw and params; the repro test below checks prepare's)."""
    trees = {}
    for name, folder in _copies(fashion, tmp_path / "copies").items():
        params = parse_params(_image_params(folder))
        out = tmp_path / "out" / name
        generate_all(params, out)
        trees[name] = digest_tree(out, relative_to=out)
        shutil.rmtree(out)
    assert sorted(trees["debian"]) == ["images/X.npy", "images/meta.json", "images/y.npy"]
    for name, tree in trees.items():
        assert tree == trees["debian"], name


def test_a_changed_file_is_refused_in_one_line(fashion, tmp_path):
    """One label changed in the official test labels: the generate stage (its dvc.yaml
    command) stops with one line naming the file, the expected digest and what to do, and
    writes nothing."""
    folder = tmp_path / "fm"
    folder.mkdir()
    for stem in FILES.values():
        if stem != FILES["y_test"]:
            (folder / f"{stem}.gz").symlink_to(fashion / f"{stem}.gz")
    labels = folder / FILES["y_test"]
    blob = bytearray(_idx_bytes(fashion, FILES["y_test"]))
    blob[8] = (blob[8] + 1) % 10  # the first label: still a valid class
    labels.write_bytes(bytes(blob))
    work = tmp_path / "work"
    work.mkdir()
    (work / "params.yaml").write_text(yaml.safe_dump(_image_params(folder), sort_keys=False))
    proc = subprocess.run(
        [sys.executable, str(REPO / "stages/generate.py"), "--params", "params.yaml",
         "--out", "data/raw"], cwd=work, env=tool_env(PYTHONPATH=str(REPO / "src")),
        capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    official = DATASETS["fashion_mnist"].sha256[FILES["y_test"]]
    assert lines[0].startswith(f"error: {labels}: decompressed content has sha256 ")
    assert f"expected {official} (the official fashion_mnist t10k-labels-idx1-ubyte)" in lines[0]
    assert "apt-get install dataset-fashion-mnist" in lines[0]
    assert not (work / "data").exists()


# ---------------------------------------------------------------- dvc repro, profile fashion


def _fashion_profile_small(params: dict) -> dict:
    """The repository's params with `profile: fashion` as `make fashion` selects it, on a
    subset the suite can afford: softmax and mlp only (2 seeds each), 6000 training rows
    (the official test set whole), a two-point search on 2 folds, small lessons."""
    params["train"] = {k: params["train"][k] for k in ("softmax", "mlp")}
    params["data"] = {"images": params["data"]["images"]}
    params["prepare"] = {"images": params["prepare"]["images"]}
    params["report"] = {"notes": {}, "book": [
        f for f in params["report"]["book"] if f["variant"] in ("softmax", "mlp")]}
    params["select"] = {"searches": {"tiny": {
        "base": "mlp", "k": 2, "overrides": {"epochs": 2}, "grid": {"optimizer.lr": [0.1]}}}}
    small_lessons(params)
    params["tracking"]["log_models"] = False
    prof = params["profiles"]["fashion"]
    prof["lessons"] = {}
    over = prof["overrides"]
    over["prepare.images"] = {"n_train": 6000, "n_val": 600}
    for name in [k for k in over if k.startswith("train.")]:
        del over[name]
    over["train.softmax.seeds"] = over["train.mlp.seeds"] = [0, 1]
    return params


@pytest.fixture(scope="module")
def fashion_repro(tmp_path_factory, fashion):
    """`make fashion` in a fresh copy of the project (its venv the test's)."""
    proj = make_project(tmp_path_factory.mktemp("fashion") / "proj",
                        params_edit=_fashion_profile_small)
    # -o: the checkout's virtual environment is used as it is, never rebuilt by the test.
    proc = run(["make", "-s", "-o", ".venv/.installed", "fashion"], proj)
    return proj, proc


@pytest.mark.slow
def test_make_fashion_runs_every_stage_on_the_real_data(fashion_repro):
    proj, proc = fashion_repro
    assert ran(proc) >= {"generate", "prepare", "train", "select@tiny", "lessons", "report"}
    params = yaml.safe_load((proj / "params.yaml").read_text())
    assert params["profile"] == "fashion"  # dvc exp run -S wrote it, as for a user
    manifest = json.loads((proj / "data/prepared/images/manifest.json").read_text())
    assert manifest["identity"] == "fashion_mnist" and manifest["kind"] == "fashion_mnist"
    assert manifest["sizes"] == {"train": 6000, "val": 600, "test": 10000}
    assert manifest["scale"] == "unit"
    assert {s["file"]: s["sha256"] for s in manifest["source"]} == dict(
        DATASETS["fashion_mnist"].sha256)
    y_test = np.load(proj / "data/prepared/images/y_test.npy")
    assert np.bincount(y_test, minlength=10).tolist() == [1000] * 10  # the official test set


@pytest.mark.slow
def test_make_fashion_learns_and_reports_the_book_rows(fashion_repro):
    proj, _ = fashion_repro
    metrics = json.loads((proj / "reports/metrics.json").read_text())
    # d2l's own check after its 10 epochs (train_ch3): test accuracy above 0.7.
    for name in ("softmax", "mlp"):
        assert metrics[name]["test_accuracy"] > 0.7, (name, metrics[name])
        assert metrics[name]["seeds_n"] == 2
    report = (proj / "reports/report.md").read_text()
    for fig in ("d2l 3.7 (concise)", "d2l 4.3 (concise)"):
        assert fig in report
    # Its runs in the profile's own experiment, as a user finds them in the UI.
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["dlbasics-fashion"], output_format="list")
    assert {"softmax", "mlp"} <= {r.data.tags.get("variant") for r in runs}


@pytest.mark.slow
def test_the_same_contents_elsewhere_reproduce_the_run(fashion_repro, tmp_path):
    """The stages' outputs of the repro above from Debian's folder equal those of the same
    params on the raw files in another folder (generate + prepare in-process)."""
    proj, _ = fashion_repro
    folder = _copies(require_fashion_mnist(), tmp_path / "copies", which=("raw",))["raw"]
    raw = yaml.safe_load((proj / "params.yaml").read_text())
    raw["profiles"]["fashion"]["overrides"]["data.images"]["path"] = str(folder)
    params = parse_params(raw)
    generate_all(params, tmp_path / "raw")
    prepare_all(params, tmp_path / "raw", tmp_path / "prepared")
    ours = digest_tree(tmp_path / "raw", tmp_path / "prepared", relative_to=tmp_path)
    theirs = digest_tree(proj / "data/raw/images", proj / "data/prepared/images",
                         relative_to=proj / "data")
    assert len(ours) == 10 and ours == theirs
