"""The team stack for real (`dlbasics.tracking.services`): PostgreSQL 15 in a private data
directory, s3rver (objects as files) and `mlflow server` with the basic-auth app, all on
127.0.0.1; the pipeline logging to it, artifacts read back through the server, a DVC remote on
the same S3 endpoint round-tripping to a fresh clone, and no credential anywhere it should not
be. (The stack as the docs run it, from a fresh clone: test_stack_lifecycle.py.)"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from conftest import make_project, ran, run, tool_env
from test_reliability import _wait_for_line, free_port, tiny

from dlbasics.tracking import services

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (services.PG_BIN / "initdb").is_file(),
                       reason=f"needs PostgreSQL 15 ({services.PG_BIN})"),
]


@pytest.fixture(scope="module")
def stack():
    """The stack up in a temporary state directory on free ports; down at the end. The
    directory is one the user `postgres` can reach (its data directory stays inside): not under
    pytest's own, which pytest makes private (0700) again whenever a session starts."""
    top = Path(tempfile.mkdtemp(prefix="dlbasics-stack-"))
    top.chmod(0o711)
    state = top / ".services"
    ports = services.Ports(pg=free_port(), s3=free_port(), mlflow=free_port())
    try:
        env = services.up(state, ports)
        assert services.pg_dir(state) == state / "postgres"  # reachable: kept inside
        yield state, ports, env
    finally:
        services.down(state)
        shutil.rmtree(top, ignore_errors=True)


def _get(url: str, auth: tuple[str, str] | None = None) -> int:
    req = urllib.request.Request(url)
    if auth:
        req.add_header("Authorization",
                       "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_server_refuses_requests_without_credentials(stack):
    _, _, env = stack
    url = f"{env['MLFLOW_TRACKING_URI']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _get(url) == 401
    assert _get(url, ("admin", "not-the-password")) == 401
    assert _get(url, ("admin", env["MLFLOW_TRACKING_PASSWORD"])) == 200
    # The logins live in the stack's PostgreSQL, beside the runs.
    state, ports, _ = stack
    users = subprocess.run(
        [str(services.PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(ports.pg), "-U",
         services.DB_USER, "-d", services.AUTH_DB, "-tAc", "select username from users"],
        env={**os.environ, "PGPASSWORD": services.credentials(state)["DLBASICS_DB_PASSWORD"]},
        capture_output=True, text=True, check=True)
    assert users.stdout.split() == ["admin"]


def test_up_again_is_harmless_and_a_taken_port_is_one_line(stack, tmp_path):
    state, ports, env = stack
    assert services.up(state, ports) == env  # running: nothing restarted, same settings
    other = tmp_path / ".services"
    proc = subprocess.run(
        [sys.executable, "-m", "dlbasics.tracking.services", "up", "--state", str(other)],
        env={**os.environ, "DLBASICS_PG_PORT": str(ports.pg)}, capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert f"port {ports.pg}" in proc.stderr and "DLBASICS_PG_PORT" in proc.stderr
    assert not (other / "postgres-dir").exists()  # no data directory made elsewhere either


@pytest.fixture(scope="module")
def pushed(stack, tmp_path_factory):
    """A tiny project reproduced against the stack, committed, and pushed to the S3 remote
    (credentials in .dvc/config.local, as a teammate would keep them)."""
    state, ports, env = stack
    proj = make_project(tmp_path_factory.mktemp("team") / "proj", tiny)
    client = {k: v for k, v in env.items() if k.startswith("MLFLOW_")}
    first = run(["dvc", "repro"], proj, **client)
    run(["dvc", "remote", "add", "-d", "team", env["DLBASICS_DVC_REMOTE"]], proj)
    run(["dvc", "remote", "modify", "team", "endpointurl", env["DLBASICS_S3_ENDPOINT"]], proj)
    for key, var in (("access_key_id", "AWS_ACCESS_KEY_ID"),
                     ("secret_access_key", "AWS_SECRET_ACCESS_KEY")):
        run(["dvc", "remote", "modify", "--local", "team", key, env[var]], proj)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "reproduced against the team stack"], proj)
    run(["dvc", "push"], proj)
    return proj, first


def _client(env: dict[str, str]):
    import mlflow

    os.environ["MLFLOW_TRACKING_USERNAME"] = env["MLFLOW_TRACKING_USERNAME"]
    os.environ["MLFLOW_TRACKING_PASSWORD"] = env["MLFLOW_TRACKING_PASSWORD"]
    return mlflow.MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])


def _s3(env: dict[str, str]):
    import boto3

    return boto3.client("s3", endpoint_url=env["DLBASICS_S3_ENDPOINT"], region_name="us-east-1",
                        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])


def test_every_run_is_in_postgres_and_its_files_in_s3(stack, pushed, tmp_path):
    _, _, env = stack
    proj, first = pushed
    assert ran(first) == {"generate", "prepare", "train", "select@tiny", "lessons", "submit",
                          "report"}
    client = _client(env)
    exp = client.get_experiment_by_name("dlbasics")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    by_variant: dict[str, list] = {}
    for r in runs:
        by_variant.setdefault(r.data.tags.get("variant") or r.data.tags.get("kind"), []).append(r)
    assert {"linreg", "base", "select@tiny", "report"} <= set(by_variant)
    assert all(r.info.status == "FINISHED" for r in runs)
    assert "test_mse" in by_variant["linreg"][0].data.metrics
    # The server's backend is PostgreSQL: the same run, read with SQL.
    state_creds = services.credentials(stack[0])
    secret = state_creds["DLBASICS_DB_PASSWORD"]
    sql = subprocess.run(
        [str(services.PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(stack[1].pg), "-U",
         services.DB_USER, "-d", services.DB, "-tAc", "select count(*) from runs"],
        env={**os.environ, "PGPASSWORD": secret}, capture_output=True, text=True, check=True)
    assert int(sql.stdout.strip()) == len(runs)
    # Artifacts are objects in the bucket, and come back byte-identical through the server.
    keys = {o["Key"] for o in _s3(env).list_objects_v2(Bucket=services.BUCKET,
                                                        Prefix="mlflow/").get("Contents", [])}
    (report_run,) = by_variant["report"]
    assert any(k.endswith(f"{report_run.info.run_id}/artifacts/report.html") for k in keys)
    assert any(k.startswith("mlflow/") and "/figures/" in k for k in keys)
    import mlflow

    got = Path(mlflow.artifacts.download_artifacts(
        run_id=report_run.info.run_id, artifact_path="report.html", dst_path=str(tmp_path),
        tracking_uri=env["MLFLOW_TRACKING_URI"]))
    assert got.read_bytes() == (proj / "reports/report.html").read_bytes()
    # No credential in any run's params or tags, any object in the bucket, or any file of the
    # project that git tracks or DVC outputs.
    secrets = [v for k, v in state_creds.items() if k != "AWS_ACCESS_KEY_ID"]
    for r in runs:
        for key, value in [*r.data.tags.items(), *r.data.params.items()]:
            assert not any(s in value for s in secrets), f"{r.info.run_name}: {key}"
    s3 = _s3(env)
    for key in {o["Key"] for o in s3.list_objects_v2(Bucket=services.BUCKET).get("Contents", [])}:
        body = s3.get_object(Bucket=services.BUCKET, Key=key)["Body"].read()
        assert not any(s.encode() in body for s in secrets), key
    tracked = run(["git", "ls-files"], proj).stdout.split()
    files = [proj / f for f in tracked] + [p for d in ("data", "reports")
                                           for p in (proj / d).rglob("*") if p.is_file()]
    for f in files:
        assert not any(s.encode() in f.read_bytes() for s in secrets), f
    assert any(env["AWS_SECRET_ACCESS_KEY"] in p.read_text()
               for p in [proj / ".dvc/config.local"])  # where the teammate keeps the key ...
    assert ".dvc/config.local" not in tracked  # ... and git does not track it


def _clone(proj: Path, dest: Path, env: dict[str, str]) -> Path:
    """A teammate's clone of `proj` with its outputs pulled (the S3 keys from the environment,
    not .dvc/config.local)."""
    run(["git", "clone", "-q", str(proj), str(dest)], dest.parent)
    run(["dvc", "pull"], dest, **{k: v for k, v in env.items() if k.startswith("AWS_")})
    return dest


def test_a_fresh_clone_pulls_everything_and_has_nothing_to_reproduce(stack, pushed, tmp_path):
    _, _, env = stack
    proj, _ = pushed
    clone = _clone(proj, tmp_path / "clone", env)
    creds = {k: env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    status = json.loads(run(["dvc", "status", "--json"], clone).stdout or "{}")
    assert status == {}
    again = run(["dvc", "repro"], clone, **{k: v for k, v in env.items()
                                            if k.startswith("MLFLOW_")})
    assert ran(again) == set()
    for rel in ("reports/metrics.json", "reports/report.html", "data/models/linreg/model.pt"):
        assert (clone / rel).read_bytes() == (proj / rel).read_bytes(), rel
    assert "in sync" in run(["dvc", "status", "-c"], clone, **creds).stdout


def _linreg_runs(env: dict[str, str]) -> list:
    client = _client(env)
    exp = client.get_experiment_by_name("dlbasics")
    return client.search_runs([exp.experiment_id], filter_string="tags.variant = 'linreg'",
                              max_results=1000)


def test_two_teammates_experiment_at_once_and_nothing_is_lost(stack, pushed, tmp_path):
    """Two clones, each running two `dvc exp run`s one after the other, the two clones at the
    same time: four experiments, two at a time, against one server and one remote."""
    import threading

    _, _, env = stack
    proj, _ = pushed
    client_env = {k: v for k, v in env.items() if k.startswith(("MLFLOW_", "AWS_"))}
    before = {r.info.run_id for r in _linreg_runs(env)}
    rates = {"alice": (0.011, 0.012), "bob": (0.021, 0.022)}
    errors: list[str] = []

    def teammate(who: str) -> None:
        clone = tmp_path / who
        try:
            _clone(proj, clone, env)
            for lr in rates[who]:
                run(["dvc", "exp", "run", "-S", f"train.linreg.optimizer.lr={lr}"], clone,
                    **client_env)
        except AssertionError as exc:
            errors.append(f"{who}: {exc}")

    threads = [threading.Thread(target=teammate, args=(w,)) for w in rates]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0][-3000:]
    new = [r for r in _linreg_runs(env) if r.info.run_id not in before]
    lrs = sorted(float(r.data.params["optimizer.lr"]) for r in new)
    assert lrs == sorted(lr for pair in rates.values() for lr in pair)  # each once, none lost
    assert all(r.info.status == "FINISHED" and "test_mse" in r.data.metrics for r in new)
    assert {r.data.tags.get("dvc_exp_name") for r in new} != {None}


def test_eight_concurrent_loggers_complete_without_errors(stack, tmp_path):
    _, _, env = stack
    script = tmp_path / "logger.py"
    # The experiment exists before the loggers start, as a team's does. (Eight processes
    # calling mlflow.set_experiment on a new name at once: with mlflow 3.17.2 the ones that
    # lose the race to create it log to the Default experiment instead; dlbasics.tracking.runs
    # creates its experiment with that race handled.)
    exp_id = _client(env).create_experiment("stack-load")
    script.write_text(
        "import sys, mlflow\n"
        f"with mlflow.start_run(experiment_id='{exp_id}',\n"
        "                      run_name=f'logger-{sys.argv[1]}') as r:\n"
        "    mlflow.log_params({'who': sys.argv[1]})\n"
        "    for step in range(50):\n"
        "        mlflow.log_metrics({'a': step * 1.0, 'b': -step * 1.0}, step=step)\n"
        "    mlflow.log_text('x' * 10000, 'blob.txt')\n"
        "print(r.info.run_id)\n")
    client_env = {k: v for k, v in env.items() if k.startswith("MLFLOW_")}
    procs = [subprocess.Popen([sys.executable, str(script), str(i)], cwd=tmp_path,
                              env={**os.environ, **client_env}, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(8)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [e[-2000:] for _, e in outs]
    client = _client(env)
    got = client.search_runs([exp_id], max_results=100)
    assert sorted(r.data.params["who"] for r in got) == [str(i) for i in range(8)]
    for r in got:
        assert r.info.status == "FINISHED"
        assert len(client.get_metric_history(r.info.run_id, "a")) == 50
        assert client.download_artifacts(r.info.run_id, "blob.txt", str(tmp_path)) and (
            (tmp_path / "blob.txt").read_text() == "x" * 10000)


def test_the_bench_s_request_figures_come_from_finished_runs(stack):
    from benchmarks.stack import stack_requests

    _, _, env = stack
    got = stack_requests(env, n=5, loggers=3, steps=4)
    assert got["runs_finished"] == got["runs"] == 4
    assert 0 < got["median_s"] <= got["p90_s"] < got["loggers_wall_s"] * 10
    client = _client(env)
    exp = client.get_experiment_by_name("bench-requests")
    histories = [client.get_metric_history(r.info.run_id, "a")
                 for r in client.search_runs([exp.experiment_id])]
    assert sorted(len(h) for h in histories) == [4, 4, 4, 5]


def test_a_postgres_restart_between_stages_loses_nothing(stack, pushed, tmp_path):
    state, ports, env = stack
    proj, _ = pushed
    clone = _clone(proj, tmp_path / "restart", env)
    client_env = {k: v for k, v in env.items() if k.startswith(("MLFLOW_", "AWS_"))}
    run(["dvc", "exp", "run", "--set-param", "train.linreg.optimizer.lr=0.031", "train"], clone,
        **client_env)
    logged = {r.info.run_id: r.data.metrics for r in _linreg_runs(env)}
    data = services.pg_dir(state)
    restart = subprocess.run(
        services._as_postgres([str(services.PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                               str(data.parent / "postgres.log"), "-m", "fast", "-w",
                               "restart", "-o", services.pg_options(ports)]),
        capture_output=True, text=True)
    assert restart.returncode == 0, restart.stderr
    out = run(["dvc", "exp", "run", "--set-param", "train.linreg.optimizer.lr=0.031"], clone,
              **client_env)
    assert "report" in ran(out)
    after = {r.info.run_id: r.data.metrics for r in _linreg_runs(env)}
    assert all(after[k] == v for k, v in logged.items())  # nothing logged before is lost
    client = _client(env)
    exp = client.get_experiment_by_name("dlbasics")
    assert not client.search_runs([exp.experiment_id], filter_string="status = 'RUNNING'")


def test_a_tracking_server_killed_mid_training_fails_the_stage_in_15_s(stack, pushed,
                                                                       tmp_path):
    state, ports, env = stack
    proj, _ = pushed
    clone = _clone(proj, tmp_path / "fault", env)
    client_env = {k: v for k, v in env.items() if k.startswith(("MLFLOW_", "AWS_"))}
    params = yaml.safe_load((clone / "params.yaml").read_text())
    params["train"]["linreg"]["epochs"] = 3000
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # DLBASICS_VERBOSE: one line per epoch, so the test sees that training has started.
    proc = subprocess.Popen(["dvc", "repro"], cwd=clone,
                            env=tool_env(DLBASICS_VERBOSE="1", **client_env), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        seen = _wait_for_line(proc, r"train linreg epoch \d+/3000", timeout=240)
        os.killpg(int((state / "mlflow.pid").read_text()), signal.SIGKILL)
        killed = time.monotonic()
        err = "".join(seen) + proc.communicate(timeout=120)[0]
        took = time.monotonic() - killed
        print(f"the stage failed {took:.1f} s after the server was killed")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0
    assert took < 15, f"the stage noticed the dead server only after {took:.1f} s"
    ours = [ln for ln in err.splitlines() if ln.startswith("error: ")]
    assert len(ours) == 1 and "tracking server" in ours[0], err[-3000:]
    assert "exited with 5" in err, err[-3000:]
    assert "Traceback" not in err, err[-4000:]
    # Back up: `dvc repro` completes (at 30 epochs: the 3000 were only there to be
    # interrupted), and no run is left RUNNING.
    assert services.up(state, ports) == env
    params["train"]["linreg"]["epochs"] = 30
    (clone / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    again = run(["dvc", "repro"], clone, **client_env)
    assert "train" in ran(again)
    client = _client(env)
    exp = client.get_experiment_by_name("dlbasics")
    assert not client.search_runs([exp.experiment_id], filter_string="status = 'RUNNING'")
    assert any(r.data.params.get("epochs") == "30" and r.info.status == "FINISHED"
               for r in _linreg_runs(env))


def test_s3_stopped_during_push_is_one_error_and_the_next_push_completes(stack, pushed,
                                                                          tmp_path):
    state, ports, env = stack
    proj, _ = pushed
    clone = _clone(proj, tmp_path / "s3fault", env)
    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    # Enough to push that the S3 server can be stopped while the upload is under way.
    big = clone / "big"
    big.mkdir()
    rng = __import__("random").Random(14)
    for i in range(24):
        (big / f"{i:02d}.bin").write_bytes(rng.randbytes(1 << 20))
    run(["dvc", "add", "big"], clone)
    log = state / "s3.log"
    offset = log.stat().st_size
    proc = subprocess.Popen(["dvc", "push"], cwd=clone, env=tool_env(**aws), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        # s3rver logs each object it stored: one is in, the others on their way.
        while b'Stored object "dvc/' not in log.read_bytes()[offset:]:
            assert proc.poll() is None and time.monotonic() < deadline, "no upload began"
            time.sleep(0.05)
        os.killpg(int((state / "s3.pid").read_text()), signal.SIGKILL)
        out = proc.communicate(timeout=300)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode != 0, out[-3000:]
    # DVC's own report: a line per file it could not send, naming the endpoint it could not
    # reach, and a last line with the count.
    errors = [ln for ln in out.splitlines() if ln.startswith("ERROR")]
    assert errors and "failed to push data to the cloud" in errors[-1], out[-3000:]
    assert all(f"Could not connect to the endpoint URL: \"{env['DLBASICS_S3_ENDPOINT']}"
               in ln for ln in errors[:-1]), out[-3000:]
    assert "Traceback" not in out
    # The S3 server back, with what it had stored before the kill (the files it was receiving
    # are not there at all: no object is half-kept), and the push completes.
    kept = {o["Key"] for o in _s3_list(state / "s3")}
    assert services.up(state, ports) == env
    keys = {o["Key"] for o in _s3(env).list_objects_v2(Bucket=services.BUCKET,
                                                        Prefix="dvc/").get("Contents", [])}
    assert {k for k in kept if k.startswith("dvc/")} == keys
    run(["dvc", "push"], clone, **aws)
    assert "in sync" in run(["dvc", "status", "-c"], clone, **aws).stdout
    s3 = _s3(env)
    cache = clone / ".dvc" / "cache" / "files" / "md5"
    pushed = {o["Key"]: o["Size"] for page in s3.get_paginator("list_objects_v2").paginate(
        Bucket=services.BUCKET, Prefix="dvc/files/md5/") for o in page.get("Contents", [])}
    assert len(pushed) >= 24
    for key, size in pushed.items():  # every object whole: its bytes hash to its name
        local = cache / key.removeprefix("dvc/files/md5/")
        if local.is_file():
            body = s3.get_object(Bucket=services.BUCKET, Key=key)["Body"].read()
            assert len(body) == size == local.stat().st_size, key
            assert hashlib.md5(body).hexdigest() == key.split("/")[-2] + key.split("/")[-1] \
                or key.endswith(".dir"), key


def _s3_list(root: Path) -> list[dict]:
    """The objects s3rver keeps in `root` (one file KEY._S3rver_object per object)."""
    bucket = root / services.BUCKET
    return [{"Key": str(f.relative_to(bucket)).removesuffix("._S3rver_object")}
            for f in bucket.rglob("*._S3rver_object")]


def test_stop_keeps_the_runs_and_up_brings_them_back(stack):
    state, ports, env = stack
    client = _client(env)
    before = {r.info.run_id for r in client.search_runs(
        [client.get_experiment_by_name("dlbasics").experiment_id], max_results=1000)}
    assert before
    services.down(state)
    with pytest.raises(OSError):  # nothing listens any more
        urllib.request.urlopen(f"{env['MLFLOW_TRACKING_URI']}/health", timeout=3)
    assert (state / "postgres" / "PG_VERSION").is_file()  # the data directory stays
    assert services.up(state, ports) == env
    client = _client(env)
    after = {r.info.run_id for r in client.search_runs(
        [client.get_experiment_by_name("dlbasics").experiment_id], max_results=1000)}
    assert after == before
