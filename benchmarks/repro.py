"""`dvc repro` of the default pipeline from clean and with nothing to do, then the edit loop
(one hyper-parameter changed, the pipeline brought up to date), in a clean temporary copy; every
command traced (DLBASICS_TRACE, see benchmarks/phases.py) into a phase table."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.phases import phase_table, read_trace, variant_work
from benchmarks.timing import best_of, spread
from benchmarks.workspace import DVC, clean_copy, shell, tool_env
from dlbasics.config.loading import load_params
from dlbasics.trace import TRACE_ENV

# The edit loop's variants: one that trains in under a second, one that trains for a few.
QUICK, SLOW = "linreg", "mlp_adam"
EDIT_LOOP_VARIANTS = (QUICK, SLOW)


class Traced:
    """Commands run in one copy, each with its own trace file; `run` returns the wall seconds
    and the phase table of that command."""

    def __init__(self, dest: Path, trace_dir: Path, timeout_s: float):
        self.dest, self.trace_dir, self.timeout_s = dest, trace_dir, timeout_s
        self.count = 0

    def run(self, *cmd: str) -> dict[str, Any]:
        self.count += 1
        path = self.trace_dir / f"{self.count:03d}.jsonl"
        env = tool_env()
        env[TRACE_ENV] = str(path)
        sh = shell(env, self.timeout_s)
        t0 = time.time()
        sh(*cmd, cwd=self.dest)
        t1 = time.time()
        records = read_trace(path)
        return {"command": " ".join(cmd[1:] if cmd[0] == DVC else cmd), "seconds": t1 - t0,
                "phases": phase_table(records, t0, t1), "records": records}


def set_param(params_file: Path, dotted: str, value: Any) -> None:
    """Change one value of params.yaml as `dvc exp run -S` does (DVC's own YAML round trip)."""
    from dvc.utils.serialize import modify_yaml

    *path, last = dotted.split(".")
    with modify_yaml(params_file) as doc:
        for key in path:
            doc = doc[key]
        doc[last] = value


def bench_repro(repo: Path, timeout_s: float, edit_repeats: int = 3,
                repeats: int = 1) -> dict[str, Any]:
    """`dvc repro` from a clean copy (`repeats` times, a fresh copy each), then in the last copy
    `edit_repeats` rounds of: a no-op `dvc repro`, the quick variant's edit with `dvc exp run
    -S`, a no-op `dvc repro`, the slow variant's edit, and the quick variant's edit of
    params.yaml followed by `dvc repro` (no experiment bookkeeping). Each edit is a new learning
    rate and starts from the previous one's up-to-date workspace. A run past `timeout_s` is
    stopped and reported as such (the clean run's figure is then a lower bound).

    Ratios, each between neighbouring runs: quick edit / the no-op before it; (slow edit - the
    slow variant's own fit and evaluation, traced) / the no-op before it; clean repro / the sum
    of the stages' traced compute in that same run."""
    clean: list[dict[str, Any]] = []
    gflops_before = matmul_gflops()
    with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
        for i in range(repeats):
            dest = Path(tmp) / f"proj{i}"
            trace_dir = Path(tmp) / f"trace{i}"
            trace_dir.mkdir()
            clean_copy(repo, dest, shell(tool_env(), timeout_s))
            traced = Traced(dest, trace_dir, timeout_s)
            try:
                clean.append(traced.run(DVC, "repro"))
            except subprocess.TimeoutExpired:
                return {"repro_clean_s": timeout_s, "repro_timed_out": True}
        sh = shell(tool_env(), timeout_s)
        sh("git", "add", "-A", cwd=dest)
        sh("git", "commit", "-qm", "reproduced", cwd=dest)
        loops = edit_rounds(dest, traced, edit_repeats)
    clean_s = [c["seconds"] for c in clean]
    out = {"repro_clean": spread(clean_s), "repro_clean_s": statistics.median(clean_s),
           "repro_timed_out": False, **loops, "matmul_gflops_before": gflops_before,
           "matmul_gflops_after": matmul_gflops(),
           "clean_compute": spread([c["phases"]["compute_s"] for c in clean]),
           "clean_path_compute": spread([c["phases"]["path_compute_s"] for c in clean]),
           "clean_over_compute": spread([c["seconds"] / c["phases"]["compute_s"]
                                         for c in clean]),
           "phases": {"clean": _median_run(clean)["phases"]}}
    out["phases"].update(loops.pop("phases"))
    return out


def edit_rounds(dest: Path, traced: Traced, rounds: int) -> dict[str, Any]:
    """The edit loop's rounds (see bench_repro) in an up-to-date, committed copy."""
    params = load_params(dest / "params.yaml")
    rates = {v: params.train[v].optimizer.lr for v in EDIT_LOOP_VARIANTS}
    runs: dict[str, list[dict[str, Any]]] = {"noop": [], "quick": [], "slow": [], "repro": []}
    quick_ratio, slow_ratio = [], []

    def edit(variant: str, i: int, how: str) -> dict[str, Any]:
        new = float(f"{rates[variant] * (1 + 0.1 * i):.6g}")
        key = f"train.{variant}.optimizer.lr"
        if how == "exp":
            return traced.run(DVC, "exp", "run", "-S", f"{key}={new}")
        set_param(dest / "params.yaml", key, new)
        return traced.run(DVC, "repro")

    step = 0
    for _ in range(rounds):
        step += 1
        runs["noop"].append(traced.run(DVC, "repro"))
        runs["quick"].append(edit(QUICK, step, "exp"))
        quick_ratio.append(runs["quick"][-1]["seconds"] / runs["noop"][-1]["seconds"])
        runs["noop"].append(traced.run(DVC, "repro"))
        runs["slow"].append(edit(SLOW, step, "exp"))
        slow = runs["slow"][-1]
        work = variant_work(slow["records"], SLOW)
        slow["variant_work_s"] = work
        slow_ratio.append((slow["seconds"] - work) / runs["noop"][-1]["seconds"])
        step += 1
        runs["repro"].append(edit(QUICK, step, "repro"))
    secs = {k: [r["seconds"] for r in v] for k, v in runs.items()}
    return {
        "repro_noop": spread(secs["noop"]), "repro_noop_s": statistics.median(secs["noop"]),
        "edit_loop_s": {QUICK: spread(secs["quick"]), SLOW: spread(secs["slow"])},
        "edit_repro_s": {QUICK: spread(secs["repro"])},
        "slow_variant_work": spread([r["variant_work_s"] for r in runs["slow"]]),
        "quick_over_noop": spread(quick_ratio), "slow_rest_over_noop": spread(slow_ratio),
        "phases": {"noop": _median_run(runs["noop"])["phases"],
                   "quick": _median_run(runs["quick"])["phases"],
                   "slow": _median_run(runs["slow"])["phases"],
                   "repro": _median_run(runs["repro"])["phases"]},
    }


def matmul_gflops() -> float:
    """The machine's float32 matmul speed now (the epoch bench's MATMUL^3 product, this
    process's threads), best of 3: the yardstick that makes seconds from different runs
    comparable."""
    import torch

    from benchmarks.epochs import MATMUL

    g = torch.Generator().manual_seed(1)
    a, b = (torch.randn(MATMUL, MATMUL, generator=g) for _ in range(2))
    a @ b  # warm-up
    return 2 * MATMUL ** 3 / best_of(lambda: a @ b, 3) / 1e9


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run whose seconds are the median (the lower middle one of an even count)."""
    ordered = sorted(runs, key=lambda r: r["seconds"])
    return ordered[(len(ordered) - 1) // 2]
