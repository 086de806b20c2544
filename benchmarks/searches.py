"""A search of params.yaml as its select stage runs it (gridsearch.run_search, the refit
included): batched against one configuration after another, and local against Ray."""

from __future__ import annotations

import io
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.timing import alternated, quiet, spread, timings
from dlbasics.config.loading import load_params


def _search_data(params, search: str, tmp: Path):
    """The prepared dataset of a search's base variant, generated and prepared under tmp."""
    from dlbasics.data.prepared import load_prepared, prepare_all
    from dlbasics.data.sources import generate_all

    dataset = params.train[params.select.searches[search].base].dataset
    only = params.model_copy(update={"data": {dataset: params.data[dataset]},
                                     "prepare": {dataset: params.prepare[dataset]}})
    generate_all(only, tmp / "raw")
    prepare_all(only, tmp / "raw", tmp / "prep")
    return load_prepared(tmp / "prep" / dataset)


def bench_select(params_path: Path, search: str, repeats: int) -> dict[str, Any]:
    """The named search of params.yaml on its batched path and one configuration after another,
    in turns; the two answers compared (same choice, scores and refitted weights within 1e-6)."""
    from dlbasics.search.gridsearch import run_search

    params = load_params(params_path)
    got: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
        data = _search_data(params, search, Path(tmp))

        def run(mode: str) -> None:
            with quiet():
                got[mode] = run_search(params, search, data, batched=mode, log=lambda line: None)

        times = alternated({"auto": lambda: run("auto"), "never": lambda: run("never")}, repeats)
    (t_b, best_b, _, model_b, _), (t_s, best_s, _, model_s, _) = got["auto"], got["never"]
    weights = max(float((a - b).abs().max()) for a, b in
                  zip(model_b.state_dict().values(), model_s.state_dict().values()))
    scores = max(abs(fb[k] - fs[k]) for rb, rs in zip(t_b, t_s) if not rb["diverged"]
                 for fb, fs in zip(rb["folds"], rs["folds"]) for k in fb if k.startswith("val_"))
    ratios = [s / b for s, b in zip(times["never"], times["auto"])]
    return {"search": search, "configurations": len(t_b),
            "fits": sum(len(r.get("folds") or []) for r in t_b),
            "paths": {p: sum(r["path"] == p for r in t_b) for p in ("batched", "sequential")},
            "batched": spread(times["auto"]), "sequential": spread(times["never"]),
            "speedup": statistics.median(ratios), "speedup_min": min(ratios),
            "speedup_max": max(ratios), "same_choice": best_b["config"] == best_s["config"],
            "max_abs_diff_refit_weights": weights, "max_abs_diff_fold_scores": scores}


def bench_ray(params_path: Path, search: str, repeats: int) -> dict[str, Any]:
    """The named search run by gridsearch.run_search with the local executor (runtime.workers
    processes) and on Ray, in turns: on a private instance started for each run (what a stage
    pays with no address), and on one already running (what it pays on a cluster). The three
    answers compared byte for byte (table and refitted weights)."""
    from dlbasics.search import cluster
    from dlbasics.search.gridsearch import run_search

    params = load_params(params_path)
    on_ray = params.model_copy(update={"runtime": params.runtime.model_copy(
        update={"executor": "ray"})})
    got: dict[str, bytes] = {}
    with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
        data = _search_data(params, search, Path(tmp))

        def run(key: str, p, ray=None) -> None:
            with quiet():
                table, _, _, model, _ = run_search(p, search, data, log=lambda line: None,
                                                   ray=ray)
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            got[key] = json.dumps(table, sort_keys=True).encode() + buf.getvalue()

        times = alternated({"local": lambda: run("local", params),
                            "ray_private": lambda: run("ray_private", on_ray)}, repeats)
        with cluster.connected(on_ray.runtime.ray, on_ray.runtime.threads) as ray:
            run("ray_running", on_ray, ray)  # its workers started: what a warm cluster has
            times["ray_running"] = timings(lambda: run("ray_running", on_ray, ray), repeats)
    ratios = {k: statistics.median(t) / statistics.median(times["local"])
              for k, t in times.items() if k != "local"}
    return {"search": search, "workers": params.runtime.workers,
            **{k: spread(t) for k, t in times.items()},
            "ratio_private": ratios["ray_private"], "ratio_running": ratios["ray_running"],
            "same_bytes": got["local"] == got["ray_private"] == got["ray_running"]}
