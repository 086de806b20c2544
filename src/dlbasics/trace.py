"""Where a run's seconds go: timed spans appended to the file named by DLBASICS_TRACE.

Off unless that variable is set (the benchmark sets it; nothing else does), and then only
appended to that file, outside the project: a trace never changes a DVC output. Each line is
one JSON record:

- `{"proc": pid, "role": ..., "stage": ..., "start": t, "main": t}` once per process that
  traces: when the operating system started it (from /proc, Linux only; else null) and when its
  imports were done and its work began;
- `{"proc": pid, "end": t}` when a stage process is about to exit;
- `{"proc": pid, "span": name, "kind": kind, "t0": t, "t1": t}` for each timed span.

Times are seconds since the epoch (time.time), so spans of different processes line up. The
kinds: `compute` is a stage's own work (training, evaluation, searches, lessons, rendering);
`tracking` is MLflow logging; `io` is reading and writing the stage's files; `wait` is one
process waiting for another. benchmarks/phases.py reads the file back into a phase table.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Iterator

TRACE_ENV = "DLBASICS_TRACE"
KINDS = ("compute", "tracking", "io", "wait")


def enabled() -> bool:
    return bool(os.environ.get(TRACE_ENV))


def _write(record: dict) -> None:
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    line = json.dumps({"proc": os.getpid(), **record}) + "\n"
    # One write of one short line in append mode: lines of concurrent processes do not mix.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def process_start_time() -> float | None:
    """When the operating system started this process (seconds since the epoch, to 1/100 s),
    from /proc; None where there is no /proc."""
    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # starttime: field 22 of stat, counted after the command name
        # Both clocks read now: the boot clock counts what starttime counts (the boot time in
        # /proc/stat is whole seconds only).
        since = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
        return time.time() - since
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def process(role: str) -> None:
    """Record this process: its start, and now as the end of its imports."""
    if enabled():
        _write({"role": role, "stage": os.environ.get("DVC_STAGE"),
                "start": process_start_time(), "main": time.time()})


def end() -> None:
    """Record that this process is about to exit."""
    if enabled():
        _write({"end": time.time()})


@contextlib.contextmanager
def span(name: str, kind: str = "compute") -> Iterator[None]:
    """Time the block as one span of `kind` (one of KINDS)."""
    if not enabled():
        yield
        return
    if kind not in KINDS:
        raise ValueError(f"trace kind {kind!r}: expected one of {KINDS}")
    t0 = time.time()
    try:
        yield
    finally:
        _write({"span": name, "kind": kind, "t0": t0, "t1": time.time()})
