"""`make bench` still runs end to end: its pieces drive the real stages and library, so a change
elsewhere can break it. Nothing here is timed: the figures it prints are its own business."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

from conftest import require_fashion_mnist

from benchmarks.grid import bench_grid, grid_configs
from dlbasics.config.variants import ModelSpec


def test_the_grid_bench_trains_both_ways_to_the_same_weights():
    configs = grid_configs()[:3]
    r = bench_grid(ModelSpec(kind="mlp", hidden=[8]), 96, 12, 16, 2, seed=0, configs=configs,
                   repeats=2)
    assert r["fits"] == 3 * 3 and r["fits_within_1e-6"] == r["fits"]
    assert r["max_abs_diff"] <= 1e-6
    assert r["sequential_s"] > 0 and r["batched_s"] > 0


def test_the_size_rule_sweep_spans_the_threshold_and_reports_the_rule():
    from benchmarks.grid import SIZE_RULE_MODELS, bench_size_rule
    from dlbasics.learn.batched import BATCHED_MAX_WEIGHTS

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


def _peer_models(peer_s: list[float], project_s: list[float], peer_acc: float,
                 project_acc: float) -> dict:
    return {"peer": {"side": "peer", "what": "a peer", "accuracy": peer_acc,
                     "times_s": peer_s},
            "ours": {"side": "project", "what": "a variant", "accuracy": project_acc,
                     "times_s": project_s}}


def test_the_peer_comparison_takes_ratios_in_turns_and_needs_both_sides_of_the_goal():
    from benchmarks.peers import compare, goals

    # Turn by turn: 5/10 and 30/20; the median of two ratios is their mean.
    (c,) = compare(_peer_models([10.0, 20.0], [5.0, 30.0], 0.88, 0.885))
    assert (c["peer"], c["project"]) == ("peer", "ours")
    assert c["time_ratio"] == pytest.approx(1.0) and c["time_ratio_min"] == 0.5
    assert c["accuracy_diff"] == pytest.approx(0.005) and c["meets"]
    assert goals([c]) == {"peer": ["ours"]}
    slower = compare(_peer_models([10.0], [10.5], 0.88, 0.9))
    worse = compare(_peer_models([10.0], [5.0], 0.88, 0.879))
    assert not slower[0]["meets"] and not worse[0]["meets"]
    assert goals(slower) == {"peer": []}


def test_the_peer_rows_say_the_data_the_ratios_and_whether_each_goal_is_met():
    from benchmarks.peers import compare, goals
    from benchmarks.report import rows

    models = _peer_models([10.0], [8.0], 0.88, 0.89)
    comparisons = compare(models)
    for m in models.values():
        m.update({"median_s": m["times_s"][0], "min_s": m["times_s"][0],
                  "max_s": m["times_s"][0], "runs": 1})
    peers = {"data": "real Fashion-MNIST", "n_train": 54000, "n_test": 10000, "threads": 1,
             "repeats": 1, "load_avg_1min": {"start": 1.25, "end": 2.5}, "models": models,
             "comparisons": comparisons, "goals": goals(comparisons)}
    got = {name.strip(): (value, rng, goal) for name, value, rng, goal in rows({"peers": peers})}
    where = "peers (real Fashion-MNIST, 54000 train / 10000 test rows, 1 thread)"
    assert got[f"{where}: a peer: test accuracy"][0] == "0.88"
    assert got["a variant: fit"] == ("8 s", "8-8 s, 1 runs", "")
    assert got["ours / peer: time"] == ("0.8x", "0.80-0.80x, 1 pair", "<= 1x: met")
    assert got["ours - peer: test accuracy"] == ("0.01", "", ">= 0: met")
    assert got["goal vs peer: a project model as accurate in no more time"][:2] == (
        "met", "ours; load average 1.2 at start, 2.5 at end")
    assert rows({"peers": {"skipped": "no Fashion-MNIST at /nowhere"}}) == []


def test_the_peers_bench_skips_with_its_reason_without_the_data(tmp_path, capsys):
    from benchmarks.peers import bench_peers

    r = bench_peers(REPO / "params.yaml", fashion_dir=tmp_path / "absent")
    assert r == {"skipped": f"no Fashion-MNIST at {tmp_path / 'absent'}: peers not measured"}
    assert capsys.readouterr().out.strip() == r["skipped"]


def test_the_peers_params_are_the_project_s_split_and_valid():
    """Validation out of the 60000 training images, the official test set kept, pixels in
    [0, 1], d2l's batch and epochs, and the default checksum checks."""
    from benchmarks.fashion import FASHION_DIR
    from benchmarks.peers import PROJECT, peers_params
    from dlbasics.config.loading import parse_params

    raw = peers_params(REPO / "params.yaml", FASHION_DIR)
    assert raw["data"]["images"] == {"kind": "fashion_mnist", "source": "local",
                                     "path": str(FASHION_DIR)}
    params = parse_params(raw, "peers")
    prep = params.prepare["images"]
    assert (prep.val_fraction, prep.test_fraction, prep.scale) == (0.1, None, "unit")
    assert set(params.train) == set(PROJECT)
    assert (params.train["mlp_adam"].batch_size, params.train["mlp_adam"].epochs) == (256, 10)
    assert params.train["mlp_adam_h128"].epochs == 11
    assert params.train["mlp_adam_h128"].optimizer.lr == 0.003
    assert params.train["mlp_adam_h128"].model.hidden == [128]


def test_the_peers_bench_trains_every_model_on_the_project_s_rows_of_fashion_mnist():
    """A small run on the first 600 of the 54000 training rows: every peer and variant fits
    at one thread and is scored on the official 10000 test images."""
    import torch

    from benchmarks.peers import PEERS, PROJECT, bench_peers

    folder = require_fashion_mnist()
    threads = torch.get_num_threads()
    r = bench_peers(REPO / "params.yaml", rows=600, fashion_dir=folder)
    assert torch.get_num_threads() == threads  # one thread only inside the bench
    assert (r["data"], r["n_train"], r["n_test"], r["threads"]) == (
        "real Fashion-MNIST", 600, 10000, 1)
    assert list(r["models"]) == [*PEERS, *PROJECT]
    for m in r["models"].values():
        assert 0.5 < m["accuracy"] < 0.95 and m["runs"] == 1 and m["median_s"] > 0
    assert len(r["comparisons"]) == len(PEERS) * len(PROJECT)
    assert set(r["goals"]) == set(PEERS)


def test_the_full_size_bench_reads_real_fashion_mnist_when_present(tmp_path):
    """The copy's params select profile full_size on the installed files (default checks)
    and validate; without the folder, generated images, said as much."""
    import yaml

    from benchmarks.fashion import GENERATED, REAL, _full_size_copy, full_size_images
    from benchmarks.workspace import shell, tool_env
    from dlbasics.config.loading import load_params

    folder = require_fashion_mnist()
    dest, raw, which = _full_size_copy(REPO, tmp_path, shell(tool_env(), 120), 0, folder)
    assert which == REAL and raw["data"]["images"] == {
        "kind": "fashion_mnist", "source": "local", "path": str(folder)}
    params = load_params(dest / "params.yaml")
    assert params.profile == "full_size" and params.prepare["images"].scale == "unit"
    assert yaml.safe_load((dest / "params.yaml").read_text())["data"]["images"] == \
        raw["data"]["images"]
    images, which = full_size_images(tmp_path / "gen", 0, tmp_path / "absent")
    assert which == GENERATED and images["path"] == str(tmp_path / "gen" / "idx")


def test_the_layout_micro_bench_runs_as_docs_speed_shows_it():
    """`python -m benchmarks.batched_layout` from the checkout (docs/speed.md): a line per product
    of both layouts, each with a positive GFLOP/s."""
    from conftest import REPO, run

    out = run(["python", "-m", "benchmarks.batched_layout"], REPO).stdout
    rows = [ln for ln in out.splitlines() if ln.rstrip().endswith("GFLOP/s")]
    assert any("row-major" in ln for ln in rows) and any("feature-major" in ln for ln in rows)
    assert all(float(ln.split()[-2]) > 0 for ln in rows), rows


def test_the_imports_bench_times_each_import_in_a_fresh_interpreter():
    """Each row is a fresh interpreter's own import (torch._dynamo after torch: built by the first
    optimizer); the rows name them all."""
    import sys

    from benchmarks.imports import IMPORTS, bench_imports
    from benchmarks.report import rows

    got = bench_imports(repeats=1)
    assert list(got) == [what for what, _, _ in IMPORTS]
    assert all(t["runs"] == 1 and 0 < t["min_s"] == t["median_s"] for t in got.values())
    # In this process torch is imported already: a fresh interpreter is what is timed.
    assert "torch" in sys.modules and got["torch"]["median_s"] > 0.05
    names = [name for name, *_ in rows({"imports": got})]
    assert names == [f"import in a fresh interpreter: {what}" for what, _, _ in IMPORTS]
