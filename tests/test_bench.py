"""`make bench` still runs end to end: its pieces drive the real stages and library, so a change
elsewhere can break it. Nothing here is timed: the figures it prints are its own business."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

from benchmarks.grid import bench_grid, grid_configs
from dlbasics.config import ModelSpec


def test_the_grid_bench_trains_both_ways_to_the_same_weights():
    configs = grid_configs()[:3]
    r = bench_grid(ModelSpec(kind="mlp", hidden=[8]), 96, 12, 16, 2, seed=0, configs=configs,
                   repeats=2)
    assert r["fits"] == 3 * 3 and r["fits_within_1e-6"] == r["fits"]
    assert r["max_abs_diff"] <= 1e-6
    assert r["sequential_s"] > 0 and r["batched_s"] > 0


def test_the_size_rule_sweep_spans_the_threshold_and_reports_the_rule():
    from benchmarks.grid import SIZE_RULE_MODELS, bench_size_rule
    from dlbasics.batched import BATCHED_MAX_WEIGHTS

    rows = bench_size_rule(seed=0, steps=1)
    assert [r["model"] for r in rows] == ["linear 784-10", "mlp 64-256-10", "mlp 784-32-10",
                                          "mlp 784-64-10", "mlp 784-128-10", "mlp 784-256-10"]
    assert len(rows) == len(SIZE_RULE_MODELS)
    assert [r["weights"] for r in rows] == [7850, 19210, 25450, 50890, 101770, 203530]
    for r in rows:
        assert r["rule_says_batched"] == (r["weights"] <= BATCHED_MAX_WEIGHTS)
        assert r["fits"] == 48 and r["speedup"] > 0
    assert {r["rule_says_batched"] for r in rows} == {True, False}


def test_the_memory_bench_times_the_commands_dvc_runs():
    """The stages' commands come from dvc.yaml, as DVC itself reads them."""
    from dvc.repo import Repo

    from benchmarks.fashion import MEMORY_STAGES
    from benchmarks.workspace import stage_command

    with Repo(str(REPO)) as repo:
        for name in MEMORY_STAGES:
            (stage,) = repo.stage.collect(name)
            assert stage_command(REPO, name) == stage.cmd


@pytest.mark.slow
def test_the_memory_bench_runs_the_stages_on_fashion_mnist_sized_files(tmp_path):
    """generate, prepare and train by their dvc.yaml commands, on 60000 + 10000 images written
    as local IDX files."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench", "--only-memory", "--out", str(out),
         "--params", str(REPO / "params.yaml")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    memory = json.loads(out.read_text())["memory"]
    assert (memory["n_train"], memory["n_test"]) == (60000, 10000)
    for stage in ("generate", "prepare", "train"):
        assert memory[f"{stage}_peak_mib"] > 0


def _tiny_search_params(tmp_path: Path) -> Path:
    import yaml

    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw["select"] = {"searches": {"tiny": {
        "base": "mlp", "k": 2, "patience": 1, "overrides": {"epochs": 3, "batch_size": 128},
        "grid": {"model.hidden": [[8]], "optimizer.lr": [0.1, 0.2]}}}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_the_select_bench_runs_both_paths_to_the_same_answer(tmp_path):
    from benchmarks.searches import bench_select

    r = bench_select(_tiny_search_params(tmp_path), "tiny", repeats=1)
    assert r["configurations"] == 2 and r["fits"] == 4
    assert r["paths"] == {"batched": 2, "sequential": 0}
    assert r["same_choice"] and r["max_abs_diff_refit_weights"] <= 1e-6
    assert r["max_abs_diff_fold_scores"] <= 1e-6
    assert r["batched"]["runs"] == r["sequential"]["runs"] == 1


def test_the_readme_block_is_rewritten_in_place_with_the_run_s_figures(tmp_path):
    from benchmarks.report import README_BEGIN, README_END, write_readme

    results = {
        "machine": {"date_utc": "2026-12-02 01:00", "cpus": 2, "processor": "x86_64",
                    "torch": "2.14.1", "threads": 1, "load_avg_1min_at_start": 1.25,
                    "load_avg_1min_at_end": 2.5},
        "select": {"search": "tuned", "configurations": 24, "fits": 72,
                   "paths": {"batched": 24, "sequential": 0},
                   "batched": {"median_s": 10.0, "min_s": 9.0, "max_s": 11.0, "runs": 3},
                   "sequential": {"median_s": 50.0, "min_s": 45.0, "max_s": 60.0, "runs": 3},
                   "speedup": 5.0, "speedup_min": 4.5, "speedup_max": 5.5, "same_choice": True,
                   "max_abs_diff_refit_weights": 0.0, "max_abs_diff_fold_scores": 0.0},
    }
    readme = tmp_path / "README.md"
    readme.write_text(f"# title\n\nbefore\n\n{README_BEGIN}\nold table\n{README_END}\n\nafter\n")
    write_readme(readme, results)
    text = readme.read_text()
    assert "old table" not in text and text.startswith("# title\n\nbefore\n\n")
    assert text.endswith(f"{README_END}\n\nafter\n")
    assert "Measured 2026-12-02 01:00 UTC" in text and "at start 1.2" in text
    assert "| select@tuned (24 configurations, 72 fits): batched path | 10 s | 9-11 s, 3 runs |" \
        in text
    assert "| speed-up | 5x | 4.50-5.50x; same choice: yes" in text
    write_readme(readme, results)
    assert readme.read_text() == text  # idempotent


def test_the_full_size_images_have_classes_to_learn():
    """bench --full-size trains on these: each class must be learnable, not noise (a nearest
    class-mean rule fitted on half of them classifies the other half well), and the same seed
    gives the same bytes."""
    import numpy as np

    from benchmarks.fashion import structured_images

    images, labels = structured_images(2000, seed=3)
    assert images.shape == (2000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == set(range(10))
    again, _ = structured_images(2000, seed=3)
    assert np.array_equal(images, again)
    X = images.reshape(2000, -1).astype(np.float64)
    means = np.stack([X[:1000][labels[:1000] == c].mean(0) for c in range(10)])
    pred = ((X[1000:, None, :] - means[None]) ** 2).sum(-1).argmin(1)
    accuracy = (pred == labels[1000:]).mean()
    assert 0.5 < accuracy < 1.0  # learnable, yet not every image is its template
