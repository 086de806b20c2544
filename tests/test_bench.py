"""`make bench` still runs end to end: its pieces drive the real stages and library, so a change
elsewhere can break it. Nothing here is timed: the figures it prints are its own business."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dlbasics.bench import bench_grid, grid_configs
from dlbasics.config import ModelSpec

REPO = Path(__file__).resolve().parents[1]


def test_the_grid_bench_trains_both_ways_to_the_same_weights():
    configs = grid_configs()[:3]
    r = bench_grid(ModelSpec(kind="mlp", hidden=[8]), 96, 12, 16, 2, seed=0, configs=configs,
                   repeats=2)
    assert r["fits"] == 3 * 3 and r["fits_within_1e-6"] == r["fits"]
    assert r["max_abs_diff"] <= 1e-6
    assert r["sequential_s"] > 0 and r["batched_s"] > 0


@pytest.mark.slow
def test_the_memory_bench_runs_the_stages_on_fashion_mnist_sized_files(tmp_path):
    """generate, prepare and train as the stage scripts take their arguments, on 60000 + 10000
    images written as local IDX files."""
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "dlbasics.bench", "--only-memory", "--out", str(out),
         "--params", str(REPO / "params.yaml")],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    memory = json.loads(out.read_text())["memory"]
    assert (memory["n_train"], memory["n_test"]) == (60000, 10000)
    for stage in ("generate", "prepare", "train"):
        assert memory[f"{stage}_peak_mib"] > 0
