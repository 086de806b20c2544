"""No MLflow run stays RUNNING after its process is gone: `kill -9` of a search mid-way leaves
its run RUNNING (nothing can end it), DVC then finds every stage up to date and opens no store,
and the next thing of the project that opens the experiment marks the run KILLED: one edit's
`dvc exp run` (another stage's, not the search's) or `make ui`. On the local sqlite store and
on the team stack alike (the stack's case runs in tests/test_stack_lifecycle.py, on the
project it has reproduced)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ran, run, tool_env
from test_stack_lifecycle import (
    SEARCH,
    _assert_killed,
    _kill_9_mid_search,
    _runs,
    as_a_user_would,
    ghost_client,
    slow_search,
)

from dlbasics.tracking import services

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path):
    """A fresh clone of the project with the slow search, on the local sqlite store. (The same
    on the team stack: tests/test_stack_lifecycle.py, on its reproduced project.)"""
    proj = as_a_user_would(tmp_path / "proj", slow_search)
    return proj, {}, f"sqlite:///{proj / 'mlflow.db'}"


def test_a_search_killed_with_9_is_marked_killed_by_the_next_look_at_the_store(store):
    proj, env, uri = store
    t0 = time.perf_counter()
    run(["dvc", "repro"], proj, **env)
    ghost_is_killed_by_the_next_look(proj, env, ghost_client(uri, env))
    print(f"\nsqlite: {time.perf_counter() - t0:.1f} s")


def ghost_is_killed_by_the_next_look(proj, env, client) -> None:
    """The scenario, on a project reproduced against `client`'s store."""
    ghosts = _kill_9_mid_search(proj, client, env)
    # DVC finds every stage up to date (the killed stage's outputs were kept) and runs nothing:
    # nothing of the project opens the store, so the runs are still RUNNING here ...
    assert ran(run(["dvc", "repro"], proj, **env)) == set()
    assert {client.get_run(g.info.run_id).info.status for g in ghosts} == {"RUNNING"}
    # ... until one edit's experiment, which retrains another stage, opens it.
    out = run(["dvc", "exp", "run", "-S", "train.linreg.optimizer.lr=0.02"], proj, **env)
    assert "train" in ran(out) and SEARCH not in ran(out)
    _assert_killed(client, ghosts)
    assert all(r.info.status != "RUNNING" for r in _runs(client))


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
    client = ghost_client(uri, {})
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
