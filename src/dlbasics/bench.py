"""Speed figures measured side by side in one process and one sitting (`make bench`).

On random data of Fashion-MNIST shape (60000 x 784, batch 256):
  - one epoch of MLP 784-256-10 with the project's loop (training.fit) against the sources'
    data path (torchvision's FashionMNIST with ToTensor, a DataLoader with 4 workers) and a
    plain TensorDataset DataLoader;
  - the project's epoch as a fraction of the float32 matmul throughput, the two timed in turns;
  - the 48-fit grid (16 configurations x 3 folds) batched (dlbasics.batched) against
    sequential, for softmax regression and for a digits-size MLP;
  - the size rule's evidence: batched / sequential for a few architectures, a few steps each;
  - a named search of params.yaml (`tuned`) as the select stage runs it, batched path against
    one configuration after another, with the two answers compared;
  - the default `dvc repro` from clean (repeated, a fresh copy each) and a no-op `dvc repro`,
    in a temporary copy, then the edit loop: `dvc exp run -S` of one hyper-parameter of
    `mlp_adam` and of `linreg`, 3 each.

Every timing is repeated: the median, the lowest and the highest run, and the load average.
Prints a table, writes the same numbers as JSON and, with --readme, the README's table.
Figures, not tests: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dlbasics.batched import batched_is_faster, fit_batched
from dlbasics.config import ModelSpec, OptimizerSpec, load_params
from dlbasics.data import Split
from dlbasics.models import build_model
from dlbasics.training import build_loss, build_optimizer, fit

N, SIDE, CLASSES, BATCH = 60_000, 28, 10, 256
FEATURES = SIDE * SIDE
DIGITS_N, DIGITS_F = 1797, 64  # scikit-learn's digits: 1797 images of 8 x 8
GOALS = {"vs_sources": 6.0, "of_matmul": 0.75, "grid_batched": 5.0, "select_speedup": 4.0,
         "repro_clean_s": 90.0,
         "repro_noop_s": 2.0, "peak_mib": 2048.0, "edit_loop_s": 15.0}

# Runs one stage script and prints the peak resident memory of its process (KiB on Linux).
_PEAK_RSS = """
import resource, subprocess, sys
rc = subprocess.run(sys.argv[1:]).returncode
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
sys.exit(rc)
"""


def timings(fn: Callable[[], Any], repeats: int) -> list[float]:
    """Wall time of each of `repeats` calls of fn, in seconds."""
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best_of(fn: Callable[[], Any], repeats: int) -> float:
    """Fastest wall time of `repeats` calls of fn, in seconds."""
    return min(timings(fn, repeats))


def spread(times: list[float]) -> dict[str, Any]:
    """Median, min and max of repeated timings (seconds), and how many."""
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times),
            "runs": len(times)}


def alternated(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, list[float]]:
    """Each fn timed `repeats` times, in turns (A, B, A, B ...): a burst of other work on a
    shared machine hits one timing of each side, not every timing of one side."""
    out: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            out[k] += timings(fn, 1)
    return out


@contextlib.contextmanager
def quiet():
    """Silence training.fit's per-epoch lines (and its progress bar: stderr is not a tty)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


# ----------------------------------------------------------------------------- epoch paths

def sources_dataset(images: np.ndarray, labels: np.ndarray, root: Path):
    """The sources' data path, exactly: torchvision's FashionMNIST class with ToTensor, read
    from IDX files written under `root` (the layout its download leaves). Each item goes
    uint8 tensor -> PIL image -> ToTensor, one at a time, as the book's loader does."""
    from torchvision import datasets, transforms

    from dlbasics.idx import write_idx

    raw = root / "FashionMNIST" / "raw"
    write_idx(raw / "train-images-idx3-ubyte", images)
    write_idx(raw / "train-labels-idx1-ubyte", labels.astype(np.uint8))
    write_idx(raw / "t10k-images-idx3-ubyte", images[:10])  # present, as the class requires
    write_idx(raw / "t10k-labels-idx1-ubyte", labels[:10].astype(np.uint8))
    return datasets.FashionMNIST(str(root), train=True, transform=transforms.ToTensor(),
                                 download=False)


def loader_epoch(model: nn.Module, loader, opt, loss_fn) -> None:
    """The sources' training loop over a DataLoader: one epoch."""
    model.train()
    for xb, yb in loader:
        loss = loss_fn(model(xb.reshape(xb.shape[0], -1)), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()


def bench_epochs(seed: int, repeats: int, threads: int) -> dict[str, Any]:
    """The epoch paths (and the matmul limit) with `threads` torch threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return {**_bench_epochs(seed, repeats), "threads": threads}
    finally:
        torch.set_num_threads(before)


def _bench_epochs(seed: int, repeats: int) -> dict[str, Any]:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (N, SIDE, SIDE), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, CLASSES, (N,), generator=g)
    X = images.reshape(N, FEATURES).float() / 255  # what `prepare` would store
    spec = ModelSpec(kind="mlp", hidden=[256], activation="relu")
    opt_spec = OptimizerSpec(lr=0.1)
    loss_fn = build_loss("cross_entropy")

    def fresh():
        model = build_model(spec, FEATURES, CLASSES, torch.Generator().manual_seed(seed))
        return model, build_optimizer(opt_spec, model)

    def project():
        model, opt = fresh()
        with quiet():
            fit(model, loss_fn, opt, Split(X, labels), None, epochs=1, batch_size=BATCH,
                generator=torch.Generator().manual_seed(seed), task="classification")

    def sources():
        model, opt = fresh()
        with warnings.catch_warnings():  # "4 workers > 2 cores": the sources' setting, kept
            warnings.simplefilter("ignore", UserWarning)
            loader = torch.utils.data.DataLoader(
                data, batch_size=BATCH, shuffle=True, num_workers=4,
                generator=torch.Generator().manual_seed(seed))
            loader_epoch(model, loader, opt, loss_fn)

    def tensor_dataset():
        model, opt = fresh()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.TensorDataset(X, labels), batch_size=BATCH, shuffle=True,
            generator=torch.Generator().manual_seed(seed))
        loader_epoch(model, loader, opt, loss_fn)

    tmp = tempfile.TemporaryDirectory(prefix="dlbasics-bench-")
    data = sources_dataset(images.numpy(), labels.numpy(), Path(tmp.name))
    project()  # warm-up (allocator, kernels)
    # The epoch and the matmul limit in turns, so that both see the same load.
    g2 = torch.Generator().manual_seed(1)
    a, b = torch.randn(2048, 2048, generator=g2), torch.randn(2048, 2048, generator=g2)
    a @ b  # warm-up

    def matmul():
        for _ in range(3):
            a @ b

    both = alternated({"project": project, "matmul": matmul}, repeats)
    flops = 3 * 2 * (FEATURES * 256 + 256 * CLASSES) * N
    out: dict[str, Any] = {"project": spread(both["project"]), "matmul": spread(both["matmul"])}
    out["project_epoch_s"] = out["project"]["median_s"]
    out["sources_epoch_s"] = best_of(sources, 1)  # slow paths: one epoch each
    tmp.cleanup()
    out["tensordataset_epoch_s"] = best_of(tensor_dataset, 1)
    out["epoch_gflop"] = flops / 1e9
    out["project_gflops"] = flops / out["project_epoch_s"] / 1e9
    mm = [3 * 2 * 2048**3 / t / 1e9 for t in both["matmul"]]
    out["matmul_gflops"] = statistics.median(mm)
    out["vs_sources"] = out["sources_epoch_s"] / out["project_epoch_s"]
    out["vs_tensordataset"] = out["tensordataset_epoch_s"] / out["project_epoch_s"]
    # Per pair of neighbouring timings: the fraction of the matmul limit, then its spread.
    ratios = [flops / tp / 1e9 / m for tp, m in zip(both["project"], mm)]
    out["of_matmul"] = statistics.median(ratios)
    out["of_matmul_min"], out["of_matmul_max"] = min(ratios), max(ratios)
    return out


# ----------------------------------------------------------------------------- the 48-fit grid

def grid_configs() -> list[OptimizerSpec]:
    """16 configurations: lr x weight decay x momentum.

    The learning rates stay below SGD's stability limit for 784 unstandardised [0, 1) inputs
    (softmax curvature up to ~100): past it a fit is chaotic, float32 rounding grows to O(1)
    within an epoch (float32 against float64 training.fit differ as much), and the batched and
    sequential weights can no longer be compared."""
    return [OptimizerSpec(lr=lr, weight_decay=wd, momentum=m)
            for lr in (0.001, 0.003, 0.01, 0.02) for wd in (0.0, 1e-4) for m in (0.0, 0.9)]


def bench_grid(spec: ModelSpec, n: int, n_in: int, batch: int, epochs: int, seed: int,
               folds: int = 3, configs: list[OptimizerSpec] | None = None,
               repeats: int = 1) -> dict[str, Any]:
    """The grid (configurations x folds) trained fit by fit with training.fit, then batched per
    fold with fit_batched; the same initial weights and batch order. Seconds and max |diff|."""
    configs = configs or grid_configs()
    g = torch.Generator().manual_seed(seed)
    X = torch.rand(n, n_in, generator=g)  # pixel-like intensities in [0, 1)
    y = torch.randint(0, CLASSES, (n,), generator=g)
    fold_of = torch.arange(n) % folds
    train_rows = [torch.nonzero(fold_of != k).squeeze(1) for k in range(folds)]
    loss_fn = build_loss("cross_entropy")
    inits = [build_model(spec, n_in, CLASSES, torch.Generator().manual_seed(seed + c)).state_dict()
             for c in range(len(configs))]
    sequential: list[dict[str, torch.Tensor]] = []
    batched: list[dict[str, torch.Tensor]] = []

    def run_sequential():
        sequential.clear()
        for k, rows in enumerate(train_rows):
            for c, opt_spec in enumerate(configs):
                model = build_model(spec, n_in, CLASSES, torch.Generator())
                model.load_state_dict(inits[c])
                with quiet():
                    fit(model, loss_fn, build_optimizer(opt_spec, model), Split(X[rows], y[rows]),
                        None, epochs=epochs, batch_size=batch,
                        generator=torch.Generator().manual_seed(seed + 100 + k),
                        task="classification")
                sequential.append(model.state_dict())

    def run_batched():
        batched.clear()
        for k, rows in enumerate(train_rows):
            fits = fit_batched(spec, n_in, CLASSES, configs, inits, X[rows], y[rows],
                               loss="cross_entropy", epochs=epochs, batch_size=batch,
                               generator=torch.Generator().manual_seed(seed + 100 + k))
            batched.extend(f.state_dict for f in fits)

    both = alternated({"sequential": run_sequential, "batched": run_batched}, repeats)
    seq_s = statistics.median(both["sequential"])
    bat_s = statistics.median(both["batched"])
    ratios = [a / b for a, b in zip(both["sequential"], both["batched"])]
    # Per fit: max |batched - sequential| over its weights, and relative to its largest weight.
    diffs = [max(float((a[k] - b[k]).abs().max()) for k in a) for a, b in zip(sequential, batched)]
    scale = [max(float(a[k].abs().max()) for k in a) for a in sequential]
    return {"fits": len(configs) * folds, "rows": n, "batch_size": batch, "epochs": epochs,
            "sequential_s": seq_s, "batched_s": bat_s, "speedup": statistics.median(ratios),
            "speedup_min": min(ratios), "speedup_max": max(ratios), "repeats": repeats,
            "max_abs_diff": max(diffs),
            "max_rel_diff": max(d / s for d, s in zip(diffs, scale)),
            "fits_within_1e-6": sum(d <= 1e-6 for d in diffs),
            "rule_says_batched": batched_is_faster(spec, n_in, CLASSES, len(configs))}


def bench_size_rule(seed: int, steps: int) -> list[dict[str, Any]]:
    """Batched against sequential for architectures of growing size, `steps` batches of 256
    per fit, 16 configurations x 3 folds: where batching stops paying."""
    rows = []
    for label, spec, n_in in [
        ("linear 784-10", ModelSpec(kind="linear"), FEATURES),
        ("mlp 64-256-10", ModelSpec(kind="mlp", hidden=[256]), DIGITS_F),
        ("mlp 784-64-10", ModelSpec(kind="mlp", hidden=[64]), FEATURES),
        ("mlp 784-256-10", ModelSpec(kind="mlp", hidden=[256]), FEATURES),
    ]:
        # 3 folds of steps * 256 training rows each.
        r = bench_grid(spec, steps * BATCH * 3 // 2, n_in, BATCH, 1, seed)
        widths = [n_in, *spec.hidden, CLASSES]
        r.update(model=label, weights=sum(a * b + b for a, b in zip(widths, widths[1:])))
        rows.append(r)
    return rows


# ----------------------------------------------------------------------------- the select stage

def _search_data(params, search: str, tmp: Path):
    """The prepared dataset of a search's base variant, generated and prepared under tmp."""
    from dlbasics.data import generate_all, load_prepared, prepare_all

    dataset = params.train[params.select.searches[search].base].dataset
    only = params.model_copy(update={"data": {dataset: params.data[dataset]},
                                     "prepare": {dataset: params.prepare[dataset]}})
    generate_all(only, tmp / "raw")
    prepare_all(only, tmp / "raw", tmp / "prep")
    return load_prepared(tmp / "prep" / dataset)


def bench_select(params_path: Path, search: str, repeats: int) -> dict[str, Any]:
    """The named search of params.yaml as the select stage runs it (selection.run_search, the
    refit included), on its batched path and one configuration after another, in turns; the
    two answers compared (same choice, scores and refitted weights within 1e-6)."""
    from dlbasics.selection import run_search

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
    """The named search run by selection.run_search with the local executor (runtime.workers
    processes) and on Ray, in turns: on a private instance started for each run (what a stage
    pays with no address), and on one already running (what it pays on a cluster). The three
    answers compared byte for byte (table and refitted weights)."""
    import io

    from dlbasics import cluster
    from dlbasics.selection import run_search

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


# ----------------------------------------------------------------------------- dvc repro

def project_files(repo: Path) -> list[str]:
    """What a clone holds: the files git tracks (and untracked, unignored ones), without
    produced outputs (reports/, data/, dvc.lock)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"],
                         cwd=repo, capture_output=True, text=True, check=True).stdout
    return [f for f in out.splitlines() if (repo / f).is_file()
            and not f.startswith(("reports/", "data/")) and f != "dvc.lock"]


def tool_env() -> dict[str, str]:
    """This interpreter's bin first on PATH (stages call plain `python`), no inherited store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    for who in ("AUTHOR", "COMMITTER"):
        env[f"GIT_{who}_NAME"], env[f"GIT_{who}_EMAIL"] = "dlbasics-bench", "bench@localhost"
    return env


def _shell(env: dict[str, str], timeout_s: float) -> Callable[..., None]:
    """sh(*cmd, cwd=...): run a command in `env`, raise with its stderr's end when it fails, and
    stop it after `timeout_s` (TimeoutExpired)."""

    def sh(*cmd: str, cwd: Path) -> None:
        # Its own process group, so that a stopped run takes its stage processes with it.
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            _, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}:\n{err[-3000:]}")

    return sh


def bench_repro(repo: Path, timeout_s: float, edit_repeats: int = 3,
                repeats: int = 1) -> dict[str, Any]:
    """Seconds of `dvc repro` from a clean copy (`repeats` times, a fresh copy each), then of a
    second (no-op) `dvc repro`, then of the edit loop of each of EDIT_LOOP_VARIANTS (see
    edit_loop). A run past `timeout_s` is stopped and reported as such (the clean run's figure
    is then a lower bound)."""
    dvc = str(Path(sys.executable).parent / "dvc")
    sh = _shell(tool_env(), timeout_s)

    clean: list[float] = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
            dest = Path(tmp) / "proj"
            _clean_copy(repo, dest, sh)
            try:
                clean += timings(lambda: sh(dvc, "repro", cwd=dest), 1)
            except subprocess.TimeoutExpired:
                return {"repro_clean_s": timeout_s, "repro_timed_out": True}
            if i < repeats - 1:
                continue
            noop = best_of(lambda: sh(dvc, "repro", cwd=dest), 1)
            sh("git", "add", "-A", cwd=dest)
            sh("git", "commit", "-qm", "reproduced", cwd=dest)
            loops = {v: edit_loop(dest, v, lambda *cmd: sh(*cmd, cwd=dest), edit_repeats)
                     for v in EDIT_LOOP_VARIANTS}
    return {"repro_clean": spread(clean), "repro_clean_s": statistics.median(clean),
            "repro_noop_s": noop, "repro_timed_out": False, "edit_loop_s": loops}


def _clean_copy(repo: Path, dest: Path, sh: Callable[..., None]) -> None:
    """The project's files (see project_files) copied to dest and committed there as `base`."""
    for rel in project_files(repo):
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(repo / rel, dest / rel)
    sh("git", "init", "-q", "-b", "main", cwd=dest)
    sh("git", "add", "-A", cwd=dest)
    sh("git", "commit", "-qm", "base", cwd=dest)


def stack_requests(env: dict[str, str], n: int = 60, loggers: int = 8,
                   steps: int = 30) -> dict[str, Any]:
    """The stack's tracking server under its clients: seconds per `log_metric` sent one after
    another (median and 90th percentile of `n`), and the wall seconds of `loggers` threads each
    logging `steps` metrics to its own run at once (none may fail)."""
    import mlflow
    from concurrent.futures import ThreadPoolExecutor

    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update({k: env[k] for k in keys})
    try:
        client = mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
        exp = client.create_experiment("bench-requests")
        run_id = client.create_run(exp).info.run_id
        one_by_one = []
        for i in range(n):
            t0 = time.perf_counter()
            client.log_metric(run_id, "a", float(i), step=i)
            one_by_one.append(time.perf_counter() - t0)
        client.set_terminated(run_id)

        def logger(k: int) -> None:
            rid = client.create_run(exp).info.run_id
            for i in range(steps):
                client.log_metric(rid, "a", float(i), step=i)
            client.set_terminated(rid)

        t0 = time.perf_counter()
        with ThreadPoolExecutor(loggers) as pool:
            list(pool.map(logger, range(loggers)))
        wall = time.perf_counter() - t0
        done = [r for r in client.search_runs([exp], max_results=100)
                if r.info.status == "FINISHED"]
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    ordered = sorted(one_by_one)
    return {"requests": n, "median_s": statistics.median(ordered),
            "p90_s": ordered[int(0.9 * n) - 1], "loggers": loggers, "steps": steps,
            "loggers_wall_s": wall, "runs_finished": len(done), "runs": loggers + 1}


def bench_stack(repo: Path, timeout_s: float, repeats: int = 1) -> dict[str, Any]:
    """Seconds of the default `dvc repro` from clean logging to the local sqlite store, and to
    the team stack (dlbasics.services: PostgreSQL, S3, mlflow server with basic-auth) started
    for the purpose on free ports, in turns, a fresh copy each time."""
    from dlbasics import services

    free = services.free_port
    times: dict[str, list[float]] = {"sqlite": [], "stack": []}
    with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
        state = Path(tmp) / ".services"
        if os.geteuid() == 0:
            Path(tmp).chmod(0o711)  # PostgreSQL runs as `postgres`: it must reach its data
        stack_env = services.up(state, services.Ports(pg=free(), s3=free(), mlflow=free()))
        try:
            for i in range(repeats):
                for where in ("sqlite", "stack"):
                    extra = ({k: v for k, v in stack_env.items() if k.startswith("MLFLOW_")}
                             if where == "stack" else {})
                    sh = _shell({**tool_env(), **extra}, timeout_s)
                    dest = Path(tmp) / f"{where}{i}"
                    _clean_copy(repo, dest, sh)
                    times[where] += timings(
                        lambda: sh(str(Path(sys.executable).parent / "dvc"), "repro",
                                   cwd=dest), 1)
            requests = stack_requests(stack_env)
        finally:
            services.down(state)
    ratios = [b / a for a, b in zip(times["sqlite"], times["stack"])]
    out = {"sqlite": spread(times["sqlite"]), "stack": spread(times["stack"]),
           "ratio": statistics.median(ratios), "ratio_min": min(ratios),
           "ratio_max": max(ratios)} if ratios else {}
    return {**out, "requests": requests,
            "server_workers": services._workers(),
            "auth_cache_ttl_s": services._auth_cache_s()}


EDIT_LOOP_VARIANTS = ("mlp_adam", "linreg")


def edit_loop(dest: Path, variant: str, sh: Callable[..., None], repeats: int) -> dict[str, Any]:
    """Seconds of `dvc exp run -S train.<variant>.optimizer.lr=...` from an up-to-date
    workspace, `repeats` times with a new rate each time (each run starts from the previous
    one's results): what a user waits for after editing one variant. Median and spread."""
    lr = load_params(dest / "params.yaml").train[variant].optimizer.lr
    dvc = str(Path(sys.executable).parent / "dvc")
    times = []
    for i in range(1, repeats + 1):
        new = float(f"{lr * (1 + 0.1 * i):.6g}")
        times.append(best_of(lambda: sh(dvc, "exp", "run", "-S",
                                        f"train.{variant}.optimizer.lr={new}"), 1))
    return spread(times)


# ----------------------------------------------------------------------------- report

def bench_memory(repo: Path, seed: int) -> dict[str, Any]:
    """Peak resident memory (MiB) of `generate`, `prepare` and one epoch of the `mlp` variant,
    each its own process as under DVC, on Fashion-MNIST-shaped IDX files (60000 + 10000 random
    28x28 images) read from a local folder, in a temporary directory."""
    import yaml

    from dlbasics.idx import FILES, OFFICIAL_SIZES, write_idx

    rng = np.random.default_rng(seed)
    base = yaml.safe_load((repo / "params.yaml").read_text())
    with tempfile.TemporaryDirectory(prefix="dlbasics-mem-") as tmp:
        root = Path(tmp)
        for split, n in zip(("train", "test"), OFFICIAL_SIZES):
            write_idx(root / "idx" / FILES[f"X_{split}"],
                      rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
            write_idx(root / "idx" / FILES[f"y_{split}"],
                      rng.integers(0, 10, n, dtype=np.uint8))
        params = {
            "seed": seed, "runtime": base.get("runtime", {}),
            "tracking": {"experiment": "bench-memory", "log_models": False},
            "data": {"images": {"kind": "fashion_mnist", "source": "local",
                                "path": str(root / "idx"), "verify_checksums": False}},
            # The official test set stays the test set: no test size for fashion_mnist.
            "prepare": {"images": {k: v for k, v in base["prepare"]["images"].items()
                                   if k not in ("test_fraction", "n_test")}},
            "train": {"mlp": {**base["train"]["mlp"], "epochs": 1}},
        }
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        py, stages = sys.executable, repo / "stages"
        steps = {
            "generate": [py, stages / "generate.py", "--params", "params.yaml", "--out",
                         "data/raw"],
            "prepare": [py, stages / "prepare.py", "--params", "params.yaml", "--raw", "data/raw",
                        "--out", "data/prepared"],
            "train": [py, stages / "train.py", "--params", "params.yaml", "--data",
                      "data/prepared", "--out", "data/models"],
        }
        env = {**os.environ, "PYTHONPATH": str(repo / "src"),
               "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}"}
        for key in ("DVC_ROOT", "DVC_STAGE", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
            env.pop(key, None)
        out: dict[str, Any] = {}
        for name, cmd in steps.items():
            proc = subprocess.run([py, "-c", _PEAK_RSS, *map(str, cmd)], cwd=root, env=env,
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"bench memory: {name} failed:\n{proc.stderr[-2000:]}")
            out[f"{name}_peak_mib"] = int(proc.stdout.split()[-1]) / 1024
        out["peak_mib"] = max(out.values())
        out["n_train"], out["n_test"] = OFFICIAL_SIZES
    return out


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


def bench_full_size(repo: Path, timeout_s: float, seed: int) -> dict[str, Any]:
    """The whole pipeline under `profile: full_size` on a Fashion-MNIST-shaped set (60000 +
    10000 structured_images as IDX files), in a clean temporary copy: seconds per stage (each
    `dvc repro STAGE` in DAG order) and the image variants' test accuracy."""
    import yaml

    from dlbasics.idx import FILES, OFFICIAL_SIZES, write_idx

    dvc = str(Path(sys.executable).parent / "dvc")
    sh = _shell(tool_env(), timeout_s)
    with tempfile.TemporaryDirectory(prefix="dlbasics-full-") as tmp:
        root = Path(tmp)
        # One draw for both splits: the test images come from the same class templates.
        images, labels = structured_images(sum(OFFICIAL_SIZES), seed)
        n_train = OFFICIAL_SIZES[0]
        for split, rows in (("train", slice(0, n_train)), ("test", slice(n_train, None))):
            write_idx(root / "idx" / FILES[f"X_{split}"], images[rows])
            write_idx(root / "idx" / FILES[f"y_{split}"], labels[rows])
        dest = root / "proj"
        _clean_copy(repo, dest, sh)
        params = yaml.safe_load((dest / "params.yaml").read_text())
        params["profile"] = "full_size"
        params["data"]["images"] = {"kind": "fashion_mnist", "source": "local",
                                    "path": str(root / "idx"), "verify_checksums": False}
        params["prepare"]["images"].pop("test_fraction", None)
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        stages = ["generate", "prepare", "train",
                  *(f"select@{s}" for s in (params.get("select") or {}).get("searches", {})),
                  "lessons", "report"]
        seconds: dict[str, float] = {}
        for stage in stages:
            try:
                seconds[stage] = timings(lambda: sh(dvc, "repro", "--single-item", stage,
                                                    cwd=dest), 1)[0]
            except subprocess.TimeoutExpired:
                seconds[stage] = timeout_s
                return {"stages_s": seconds, "total_s": sum(seconds.values()), "timed_out": stage}
        metrics = json.loads((dest / "reports" / "metrics.json").read_text())
    image = [n for n, v in params["train"].items() if v["dataset"] == "images"]
    image += [f"select@{s}" for s in (params.get("select") or {}).get("searches", {})]
    return {"stages_s": seconds, "total_s": sum(seconds.values()), "timed_out": None,
            "test_accuracy": {n: metrics.get(n, {}).get("test_accuracy") for n in image}}


def _vectorisation(params) -> dict[str, Any]:
    """The vectorisation lesson's timings (its DVC output holds no wall clock): best of its
    `repeats` runs of each way, at its `n`."""
    from dlbasics.lessons.preliminaries import vectorisation_times

    spec = params.lessons.vectorisation
    n, repeats = (spec.n, spec.repeats) if spec is not None else (10_000, 3)
    return {"n": n, "repeats": repeats, **vectorisation_times(n, repeats)}


def _rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(measure, median or value, spread, goal) of every figure measured."""
    rows: list[tuple[str, str, str, str]] = []

    def row(name: str, value: float, unit: str = "", goal: str = "", rng: str = "") -> None:
        rows.append((name, f"{value:.3g}{unit}" if abs(value) < 1000 else f"{value:.0f}{unit}",
                     rng, goal))

    def timed(name: str, t: dict[str, Any], goal: str = "") -> None:
        row(name, t["median_s"], " s", goal,
            f"{t['min_s']:.3g}-{t['max_s']:.3g} s, {t['runs']} runs")

    if "memory" in results:
        m = results["memory"]
        for name in ("generate", "prepare", "train"):
            row(f"peak memory, {name} on 60000 x 784", m[f"{name}_peak_mib"], " MiB",
                "< 2048 MiB" if name != "generate" else "", "1 run")
    for key in ("epoch", "epoch_cores"):
        e = results.get(key)
        if e is None:
            continue
        t = f"{e['threads']} thread{'s' if e['threads'] != 1 else ''}"
        timed(f"epoch of MLP 784-256-10, project loop, {t}", e["project"])
        row(f"epoch, the sources' data path (FashionMNIST+ToTensor, 4 workers), {t}",
            e["sources_epoch_s"], " s", "", "1 run")
        row(f"epoch, TensorDataset DataLoader, {t}", e["tensordataset_epoch_s"], " s", "",
            "1 run")
        row(f"  speed-up vs the sources' path, {t}", e["vs_sources"], "x", ">= 6x")
        row(f"  speed-up vs TensorDataset DataLoader, {t}", e["vs_tensordataset"], "x")
        row(f"  project epoch GFLOP/s, {t}", e["project_gflops"])
        row(f"  float32 matmul 2048^3 GFLOP/s, {t}", e["matmul_gflops"])
        row(f"  project epoch / matmul limit, {t}", e["of_matmul"], "", ">= 0.75",
            f"{e['of_matmul_min']:.2f}-{e['of_matmul_max']:.2f}, {e['project']['runs']} pairs")
    for key, name in (("grid_softmax", "softmax 784-10"), ("grid_mlp", "digits MLP 64-256-10")):
        if key not in results:
            continue
        r = results[key]
        row(f"grid of {r['fits']} fits, {name}: sequential", r["sequential_s"], " s")
        row(f"grid of {r['fits']} fits, {name}: batched", r["batched_s"], " s")
        row("  speed-up", r["speedup"], "x", ">= 5x",
            f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}x, {r['repeats']} pairs; "
            f"{r['fits_within_1e-6']}/{r['fits']} fits within 1e-6")
    for r in results.get("size_rule", []):
        row(f"size rule {r['model']} ({r['weights']} weights): speed-up", r["speedup"], "x",
            "", "batched" if r["rule_says_batched"] else "sequential")
    if "select" in results:
        r = results["select"]
        what = f"select@{r['search']} ({r['configurations']} configurations, {r['fits']} fits)"
        timed(f"{what}: batched path", r["batched"])
        timed(f"{what}: one by one", r["sequential"])
        row("  speed-up", r["speedup"], "x", ">= 4x",
            f"{r['speedup_min']:.2f}-{r['speedup_max']:.2f}x; same choice: "
            f"{'yes' if r['same_choice'] else 'NO'}, refit weights within "
            f"{r['max_abs_diff_refit_weights']:.1e}")
    if "ray" in results:
        r = results["ray"]
        what = f"select@{r['search']}"
        timed(f"{what}, local ({r['workers']} worker processes)", r["local"])
        timed(f"{what}, Ray: a private instance started for the run", r["ray_private"])
        timed(f"{what}, Ray: an instance already running", r["ray_running"])
        row("  Ray private / local", r["ratio_private"], "x", "",
            f"same bytes: {'yes' if r['same_bytes'] else 'NO'}")
        row("  Ray running / local", r["ratio_running"], "x")
    if "vectorisation" in results:
        r = results["vectorisation"]
        row(f"add of {r['n']} elements: Python loop", r["loop_s"], " s", "",
            f"best of {r['repeats']}")
        row(f"add of {r['n']} elements: one vectorised add", r["vectorised_s"], " s", "",
            f"best of {r['repeats']}")
        row("  vectorised speed-up (lesson)", r["ratio"], "x")
    if "full_size" in results:
        r = results["full_size"]
        for stage, sec in r["stages_s"].items():
            row(f"full size (profile full_size, 60000 x 784): {stage}", sec, " s", "", "1 run")
        row("full size: whole pipeline" + (f" (stopped in {r['timed_out']})"
                                           if r.get("timed_out") else ""),
            r["total_s"], " s", "<= 900 s", "1 run")
        for name, acc in (r.get("test_accuracy") or {}).items():
            if acc is not None:
                row(f"full size: {name} test accuracy (synthetic images)", acc)
    if "stack" in results:
        r = results["stack"]
        if "ratio" in r:
            timed("dvc repro from clean, logging to sqlite", r["sqlite"])
            timed("dvc repro from clean, logging to the team stack", r["stack"])
            row("  stack / sqlite", r["ratio"], "x", "",
                f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}x")
        q = r["requests"]
        row(f"stack: one log_metric ({r['server_workers']} server workers, login cached "
            f"{r['auth_cache_ttl_s']} s)", q["median_s"], " s", "",
            f"90th percentile {q['p90_s']:.3g} s, {q['requests']} requests")
        row(f"stack: {q['loggers']} loggers at once, {q['steps']} metrics each",
            q["loggers_wall_s"], " s", "", f"{q['runs_finished']}/{q['runs']} runs FINISHED")
    if "repro" in results:
        r = results["repro"]
        if r.get("repro_timed_out"):
            row("dvc repro from clean: stopped after", r["repro_clean_s"], " s", "<= 90 s")
        else:
            timed("dvc repro from clean", r["repro_clean"], "<= 90 s")
        if "repro_noop_s" in r:
            row("dvc repro, nothing changed", r["repro_noop_s"], " s", "< 2 s", "1 run")
        for v, loop in r.get("edit_loop_s", {}).items():
            timed(f"edit loop, dvc exp run -S train.{v}.optimizer.lr", loop, "<= 15 s")
    return rows


def table(results: dict[str, Any]) -> str:
    """The figures as plain text, one per line."""
    lines = [f"{'measure':80s} {'median':>9s}  {'goal':>10s}  spread"]
    for name, value, rng, goal in _rows(results):
        lines.append(f"{name:80s} {value:>9s}  {goal:>10s}  {rng}")
    return "\n".join(lines)


README_BEGIN = "<!-- bench:begin (written by `make bench`: python -m dlbasics.bench --readme) -->"
README_END = "<!-- bench:end -->"


def readme_block(results: dict[str, Any]) -> str:
    """The README's speed table: every figure of this run, when and under what load."""
    m = results["machine"]
    loads = ", ".join(f"{k.removeprefix('load_avg_1min_').replace('_', ' ')} {v:.1f}"
                      for k, v in m.items() if k.startswith("load_avg_1min_"))
    head = (f"Measured {m['date_utc']} UTC by `make bench` on {m['cpus']} CPUs "
            f"({m['processor']}), torch {m['torch']}, {m['threads']} thread(s); 1-minute load "
            f"average {loads}. Medians of repeated runs taken in turns (A, B, A, B ...); the "
            "spread is the lowest and highest run.")
    lines = ["| measure | median | spread | goal |", "|---|---:|---|---|"]
    lines += [f"| {n.strip()} | {v} | {r} | {g} |" for n, v, r, g in _rows(results)]
    return f"{README_BEGIN}\n{head}\n\n" + "\n".join(lines) + f"\n{README_END}"


def write_readme(path: Path, results: dict[str, Any]) -> None:
    """Replace the block between README_BEGIN and README_END of `path` with this run's."""
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise SystemExit(f"{path}: no bench block; add the two lines {README_BEGIN!r} and "
                         f"{README_END!r} where the table goes")
    start, end = text.index(README_BEGIN), text.index(README_END) + len(README_END)
    path.write_text(text[:start] + readme_block(results) + text[end:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="JSON copy of the results")
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--repeats", type=int, default=5, help="timings of the project's epoch")
    ap.add_argument("--grid-repeats", type=int, default=2,
                    help="timings of each side of the 48-fit grids (the best is kept)")
    ap.add_argument("--no-dvc", action="store_true", help="skip the dvc repro timings")
    ap.add_argument("--edit-repeats", type=int, default=3,
                    help="dvc exp run edits timed per edit-loop variant (the median is kept)")
    ap.add_argument("--only-dvc", action="store_true",
                    help="only the dvc repro and edit-loop timings")
    ap.add_argument("--no-size-rule", action="store_true", help="skip the size-rule sweep")
    ap.add_argument("--no-memory", action="store_true",
                    help="skip the peak-memory run on Fashion-MNIST-shaped files")
    ap.add_argument("--only-memory", action="store_true", help="measure peak memory only")
    ap.add_argument("--dvc-timeout", type=float, default=600.0,
                    help="seconds after which the clean dvc repro is stopped")
    ap.add_argument("--repro-repeats", type=int, default=2,
                    help="clean dvc repro runs, each in a fresh copy (the median is kept)")
    ap.add_argument("--select-repeats", type=int, default=2,
                    help="runs of the search on each path, in turns")
    ap.add_argument("--search", default="tuned", help="the search of params.yaml to time")
    ap.add_argument("--no-select", action="store_true", help="skip the select timings")
    ap.add_argument("--stack", action="store_true",
                    help="only: the clean dvc repro logging to sqlite against the team stack")
    ap.add_argument("--stack-repeats", type=int, default=1,
                    help="pairs of clean repros (sqlite, stack) for --stack; 0: only the "
                         "server's request figures")
    ap.add_argument("--ray", action="store_true",
                    help="only: the search (--search) with the local executor against Ray")
    ap.add_argument("--full-size", action="store_true",
                    help="only: the whole pipeline under profile full_size on 60000 + 10000 "
                         "Fashion-MNIST-shaped images")
    ap.add_argument("--readme", type=Path,
                    help="also write the table into this README's bench block")
    args = ap.parse_args(argv)

    params = load_params(args.params)
    torch.set_num_threads(params.runtime.threads)  # the project's threads, for every path
    seed = params.seed
    results: dict[str, Any] = {
        "machine": {"threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "processor": platform.processor() or platform.machine(),
                    # Other work on a shared machine skews every figure: look here first.
                    "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                    "load_avg_1min_at_start": os.getloadavg()[0]},
    }
    results["goals"] = GOALS
    args.out.parent.mkdir(parents=True, exist_ok=True)

    def section(key: str, what: str, fn: Callable[[], Any]) -> None:
        """Measure one section, then save everything so far: a stopped run keeps its figures."""
        print(f"{what} ...", flush=True)
        results[key] = fn()
        args.out.write_text(json.dumps(results, indent=2) + "\n")

    repo = args.params.resolve().parent
    def finish() -> int:
        results["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
        args.out.write_text(json.dumps(results, indent=2) + "\n")
        print(table(results))
        if args.readme is not None:
            write_readme(args.readme, results)
            print(f"{args.readme}: bench table rewritten")
        return 0

    if args.full_size:
        section("full_size", "dvc repro, profile full_size, 60000 x 784",
                lambda: bench_full_size(repo, args.dvc_timeout, seed))
        return finish()
    if args.ray:
        section("ray", f"select@{args.search}: local, then on Ray",
                lambda: bench_ray(args.params, args.search, args.select_repeats))
        return finish()
    if args.stack:
        section("stack", "dvc repro from clean: sqlite, then the team stack",
                lambda: bench_stack(repo, args.dvc_timeout, args.stack_repeats))
        return finish()
    if args.only_dvc:
        section("repro", "dvc repro, then the edit loop",
                lambda: bench_repro(repo, args.dvc_timeout, args.edit_repeats,
                                    args.repro_repeats))
        return finish()
    if not args.no_memory:
        section("memory", "peak memory", lambda: bench_memory(repo, seed))
    if args.only_memory:
        return finish()
    section("vectorisation", "a Python loop against one vectorised add (lesson)",
            lambda: _vectorisation(params))
    # At the project's threads (what `dvc repro` runs with), then with one thread per core.
    section("epoch", "epoch paths", lambda: bench_epochs(seed, args.repeats,
                                                         params.runtime.threads))
    cores = os.cpu_count() or 1
    if cores != params.runtime.threads:
        section("epoch_cores", f"epoch paths, {cores} threads",
                lambda: bench_epochs(seed, args.repeats, cores))
    section("grid_softmax", "grid: softmax",
            lambda: bench_grid(ModelSpec(kind="linear"), N, FEATURES, BATCH, 1, seed,
                               repeats=args.grid_repeats))
    section("grid_mlp", "grid: digits MLP",
            lambda: bench_grid(ModelSpec(kind="mlp", hidden=[256]), DIGITS_N, DIGITS_F, 32, 5,
                               seed, repeats=args.grid_repeats))
    if not args.no_size_rule:
        section("size_rule", "size rule", lambda: bench_size_rule(seed, steps=20))
    if not args.no_select and params.select is not None:
        section("select", f"select@{args.search}: batched and one by one",
                lambda: bench_select(args.params, args.search, args.select_repeats))
    results["machine"]["load_avg_1min_before_dvc"] = os.getloadavg()[0]
    if not args.no_dvc:
        section("repro", "dvc repro, then the edit loop",
                lambda: bench_repro(repo, args.dvc_timeout, args.edit_repeats,
                                    args.repro_repeats))
    return finish()


if __name__ == "__main__":
    raise SystemExit(main())
