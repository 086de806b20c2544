"""No MLflow run stays RUNNING after its process is gone: `kill -9` of a search mid-way leaves
its run RUNNING (nothing can end it), DVC then finds every stage up to date and opens no store,
and the next thing of the project that opens the experiment marks the run KILLED: one edit's
`dvc exp run` (another stage's, not the search's) or `make ui`. On the local sqlite store and
on the team stack alike."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ran, run, tool_env
from test_reliability import tiny
from test_stack_lifecycle import as_a_user_would, exported, forget_pg_dir

from dlbasics.tracking import services

pytestmark = pytest.mark.slow

SEARCH = "select@tiny"


def slow_search(params: dict) -> dict:
    """tiny, with a search long enough to be killed half-way (its configurations train 150
    epochs: several seconds)."""
    params = tiny(params)
    params["select"]["searches"]["tiny"]["overrides"]["epochs"] = 150
    return params


def _client(uri: str, env: dict[str, str]):
    import mlflow

    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        if key in env:
            os.environ[key] = env[key]
    return mlflow.MlflowClient(tracking_uri=uri)


def _runs(client, **tags: str) -> list:
    exp = client.get_experiment_by_name("dlbasics")
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items()) or None
    return client.search_runs([exp.experiment_id], filter_string=flt, max_results=1000)


def _kill_9_mid_search(proj: Path, client, env: dict[str, str]) -> list:
    """`dvc repro -f -s select@tiny`, killed (-9, dvc and the stage) once the search's run is
    RUNNING in the store; the runs it left RUNNING."""
    before = {r.info.run_id for r in _runs(client, variant=SEARCH)}
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", SEARCH], cwd=proj,
                            env=tool_env(**env), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, "the search ended before it could be killed"
            assert time.monotonic() < deadline, "the search never started a run"
            new = [r for r in _runs(client, variant=SEARCH) if r.info.run_id not in before]
            if new:  # the search's run: its configurations are under way (their nested runs
                break  # are logged when they end)
            time.sleep(0.2)
        time.sleep(1.0)
        assert proc.poll() is None, "the search ended before it could be killed"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    ghosts = [r for r in _runs(client, variant=SEARCH)
              if r.info.run_id not in before and r.info.status == "RUNNING"]
    assert ghosts, "the killed search left no RUNNING run to test"
    return ghosts


def _assert_killed(client, ghosts: list) -> None:
    for g in ghosts:
        r = client.get_run(g.info.run_id)
        assert r.info.status == "KILLED", (r.info.run_name, r.info.status)
        assert r.data.tags["failure"].endswith(" died"), r.data.tags.get("failure")


@pytest.fixture(params=["sqlite", "stack"])
def store(request, tmp_path):
    """A fresh clone of the project with the slow search, reproduced once against the local
    sqlite store or against the team stack (`make services` in the clone)."""
    proj = as_a_user_would(tmp_path / "proj")
    params = proj / "params.yaml"
    import yaml

    params.write_text(yaml.safe_dump(slow_search(yaml.safe_load(params.read_text())),
                                     sort_keys=False))
    run(["git", "commit", "-qam", "a slow search"], proj)
    if request.param == "sqlite":
        env = {}
        uri = f"sqlite:///{proj / 'mlflow.db'}"
        yield proj, env, uri
        return
    ports = {"DLBASICS_PG_PORT": str(services.free_port()),
             "DLBASICS_S3_PORT": str(services.free_port()),
             "DLBASICS_MLFLOW_PORT": str(services.free_port())}
    try:
        run(["make", "services"], proj, **ports)
        env = {k: v for k, v in exported(run(["make", "-s", "services-env"], proj,
                                             **ports).stdout).items()
               if k.startswith("MLFLOW_")}
        yield proj, env, env["MLFLOW_TRACKING_URI"]
    finally:
        run(["make", "services-stop"], proj, check=False, **ports)
        forget_pg_dir(proj / ".services")


def test_a_search_killed_with_9_is_marked_killed_by_the_next_look_at_the_store(store):
    proj, env, uri = store
    t0 = time.perf_counter()
    run(["dvc", "repro"], proj, **env)
    client = _client(uri, env)
    ghosts = _kill_9_mid_search(proj, client, env)
    # DVC finds every stage up to date (the killed stage's outputs were kept) and runs nothing:
    # nothing of the project opens the store, so the runs are still RUNNING here ...
    assert ran(run(["dvc", "repro"], proj, **env)) == set()
    assert {client.get_run(g.info.run_id).info.status for g in ghosts} == {"RUNNING"}
    # ... until one edit's experiment, which retrains another stage, opens it.
    out = run(["dvc", "exp", "run", "-S", "train.linreg.optimizer.lr=0.02"], proj, **env)
    assert "train" in ran(out) and SEARCH not in ran(out)
    _assert_killed(client, ghosts)
    assert not _runs(client) or all(r.info.status != "RUNNING" for r in _runs(client))
    print(f"\n{uri.split(':')[0]}: {time.perf_counter() - t0:.1f} s")


GHOST = """
import os, time
from dlbasics.tracking import runs
with runs.run("dlbasics", "ghost", {"variant": "ghost"}) as r:
    print(r.info.run_id, flush=True)
    time.sleep(600)
"""


def test_make_ui_marks_a_dead_process_s_run_killed(tmp_path):
    """`make ui` opens the store before the UI starts: a run whose process was killed is
    KILLED by then."""
    proj = as_a_user_would(tmp_path / "proj")
    uri = f"sqlite:///{proj / 'mlflow.db'}"
    ghost = subprocess.Popen([sys.executable, "-c", GHOST], cwd=proj, text=True,
                             env=tool_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(proj / "src")),
                             stdout=subprocess.PIPE)
    run_id = ghost.stdout.readline().strip()
    ghost.kill()
    ghost.wait()
    client = _client(uri, {})
    assert client.get_run(run_id).info.status == "RUNNING"
    port = services.free_port()
    ui = subprocess.Popen(["make", "ui", f"PORT={port}"], cwd=proj, env=tool_env(), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          start_new_session=True)
    try:
        seen = []
        deadline = time.monotonic() + 120
        while not any("The runs of experiment" in ln for ln in seen):
            assert time.monotonic() < deadline and ui.poll() is None, "".join(seen)
            seen.append(ui.stdout.readline())
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(30)
    r = client.get_run(run_id)
    assert r.info.status == "KILLED"
    assert r.data.tags["failure"] == f"process {ghost.pid} died"
