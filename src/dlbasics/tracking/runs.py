"""Where results go in MLflow: the window on the DVC outputs, never their source of truth.

The store is resolved to the *user's* repository, so `dvc repro`, `dvc exp run`,
`dvc exp run --temp` and queued experiments (which run in .dvc/tmp/exps/...) all land in the
one store that `make ui` shows. MLFLOW_TRACKING_URI overrides it. mlflow is imported lazily:
importing this module touches no file and no server.

The experiment is tagged as classic model training (EXPERIMENT_KIND), and `make ui` prints
the address of its runs table (ui_address): MLflow 3's UI otherwise opens an experiment on
its GenAI overview (traces, token usage), which this project never logs.

A remote store (http/https) is probed before first use, so a server that is not there stops
a stage within seconds with one line (TrackingError) instead of minutes of HTTP retries. Every
run records the host and pid of its process, so a run left RUNNING by a killed process is
marked KILLED the next time anything of the project opens the experiment (`setup`: any stage
that logs, `make ui`), whichever stage or variant it belonged to.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit
from urllib.request import getproxies, proxy_bypass

from dlbasics.errors import TrackingError, tracking_lost  # noqa: F401 - TrackingError re-exported

try:
    import fcntl
except ImportError:  # not POSIX: no lock (and no parallel queue workers to race)
    fcntl = None

STORE_FILE = "mlflow.db"
ARTIFACT_DIR = "mlartifacts"
CONNECT_TIMEOUT_S = 3.0  # the TCP probe of a remote tracking server
# What the experiment is to MLflow's UI: model training, not GenAI (genai_development).
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# HTTP settings for a remote server, unless the user set them: mlflow's defaults (7 retries
# with exponential backoff, 120 s per request) turn a dead server into minutes of silence.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


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


def _is_remote(uri: str) -> bool:
    return uri.split(":", 1)[0].lower() in ("http", "https")


def _shown(uri: str) -> str:
    """`uri` without user and password: it goes to stderr and into logs."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


_checked: set[str] = set()


def check_reachable(uri: str) -> None:
    """For an http(s) tracking URI: set fail-fast HTTP defaults and connect once (3 s).

    Raises TrackingError (one line) when nothing listens there. Local stores pass unchecked.
    """
    if not _is_remote(uri) or uri in _checked:
        return
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    parts = urlsplit(uri)
    via = ""
    try:
        if not parts.hostname:
            raise OSError("no host in the URI")
        # Behind an HTTP(S) proxy the proxy is what this machine must reach.
        proxy = getproxies().get(parts.scheme.lower())
        target = parts
        if proxy and not proxy_bypass(parts.hostname):
            target, via = urlsplit(proxy), f"through proxy {_shown(proxy)}: "
        port = target.port or (443 if target.scheme.lower() == "https" else 80)
        with socket.create_connection((target.hostname, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if isinstance(exc, socket.timeout):
            reason = f"no answer within {CONNECT_TIMEOUT_S:g} s"
        raise TrackingError(
            f"MLflow tracking server {_shown(uri)} unreachable ({via}{reason}); start it or unset "
            "MLFLOW_TRACKING_URI to use the local store"
        ) from None
    _checked.add(uri)


def _sqlite_path(uri: str) -> Path | None:
    """The file of a sqlite:/// store URI, None for any other store (or an in-memory one)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    return Path(path) if path and path != ":memory:" else None


@contextmanager
def _first_use(uri: str) -> Iterator[None]:
    """Hold an exclusive lock beside a sqlite store while mlflow opens it.

    mlflow creates (or migrates) a store's tables the first time a process opens it; two
    processes doing that at once (dvc queue start -j 2 on a new store) corrupt it for good
    ("table _alembic_tmp_tags already exists"). The lock file matches .gitignore's mlflow.db-*.
    """
    path = _sqlite_path(uri)
    if path is None or fcntl is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f"{path.name}-init.lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_client(uri: str) -> Any:
    """An MlflowClient on `uri`: a remote server is probed first (TrackingError if it is not
    there), a local sqlite store is created or migrated by one process at a time."""
    check_reachable(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    with _first_use(uri):
        return mlflow.MlflowClient()


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
    """Point mlflow at the project's store and return the experiment id (created if new,
    tagged as model training: EXPERIMENT_KIND)."""
    # Nothing leaves this machine: no usage telemetry from mlflow.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    uri = tracking_uri()
    client = open_client(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is not None:
        if EXPERIMENT_KIND_TAG not in exp.tags:  # a kind chosen in the UI is left alone
            try:
                client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG,
                                          EXPERIMENT_KIND)
            except Exception:  # noqa: BLE001 - only a label for the UI: a user without the
                pass  # right to edit the experiment still logs to it
        # A run whose process was killed (kill -9, the OOM killer) cannot end itself, and DVC
        # may never run its stage again (its outputs were kept): end it at the first look.
        mark_dead_runs(exp.experiment_id)
        return exp.experiment_id
    # A local store gets an absolute artifact root beside it: mlflow's default (./mlruns
    # relative to the working directory) would scatter artifacts into DVC's temp copies.
    location = (project_root() / ARTIFACT_DIR).as_uri() if _is_local_store(uri) else None
    try:
        return client.create_experiment(experiment, artifact_location=location,
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except Exception:
        # Another process (a parallel queued experiment) created it first.
        exp = client.get_experiment_by_name(experiment)
        if exp is None:
            raise
        return exp.experiment_id


# The runs table `make ui` opens: each run's primary test metric and the settings that tell
# the variants apart as columns, with no clicks. MLflow 3.17's UI reads a "shared view" from the
# experiment tag mlflow.sharedViewState.<key> when the address carries viewStateShareKey=<key>.
VIEW_KEY = "dlbasics"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"


def view_columns() -> list[str]:
    """The UI's column ids (group.`name`): every task's primary test metric, the dataset, the
    model and the optimiser's settings."""
    from dlbasics.learn.tasks import PRIMARY

    metrics = sorted({f"test_{m.name}" for m in PRIMARY.values()})
    return ([f"metrics.`{m}`" for m in metrics] + ["tags.`dataset`"]
            + [f"params.`{p}`" for p in ("model.kind", "model.hidden", "optimizer.name",
                                         "optimizer.lr", "epochs")])


def ui_address(experiment: str, base: str) -> str:
    """The address of `experiment`'s runs table in the MLflow UI at `base` (http://HOST:PORT);
    the experiment is set up (created, tagged) first, and its shared view (view_columns) set.

    MLflow 3.17's UI picks its GenAI or model-training pages by a workflowType kept in the
    browser (GenAI until the sidebar's "Model training" switch is clicked), whatever the
    experiment's tag says; workflowType in the address overrides it for that page.
    """
    import json

    exp_id = setup(experiment)
    try:
        open_client(tracking_uri()).set_experiment_tag(
            exp_id, VIEW_TAG, json.dumps({"selectedColumns": view_columns()}))
        view = f"&viewStateShareKey={VIEW_KEY}"
    except Exception:  # noqa: BLE001 - a user who may not edit the experiment: default columns
        view = ""
    return (f"{base.rstrip('/')}/#/experiments/{exp_id}/runs"
            f"?workflowType=machine_learning{view}")


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

    def flush(self, quiet: bool = False) -> None:
        """Send what is pending; `quiet` (while another error unwinds) drops a failure to send
        instead of hiding that error behind it."""
        import mlflow

        try:
            client = mlflow.MlflowClient()
            while self.pending:
                chunk, self.pending = self.pending[:1000], self.pending[1000:]
                client.log_batch(self.run_id, metrics=chunk)
        except Exception:
            if not quiet:
                raise
        self.last = time.monotonic()


def _process_alive(pid: int, since_ms: int | None = None) -> bool:
    """Whether process `pid` of this host lives (a zombie does not) and, on Linux, started
    no later than `since_ms` (ms since the epoch): else the pid was reused by another process."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        boot = next(
            int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
    except (OSError, StopIteration, ValueError):
        return True  # no /proc: trust kill(0)
    fields = stat.rsplit(")", 1)[1].split()  # after "pid (comm)": state is fields[0]
    if fields[0] in ("Z", "X"):
        return False
    started_ms = (boot + int(fields[19]) / os.sysconf("SC_CLK_TCK")) * 1000
    # One clock tick and a second of slack: the run starts after its process does.
    return since_ms is None or started_ms <= since_ms + 1000


def mark_dead_runs(experiment_id: str, value: str | None = None,
                   tag: str = "variant") -> list[str]:
    """Mark KILLED the RUNNING runs of this host whose process (`pid` tag) is gone: all of
    them, or those whose `tag` is `value` (a variant, or the `kind` of a run such as `report`).

    A process killed with SIGKILL (or the OOM killer) cannot end its run; `setup` ends it the
    next time any process of the project opens the experiment. Runs of live processes
    (parallel queued experiments, the other stages of a running pipeline) and runs of other
    hosts are left alone. Returns the run ids marked.
    """
    import mlflow

    client = mlflow.MlflowClient()
    host = socket.gethostname()
    flt = (f"attributes.status = 'RUNNING' and tags.`host` = '{host}'"
           + (f" and tags.`{tag}` = '{value}'" if value is not None else ""))
    marked = []
    for r in client.search_runs([experiment_id], filter_string=flt, max_results=1000):
        pid = r.data.tags.get("pid", "")
        if not pid.isdigit() or _process_alive(int(pid), r.info.start_time):
            continue
        dead = [r.info.run_id, *(
            c.info.run_id for c in client.search_runs(
                [experiment_id],
                filter_string=(f"attributes.status = 'RUNNING' and "
                               f"tags.`mlflow.parentRunId` = '{r.info.run_id}'"),
                max_results=1000,
            )
        )]
        for run_id in dead:
            client.set_tag(run_id, "failure", f"process {pid} died")
            client.set_terminated(run_id, status="KILLED")
        marked += dead
    return marked


def _forget_active_run() -> None:
    """Drop the active run in this process without asking the server, which stopped
    answering: ending it there would wait through the retries again (here, and once more in
    mlflow's exit handler). The next run of the same variant marks it KILLED."""
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack:
        stack.pop()
    os.environ.pop("MLFLOW_RUN_ID", None)


@contextmanager
def run(experiment: str, run_name: str, tags: dict[str, str]) -> Iterator[Any]:
    """An MLflow run that ends FINISHED, FAILED (reason in the `failure` tag) or KILLED.

    Runs left RUNNING by dead processes are marked KILLED first (by `setup`).
    """
    import mlflow

    exp_id = setup(experiment)
    active = mlflow.start_run(
        experiment_id=exp_id, run_name=run_name,
        tags={**dvc_tags(), "pid": str(os.getpid()), **tags},
    )
    try:
        yield active
    except KeyboardInterrupt as exc:
        from dlbasics.errors import Terminated

        mlflow.set_tag("failure",
                       f"interrupted ({'SIGTERM' if isinstance(exc, Terminated) else 'SIGINT'})")
        mlflow.end_run(status="KILLED")
        raise
    except BaseException as exc:
        if tracking_lost(exc):
            _forget_active_run()
            raise
        mlflow.set_tag("failure", f"{type(exc).__name__}: {exc}"[:5000])
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")


def find_run(experiment: str, tags: dict[str, str]) -> Any | None:
    """The newest run of `experiment` carrying all `tags`, or None."""
    client = open_client(tracking_uri())
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    runs = client.search_runs(
        [exp.experiment_id], filter_string=flt, order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return runs[0] if runs else None


# ----------------------------------------------------------------------------- a run logged aside


class RunAside:
    """An MLflow run whose artifacts a child process logs, started before the caller's work:
    importing mlflow and opening its store (about 2 s) then overlap that work on another core.

        aside = RunAside(experiment, "report", {"kind": "report"})
        ...write the files...
        aside.log_artifacts([path, ...])   # waits; raises TrackingError on failure

    The run exists only once the files are handed over: a caller that stops first (an error, an
    interrupt) closes the child's input and the child exits without creating a run.
    """

    def __init__(self, experiment: str, run_name: str, tags: dict[str, str]):
        import json
        import sys

        self._proc = subprocess.Popen(
            [sys.executable, "-m", "dlbasics.tracking.runs", experiment, run_name, json.dumps(tags)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def log_artifacts(self, files: list[Path]) -> None:
        out, err = self._proc.communicate("\n".join(str(Path(f).resolve()) for f in files))
        if self._proc.returncode != 0:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            raise TrackingError(lines[-1] if lines else
                                f"logging the run aside exited {self._proc.returncode}")

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.stdin.close()  # EOF before any file: the child logs nothing
            self._proc.wait()


def _log_aside(experiment: str, run_name: str, tags_json: str) -> int:
    """The child of RunAside: open the store, read the file paths from stdin, log them as the
    artifacts of one run. Exit 5 (one line on stderr) when the store cannot be used."""
    import json
    import sys

    from dlbasics import trace

    trace.process("report run")
    try:
        with trace.span("import MLflow and open the store", "tracking"):
            setup(experiment)
        with trace.span("wait for the files", "wait"):
            files = [ln for ln in sys.stdin.read().splitlines() if ln]
        if not files:
            return 0
        with trace.span(f"{run_name}: log the run", "tracking"), \
                run(experiment, run_name, json.loads(tags_json)):
            import mlflow

            for path in files:
                mlflow.log_artifact(path)
    except TrackingError as exc:
        print(exc, file=sys.stderr)  # the stage process re-raises it as its one line
        return 5
    return 0


def _print_ui_address(params_path: str, base: str) -> int:
    """`make ui`: print where the runs of the experiment of params.yaml are (exit 0, or 5 with
    one line on stderr when the store cannot be used: the UI starts anyway)."""
    import sys

    from dlbasics.config.loading import load_params
    from dlbasics.errors import ConfigError

    try:
        experiment = load_params(params_path).tracking.experiment
        print(f"The runs of experiment {experiment}: {ui_address(experiment, base)}", flush=True)
    except (ConfigError, TrackingError) as exc:
        print(exc, file=sys.stderr)
        return 5
    return 0


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--ui-address"]:  # python -m dlbasics.tracking.runs --ui-address PARAMS BASE
        code = _print_ui_address(*sys.argv[2:4])
    else:
        code = _log_aside(*sys.argv[1:4])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # without the interpreter's teardown, as cli.exit_fast (not imported: the
    # training code's closure would take in the stage entry points)
