"""The team stack as docs/stack.md tells a user to run it, from a fresh clone with the default
(relative) state directory `.services`: `make services`, `eval "$(make -s services-env)"`, the
pipeline logging to it and pushing to its S3 remote; then a clean stop and start, a `kill -9`
of every stack process, and a backup restored into another fresh clone. After each, the
champion loads and predicts what it predicted before, every logged artifact downloads
byte-identical, every object of the S3 store is still there byte-identical, and a teammate's
fresh clone pulls everything with `dvc pull` and has nothing to reproduce.

The clone lives under pytest's temporary directory, which is private (mode 700): run as root,
PostgreSQL (which runs as the user `postgres`) cannot reach it, so `make services` puts its
data directory under ~postgres and says so; that is the case of a clone in root's home."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, make_project, ran, run, tool_env
from test_reliability import tiny

from dlbasics.tracking import services

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (services.PG_BIN / "initdb").is_file(),
                       reason=f"needs PostgreSQL 15 ({services.PG_BIN})"),
]

DOC = REPO / "docs" / "stack.md"
VENV = Path(sys.prefix)  # the virtual environment running the tests (make builds .venv)


def doc_block(first_line: str) -> str:
    """The ```bash block of docs/stack.md that starts with `first_line`."""
    for block in re.findall(r"```bash\n(.*?)```", DOC.read_text(), re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"docs/stack.md has no bash block starting {first_line!r}")


def as_a_user_would(dest: Path, params_edit=None, source: Path | None = None) -> Path:
    """A fresh clone at `dest` (of `source`, else of this repository with `params_edit`) whose
    .venv is the tests' one, already built: `make` finds its stamps up to date and installs
    nothing."""
    if source is None:
        make_project(dest, params_edit or slow_search)
    else:
        run(["git", "clone", "-q", str(source), str(dest)], dest.parent)
    (dest / ".venv").symlink_to(VENV, target_is_directory=True)
    # .gitignore's `.venv/` matches a directory, not this link: keep it out of commits.
    with open(dest / ".git" / "info" / "exclude", "a") as fh:
        fh.write("/.venv\n")
    built = min((VENV / stamp).stat().st_mtime for stamp in (".installed", ".s3rver-installed"))
    for rel in ("requirements.lock", "pyproject.toml", "services/s3rver/package.json",
                "services/s3rver/package-lock.json"):
        os.utime(dest / rel, (built - 60, built - 60))
    return dest


def sh(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """`script` run by bash (-e) in `cwd`, as a user types it, with `env` exported."""
    proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=cwd,
                          env=tool_env(**env), capture_output=True, text=True)
    assert proc.returncode == 0, (f"{script}\nexited {proc.returncode}\nstdout:\n"
                                  f"{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}")
    return proc


def exported(text: str) -> dict[str, str]:
    return dict(line.removeprefix("export ").split("=", 1) for line in text.splitlines()
                if line.startswith("export "))


def forget_pg_dir(state: Path) -> None:
    """Remove the data directory `up` put under ~postgres for `state` (if it did)."""
    recorded = state / "postgres-dir"
    if recorded.is_file():
        shutil.rmtree(Path(recorded.read_text().strip()).parent, ignore_errors=True)


SEARCH = "select@tiny"


def slow_search(params: dict) -> dict:
    """tiny, with a search long enough to be killed half-way (its configurations train 150
    epochs: several seconds)."""
    params = tiny(params)
    params["select"]["searches"]["tiny"]["overrides"]["epochs"] = 150
    return params


def ghost_client(uri: str, env: dict[str, str]):
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


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A fresh clone, its stack started with `make services` on free ports and the default
    state, the docs' teammate commands run in it (the pipeline logs to the stack and pushes),
    its dvc.lock committed. Yields (clone, ports env, client env, what it looked like)."""
    proj = as_a_user_would(tmp_path_factory.mktemp("lifecycle") / "proj")
    ports = {"DLBASICS_PG_PORT": str(services.free_port()),
             "DLBASICS_S3_PORT": str(services.free_port()),
             "DLBASICS_MLFLOW_PORT": str(services.free_port())}
    try:
        t0 = time.perf_counter()
        up = sh(doc_block("make services"), proj, ports)
        print(f"\nmake services, then the docs' teammate commands: "
              f"{time.perf_counter() - t0:.1f} s")
        run(["git", "add", "-A"], proj)
        run(["git", "commit", "-qm", "reproduced against the team stack"], proj)
        env = exported(run(["make", "-s", "services-env"], proj, **ports).stdout)
        yield proj, ports, env, up, snapshot(proj, env, tmp_path_factory.mktemp("before"))
    finally:
        for where in (proj, proj.parent / "restored"):
            if (where / ".services").is_dir():
                run(["make", "services-stop"], where, check=False, **ports)
                forget_pg_dir(where / ".services")


def _client(env: dict[str, str]):
    import mlflow

    os.environ["MLFLOW_TRACKING_USERNAME"] = env["MLFLOW_TRACKING_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = env["MLFLOW_TRACKING_PASSWORD"]
    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


CHAMPION = """
import json, sys, numpy as np, mlflow
model = mlflow.pyfunc.load_model(sys.argv[1])
out = model.predict(np.load(sys.argv[2])[:16])
print(json.dumps(out.to_dict(orient="list") if hasattr(out, "to_dict")
                 else np.asarray(out).tolist()))
"""


def snapshot(proj: Path, env: dict[str, str], dest: Path) -> dict:
    """What the stack holds for `proj`'s runs: the champion's predictions (loaded through the
    server in a fresh process), the sha256 of every artifact of every run downloaded through
    the server, and of every object in the bucket read through the S3 API."""
    import boto3
    import mlflow
    import yaml

    client = _client(env)
    exp = client.get_experiment_by_name("dlbasics")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    artifacts = {}
    for r in runs:
        got = Path(mlflow.artifacts.download_artifacts(
            run_id=r.info.run_id, artifact_path="", dst_path=str(dest / r.info.run_id),
            tracking_uri=env["MLFLOW_TRACKING_URI"]))
        for f in sorted(p for p in got.rglob("*") if p.is_file()):
            artifacts[f"{r.info.run_id}/{f.relative_to(got)}"] = \
                hashlib.sha256(f.read_bytes()).hexdigest()
    s3 = boto3.client("s3", endpoint_url=env["DLBASICS_S3_ENDPOINT"], region_name="us-east-1",
                      aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    objects = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=services.BUCKET):
        for o in page.get("Contents", []):
            body = s3.get_object(Bucket=services.BUCKET, Key=o["Key"])["Body"].read()
            objects[o["Key"]] = hashlib.sha256(body).hexdigest()
    name = yaml.safe_load((proj / "params.yaml").read_text())["tracking"]["registry"]["model"]
    champion = run([sys.executable, "-c", CHAMPION, f"models:/{name}@champion",
                    str(proj / "data/prepared/synthetic_linear/X_test.npy")], proj,
                   **{k: v for k, v in env.items() if k.startswith("MLFLOW_")}).stdout
    return {"runs": {r.info.run_id: r.info.status for r in runs}, "artifacts": artifacts,
            "objects": objects, "champion": json.loads(champion.splitlines()[-1])}


def assert_kept(proj: Path, env: dict[str, str], before: dict, tmp: Path) -> None:
    """Everything of `before` is served again, and a teammate's fresh clone pulls it all."""
    after = snapshot(proj, env, tmp / "after")
    assert after["runs"] == before["runs"]
    assert after["champion"] == before["champion"]
    assert after["artifacts"] == before["artifacts"]
    assert after["objects"] == before["objects"]
    assert any(k.startswith("dvc/") for k in after["objects"])
    assert any(k.endswith("/report.html") for k in after["artifacts"])
    clone = tmp / "teammate"
    run(["git", "clone", "-q", str(proj), str(clone)], tmp)
    sh(doc_block("dvc pull"), clone, {k: v for k, v in env.items()
                                      if k.startswith(("MLFLOW_", "AWS_"))})
    assert json.loads(run(["dvc", "status", "--json"], clone).stdout or "{}") == {}
    again = run(["dvc", "repro"], clone, **{k: v for k, v in env.items()
                                            if k.startswith("MLFLOW_")})
    assert ran(again) == set()
    for rel in ("reports/metrics.json", "reports/report.html", "data/models/linreg/model.pt"):
        assert (clone / rel).read_bytes() == (proj / rel).read_bytes(), rel


def test_make_services_works_from_a_fresh_clone_as_written(team):
    proj, ports, env, up, before = team
    state = proj / ".services"
    assert (state / "credentials.env").is_file() and (state / "s3" / services.BUCKET).is_dir()
    assert env["MLFLOW_TRACKING_URI"] == f"http://127.0.0.1:{ports['DLBASICS_MLFLOW_PORT']}"
    # stdout is only what to export: `eval "$(make -s services-env)"` sets every variable.
    got = sh('eval "$(make -s services-env)"; env', proj, ports).stdout
    assert exported(run(["make", "-s", "services-env"], proj, **ports).stdout).items() \
        <= dict(line.split("=", 1) for line in got.splitlines() if "=" in line).items()
    private = subprocess.run(services._as_postgres(["test", "-x", str(state)]),
                             check=False).returncode != 0
    if os.geteuid() == 0 and private:
        # root's case: one line says where PostgreSQL's data went, and it works there.
        moved = [ln for ln in up.stderr.splitlines() if "cannot reach" in ln]
        assert len(moved) == 1, up.stderr
        data = Path((state / "postgres-dir").read_text().strip())
        assert str(data) in moved[0] and (data / "PG_VERSION").is_file()
        assert data.is_relative_to(Path("~postgres").expanduser())
    assert before["runs"] and set(before["runs"].values()) == {"FINISHED"}
    assert before["champion"]


def test_a_clean_stop_and_start_keep_every_run_artifact_and_object(team, tmp_path):
    proj, ports, env, _, before = team
    run(["make", "services"], proj, **ports)  # running: nothing changes
    stop = run(["make", "services-stop"], proj, **ports)
    assert "stopped" in stop.stdout
    for pidfile in ("mlflow.pid", "s3.pid"):
        assert not (proj / ".services" / pidfile).exists()
    run(["make", "services"], proj, **ports)
    assert_kept(proj, env, before, tmp_path)


def _descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc's parent ids)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _running(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_kill_9_of_every_stack_process_keeps_every_run_artifact_and_object(team, tmp_path):
    """Killed while idle, after the pipeline's last write: nothing was in flight, so nothing
    may be missing. (A write in flight at the kill would be missing whole: s3rver renames an
    object into place only once complete, PostgreSQL replays its WAL; an upload cut short is
    tested in test_stack.py.)"""
    proj, ports, env, _, before = team
    run(["make", "services"], proj, **ports)
    state = proj / ".services"
    pg = services.pg_dir(state)
    victims = []
    for pid in (int((state / "mlflow.pid").read_text()), int((state / "s3.pid").read_text()),
                int((pg / "postmaster.pid").read_text().split()[0])):
        victims += _descendants(pid)
    assert len(victims) >= 6  # mlflow and its workers, node, the postmaster and its children
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while any(_running(p) for p in victims):
        assert time.monotonic() < deadline, "killed processes still there"
        time.sleep(0.2)
    run(["make", "services"], proj, **ports)
    assert_kept(proj, env, before, tmp_path)


def test_a_backup_restored_into_a_fresh_clone_serves_everything(team, tmp_path):
    """The docs' backup block as written: a backup named by the time, one named by ARCHIVE
    (beside the clone), restored by `make services-restore` in another fresh clone beside it,
    the first stack stopped (another machine, say: the same ports, none of the old state)."""
    proj, ports, env, _, before = team
    default, named, restore = [line.split("#")[0].strip()
                               for line in doc_block("make services-backup").splitlines()]
    run(["make", "services"], proj, **ports)
    out = sh(default, proj, ports).stdout
    (stamped,) = proj.glob("services-backup-*.tar.gz")
    assert f"backup written to {stamped}" in out
    archive = (proj / named.split("ARCHIVE=")[1]).resolve()
    assert f"backup written to {archive}" in sh(named, proj, ports).stdout
    for got in (stamped, archive):
        assert got.stat().st_mode & 0o077 == 0  # it holds the secrets: the owner's only
    run(["make", "services-stop"], proj, **ports)
    other = as_a_user_would(proj.parent / "restored", source=proj)
    restored = sh(restore, other, ports)
    assert exported(restored.stdout) == env  # the same logins and keys, from the archive
    assert_kept(proj, env, before, tmp_path)  # served from other/.services now
    # A second restore into the same state is refused with one line; so is a missing archive.
    again = run(["make", "-s", "services-restore", f"ARCHIVE={archive}"], other, check=False,
                **ports)
    assert again.returncode != 0
    assert [ln for ln in again.stderr.splitlines() if ln.startswith("services:")] == [
        f"services: restore: {other / '.services'} already holds a stack; stop it and move it "
        "away first, or restore into another directory (--state)"]
    missing = run(["make", "-s", "services-restore"], other, check=False, **ports)
    assert missing.returncode != 0 and "name the archive" in missing.stderr
    run(["make", "services-stop"], other, **ports)


def test_every_command_docs_stack_md_shows_is_run_here_as_written():
    """docs/stack.md's bash blocks are the three this file runs line by line (tests/test_docs.py
    leaves the page to this file)."""
    blocks = re.findall(r"^```bash\n(.*?)^```", DOC.read_text(), re.S | re.M)
    assert sorted(b.split()[0] + " " + b.split()[1] for b in blocks) == [
        "dvc pull", "make services", "make services-backup"]
    source = Path(__file__).read_text()
    for first in ("make services", "dvc pull", "make services-backup"):
        assert f'doc_block("{first}")' in source


def test_a_search_killed_with_9_on_the_stack_is_marked_killed_by_the_next_look(team):
    """tests/test_ghost_runs.py's scenario on the stack (last here: it adds runs)."""
    from test_ghost_runs import ghost_is_killed_by_the_next_look

    proj, ports, env, _, _ = team
    run(["make", "services"], proj, **ports)
    client_env = {k: v for k, v in env.items() if k.startswith("MLFLOW_")}
    ghost_is_killed_by_the_next_look(proj, client_env,
                                     ghost_client(env["MLFLOW_TRACKING_URI"], client_env))
