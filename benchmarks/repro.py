"""`dvc repro` of the default pipeline from clean and with nothing to do, then the edit loop
(`dvc exp run -S` of one hyper-parameter), in a clean temporary copy."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Callable

from benchmarks.timing import best_of, spread, timings
from benchmarks.workspace import DVC, clean_copy, shell, tool_env
from dlbasics.config.loading import load_params

EDIT_LOOP_VARIANTS = ("mlp_adam", "linreg")


def bench_repro(repo: Path, timeout_s: float, edit_repeats: int = 3,
                repeats: int = 1) -> dict[str, Any]:
    """Seconds of `dvc repro` from a clean copy (`repeats` times, a fresh copy each), then of a
    second (no-op) `dvc repro`, then of the edit loop of each of EDIT_LOOP_VARIANTS (see
    edit_loop). A run past `timeout_s` is stopped and reported as such (the clean run's figure
    is then a lower bound)."""
    sh = shell(tool_env(), timeout_s)
    clean: list[float] = []
    for i in range(repeats):
        with tempfile.TemporaryDirectory(prefix="dlbasics-bench-") as tmp:
            dest = Path(tmp) / "proj"
            clean_copy(repo, dest, sh)
            try:
                clean += timings(lambda: sh(DVC, "repro", cwd=dest), 1)
            except subprocess.TimeoutExpired:
                return {"repro_clean_s": timeout_s, "repro_timed_out": True}
            if i < repeats - 1:
                continue
            noop = best_of(lambda: sh(DVC, "repro", cwd=dest), 1)
            sh("git", "add", "-A", cwd=dest)
            sh("git", "commit", "-qm", "reproduced", cwd=dest)
            loops = {v: edit_loop(dest, v, lambda *cmd: sh(*cmd, cwd=dest), edit_repeats)
                     for v in EDIT_LOOP_VARIANTS}
    return {"repro_clean": spread(clean), "repro_clean_s": statistics.median(clean),
            "repro_noop_s": noop, "repro_timed_out": False, "edit_loop_s": loops}


def edit_loop(dest: Path, variant: str, sh: Callable[..., None], repeats: int) -> dict[str, Any]:
    """Seconds of `dvc exp run -S train.<variant>.optimizer.lr=...` from an up-to-date
    workspace, `repeats` times with a new rate each time (each run starts from the previous
    one's results): what a user waits for after editing one variant. Median and spread."""
    lr = load_params(dest / "params.yaml").train[variant].optimizer.lr
    times = []
    for i in range(1, repeats + 1):
        new = float(f"{lr * (1 + 0.1 * i):.6g}")
        times.append(best_of(lambda: sh(DVC, "exp", "run", "-S",
                                        f"train.{variant}.optimizer.lr={new}"), 1))
    return spread(times)
