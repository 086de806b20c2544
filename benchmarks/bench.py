"""Speed figures measured side by side in one process and one sitting (`make bench`).

On random data of Fashion-MNIST shape (60000 x 784, batch 256):
  - one epoch of MLP 784-256-10 with the project's loop (training.fit) against the sources'
    data path (torchvision's FashionMNIST with ToTensor, a DataLoader with 4 workers) and a
    plain TensorDataset DataLoader;
  - the project's epoch as a fraction of the float32 matmul throughput, the two timed in turns;
  - the 48-fit grid (16 configurations x 3 folds) batched (dlbasics.learn.batched.BatchedTrainer)
    against sequential, for softmax regression and for a digits-size MLP;
  - the size rule's evidence: batched / sequential for architectures on both sides of
    dlbasics.learn.batched.BATCHED_MAX_WEIGHTS, a few steps each;
  - a named search of params.yaml (`tuned`) as the select stage runs it, batched path against
    one configuration after another, with the two answers compared;
  - the default `dvc repro` from clean (repeated, a fresh copy each) and a no-op `dvc repro`,
    in a temporary copy, then the edit loop: `dvc exp run -S` of one hyper-parameter of
    `mlp_adam` and of `linreg`, 3 each.

  - scikit-learn's peers on real Fashion-MNIST where it is installed (below; --no-peers skips);
  - each import of a stage process's stack (torch, torch._dynamo, mlflow and its store,
    scikit-learn, matplotlib) in fresh interpreters (--only-imports for that alone).

With --peers only: scikit-learn's LogisticRegression and MLPClassifier against the project's
softmax, mlp_adam and a faster MLP variant on real Fashion-MNIST, on the project's split, at one
thread (benchmarks/peers.py). With --full-size only: the whole pipeline under profile full_size
on real Fashion-MNIST (generated images where it is not installed).

Every timing is repeated: the median, the lowest and the highest run, and the load average.
Prints a table, writes the same numbers as JSON and, with --readme, the README's table.
Figures, not tests: nothing is asserted. Run from the repository root:
`python -m benchmarks.bench --out reports/bench.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any, Callable

import torch

from benchmarks.epochs import bench_epochs
from benchmarks.fashion import bench_full_size, bench_memory
from benchmarks.grid import bench_grid, bench_size_rule
from benchmarks.imports import bench_imports
from benchmarks.peers import bench_peers
from benchmarks.report import GOALS, check_readme, table, write_readme
from benchmarks.repro import bench_repro
from benchmarks.searches import bench_ray, bench_select
from benchmarks.shapes import BATCH, DIGITS_F, DIGITS_N, FEATURES, N
from benchmarks.stack import bench_stack
from dlbasics.config.loading import load_params
from dlbasics.config.variants import ModelSpec


def parser() -> argparse.ArgumentParser:
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
    ap.add_argument("--only-imports", action="store_true",
                    help="only: each import of a stage process's stack, in fresh interpreters")
    ap.add_argument("--dvc-timeout", type=float, default=600.0,
                    help="seconds after which the clean dvc repro is stopped")
    ap.add_argument("--repro-repeats", type=int, default=2,
                    help="clean dvc repro runs, each in a fresh copy (the median is kept)")
    ap.add_argument("--select-repeats", type=int, default=2,
                    help="runs of the search on each path, in turns")
    ap.add_argument("--search", default="tuned", help="the search of params.yaml to time")
    ap.add_argument("--no-select", action="store_true", help="skip the select timings")
    ap.add_argument("--no-peers", action="store_true",
                    help="skip the scikit-learn peers on real Fashion-MNIST")
    ap.add_argument("--stack", action="store_true",
                    help="only: the clean dvc repro logging to sqlite against the team stack")
    ap.add_argument("--stack-repeats", type=int, default=1,
                    help="pairs of clean repros (sqlite, stack) for --stack; 0: only the "
                         "server's request figures")
    ap.add_argument("--ray", action="store_true",
                    help="only: the search (--search) with the local executor against Ray")
    ap.add_argument("--full-size", action="store_true",
                    help="only: the whole pipeline under profile full_size on real "
                         "Fashion-MNIST (60000 + 10000; generated images where it is absent)")
    ap.add_argument("--peers", action="store_true",
                    help="only: scikit-learn peers against the project's variants on real "
                         "Fashion-MNIST, one thread, the project's split")
    ap.add_argument("--peers-repeats", type=int, default=1,
                    help="timings of each model for --peers, in turns (the median is kept)")
    ap.add_argument("--readme", type=Path,
                    help="also write the table into this README's bench block")
    return ap


class Run:
    """The results of one bench run, saved to `out` after every section."""

    def __init__(self, out: Path, readme: Path | None):
        self.out, self.readme = out, readme
        self.results: dict[str, Any] = {"machine": {
            "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
            "torch": torch.__version__, "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            # Other work on a shared machine skews every figure: look here first.
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
            "load_avg_1min_at_start": os.getloadavg()[0]},
            "goals": GOALS}
        out.parent.mkdir(parents=True, exist_ok=True)

    def section(self, key: str, what: str, fn: Callable[[], Any]) -> None:
        """Measure one section, then save everything so far: a stopped run keeps its figures."""
        print(f"{what} ...", flush=True)
        self.results[key] = fn()
        self.save()

    def save(self) -> None:
        self.out.write_text(json.dumps(self.results, indent=2) + "\n")

    def finish(self) -> int:
        """Save, print the table and, with a README, rewrite its bench block."""
        self.results["machine"]["load_avg_1min_at_end"] = os.getloadavg()[0]
        self.save()
        print(table(self.results))
        if self.readme is not None:
            write_readme(self.readme, self.results)
            print(f"{self.readme}: bench table rewritten")
        return 0


def _vectorisation(params) -> dict[str, Any]:
    """The vectorisation lesson's timings (its DVC output holds no wall clock): best of its
    `repeats` runs of each way, at its `n`."""
    from dlbasics.lessons.preliminaries import vectorisation_times

    spec = params.lessons.vectorisation
    n, repeats = (spec.n, spec.repeats) if spec is not None else (10_000, 3)
    return {"n": n, "repeats": repeats, **vectorisation_times(n, repeats)}


def _only(args, repo: Path, seed: int) -> tuple[str, str, Callable[[], Any]] | None:
    """The one section that --full-size, --peers, --ray, --stack or --only-dvc asks for, else
    None."""
    if args.full_size:
        return ("full_size", "dvc repro, profile full_size, 60000 x 784",
                lambda: bench_full_size(repo, args.dvc_timeout, seed))
    if args.peers:
        return ("peers", "scikit-learn peers and project variants on Fashion-MNIST, 1 thread",
                lambda: bench_peers(args.params, args.peers_repeats))
    if args.ray:
        return ("ray", f"select@{args.search}: local, then on Ray",
                lambda: bench_ray(args.params, args.search, args.select_repeats))
    if args.stack:
        return ("stack", "dvc repro from clean: sqlite, then the team stack",
                lambda: bench_stack(repo, args.dvc_timeout, args.stack_repeats))
    if args.only_imports:
        return ("imports", "imports of a stage process's stack, fresh interpreters",
                lambda: bench_imports())
    if args.only_dvc:
        return ("repro", "dvc repro, then the edit loop",
                lambda: bench_repro(repo, args.dvc_timeout, args.edit_repeats,
                                    args.repro_repeats))
    return None


def _in_process(run: Run, args, params) -> None:
    """The sections measured in this process: the lesson, the epoch paths, the grids, the size
    rule and the search."""
    seed = params.seed
    run.section("vectorisation", "a Python loop against one vectorised add (lesson)",
                lambda: _vectorisation(params))
    # At the project's threads (what `dvc repro` runs with), then with one thread per core.
    run.section("epoch", "epoch paths",
                lambda: bench_epochs(seed, args.repeats, params.runtime.threads))
    cores = os.cpu_count() or 1
    if cores != params.runtime.threads:
        run.section("epoch_cores", f"epoch paths, {cores} threads",
                    lambda: bench_epochs(seed, args.repeats, cores))
    run.section("grid_softmax", "grid: softmax",
                lambda: bench_grid(ModelSpec(kind="linear"), N, FEATURES, BATCH, 1, seed,
                                   repeats=args.grid_repeats))
    run.section("grid_mlp", "grid: digits MLP",
                lambda: bench_grid(ModelSpec(kind="mlp", hidden=[256]), DIGITS_N, DIGITS_F, 32,
                                   5, seed, repeats=args.grid_repeats))
    if not args.no_size_rule:
        run.section("size_rule", "size rule", lambda: bench_size_rule(seed, steps=20))
    if not args.no_select and params.select is not None:
        run.section("select", f"select@{args.search}: batched and one by one",
                    lambda: bench_select(args.params, args.search, args.select_repeats))
    run.section("imports", "imports of a stage process's stack, fresh interpreters",
                lambda: bench_imports())
    if not args.no_peers:
        run.section("peers", "scikit-learn peers and project variants on Fashion-MNIST, 1 thread",
                    lambda: bench_peers(args.params, args.peers_repeats))


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.readme is not None:
        check_readme(args.readme)  # before the measuring, not after it
    params = load_params(args.params)
    torch.set_num_threads(params.runtime.threads)  # the project's threads, for every path
    repo = args.params.resolve().parent
    run = Run(args.out, args.readme)
    only = _only(args, repo, params.seed)
    if only is not None:
        run.section(*only)
        return run.finish()
    if not args.no_memory:
        run.section("memory", "peak memory", lambda: bench_memory(repo, params.seed))
    if args.only_memory:
        return run.finish()
    _in_process(run, args, params)
    run.results["machine"]["load_avg_1min_before_dvc"] = os.getloadavg()[0]
    if not args.no_dvc:
        run.section("repro", "dvc repro, then the edit loop",
                    lambda: bench_repro(repo, args.dvc_timeout, args.edit_repeats,
                                        args.repro_repeats))
    return run.finish()


if __name__ == "__main__":
    raise SystemExit(main())
