"""runtime.executor: ray for real: the select stages' jobs as Ray tasks on a two-node cluster on
127.0.0.1 (`ray.cluster_utils.Cluster`, one CPU per node), and on the private instance a stage
starts when no address is given. The answer is the same bytes as the local path's; a worker
killed mid-grid is retried; an unreachable head is one line within 15 s, nothing written."""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import digest_tree, make_project, ran, run, tool_env
from test_reliability import free_port, runs, tiny

pytestmark = pytest.mark.slow

# Every Ray server these tests start listens on 127.0.0.1, not on the host's address. Ray reads
# this when first imported: set before any test of this module imports it.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

SEARCHES = {
    # Three learning rates (the last one diverges: recorded and excluded) x two batch sizes of
    # one architecture: one batched job where the size rule says so.
    "grid": {"base": "base", "k": 2, "overrides": {"epochs": 20},
             "grid": {"optimizer.lr": [0.01, 0.03, 50.0], "batch_size": [10, 50]}},
    # Three configurations one by one: three tasks, long enough to kill one mid-way.
    "seq": {"base": "base", "k": 2, "overrides": {"epochs": 80}, "batched": "never",
            "grid": {"optimizer.lr": [0.01, 0.02, 0.03]}},
}


def _params(params: dict) -> dict:
    params = tiny(params)
    params["select"] = {"searches": copy.deepcopy(SEARCHES)}
    return params


def _answer(proj: Path, search: str) -> dict[str, str]:
    """Every byte a select stage writes: its model directory and its table."""
    return {**digest_tree(proj / "data/select" / search, relative_to=proj),
            **digest_tree(proj / "reports/selection" / f"{search}.json", relative_to=proj)}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "object_store_memory": 80 * 2**20}
    c = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    try:
        c.add_node(**node)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The project reproduced with the local executor, then switched to ray (a runtime key:
    no stage depends on it, so `-f` reruns the select stages)."""
    proj = make_project(tmp_path_factory.mktemp("ray") / "proj", _params)
    assert "select@seq" in ran(run(["dvc", "repro"], proj))
    answers = {s: _answer(proj, s) for s in SEARCHES}
    rows = json.loads((proj / "reports/selection/grid.json").read_text())  # a row per fold
    assert len({r["config"] for r in rows if r["diverged"]}) == 2  # lr 50, both batch sizes
    assert {r["path"] for r in rows} == {"batched"}  # the batched path, within one task on Ray
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["runtime"]["executor"] = "ray"
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run(["dvc", "status"], proj).stdout.strip().endswith("up to date.")
    return proj, answers


def _select_runs(proj: Path, search: str) -> list:
    """The runs of select@search in the project's store, newest first."""
    return sorted(runs(f"sqlite:///{proj / 'mlflow.db'}", variant=f"select@{search}"),
                  key=lambda r: r.info.start_time, reverse=True)


def test_on_a_two_node_cluster_the_answer_is_the_same_bytes(cluster, local):
    proj, answers = local
    out = run(["dvc", "repro", "-f", "-s", "select@grid", "select@seq"], proj,
              RAY_ADDRESS=cluster.address)
    assert ran(out) == {"select@grid", "select@seq"}
    assert "on Ray" in out.stdout
    for search in SEARCHES:
        assert _answer(proj, search) == answers[search], search
        runs = _select_runs(proj, search)
        parent = next(r for r in runs if not r.data.tags.get("mlflow.parentRunId"))
        assert parent.data.tags["executor"] == "ray" and parent.info.status == "FINISHED"
        mine = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        n_configs = 1
        for values in SEARCHES[search]["grid"].values():
            n_configs *= len(values)
        assert len(mine) == n_configs and all(r.info.status == "FINISHED" for r in mine)
    assert run(["dvc", "status"], proj).stdout.strip().endswith("up to date.")


def test_on_a_private_instance_the_answer_is_the_same_bytes(local):
    proj, answers = local
    env = {k: v for k, v in tool_env().items() if k != "RAY_ADDRESS"}
    proc = subprocess.run(["dvc", "repro", "-f", "-s", "select@grid"], cwd=proj, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on Ray" in proc.stdout
    assert _answer(proj, "grid") == answers["grid"]


def _pids_titled(title: str) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines()[1:]
            if line.split(None, 1)[1].strip() == title]


def test_a_worker_killed_mid_grid_is_retried_and_the_answer_holds(cluster, local):
    proj, answers = local
    proc = subprocess.Popen(["dvc", "repro", "-f", "-s", "select@seq"], cwd=proj,
                            env=tool_env(RAY_ADDRESS=cluster.address), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    killed = None
    try:
        deadline = time.monotonic() + 180
        while killed is None and proc.poll() is None and time.monotonic() < deadline:
            for pid in _pids_titled("ray::select@seq"):  # a worker running one of its jobs
                os.kill(pid, signal.SIGKILL)
                killed = pid
                break
            time.sleep(0.02)
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert killed is not None, "no job of select@seq was seen running on the cluster"
    assert proc.returncode == 0, out[-3000:]
    assert _answer(proj, "seq") == answers["seq"]
    parent = next(r for r in _select_runs(proj, "seq")
                  if not r.data.tags.get("mlflow.parentRunId"))
    assert parent.data.tags["executor"] == "ray" and parent.info.status == "FINISHED"


def test_an_unreachable_head_is_one_line_within_15_s_and_nothing_is_written(local):
    proj, answers = local
    before = digest_tree(proj / "data", proj / "reports", relative_to=proj)
    runs_before = len(_select_runs(proj, "seq"))
    address = f"127.0.0.1:{free_port()}"
    t0 = time.monotonic()
    proc = subprocess.run(["dvc", "repro", "-f", "-s", "select@seq"], cwd=proj,
                          env=tool_env(RAY_ADDRESS=address), capture_output=True, text=True,
                          timeout=120)
    took = time.monotonic() - t0
    assert proc.returncode != 0
    assert took < 15, f"took {took:.1f} s to fail"
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(ours) == 1, proc.stderr[-3000:]
    assert address in ours[0] and "RAY_ADDRESS" in ours[0] and "unreachable" in ours[0]
    assert "exited with 6" in proc.stderr and "Traceback" not in proc.stderr
    assert digest_tree(proj / "data", proj / "reports", relative_to=proj) == before
    assert len(_select_runs(proj, "seq")) == runs_before  # no run was started


LISTENERS = """
import json, os, subprocess
from dlbasics.search import cluster
from dlbasics.config.settings import RaySettings

with cluster.connected(RaySettings(), threads=1) as ray:
    cpus = ray.cluster_resources().get("CPU")
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    mine = [ln for ln in out.splitlines()
            if any(name in ln for name in ('"raylet"', '"gcs_server"', '"ray::'))]
print(json.dumps({"cpus": cpus, "listening": mine}))
"""


def test_a_private_instance_listens_on_127_0_0_1_only():
    """In a fresh process, as a stage runs it: nothing set beforehand."""
    import json
    import sys

    env = {k: v for k, v in tool_env().items()
           if k not in ("RAY_ADDRESS", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")}
    proc = subprocess.run([sys.executable, "-c", LISTENERS], env=env, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["cpus"] == os.cpu_count()
    assert got["listening"]
    for line in got["listening"]:
        local = line.split()[3]
        assert local.startswith(("127.0.0.1:", "[::ffff:127.0.0.1]:")), line


def test_the_ray_bench_compares_three_runs_of_the_same_search(tmp_path):
    """bench --ray in a fresh process (a private instance as a stage starts it)."""
    import json
    import sys

    params = tmp_path / "params.yaml"
    base = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params.write_text(yaml.safe_dump(_params(base), sort_keys=False))
    out = tmp_path / "bench.json"
    env = {k: v for k, v in tool_env().items() if k != "RAY_ADDRESS"}
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench", "--ray", "--search", "grid",
                           "--select-repeats", "1", "--params", str(params), "--out", str(out)],
                          env=env, capture_output=True, text=True, timeout=600,
                          cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = json.loads(out.read_text())["ray"]
    assert r["same_bytes"] is True
    assert r["local"]["runs"] == r["ray_private"]["runs"] == r["ray_running"]["runs"] == 1
    assert "Ray private / local" in proc.stdout
