"""The default `dvc repro` logging to the local sqlite store against the team stack
(dlbasics.tracking.services), and the stack's tracking server under its clients."""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.timing import spread, timings
from benchmarks.workspace import DVC, clean_copy, shell, tool_env


def stack_requests(env: dict[str, str], n: int = 60, loggers: int = 8,
                   steps: int = 30) -> dict[str, Any]:
    """The stack's tracking server under its clients: seconds per `log_metric` sent one after
    another (median and 90th percentile of `n`), and the wall seconds of `loggers` threads each
    logging `steps` metrics to its own run at once (none may fail)."""
    from concurrent.futures import ThreadPoolExecutor

    import mlflow

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
    the team stack (dlbasics.tracking.services: PostgreSQL, S3, mlflow server with basic-auth) started
    for the purpose on free ports, in turns, a fresh copy each time."""
    from dlbasics.tracking import services

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
                    sh = shell({**tool_env(), **extra}, timeout_s)
                    dest = Path(tmp) / f"{where}{i}"
                    clean_copy(repo, dest, sh)
                    times[where] += timings(lambda: sh(DVC, "repro", cwd=dest), 1)
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
