"""The pipeline on Fashion-MNIST-sized data (60000 + 10000 images of 28 x 28 as local IDX
files): the stages' peak memory, and the whole pipeline under `profile: full_size` on the real
Fashion-MNIST (FASHION_DIR) when it is installed, else on generated images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.shapes import CLASSES, SIDE
from benchmarks.timing import timings
from benchmarks.workspace import DVC, clean_copy, shell, stage_command, tool_env
from dlbasics.data.idx import FILES, OFFICIAL_SIZES, write_idx

# Runs one shell command and prints the peak resident memory of the processes it started (KiB
# on Linux: RUSAGE_CHILDREN's maxrss is the largest of its descendants).
_PEAK_RSS = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1], shell=True).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""
MEMORY_STAGES = ("generate", "prepare", "train")

# Where the real Fashion-MNIST's four official IDX files (.gz) are installed on this machine.
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
REAL, GENERATED = "real Fashion-MNIST", "generated images"


def fashion_entry(folder: Path) -> dict[str, Any]:
    """The params.yaml `data:` entry that reads the official Fashion-MNIST IDX files in
    `folder`, with the default checks (official sizes and checksums)."""
    return {"kind": "fashion_mnist", "source": "local", "path": str(folder)}


def write_fashion_idx(folder: Path, images: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """images [60000 + 10000, 28, 28] uint8 and labels [70000] uint8 written to `folder` as
    Fashion-MNIST's four IDX files (the first 60000 the training split); the params.yaml
    `data:` entry that reads them."""
    n_train = OFFICIAL_SIZES[0]
    for split, rows in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
        write_idx(folder / FILES[f"X_{split}"], images[rows])
        write_idx(folder / FILES[f"y_{split}"], labels[rows])
    return {"kind": "fashion_mnist", "source": "local", "path": str(folder),
            "verify_checksums": False}


def structured_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n Fashion-MNIST-shaped images [n, 28, 28] uint8 and labels [n] with something to learn:
    each class is a template of three Gaussian blobs; a sample is its class's template shifted
    by up to 2 pixels, scaled by 0.6-1.4 and blurred by N(0, 50^2) pixel noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE]
    templates = np.zeros((CLASSES, SIDE, SIDE))
    for c in range(CLASSES):
        for cy, cx, r in zip(rng.uniform(6, 22, 3), rng.uniform(6, 22, 3), rng.uniform(2, 6, 3)):
            templates[c] += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    templates = 255 * templates / templates.max(axis=(1, 2), keepdims=True)
    labels = rng.integers(0, CLASSES, n)
    images = np.empty((n, SIDE, SIDE), dtype=np.uint8)
    for start in range(0, n, 10_000):  # in chunks: float64 copies of 60000 images are 380 MB
        y = labels[start:start + 10_000]
        shift = rng.integers(-2, 3, (len(y), 2))
        x = np.stack([np.roll(templates[c], tuple(s), axis=(0, 1)) for c, s in zip(y, shift)])
        x = x * rng.uniform(0.6, 1.4, (len(y), 1, 1)) + rng.normal(0, 50, x.shape)
        images[start:start + len(y)] = np.clip(x, 0, 255).astype(np.uint8)
    return images, labels.astype(np.uint8)


def _memory_params(repo: Path, images: dict[str, Any], seed: int) -> dict[str, Any]:
    """params.yaml for the memory run: the `images` dataset from local files, the repo's
    `prepare.images` and one epoch of its `mlp` variant."""
    base = yaml.safe_load((repo / "params.yaml").read_text())
    return {
        "seed": seed, "runtime": base.get("runtime", {}),
        "tracking": {"experiment": "bench-memory", "log_models": False},
        "data": {"images": images},
        # The official test set stays the test set: no test size for fashion_mnist.
        "prepare": {"images": {k: v for k, v in base["prepare"]["images"].items()
                               if k not in ("test_fraction", "n_test")}},
        "train": {"mlp": {**base["train"]["mlp"], "epochs": 1}},
    }


def bench_memory(repo: Path, seed: int) -> dict[str, Any]:
    """Peak resident memory (MiB) of each of MEMORY_STAGES (train: one epoch of the `mlp`
    variant) run by its dvc.yaml command in its own process, as under DVC, on 60000 + 10000
    random Fashion-MNIST-shaped images read from local IDX files, in a temporary directory laid
    out as the repo (its src/ and stages/ copied)."""
    rng = np.random.default_rng(seed)
    n = sum(OFFICIAL_SIZES)
    with tempfile.TemporaryDirectory(prefix="dlbasics-mem-") as tmp:
        root = Path(tmp)
        images = write_fashion_idx(root / "idx",
                                   rng.integers(0, 256, (n, SIDE, SIDE), dtype=np.uint8),
                                   rng.integers(0, CLASSES, n, dtype=np.uint8))
        params = _memory_params(repo, images, seed)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for code in ("src", "stages"):
            shutil.copytree(repo / code, root / code,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        env = {**tool_env(), "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        out: dict[str, Any] = {}
        for stage in MEMORY_STAGES:
            proc = subprocess.run([sys.executable, "-c", _PEAK_RSS, stage_command(repo, stage)],
                                  cwd=root, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"bench memory: {stage} failed:\n{proc.stderr[-2000:]}")
            out[f"{stage}_peak_mib"] = int(proc.stdout.split()[-1]) / 1024
    out["peak_mib"] = max(out.values())
    out["n_train"], out["n_test"] = OFFICIAL_SIZES
    return out


def full_size_images(root: Path, seed: int, fashion_dir: Path = FASHION_DIR
                     ) -> tuple[dict[str, Any], str]:
    """The `data.images` entry of the full-size run and which images it reads (REAL or
    GENERATED): the Fashion-MNIST in fashion_dir when that folder exists, else 60000 + 10000
    structured_images written under root/idx."""
    if fashion_dir.is_dir():
        return fashion_entry(fashion_dir), REAL
    print(f"no Fashion-MNIST at {fashion_dir}: full size on {GENERATED}", flush=True)
    # One draw for both splits: the test images come from the same class templates.
    return write_fashion_idx(root / "idx", *structured_images(sum(OFFICIAL_SIZES), seed)), \
        GENERATED


def _full_size_copy(repo: Path, root: Path, sh, seed: int, fashion_dir: Path = FASHION_DIR
                    ) -> tuple[Path, dict[str, Any], str]:
    """A clean copy of the repo under root/proj whose params.yaml selects `profile: full_size`
    and reads its `images` from full_size_images; the copy, its params and which images."""
    images, which = full_size_images(root, seed, fashion_dir)
    dest = root / "proj"
    clean_copy(repo, dest, sh)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["profile"] = "full_size"
    params["data"]["images"] = images
    params["prepare"]["images"].pop("test_fraction", None)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest, params, which


def bench_full_size(repo: Path, timeout_s: float, seed: int,
                    fashion_dir: Path = FASHION_DIR) -> dict[str, Any]:
    """The whole pipeline under `profile: full_size` (see _full_size_copy) in a clean temporary
    copy: which images, seconds per stage (each `dvc repro --single-item STAGE` in DAG order)
    and the image variants' test accuracy."""
    sh = shell(tool_env(), timeout_s)
    with tempfile.TemporaryDirectory(prefix="dlbasics-full-") as tmp:
        dest, params, which = _full_size_copy(repo, Path(tmp), sh, seed, fashion_dir)
        searches = [f"select@{s}" for s in (params.get("select") or {}).get("searches", {})]
        seconds: dict[str, float] = {}
        for stage in ["generate", "prepare", "train", *searches, "lessons", "report"]:
            try:
                seconds[stage] = timings(lambda: sh(DVC, "repro", "--single-item", stage,
                                                    cwd=dest), 1)[0]
            except subprocess.TimeoutExpired:
                seconds[stage] = timeout_s
                return {"images": which, "stages_s": seconds,
                        "total_s": sum(seconds.values()), "timed_out": stage}
        metrics = json.loads((dest / "reports" / "metrics.json").read_text())
    image = [n for n, v in params["train"].items() if v["dataset"] == "images"] + searches
    return {"images": which, "stages_s": seconds, "total_s": sum(seconds.values()),
            "timed_out": None,
            "test_accuracy": {n: metrics.get(n, {}).get("test_accuracy") for n in image}}
