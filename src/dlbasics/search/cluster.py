"""A select stage's jobs on a Ray cluster (runtime.executor: ray).

The jobs are the ones the local path runs (`selection._jobs`: a group of configurations that
train batched, or one configuration; each with its K folds in lockstep, since early stopping
reads the mean over the folds). Each job is one Ray task that declares its resources
(runtime.ray.cpus_per_task, default runtime.threads; gpus_per_task) and computes with the same
function and the same thread count as a local worker, so the table, the choice and the refitted
weights are the same bytes on CPU. A task whose worker process or node dies is run again
(runtime.ray.max_retries); an error raised by the job itself is not retried.

The cluster is RAY_ADDRESS, else runtime.ray.address (host:port of the head, ray://host:port
or auto), else a private Ray instance on 127.0.0.1 that lives as long as the stage. The code of
this package travels with the tasks (`py_modules`), so the cluster's nodes need the project's
dependencies (torch, scikit-learn, pydantic ...) but not the project itself.
"""

from __future__ import annotations

import logging
import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator

from dlbasics.errors import ClusterError

PROBE_TIMEOUT_S = 3.0


def address(settings) -> str | None:
    """The cluster to use: RAY_ADDRESS, else runtime.ray.address; None for a private one."""
    return os.environ.get("RAY_ADDRESS") or settings.address or None


def _where(addr: str) -> str:
    return "RAY_ADDRESS" if os.environ.get("RAY_ADDRESS") else "runtime.ray.address"


def probe(addr: str) -> None:
    """Fail in seconds, with one line, when nothing answers at the head's address (ray.init
    would wait for minutes)."""
    if addr == "auto":
        return
    hostport = addr.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"{_where(addr)}: expected host:port of the Ray head (or "
                           f"ray://host:port, or auto), found {addr!r}")
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {PROBE_TIMEOUT_S:g} s"
        raise ClusterError(f"Ray head {addr} unreachable ({reason}); start the cluster (`ray "
                           f"start --head`) or fix {_where(addr)}, or set runtime.executor: "
                           "local") from None


@contextmanager
def connected(settings, threads: int) -> Iterator[Any]:
    """ray, connected to the cluster for the duration (and disconnected after)."""
    addr = address(settings)
    if addr is None:
        # A private instance: every server of it on 127.0.0.1, none on the host's address.
        # Ray reads this when it is first imported.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    try:
        import ray
    except ImportError:
        raise ClusterError("runtime.executor: ray needs the ray package; install the project's "
                           "ray extra (`pip install -e '.[ray]'`, or `make ray`) or set "
                           "runtime.executor: local") from None
    if addr is not None:
        probe(addr)
    package = str(Path(__file__).resolve().parents[1])  # src/dlbasics, every subpackage
    kwargs: dict[str, Any] = {
        "runtime_env": {"py_modules": [package]},
        "logging_level": logging.ERROR,  # not Ray's notices in the stage's output
        "log_to_driver": False,
        "include_dashboard": False,
    }
    if addr is None:
        # "local": always a new instance, never a cluster that happens to run on this machine.
        kwargs.update(address="local", _node_ip_address="127.0.0.1",
                      num_cpus=os.cpu_count() or 1)
    else:
        kwargs["address"] = addr
        kwargs.pop("include_dashboard")  # a setting of a new instance only
    try:
        ray.init(**kwargs)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        raise ClusterError(f"Ray cluster {addr or '(private, 127.0.0.1)'}: could not connect: "
                           f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") \
            from None
    try:
        yield ray
    finally:
        ray.shutdown()


def run_jobs(ray, params, search: str, jobs: list[tuple[str, list[int]]], data,
             job_fn: Callable[..., dict[int, dict[str, Any]]],
             on_done: Callable[[str, list[int]], None]) -> dict[int, dict[str, Any]]:
    """Every job as one Ray task; their records merged (the order of completion does not
    matter: each record is keyed by its configuration)."""
    settings = params.runtime.ray
    cpus = settings.cpus_per_task or params.runtime.threads
    device = "cuda" if settings.gpus_per_task > 0 else "cpu"
    task = ray.remote(job_fn).options(num_cpus=cpus, num_gpus=settings.gpus_per_task,
                                      max_retries=settings.max_retries,
                                      retry_exceptions=False, name=f"select@{search}")
    data_ref = ray.put(data)
    refs = [task.remote(params, search, kind, members, data_ref, device)
            for kind, members in jobs]
    results: dict[int, dict[str, Any]] = {}
    try:
        for (kind, members), ref in zip(jobs, refs):
            try:
                results.update(ray.get(ref))
            except ray.exceptions.RayTaskError:
                raise  # the job's own error (also an instance of the original class)
            except ray.exceptions.RayError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ClusterError(
                    f"select@{search}: a job of configurations {members} was lost on the Ray "
                    f"cluster after {settings.max_retries} retries ({type(exc).__name__}: "
                    f"{first}); raise runtime.ray.max_retries or check the cluster's nodes"
                ) from None
            on_done(kind, members)
    except BaseException:
        for ref in refs:
            ray.cancel(ref, force=True)
        raise
    return results
