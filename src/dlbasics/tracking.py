"""Where results go in MLflow: the window on the DVC outputs, never their source of truth.

The store is resolved to the *user's* repository, so `dvc repro`, `dvc exp run`,
`dvc exp run --temp` and queued experiments (which run in .dvc/tmp/exps/...) all land in the
one store that `make ui` shows. MLFLOW_TRACKING_URI overrides it. mlflow is imported lazily:
importing this module touches no file and no server.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"


def project_root(start: str | Path | None = None) -> Path:
    """The user's repository: DVC_ROOT (set by DVC for every stage, also under --temp),
    else the nearest parent holding .dvc/, else the working directory."""
    if os.environ.get("DVC_ROOT"):
        return Path(os.environ["DVC_ROOT"]).resolve()
    here = Path(start or os.getcwd()).resolve()
    for d in (here, *here.parents):
        if (d / ".dvc").is_dir():
            return d
    return here


def tracking_uri() -> str:
    """MLFLOW_TRACKING_URI if set, else a sqlite store at the root of the user's repository."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / STORE_FILE}"


def _is_local_store(uri: str) -> bool:
    return uri.startswith("sqlite:") or uri.startswith("file:") or "://" not in uri


def git_commit(cwd: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def dvc_tags() -> dict[str, str]:
    """Tags that say where a run came from: commit, DVC experiment, stage, host."""
    tags = {"git_commit": git_commit() or "unknown", "host": socket.gethostname()}
    for env, tag in (
        ("DVC_EXP_NAME", "dvc_exp_name"),
        ("DVC_EXP_BASELINE_REV", "dvc_exp_baseline_rev"),
        ("DVC_STAGE", "dvc_stage"),
    ):
        if os.environ.get(env):
            tags[tag] = os.environ[env]
    return tags


def setup(experiment: str) -> str:
    """Point mlflow at the project's store and return the experiment id (created if new)."""
    # Nothing leaves this machine: no usage telemetry from mlflow.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    uri = tracking_uri()
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        return exp.experiment_id
    # A local store gets an absolute artifact root beside it: mlflow's default (./mlruns
    # relative to the working directory) would scatter artifacts into DVC's temp copies.
    location = (project_root() / ARTIFACT_DIR).as_uri() if _is_local_store(uri) else None
    try:
        return client.create_experiment(experiment, artifact_location=location)
    except Exception:
        # Another process (a parallel queued experiment) created it first.
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 0.1}} -> {"optimizer.lr": 0.1}; lists become strings."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, f"{key}."))
        else:
            out[key] = v
    return out


class MetricBuffer:
    """Per-epoch metrics, sent in batches (at most every `interval` s) instead of one
    database write per value, so thousands of epochs do not cost minutes of logging."""

    def __init__(self, run_id: str, interval: float = 2.0):
        self.run_id, self.interval = run_id, interval
        self.pending: list[Any] = []
        self.last = time.monotonic()

    def add(self, record: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        for k, v in record.items():
            if k != "epoch":
                self.pending.append(Metric(k, float(v), now, step))
        if time.monotonic() - self.last > self.interval:
            self.flush()

    def flush(self) -> None:
        import mlflow

        client = mlflow.MlflowClient()
        while self.pending:
            chunk, self.pending = self.pending[:1000], self.pending[1000:]
            client.log_batch(self.run_id, metrics=chunk)
        self.last = time.monotonic()


@contextmanager
def run(experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
    """An MLflow run that ends FINISHED, FAILED (reason in the `failure` tag) or KILLED."""
    import mlflow

    exp_id = setup(experiment)
    active = mlflow.start_run(experiment_id=exp_id, run_name=run_name, tags={**dvc_tags(), **tags})
    try:
        yield active
    except KeyboardInterrupt:
        mlflow.set_tag("failure", "interrupted (SIGINT)")
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as exc:
        mlflow.set_tag("failure", f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def find_run(experiment: str, tags: dict[str, str]) -> Any | None:
    """The newest run of `experiment` carrying all `tags`, or None."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    exp = mlflow.MlflowClient().get_experiment_by_name(experiment)
    if exp is None:
        return None
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = mlflow.MlflowClient().search_runs(
        [exp.experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None
