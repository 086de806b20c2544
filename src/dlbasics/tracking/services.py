"""A team's stack on this machine: PostgreSQL (the MLflow backend store), an S3 server (moto:
the artifact store and the DVC remote) and `mlflow server` with MLflow's basic-auth app, each
bound to 127.0.0.1, started and stopped by one command (`make services`, `make
services-stop`).

    python -m dlbasics.tracking.services up      # start what is not running; print the env to export
    python -m dlbasics.tracking.services down    # stop them; the data directory stays
    python -m dlbasics.tracking.services env     # print the env to export again

State lives in `.services/` (git-ignored): PostgreSQL's data directory, logs, process ids, and
`credentials.env` (mode 600), where the passwords are generated on the first `up` unless the
environment gives them. Nothing of it goes to params.yaml, tracked files or MLflow.

Ports: DLBASICS_PG_PORT (5433), DLBASICS_S3_PORT (5002), DLBASICS_MLFLOW_PORT (5005); the
tracking server's workers: DLBASICS_MLFLOW_WORKERS (2); how long it remembers a verified login:
DLBASICS_MLFLOW_AUTH_CACHE_S (60).
Credentials: DLBASICS_DB_PASSWORD (PostgreSQL user `mlflow`), MLFLOW_AUTH_ADMIN_PASSWORD (the
tracking server's `admin`), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the S3 server; moto
accepts any), MLFLOW_FLASK_SERVER_SECRET_KEY.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

PG_BIN = Path(os.environ.get("DLBASICS_PG_BIN", "/usr/lib/postgresql/15/bin"))
BUCKET = "dlbasics"
DB = "mlflow"  # the tracking server's runs
AUTH_DB = "mlflow_auth"  # its users and permissions (the basic-auth app)
DB_USER = "mlflow"
SECRETS = ("DLBASICS_DB_PASSWORD", "MLFLOW_AUTH_ADMIN_PASSWORD", "AWS_ACCESS_KEY_ID",
           "AWS_SECRET_ACCESS_KEY", "MLFLOW_FLASK_SERVER_SECRET_KEY")




class ServiceError(RuntimeError):
    """One line: which service, what went wrong, what to do."""


def _env_int(var: str, default: int, low: int, high: int, what: str,
             env: dict[str, str] | None = None) -> int:
    """The whole number in environment variable `var` (else `default`), within low-high; else
    one line naming the variable."""
    raw = (os.environ if env is None else env).get(var, str(default))
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ServiceError(f"{var}: expected {what} {low}-{high}, found {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Ports:
    pg: int
    s3: int
    mlflow: int

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Ports:
        return cls(**{key: _env_int(var, default, 1, 65535, "a port number", env)
                      for key, var, default in (("pg", "DLBASICS_PG_PORT", 5433),
                                                ("s3", "DLBASICS_S3_PORT", 5002),
                                                ("mlflow", "DLBASICS_MLFLOW_PORT", 5005))})


def _auth_cache_s(env: dict[str, str] | None = None) -> int:
    """Seconds the server remembers a verified login: DLBASICS_MLFLOW_AUTH_CACHE_S, default 60
    (0: hash the password again on every request, the basic-auth app's own default)."""
    return _env_int("DLBASICS_MLFLOW_AUTH_CACHE_S", 60, 0, 86400, "seconds", env)


def _workers(env: dict[str, str] | None = None) -> int:
    """The tracking server's worker processes: DLBASICS_MLFLOW_WORKERS, default 2 (one worker
    queues every client behind the slowest request; mlflow's own default of 4 costs about
    300 MB each)."""
    return _env_int("DLBASICS_MLFLOW_WORKERS", 2, 1, 64, "a number", env)


def _bin() -> Path:
    return Path(sys.executable).parent


def credentials(state: Path) -> dict[str, str]:
    """The stack's secrets: from the environment, else from state/credentials.env, else new
    random ones written there (mode 600)."""
    path = state / "credentials.env"
    saved: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in SECRETS:
                saved[key] = value
    out = {}
    for key in SECRETS:
        out[key] = os.environ.get(key) or saved.get(key) or (
            "dlbasics" if key == "AWS_ACCESS_KEY_ID" else secrets.token_urlsafe(18))
    if out != saved:
        state.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text("".join(f"{k}={v}\n" for k, v in out.items()))
        tmp.chmod(0o600)
        tmp.replace(path)
    return out


def client_env(ports: Ports, creds: dict[str, str]) -> dict[str, str]:
    """What a teammate exports: the tracking URI and its login, the DVC remote's endpoint and
    keys. (The S3 keys are the DVC remote's; MLflow clients need none: artifacts go through
    the tracking server.)"""
    return {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{ports.mlflow}",
        "MLFLOW_TRACKING_USERNAME": "admin",
        "MLFLOW_TRACKING_PASSWORD": creds["MLFLOW_AUTH_ADMIN_PASSWORD"],
        "AWS_ACCESS_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": creds["AWS_SECRET_ACCESS_KEY"],
        "DLBASICS_S3_ENDPOINT": f"http://127.0.0.1:{ports.s3}",
        "DLBASICS_DVC_REMOTE": f"s3://{BUCKET}/dvc",
    }


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, read, released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        # As the servers bind: a port whose old connections wait in TIME_WAIT is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pid_alive(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, 0)
        # A process that has exited but was not yet reaped (a zombie) is not running.
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return None
    except (OSError, ValueError, IndexError):
        return None
    return pid


def _wait(what: str, ok, proc: subprocess.Popen | None, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        died = proc is not None and proc.poll() is not None
        if died or time.monotonic() > deadline:
            tail = log.read_text()[-400:].strip().replace("\n", " | ") if log.exists() else ""
            how = "exited" if died else f"did not answer within {timeout:.0f} s"
            raise ServiceError(f"{what}: {how}; its log {log} ends: {tail}")
        time.sleep(0.3)


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except OSError:
        return False


def _as_postgres(cmd: list[str]) -> list[str]:
    # initdb and postgres refuse to run as root: run them as the `postgres` user then.
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _start_postgres(state: Path, ports: Ports, creds: dict[str, str]) -> None:
    data, log = state / "postgres", state / "postgres.log"
    if (data / "postmaster.pid").is_file() and _pid_alive(data / "postmaster.pid"):
        return
    if not (PG_BIN / "initdb").is_file():
        raise ServiceError(f"postgres: {PG_BIN / 'initdb'} not found; install PostgreSQL 15 or "
                           "set DLBASICS_PG_BIN to its bin directory")
    if not _port_free(ports.pg):
        raise ServiceError(f"postgres: port {ports.pg} on 127.0.0.1 is taken; set "
                           "DLBASICS_PG_PORT to a free port")
    if os.geteuid() == 0 and subprocess.run(_as_postgres(["test", "-x", str(state)])).returncode:
        raise ServiceError(f"postgres: the user postgres cannot reach {state}; make its parent "
                           "directories traversable (chmod o+x) or use another --state")
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        pwfile = state / "pg.pw"
        pwfile.write_text(creds["DLBASICS_DB_PASSWORD"] + "\n")
        if os.geteuid() == 0:
            shutil.chown(data, "postgres")
            shutil.chown(pwfile, "postgres")
        pwfile.chmod(0o600)
        try:
            subprocess.run(_as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-U", DB_USER,
                                         "--auth=scram-sha-256", f"--pwfile={pwfile}",
                                         "-E", "UTF8"]),
                           check=True, capture_output=True, text=True)
        except subprocess.CalledProcessError as exc:
            raise ServiceError(f"postgres: initdb failed: {exc.stderr.strip()[-300:]}") from None
        finally:
            pwfile.unlink(missing_ok=True)
    if os.geteuid() == 0:
        log.touch()
        shutil.chown(log, "postgres")
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log),
                                 "-w", "-t", "60", "-o",
                                 f"-h 127.0.0.1 -p {ports.pg} -k {data}", "start"]),
                   check=False, capture_output=True, text=True)
    env = {**os.environ, "PGPASSWORD": creds["DLBASICS_DB_PASSWORD"]}
    psql = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(ports.pg), "-U", DB_USER,
            "-d", "postgres", "-tAc"]
    _wait("postgres", lambda: subprocess.run([*psql, "select 1"], env=env,
                                             capture_output=True).returncode == 0,
          None, log, 60)
    for name in (DB, AUTH_DB):
        have = subprocess.run([*psql, f"select 1 from pg_database where datname = '{name}'"],
                              env=env, capture_output=True, text=True).stdout.strip()
        if have != "1":
            subprocess.run([*psql, f"create database {name}"], env=env, check=True,
                           capture_output=True)


def _start_s3(state: Path, ports: Ports, creds: dict[str, str]) -> None:
    pidfile, log = state / "s3.pid", state / "s3.log"
    url = f"http://127.0.0.1:{ports.s3}"
    if not _pid_alive(pidfile):
        if not _port_free(ports.s3):
            raise ServiceError(f"s3: port {ports.s3} on 127.0.0.1 is taken; set "
                               "DLBASICS_S3_PORT to a free port")
        proc = subprocess.Popen([str(_bin() / "moto_server"), "-H", "127.0.0.1", "-p",
                                 str(ports.s3)], stdout=log.open("a"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        pidfile.write_text(str(proc.pid))
        _wait("s3 (moto_server)", lambda: _http_ok(f"{url}/moto-api/"), proc, log, 60)
    import boto3

    s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                      aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"])
    if BUCKET not in {b["Name"] for b in s3.list_buckets().get("Buckets", [])}:
        s3.create_bucket(Bucket=BUCKET)


def _start_mlflow(state: Path, ports: Ports, creds: dict[str, str]) -> None:
    pidfile, log = state / "mlflow.pid", state / "mlflow.log"
    if _pid_alive(pidfile):
        return
    if not _port_free(ports.mlflow):
        raise ServiceError(f"mlflow: port {ports.mlflow} on 127.0.0.1 is taken; set "
                           "DLBASICS_MLFLOW_PORT to a free port")
    pg = f"postgresql+psycopg2://{DB_USER}:{creds['DLBASICS_DB_PASSWORD']}@127.0.0.1:{ports.pg}"
    db = f"{pg}/{DB}"
    # The users live in PostgreSQL too: one database to back up, and every worker sees a new
    # password at once. The file holds the database password: mode 600, in .services only.
    auth_ini = state / "basic_auth.ini"
    auth_ini.touch(mode=0o600)
    auth_ini.chmod(0o600)
    auth_ini.write_text("[mlflow]\ndefault_permission = READ\n"
                        f"database_uri = {pg}/{AUTH_DB}\n"
                        "admin_username = admin\n"
                        "authorization_function = mlflow.server.auth:"
                        "authenticate_request_basic_auth\n"
                        # A verified login is remembered this long instead of hashing the
                        # password (PBKDF2) again on every request: each request costs a
                        # third as much (measured in the README). A changed password reaches
                        # the other worker within this window.
                        f"auth_cache_ttl_seconds = {_auth_cache_s()}\n")
    env = {**os.environ, **creds, "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
           "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{ports.s3}",
           "MLFLOW_DISABLE_TELEMETRY": "true",
           # No job runner: mlflow 3.17 otherwise starts seven worker processes for GenAI
           # jobs (scorers) that this project never submits.
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    for key in ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        env.pop(key, None)
    # The backend URI carries the database password: it goes on the command line of a process
    # of this machine only, never into a file that is tracked or a run.
    proc = subprocess.Popen(
        [str(_bin() / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(ports.mlflow),
         "--workers", str(_workers()), "--app-name", "basic-auth", "--backend-store-uri", db,
         "--artifacts-destination", f"s3://{BUCKET}/mlflow"],
        cwd=state, env=env, stdout=log.open("a"), stderr=subprocess.STDOUT,
        start_new_session=True)
    pidfile.write_text(str(proc.pid))
    _wait("mlflow server", lambda: _http_ok(f"http://127.0.0.1:{ports.mlflow}/health"), proc,
          log, 180)


def up(state: Path, ports: Ports | None = None) -> dict[str, str]:
    """Start PostgreSQL, the S3 server and the tracking server unless running; wait until each
    answers; return the client environment."""
    ports = ports or Ports.from_env()
    _workers(), _auth_cache_s()  # a bad setting stops here, before anything starts
    state.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        state.chmod(0o711)  # postgres (the user) must reach its data directory inside
    creds = credentials(state)
    _start_postgres(state, ports, creds)
    _start_s3(state, ports, creds)
    _start_mlflow(state, ports, creds)
    (state / "ports").write_text(f"{ports.pg} {ports.s3} {ports.mlflow}\n")
    return client_env(ports, creds)


def _stop_pid(pidfile: Path, timeout: float = 20) -> None:
    pid = _pid_alive(pidfile)
    if pid is not None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except OSError:
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _pid_alive(pidfile) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _pid_alive(pidfile):
            os.killpg(pid, signal.SIGKILL)
    pidfile.unlink(missing_ok=True)


def down(state: Path) -> None:
    """Stop the tracking server, the S3 server and PostgreSQL; the data directory stays."""
    _stop_pid(state / "mlflow.pid")
    _stop_pid(state / "s3.pid")
    data = state / "postgres"
    if (data / "postmaster.pid").is_file():
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, check=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("up", "down", "env"))
    ap.add_argument("--state", type=Path, default=Path(".services"))
    args = ap.parse_args(argv)
    try:
        if args.action == "down":
            down(args.state)
            print(f"services: stopped; data kept in {args.state}/")
            return 0
        if args.action == "up":
            env = up(args.state)
        else:
            ports = Ports.from_env()
            env = client_env(ports, credentials(args.state))
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    print("# the stack is up; export these (or `eval $(make -s services-env)`):")
    for key, value in env.items():
        print(f"export {key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
