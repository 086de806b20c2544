"""A team's stack on this machine: PostgreSQL (the MLflow backend store), an S3 server (s3rver,
which keeps each object as a file: the artifact store and the DVC remote) and `mlflow server`
with MLflow's basic-auth app, each bound to 127.0.0.1, started and stopped by one command (`make
services`, `make services-stop`), backed up into one archive and restored from it.

    python -m dlbasics.tracking.services up       # start what is not running; print the env
    python -m dlbasics.tracking.services down     # stop them; the state directory stays
    python -m dlbasics.tracking.services env      # print the env to export again
    python -m dlbasics.tracking.services backup [ARCHIVE]    # both databases and every object
    python -m dlbasics.tracking.services restore ARCHIVE     # a new state directory from one

State lives in `.services/` (git-ignored; every path is made absolute before a server sees it):
PostgreSQL's data directory, the S3 objects (`s3/`), logs, process ids, and `credentials.env`
(mode 600), where the passwords are generated on the first `up` unless the environment gives
them. Nothing of it goes to params.yaml, tracked files or MLflow. Run as root, PostgreSQL runs
as the user `postgres`; when that user cannot reach the state directory (a clone under a home
directory of mode 700), its data directory goes under the user's home instead
(~postgres/dlbasics/NAME-HASH), recorded in `.services/postgres-dir` and printed by `up`.

Ports: DLBASICS_PG_PORT (5433), DLBASICS_S3_PORT (5002), DLBASICS_MLFLOW_PORT (5005); the
tracking server's workers: DLBASICS_MLFLOW_WORKERS (2); how long it remembers a verified login:
DLBASICS_MLFLOW_AUTH_CACHE_S (60).
Credentials: DLBASICS_DB_PASSWORD (PostgreSQL user `mlflow`), MLFLOW_AUTH_ADMIN_PASSWORD (the
tracking server's `admin`), AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the S3 server's one key
pair), MLFLOW_FLASK_SERVER_SECRET_KEY.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
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
ARCHIVE_ROOT = "dlbasics-stack"  # the one folder inside a backup archive
# s3rver (npm, pinned in services/s3rver/package-lock.json; `make services` installs it into
# the virtual environment) with the stack's key pair instead of its built-in S3RVER/S3RVER (it
# checks the key id of each request, not its SigV4 signature), and a request with no
# signature refused (s3rver would serve it). Its putObject writes into the
# object's own file as the bytes arrive, so a server killed mid-upload would leave a short file
# that lists and downloads as a whole object (and DVC would never send it again): here every
# object is written to DIR.incoming/ first and renamed into place once complete (multipart
# uploads end in putObject too).
S3RVER_JS = """
const [mod, dir, port] = process.argv.slice(1);
const crypto = require('crypto'), fs = require('fs'), fsp = require('fs/promises');
const path = require('path'), stream = require('stream'), { pipeline } = require('stream/promises');
// s3rver serves requests that carry no signature at all: refuse them (as S3 does).
const authPath = require.resolve(mod + '/lib/middleware/authentication');
const authenticate = require(authPath), S3Error = require(mod + '/lib/models/error');
require.cache[authPath].exports = () => {
  const check = authenticate();
  return (ctx, next) => check(ctx, () => {
    if (!ctx.state.account) throw new S3Error('AccessDenied', 'Access Denied');
    return next();
  });
};
const S3rver = require(mod);
const Store = require(mod + '/lib/stores/filesystem');
const account = require(mod + '/lib/models/account').DUMMY_ACCOUNT;
const incoming = dir + '.incoming';
fs.rmSync(incoming, { recursive: true, force: true });  // what a killed server left half-written
Store.prototype.putObject = async function (object) {
  const target = this.getResourcePath(object.bucket, object.key, 'object');
  await fsp.mkdir(path.dirname(target), { recursive: true });
  await fsp.mkdir(incoming, { recursive: true });
  const part = path.join(incoming, crypto.randomBytes(12).toString('hex'));
  const md5 = crypto.createHash('md5');
  let size = 0;
  const count = new stream.Transform({ transform(chunk, enc, done) {
    md5.update(chunk); size += chunk.length; done(null, chunk); } });
  const source = Buffer.isBuffer(object.content) ? stream.Readable.from([object.content])
                                                 : object.content;
  try {
    await pipeline(source, count, fs.createWriteStream(part));
  } catch (err) {
    await fsp.rm(part, { force: true });
    throw err;
  }
  const digest = md5.digest('hex');
  await this.putMetadata(object.bucket, object.key, object.metadata, digest);
  await fsp.rename(part, target);  // the object appears whole, or not at all
  return { size, md5: digest };
};
account.revokeAccessKey('S3RVER');
account.createKeyPair(process.env.S3_KEY_ID, process.env.S3_SECRET);
new S3rver({directory: dir, address: '127.0.0.1', port: Number(port), vhostBuckets: false})
  .run().then(() => console.log('s3rver: listening on 127.0.0.1:' + port),
              err => { console.error('s3rver: ' + err.message); process.exit(1); });
"""


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


def s3rver_dir() -> Path:
    """Where `make services` installs s3rver: beside this virtual environment's bin/."""
    return _bin().parent / "s3rver"


def _secret() -> str:
    """A random secret that does not start with "-": a command line would take it for an
    option (`dvc remote modify --local team secret_access_key "$AWS_SECRET_ACCESS_KEY"`)."""
    while True:
        token = secrets.token_urlsafe(18)
        if token[0].isalnum():
            return token


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
            "dlbasics" if key == "AWS_ACCESS_KEY_ID" else _secret())
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


def pg_options(ports: Ports) -> str:
    """postgres's options: TCP on 127.0.0.1 only, no Unix socket (nothing here uses one, and a
    socket directory is one more path that must be absolute, short and reachable)."""
    return f"-h 127.0.0.1 -p {ports.pg} -k ''"


def pg_dir(state: Path) -> Path:
    """PostgreSQL's data directory for `state` (absolute): the one recorded in
    state/postgres-dir when `up` had to put it elsewhere, else state/postgres."""
    state = state.absolute()
    recorded = state / "postgres-dir"
    if recorded.is_file():
        return Path(recorded.read_text().strip())
    return state / "postgres"


def _pg_log(data: Path) -> Path:
    return data.parent / "postgres.log"


def _choose_pg_dir(state: Path) -> tuple[Path, str | None]:
    """Where PostgreSQL keeps its data for `state`, and a line to print when that is not
    inside `state`: run as root, PostgreSQL runs as `postgres`, which cannot reach a state
    directory under a private home (mode 700); its data then goes under that user's home."""
    data = pg_dir(state)
    if os.geteuid() != 0 or (state / "postgres-dir").is_file() or (data / "PG_VERSION").is_file():
        return data, None
    if subprocess.run(_as_postgres(["test", "-x", str(state)]), check=False).returncode == 0:
        return data, None
    try:
        home = Path(pwd.getpwnam("postgres").pw_dir)
    except KeyError:
        raise ServiceError("postgres: there is no user postgres to run PostgreSQL as; install "
                           "PostgreSQL 15 (it creates the user)") from None
    digest = hashlib.sha256(str(state).encode()).hexdigest()[:10]
    data = home / "dlbasics" / f"{state.parent.name or 'root'}-{digest}" / "data"
    made = subprocess.run(_as_postgres(["mkdir", "-p", "-m", "700", str(data)]),
                          capture_output=True, text=True, check=False)
    if made.returncode:
        raise ServiceError(f"postgres: the user postgres cannot reach {state} and cannot create "
                           f"{data}: {made.stderr.strip()}; use a --state it can reach")
    (state / "postgres-dir").write_text(f"{data}\n")
    return data, (f"postgres: the user postgres cannot reach {state}, so its data directory is "
                  f"{data} (recorded in {state / 'postgres-dir'})")


def _clear_stale_lock(data: Path) -> None:
    """Remove the postmaster.pid of a PostgreSQL that was killed (kill -9, a crash).

    postgres refuses to start while the pid in that file exists, and a killed postmaster whose
    parent does not reap it (a container's init) stays a zombie with that pid for good. The
    file goes only when no live process works in `data` (a backend's working directory is its
    data directory): else two servers could share it."""
    users = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (proc / "cwd").resolve() == data.resolve() and \
                    (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                users.append(proc.name)
        except (OSError, IndexError):
            continue
    if users:
        raise ServiceError(f"postgres: processes {', '.join(sorted(users))} of a stopped "
                           f"PostgreSQL still use {data}; wait until they exit (or stop them), "
                           "then start the stack again")
    (data / "postmaster.pid").unlink(missing_ok=True)


def _psql(ports: Ports, db: str = "postgres") -> list[str]:
    return [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(ports.pg), "-U", DB_USER,
            "-d", db, "-v", "ON_ERROR_STOP=1", "-tAc"]


def _start_postgres(state: Path, ports: Ports, creds: dict[str, str]) -> str | None:
    """Start PostgreSQL (initdb first if new) and create the two databases; return a line to
    print when its data directory is not inside `state`."""
    if (pg_dir(state) / "postmaster.pid").is_file() and _pid_alive(pg_dir(state) /
                                                                  "postmaster.pid"):
        return None
    if not (PG_BIN / "initdb").is_file():
        raise ServiceError(f"postgres: {PG_BIN / 'initdb'} not found; install PostgreSQL 15 or "
                           "set DLBASICS_PG_BIN to its bin directory")
    if not _port_free(ports.pg):
        raise ServiceError(f"postgres: port {ports.pg} on 127.0.0.1 is taken; set "
                           "DLBASICS_PG_PORT to a free port")
    data, moved = _choose_pg_dir(state)  # only now: a refused start leaves nothing behind
    log = _pg_log(data)
    if (data / "postmaster.pid").is_file():
        _clear_stale_lock(data)
    if not (data / "PG_VERSION").is_file():
        data.mkdir(parents=True, exist_ok=True)
        pwfile = data.parent / "pg.pw"  # beside the data directory: postgres reads it
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
    started = subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l",
                                           str(log), "-w", "-t", "60", "-o", pg_options(ports),
                                           "start"]),
                             check=False, capture_output=True, text=True)
    if started.returncode:
        tail = log.read_text()[-400:].strip().replace("\n", " | ") if log.exists() else ""
        raise ServiceError(f"postgres: pg_ctl start failed; its log {log} ends: {tail}")
    env = {**os.environ, "PGPASSWORD": creds["DLBASICS_DB_PASSWORD"]}
    _wait("postgres", lambda: subprocess.run([*_psql(ports), "select 1"], env=env,
                                             capture_output=True, check=False).returncode == 0,
          None, log, 60)
    for name in (DB, AUTH_DB):
        have = subprocess.run([*_psql(ports),
                               f"select 1 from pg_database where datname = '{name}'"],
                              env=env, capture_output=True, text=True, check=False).stdout.strip()
        if have != "1":
            subprocess.run([*_psql(ports), f"create database {name}"], env=env, check=True,
                           capture_output=True)
    return moved


def _start_s3(state: Path, ports: Ports, creds: dict[str, str]) -> None:
    pidfile, log = state / "s3.pid", state / "s3.log"
    url = f"http://127.0.0.1:{ports.s3}"
    if not _pid_alive(pidfile):
        if not _port_free(ports.s3):
            raise ServiceError(f"s3: port {ports.s3} on 127.0.0.1 is taken; set "
                               "DLBASICS_S3_PORT to a free port")
        module = s3rver_dir() / "node_modules" / "s3rver"
        if not (module / "package.json").is_file():
            raise ServiceError(f"s3: s3rver is not installed in {s3rver_dir()}; run `make "
                               "services` (it installs it with npm from "
                               "services/s3rver/package-lock.json)")
        node = shutil.which("node")
        if node is None:
            raise ServiceError("s3: node (Node.js 18 or newer) not found on PATH; install it "
                               "(apt-get install nodejs)")
        objects = state / "s3"
        objects.mkdir(exist_ok=True)
        proc = subprocess.Popen([node, "-e", S3RVER_JS, str(module), str(objects),
                                 str(ports.s3)],
                                env={**os.environ, "S3_KEY_ID": creds["AWS_ACCESS_KEY_ID"],
                                     "S3_SECRET": creds["AWS_SECRET_ACCESS_KEY"]},
                                stdout=log.open("a"), stderr=subprocess.STDOUT,
                                start_new_session=True)
        pidfile.write_text(str(proc.pid))
        _wait("s3 (s3rver)", lambda: _http_ok(url), proc, log, 60)
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


def up(state: Path, ports: Ports | None = None, say=None) -> dict[str, str]:
    """Start PostgreSQL, the S3 server and the tracking server unless running; wait until each
    answers; return the client environment. `say` gets the lines worth telling the user (where
    PostgreSQL's data went when it is not in `state`)."""
    state = state.absolute()
    ports = ports or Ports.from_env()
    _workers(), _auth_cache_s()  # a bad setting stops here, before anything starts
    state.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        state.chmod(0o711)  # postgres (the user) must reach its data directory inside
    creds = credentials(state)
    moved = _start_postgres(state, ports, creds)
    if moved and say:
        say(moved)
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
    """Stop the tracking server, the S3 server and PostgreSQL; the state directory stays."""
    state = state.absolute()
    _stop_pid(state / "mlflow.pid")
    _stop_pid(state / "s3.pid")
    data = pg_dir(state)
    if (data / "postmaster.pid").is_file():
        subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast",
                                     "-w", "stop"]), capture_output=True, check=False)


def _running_ports(state: Path) -> Ports:
    """The ports of the stack running from `state` (as `up` recorded them), or one line."""
    data = pg_dir(state)
    recorded = state / "ports"
    if not (data / "postmaster.pid").is_file() or not _pid_alive(data / "postmaster.pid") \
            or not recorded.is_file():
        raise ServiceError(f"backup: no stack is running from {state}; start it with `make "
                           "services` first (pg_dump reads the running PostgreSQL)")
    pg, s3, mlflow = (int(x) for x in recorded.read_text().split())
    return Ports(pg=pg, s3=s3, mlflow=mlflow)


def backup(state: Path, archive: Path) -> Path:
    """One archive (tar.gz, mode 600) of the running stack: a pg_dump of each database, the S3
    server's files and credentials.env (the logins in the dump need the same secrets)."""
    state = state.absolute()
    ports = _running_ports(state)
    creds = credentials(state)
    archive = archive.resolve()
    if archive.exists():
        raise ServiceError(f"backup: {archive} exists; name another ARCHIVE")
    env = {**os.environ, "PGPASSWORD": creds["DLBASICS_DB_PASSWORD"]}
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=archive.parent, prefix=".backup-") as tmp:
        for name in (DB, AUTH_DB):
            dump = subprocess.run(
                [str(PG_BIN / "pg_dump"), "-h", "127.0.0.1", "-p", str(ports.pg), "-U", DB_USER,
                 "-Fc", "-f", f"{tmp}/{name}.dump", name], env=env, capture_output=True,
                text=True, check=False)
            if dump.returncode:
                raise ServiceError(f"backup: pg_dump of {name} failed: "
                                   f"{dump.stderr.strip()[-300:]}")
        part = Path(tmp) / "archive.tar.gz"
        part.touch(mode=0o600)
        with tarfile.open(part, "w:gz") as tar:
            for name in (DB, AUTH_DB):
                tar.add(f"{tmp}/{name}.dump", f"{ARCHIVE_ROOT}/{name}.dump")
            tar.add(state / "credentials.env", f"{ARCHIVE_ROOT}/credentials.env")
            tar.add(state / "s3", f"{ARCHIVE_ROOT}/s3")
        part.chmod(0o600)
        part.replace(archive)
    return archive


def restore(state: Path, archive: Path, ports: Ports | None = None, say=None) -> dict[str, str]:
    """A new state directory from a backup archive: its credentials and S3 files, a new
    PostgreSQL with both databases restored, then the whole stack started (as `up`)."""
    state = state.absolute()
    ports = ports or Ports.from_env()
    _workers(), _auth_cache_s()
    if not archive.is_file():
        raise ServiceError(f"restore: {archive} is not a file; name a backup archive written by "
                           "`make services-backup` (ARCHIVE=path)")
    if (state / "credentials.env").exists() or (state / "postgres-dir").exists() \
            or (state / "postgres").exists():
        raise ServiceError(f"restore: {state} already holds a stack; stop it and move it away "
                           "first, or restore into another directory (--state)")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            names = set(tar.getnames())
            want = {f"{ARCHIVE_ROOT}/{n}" for n in (f"{DB}.dump", f"{AUTH_DB}.dump",
                                                   "credentials.env", "s3")}
            if not want <= names:
                raise ServiceError(f"restore: {archive} is not a backup of this stack (it lacks "
                                   f"{', '.join(sorted(want - names))}); name an archive "
                                   "written by `make services-backup`")
            state.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=state, prefix=".restore-"))
            tar.extractall(tmp, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise ServiceError(f"restore: cannot read {archive} ({exc}); name an archive written by "
                           "`make services-backup`") from None
    try:
        got = tmp / ARCHIVE_ROOT
        (got / "credentials.env").chmod(0o600)
        (got / "credentials.env").replace(state / "credentials.env")
        (got / "s3").replace(state / "s3")
        if os.geteuid() == 0:
            state.chmod(0o711)
        creds = credentials(state)
        moved = _start_postgres(state, ports, creds)
        if moved and say:
            say(moved)
        env = {**os.environ, "PGPASSWORD": creds["DLBASICS_DB_PASSWORD"]}
        for name in (DB, AUTH_DB):
            done = subprocess.run(
                [str(PG_BIN / "pg_restore"), "-h", "127.0.0.1", "-p", str(ports.pg), "-U",
                 DB_USER, "--no-owner", "--exit-on-error", "-d", name, str(got / f"{name}.dump")],
                env=env, capture_output=True, text=True, check=False)
            if done.returncode:
                raise ServiceError(f"restore: pg_restore of {name} failed: "
                                   f"{done.stderr.strip()[-300:]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return up(state, ports, say)


def _print_env(env: dict[str, str]) -> None:
    # The comment goes to stderr: stdout is only export lines, for eval "$(...)".
    print("# the stack is up; export these (or: eval \"$(make -s services-env)\")",
          file=sys.stderr)
    for key, value in env.items():
        print(f"export {key}={value}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("action", choices=("up", "down", "env", "backup", "restore"))
    ap.add_argument("archive", nargs="?", type=Path,
                    help="backup: the archive to write; restore: the archive to read")
    ap.add_argument("--state", type=Path, default=Path(".services"))
    args = ap.parse_args(argv)
    state = args.state.absolute()

    def say(line: str) -> None:
        print(f"services: {line}", file=sys.stderr)

    try:
        if args.action == "down":
            down(state)
            print(f"services: stopped; data kept in {state}/")
            return 0
        if args.action == "backup":
            stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
            out = backup(state, args.archive or Path(f"services-backup-{stamp}.tar.gz"))
            print(f"services: backup written to {out}")
            return 0
        if args.action == "restore":
            if args.archive is None:
                raise ServiceError("restore: name the archive: make services-restore "
                                   "ARCHIVE=services-backup-....tar.gz")
            env = restore(state, args.archive, say=say)
        elif args.action == "up":
            env = up(state, say=say)
        else:
            env = client_env(Ports.from_env(), credentials(state))
    except ServiceError as exc:
        print(f"services: {exc}", file=sys.stderr)
        return 1
    _print_env(env)
    return 0


if __name__ == "__main__":
    sys.exit(main())
