"""Repeated wall-clock timings and their spread."""

from __future__ import annotations

import contextlib
import io
import statistics
import time
from typing import Any, Callable


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
