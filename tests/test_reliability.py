"""Reliability under faults: bad parameters, divergence, interruption, concurrency, a tracking
server that is there or not, damaged data, and what must never be exposed.

Real stage code, real processes, real MLflow stores and a real `mlflow server`, real DVC (with
its experiment queue); nothing is mocked. Fast checks call a stage's main() in-process through
`dlbasics.cli.run_stage` (the exact function that turns its failures into exit codes); checks
about signals, locks and servers run real subprocesses.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import BIN, REPO, make_project, run, tool_env, tracked_files
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlbasics.cli import run_stage
from dlbasics.tracking import runs as tracking
from dlbasics.tracking.services import free_port  # noqa: F401 - also the other test modules' helper

# The exit codes are the contract with DVC and users: restated here, not imported.
EXIT_CONFIG, EXIT_DATA, EXIT_DIVERGED, EXIT_INTERRUPTED = 2, 3, 4, 130
STAGES = ("generate", "prepare", "train", "select", "lessons", "report")  # of dvc.yaml
# The repository's params.yaml, with its YAML aliases unshared (a JSON round trip), so that
# mutating one variant never mutates the variants merged from it.
BASE = json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))
SECRET = "s3cr3t-sentinel-7f1d"  # put into the environment of stages; must never be recorded


def load_stage(name: str):
    """stages/<name>.py as a module (its main() is what DVC runs)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def digest_tree(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not str(p.relative_to(root)).startswith(skip)
    }


def tiny(params: dict) -> dict:
    """linreg on the synthetic set, one epoch; `base` (a linreg twin) is what select tunes,
    so editing linreg retrains linreg only, then report runs."""
    linreg = {**params["train"]["linreg"], "epochs": 1}
    params["train"] = {"linreg": linreg, "base": copy.deepcopy(linreg)}
    params["data"] = {"synthetic_linear": params["data"]["synthetic_linear"]}
    params["prepare"] = {"synthetic_linear": params["prepare"]["synthetic_linear"]}
    params["report"] = {"notes": {}}
    params["lessons"] = {}  # they need the images (the key stays: dvc.yaml tracks it)
    params["select"] = {"searches": {"tiny": {"base": "base", "k": 2, "overrides": {"epochs": 1},
                                              "grid": {"optimizer.lr": [0.03]}}}}
    return params


def _dvc_cmd(stage: str, key: str = "tiny") -> tuple[str, list[str]]:
    """(script path, arguments) of a stage as dvc.yaml runs it (a foreach stage's for `key`)."""
    from dlbasics.dvc.codedeps import stage_body

    body = stage_body(yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage])
    words = shlex.split(body["cmd"].replace("${key}", key))
    i = next(i for i, w in enumerate(words) if w.startswith("stages/"))
    return words[i], words[i + 1:]


def stage_argv(stage: str, work: Path, params: Path, **outs: Path) -> list[str]:
    """dvc.yaml's arguments of `stage`, with its paths under `work`, `params` as the params
    file, and `--<name> path` replaced for each of `outs`."""
    _, words = _dvc_cmd(stage)
    argv = []
    for w in words:
        if w == "params.yaml":
            argv.append(str(params))
        elif w.startswith(("data/", "reports/")):
            argv.append(str(work / w))
        else:
            argv.append(w)
    for name, path in outs.items():
        argv[argv.index(f"--{name}") + 1] = str(path)
    return argv


def train_argv(work: Path, params: Path, variant: str = "linreg", **outs: Path) -> list[str]:
    """The train stage's arguments, restricted to `variant` (--variant)."""
    return [*stage_argv("train", work, params, **outs), "--variant", variant]


@pytest.fixture(scope="module")
def mains():
    return {name: load_stage(Path(_dvc_cmd(name)[0]).stem).main for name in STAGES}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """A sqlite MLflow store for the in-process and single-stage tests, created up front (a new
    store prints its migrations, which would muddle the one-line checks)."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    mlflow.MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture(scope="module")
def work(tmp_path_factory, mains) -> Path:
    """A working directory with the tiny params and its raw and prepared data (made by the
    generate and prepare stages), and a reports/ file that must never change."""
    root = tmp_path_factory.mktemp("work")
    (root / "params.yaml").write_text(yaml.safe_dump(tiny(copy.deepcopy(BASE)), sort_keys=False))
    for stage in ("generate", "prepare"):
        assert run_stage(mains[stage], stage_argv(stage, root, root / "params.yaml")) == 0
    (root / "reports").mkdir()
    (root / "reports/metrics.json").write_text('{"linreg": {"test_loss": 0.01}}\n')
    return root


@pytest.fixture
def in_store(monkeypatch, store):
    """Stages in this process log to `store`; no inherited DVC or MLflow settings."""
    for key in list(os.environ):
        if key.startswith(("MLFLOW_", "DVC_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    return store


def runs(uri: str, **tags: str):
    client = mlflow.MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(BASE["tracking"]["experiment"])
    if exp is None:
        return []
    flt = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
    return client.search_runs([exp.experiment_id], filter_string=flt, max_results=1000)


# ============================================================================ 1. bad parameters

@dataclass(frozen=True)
class Bad:
    """A malformed params file: its bytes, what was done, and the key its error must name."""

    what: str
    data: bytes
    key: str


def _walk(node, path=()):
    yield path, node
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _walk(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _walk(v, (*path, i))


# Values of any type by design (grid axes and their values): mutating inside them is not an
# error of that key, so they are mutated only as a whole.
ANY_TYPED = tuple(("select", "searches", name, key) for name in BASE["select"]["searches"]
                  for key in ("overrides", "grid")) + tuple(
    # The same two inside a profile's overrides (select.searches.NAME.grid as one key).
    ("profiles", pname, "overrides", key) for pname, prof in BASE["profiles"].items()
    for key in (prof.get("overrides") or {})
    if key.startswith("select.searches.") and key.rsplit(".", 1)[1] in ("overrides", "grid"))
SITES = [(p, v) for p, v in _walk(BASE)
         if p and not any(p[:len(a)] == a and len(p) > len(a) for a in ANY_TYPED)]
MAPPINGS = [()] + [p for p, v in SITES if isinstance(v, dict) and p not in ANY_TYPED]
# Key names whose value must be > 0 (sizes, rates, counts), and >= 0.
POSITIVE = {"lr", "epochs", "batch_size", "n_samples", "init_std", "threads", "k", "n_train",
            "n_test", "test_fraction", "n_features", "n_classes", "n_labels", "n_rows",
            "multilabel_top_k", "kfold", "max_degree", "zero_tol", "multilabel_threshold",
            "hidden", "top_k", "patience"}
NON_NEGATIVE = {"seed", "noise_sd", "weight_decay", "momentum", "val_fraction", "n_val",
                "strength"}
ABSURD = {"epochs": 10**9, "batch_size": 10**9, "lr": 1e6, "threads": 10**6,
          "n_samples": 10**12, "seed": 2**40, "momentum": 1.5, "test_fraction": 1.5,
          "val_fraction": 1.5, "dropout": 1.5, "kfold": 10**6, "k": 10**6}
REQUIRED = {"seed", "data", "prepare", "train", "dataset", "model", "loss", "optimizer",
            "batch_size", "epochs", "lr", "kind", "strength", "base", "grid"}
NAMED = {"dataset", "kind", "loss", "name", "activation", "init", "device", "scale", "solver",
         "base", "source", "x_dist", "batched"}  # keys whose value names something from a fixed set


def _name(path) -> str:
    """The key path as errors print it (a dataset's `kind` is reported at the dataset)."""
    if len(path) == 3 and path[0] == "data" and path[2] == "kind":
        path = path[:2]
    # The same for a dataset a profile's override sets (profiles.P.overrides.data.NAME.kind).
    if len(path) == 5 and path[:3:2] == ("profiles", "overrides") and path[4] == "kind" \
            and str(path[3]).startswith("data.") and str(path[3]).count(".") == 1:
        path = path[:4]
    return ".".join(str(p) for p in path) or "<top level>"


def _key_of(path):
    """The last key name of a path (for list elements: the list's key)."""
    keys = [p for p in path if isinstance(p, str)]
    return keys[-1] if keys else None


def _wrong_types(value) -> list:
    if isinstance(value, bool):
        return ["yes", 1, [True], {"x": 1}]
    if isinstance(value, int):
        return ["3", 2.5, [3], {"x": 1}, True]
    if isinstance(value, float):
        return ["0.1", [0.1], {"x": 1}, True]
    if isinstance(value, str):
        return [17, 2.5, [value], {"x": 1}, True]
    if isinstance(value, list):
        return ["oops", {"x": 1}, True]
    if isinstance(value, dict):
        return ["oops", 17, [1]]
    return ["oops", 17, [1]]  # None (an optional section switched off)


def _set(tree, path, value):
    node = tree
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _delete(tree, path):
    node = tree
    for p in path[:-1]:
        node = node[p]
    del node[path[-1]]


def _in_series(path) -> bool:
    return "series" in path or path[:2] == ("tracking", "experiment")


TEXTS = [  # (what, bytes, what the error names instead of a key)
    ("empty file", b"", "<top level>"),
    ("only whitespace", b"  \n\n", "<top level>"),
    ("only a comment", b"# nothing here\n", "<top level>"),
    ("a list", b"- seed\n- data\n", "<top level>"),
    ("a scalar", b"42\n", "<top level>"),
    ("unclosed flow list", (REPO / "params.yaml").read_bytes() + b"\ndata: [unclosed\n",
     "invalid YAML at line"),
    ("tab indentation", b"seed: 0\ndata:\n\tline: {}\n", "invalid YAML at line"),
    ("mapping in a value", b"seed: 0: 1\n", "invalid YAML at line"),
    ("unclosed brace", b"train: {linreg: 1\n", "invalid YAML at line"),
    ("not UTF-8", b"seed: \xff\xfe\x00\n", "cannot be read"),
]


@st.composite
def bad_params(draw) -> Bad:
    kind = draw(st.sampled_from(
        ["text", "wrong_type", "not_positive", "absurd", "unknown_key", "missing",
         "unknown_name"]))
    if kind == "text":
        what, data, key = draw(st.sampled_from(TEXTS))
        return Bad(what, data, key)
    params = copy.deepcopy(BASE)
    if kind == "wrong_type":
        path, value = draw(st.sampled_from(SITES))
        new = draw(st.sampled_from(_wrong_types(value)))
        _set(params, path, new)
        what, key = f"{_name(path)} = {new!r}", _name(path)
    elif kind == "not_positive":
        sites = [(p, v) for p, v in SITES if not isinstance(v, (dict, list, bool))
                 and isinstance(v, (int, float)) and _key_of(p) in POSITIVE | NON_NEGATIVE]
        path, _ = draw(st.sampled_from(sites))
        values = [0, -1, -0.5] if _key_of(path) in POSITIVE else [-1, -0.5, -1e-9]
        new = draw(st.sampled_from(values))
        _set(params, path, new)
        what, key = f"{_name(path)} = {new!r}", _name(path)
    elif kind == "absurd":
        sites = [(p, v) for p, v in SITES if isinstance(p[-1], str) and p[-1] in ABSURD
                 and not isinstance(v, (dict, bool))]
        # dropout 1.5 also as one number for every hidden layer of an MLP
        sites += [((*p, "dropout"), None) for p, v in SITES
                  if isinstance(v, dict) and v.get("hidden") and p[-1] == "model"]
        path, _ = draw(st.sampled_from(sites))
        new = ABSURD[path[-1]]
        _set(params, path, new)
        what, key = f"{_name(path)} = {new!r}", _name(path)
    elif kind == "unknown_key":
        parent = draw(st.sampled_from(MAPPINGS))
        name = draw(st.sampled_from(["colour", "epocs", "lerning_rate", "dropuot"]))
        node = params
        for p in parent:
            node = node[p]
        node[name] = 1
        what, key = f"unknown key {_name((*parent, name))}", _name((*parent, name))
    elif kind == "missing":
        # (Inside a profile or a lesson every key is optional: a profile sets what it lists.)
        sites = [p for p, _ in SITES if isinstance(p[-1], str)
                 and (p[-1] in REQUIRED or (len(p) == 2 and p[0] in ("data", "prepare")))
                 and not _in_series(p) and p[0] not in ("profiles", "lessons")]
        path = draw(st.sampled_from(sites))
        _delete(params, path)
        what = f"no {_name(path)}"
        # A dataset without its prepare entry (or the reverse) is reported at prepare.<name>.
        key = f"prepare.{path[1]}" if len(path) == 2 and path[0] in ("data", "prepare") \
            else _name(path)
    else:  # unknown_name
        sites = [(p, v) for p, v in SITES if isinstance(v, str) and p[-1] in NAMED
                 and not _in_series(p)]
        path, _ = draw(st.sampled_from(sites))
        new = draw(st.sampled_from(["nosuch", "resnet50", "MLP", ""]))
        _set(params, path, new)
        what, key = f"{_name(path)} = {new!r}", _name(path)
    return Bad(what, yaml.safe_dump(params, sort_keys=False).encode(), key)


def check_rejected(bad: Bad, stage: str, work: Path, params_dir: Path, mains, capsys,
                   argv: list[str] | None = None) -> str:
    """Run `stage` on `bad`: exit 2, one stderr line naming the file and the key, and nothing
    under `work` (data/, reports/) changed or added. Returns the line."""
    path = params_dir / "bad-params.yaml"
    path.write_bytes(bad.data)
    before = digest_tree(work)
    capsys.readouterr()
    rc = run_stage(mains[stage], argv or stage_argv(stage, work, path))
    err = capsys.readouterr().err
    lines = err.splitlines()
    assert rc == EXIT_CONFIG, f"{stage} on [{bad.what}] exited {rc}: {err}"
    assert len(lines) == 1, f"{stage} on [{bad.what}]: not one line:\n{err}"
    assert f"{path}: " in lines[0] and bad.key in lines[0], (
        f"{stage} on [{bad.what}]: the line does not name {path} and {bad.key!r}: {lines[0]}"
    )
    assert digest_tree(work) == before, f"{stage} on [{bad.what}] changed {work}"
    return lines[0]


def test_malformed_params_exit_2_with_one_line_and_touch_nothing(work, mains, tmp_path,
                                                                  capsys, in_store):
    tried: list[tuple[bytes, str]] = []

    @settings(max_examples=60, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(bad=bad_params(), stage=st.sampled_from(STAGES))
    def check(bad: Bad, stage: str) -> None:
        check_rejected(bad, stage, work, tmp_path, mains, capsys)
        tried.append((bad.data, stage))

    check()
    distinct = {data for data, _ in tried}
    print(f"{len(tried)} malformed params runs, {len(distinct)} distinct files")
    assert len(distinct) >= 50, f"only {len(distinct)} distinct malformed files were tried"
    assert not any(p.name.startswith("mlflow") for p in work.rglob("*"))


def _edited(**changes) -> Bad:
    params = copy.deepcopy(BASE)
    for dotted, value in changes.items():
        _set(params, tuple(dotted.split("__")), value)
    key = _name(tuple(next(iter(changes)).split("__")))
    return Bad(str(changes), yaml.safe_dump(params, sort_keys=False).encode(), key)


EXPLICIT = {
    "empty file": Bad("empty file", b"", "<top level>"),
    "invalid YAML": Bad("invalid YAML", b"seed: 0\ntrain: [linreg\n", "invalid YAML at line"),
    "epochs 10^9": _edited(train__linreg__epochs=10**9),
    "dropout 1.5": _edited(train__dropout__model__dropout=1.5),
    "unknown dataset": _edited(train__linreg__dataset="imagenet"),
    "unknown dataset kind": _edited(data__images__kind="cifar10"),
    # A compared pair (report.compare) must not hide its variant's own bad key (hypothesis).
    "unknown dataset, compared variant": _edited(train__house_mlp__dataset="nosuch"),
    "zero batch": _edited(train__mlp__batch_size=0),
    "lesson with no hidden units": _edited(lessons__symmetry__hidden=0),
    "lesson on a regression set": _edited(lessons__gradient_flow__dataset="synthetic_linear"),
    "unknown profile": _edited(profile="fullsize"),
    "negative lr": _edited(train__mlp__optimizer__lr=-0.1),
}


@pytest.mark.parametrize("case", sorted(EXPLICIT))
def test_explicit_bad_params(case, work, mains, tmp_path, capsys, in_store):
    line = check_rejected(EXPLICIT[case], "train", work, tmp_path, mains, capsys)
    if case == "epochs 10^9":
        assert "1000000000" in line


def test_unknown_variant_exits_2(work, mains, tmp_path, capsys, in_store):
    good = Bad("--variant nosuch", yaml.safe_dump(BASE, sort_keys=False).encode(),
               "train.nosuch")
    argv = train_argv(work, tmp_path / "bad-params.yaml", variant="nosuch")
    check_rejected(good, "train", work, tmp_path, mains, capsys, argv=argv)


def test_batch_larger_than_the_data_exits_2(work, mains, tmp_path, capsys, in_store):
    """The synthetic set has 800 training rows: a batch of 5000 is a typo, not full batch."""
    copy_ = tmp_path / "work"
    shutil.copytree(work, copy_)
    params = tiny(copy.deepcopy(BASE))
    params["train"]["linreg"]["batch_size"] = 5000
    bad = Bad("batch_size 5000 > 800 rows", yaml.safe_dump(params, sort_keys=False).encode(),
              "train.linreg.batch_size")
    check_rejected(bad, "train", copy_, tmp_path, mains, capsys)


# ============================================================================ 2. divergence

def test_divergence_stops_at_the_first_nan_and_fails_the_run(work, mains, tmp_path, capsys,
                                                            in_store):
    params = tiny(copy.deepcopy(BASE))
    params["train"]["linreg"].update(epochs=20)
    params["train"]["linreg"]["optimizer"]["lr"] = 4.1  # the sources' diverging rate
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    before = digest_tree(work)
    capsys.readouterr()
    rc = run_stage(mains["train"], train_argv(work, path))
    err = capsys.readouterr().err
    assert rc == EXIT_DIVERGED, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, err
    m = re.search(r"diverged at epoch (\d+)", errors[0])
    assert m and "lower the learning rate" in errors[0] and "4.1" in errors[0], errors[0]
    epoch = int(m.group(1))
    assert 1 <= epoch < 20
    assert digest_tree(work) == before, "a diverged run wrote outputs"
    (failed,) = [r for r in runs(in_store, variant="linreg")
                 if r.data.params.get("optimizer.lr") == "4.1"]
    assert failed.info.status == "FAILED"
    assert f"diverged at epoch {epoch}" in failed.data.tags["failure"]
    # Training stopped there: nothing after the divergent epoch reached the store, and no
    # non-finite value did.
    client = mlflow.MlflowClient(tracking_uri=in_store)
    history = client.get_metric_history(failed.info.run_id, "train_loss")
    assert all(h.step < epoch for h in history)
    assert all(abs(h.value) < float("inf") for h in history)


# ============================================================================ 3. interruption

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_runs_of_dead_processes_are_marked_killed_live_ones_left(work, mains, tmp_path,
                                                                 capsys, in_store):
    """Before a run starts, the runs left RUNNING by dead processes of this host become
    KILLED, whatever their variant; a live process's run (a parallel queued experiment) and
    another host's run stay RUNNING."""
    client = mlflow.MlflowClient(tracking_uri=in_store)
    exp_id = tracking.setup(BASE["tracking"]["experiment"])
    host = socket.gethostname()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        def started(variant, pid, h=host, parent=None):
            tags = {"variant": variant, "host": h, "pid": str(pid)}
            if parent:
                tags = {"variant": variant, "mlflow.parentRunId": parent}
            return client.create_run(exp_id, tags=tags, run_name=f"fake-{variant}").info.run_id

        dead_pid = _dead_pid()
        dead = started("linreg", dead_pid)
        dead_child = started("linreg", 0, parent=dead)
        alive = started("linreg", live.pid)
        elsewhere = started("linreg", dead_pid, h=f"not-{host}")
        other_variant = started("mlp", dead_pid)
        params = tiny(copy.deepcopy(BASE))
        path = tmp_path / "params.yaml"
        path.write_text(yaml.safe_dump(params, sort_keys=False))
        out = tmp_path / "out"
        rc = run_stage(mains["train"], train_argv(work, path, out=out / "m"))
        assert rc == 0, capsys.readouterr().err
        status = {k: client.get_run(v) for k, v in dict(
            dead=dead, dead_child=dead_child, alive=alive, elsewhere=elsewhere,
            other_variant=other_variant).items()}
        assert status["dead"].info.status == "KILLED"
        assert status["dead"].data.tags["failure"] == f"process {dead_pid} died"
        assert status["dead_child"].info.status == "KILLED"
        assert status["other_variant"].info.status == "KILLED"
        for name in ("alive", "elsewhere"):
            assert status[name].info.status == "RUNNING", name
        mine = [r for r in runs(in_store, variant="linreg") if r.info.status == "FINISHED"]
        assert mine and all(r.data.tags["pid"] == str(os.getpid()) for r in mine)
    finally:
        live.kill()
        live.wait()


def test_a_dead_report_run_is_marked_killed_by_the_next_report(in_store):
    """Runs of no variant (the report stage's) are ended too, and so is a dead run of any
    other kind; a live process's run is left alone."""
    client = mlflow.MlflowClient(tracking_uri=in_store)
    exp = BASE["tracking"]["experiment"]
    exp_id = tracking.setup(exp)
    dead_pid = _dead_pid()
    tags = {"kind": "report", "host": socket.gethostname(), "pid": str(dead_pid)}
    ghost = client.create_run(exp_id, tags=tags, run_name="report").info.run_id
    other = client.create_run(exp_id, tags={**tags, "kind": "other"}).info.run_id
    alive = client.create_run(exp_id, tags={**tags, "pid": str(os.getpid())}).info.run_id
    with tracking.run(exp, "report", {"kind": "report"}) as active:
        assert client.get_run(ghost).info.status == "KILLED"
        assert client.get_run(ghost).data.tags["failure"] == f"process {dead_pid} died"
    assert client.get_run(active.info.run_id).info.status == "FINISHED"
    assert client.get_run(other).info.status == "KILLED"
    assert client.get_run(alive).info.status == "RUNNING"


def _wait_for_line(proc: subprocess.Popen, pattern: str, timeout: float) -> list[str]:
    """Read proc's stdout until a line matches `pattern`; the lines read."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if re.search(pattern, line):
            return seen
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n{''.join(seen)}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_ctrl_c_marks_the_run_killed_and_exits_cleanly(sig, work, tmp_path, in_store):
    """Ctrl-C, and SIGTERM (how runners and `dvc queue kill` stop a stage), alike."""
    params = tiny(copy.deepcopy(BASE))
    params["train"]["linreg"]["epochs"] = 3000
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    out = tmp_path / "out"
    argv = [*train_argv(work, path, out=out / "m"), "--verbose"]  # epoch lines: it trains
    env = tool_env(MLFLOW_TRACKING_URI=in_store, PYTHONPATH=str(REPO / "src"))
    # As a shell starts it: SIGINT at its default (a test worker may have inherited it
    # ignored, and Python then leaves it ignored in the stage).
    proc = subprocess.Popen([sys.executable, str(REPO / "stages/train.py"), *argv], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        _wait_for_line(proc, r"train linreg epoch \d+/3000", timeout=180)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and len(err.splitlines()) == 1 and "interrupted" in err, err
    assert not out.exists() or not any(out.rglob("*")), "an interrupted stage wrote outputs"
    (killed,) = [r for r in runs(in_store, variant="linreg")
                 if r.data.tags.get("pid") == str(proc.pid)]
    assert killed.info.status == "KILLED"
    assert killed.data.tags["failure"] == f"interrupted ({sig.name})"


# ============================================================================ 6. data integrity

DAMAGE = {
    "truncated": lambda b: b[: len(b) // 2],
    "altered": lambda b: b[:-1] + bytes([b[-1] ^ 1]),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
@pytest.mark.parametrize("which", ["prepared", "raw"])
def test_damaged_data_file_is_caught_by_its_digest(which, how, work, mains, tmp_path, capsys,
                                                   in_store):
    copy_ = tmp_path / "work"
    shutil.copytree(work, copy_)
    stage, files = {
        "prepared": ("train", sorted((copy_ / "data/prepared/synthetic_linear").glob("*.npy"))),
        "raw": ("prepare", sorted(p for p in (copy_ / "data/raw/synthetic_linear").iterdir()
                                  if p.name != "meta.json" and p.suffix != ".json")),
    }[which]
    assert files, f"no {which} data files to damage"
    victim = files[0]
    victim.write_bytes(DAMAGE[how](victim.read_bytes()))
    before = digest_tree(copy_)
    capsys.readouterr()
    rc = run_stage(mains[stage], stage_argv(stage, copy_, copy_ / "params.yaml"))
    err = capsys.readouterr().err
    assert rc == EXIT_DATA, err
    (line,) = [line for line in err.splitlines() if line.startswith("error:")]
    assert str(victim) in line and "sha256" in line, line
    assert digest_tree(copy_) == before


# ============================================================================ 5. tracking server

def test_unreachable_tracking_server_fails_within_10_s_with_one_line(work, mains, tmp_path,
                                                                     capsys, in_store,
                                                                     monkeypatch):
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for key in tracking.HTTP_DEFAULTS:  # restored after the test: setup() sets them
        monkeypatch.delenv(key, raising=False)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(tiny(copy.deepcopy(BASE)), sort_keys=False))
    out = tmp_path / "out"
    before = digest_tree(work)
    capsys.readouterr()
    t0 = time.monotonic()
    try:
        rc = run_stage(mains["train"], train_argv(work, path, out=out / "m"))
    except Exception as exc:  # noqa: BLE001 - the test says what is missing
        elapsed = time.monotonic() - t0
        assert elapsed < 10, f"took {elapsed:.1f} s to fail"
        pytest.fail(f"the stage raised {type(exc).__name__} ({exc}) instead of exiting with one "
                    "line: dlbasics.cli.run_stage does not map tracking.TrackingError")
    elapsed = time.monotonic() - t0
    err = capsys.readouterr().err
    assert elapsed < 10, f"took {elapsed:.1f} s to fail"
    assert rc not in (0, 1), err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert uri in lines[0] and "unreachable" in lines[0] and "MLFLOW_TRACKING_URI" in lines[0]
    assert not out.exists()
    assert digest_tree(work) == before


def test_a_server_that_stops_answering_is_told_apart_from_other_mlflow_errors(tmp_path,
                                                                             monkeypatch):
    """The real errors of a real client: a server gone (connection refused) is one line naming
    it; an error of a store that answers (no such run) is not taken for a lost server."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from dlbasics.errors import tracking_lost

    for key, value in tracking.HTTP_DEFAULTS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(MlflowException) as gone:
        mlflow.MlflowClient(tracking_uri=uri).get_run("0" * 32)
    try:  # raised while handling it, as a failing `set_tag` in an `except` block does
        raise RuntimeError("while marking the run") from gone.value
    except RuntimeError as chained:
        for exc in (gone.value, chained):
            line = tracking_lost(exc)
            assert line and uri in line and "connection refused" in line, line
            assert "\n" not in line
    local = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'm.db'}")
    with pytest.raises(MlflowException) as missing:
        local.get_run("0" * 32)
    assert tracking_lost(missing.value) is None
    assert tracking_lost(ValueError("Connection refused")) is None  # not a client's error


def test_report_stage_with_an_unreachable_server_writes_nothing_and_says_one_line(
        work, mains, tmp_path, capsys, in_store, monkeypatch):
    """The report stage logs its run from a child process: the server is probed first, so the
    stage stops before writing anything, and the child's message is not doubled."""
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for key in tracking.HTTP_DEFAULTS:
        monkeypatch.delenv(key, raising=False)
    out = tmp_path / "out"
    argv = stage_argv("report", out, work / "params.yaml")
    before = digest_tree(work)
    capsys.readouterr()
    rc = run_stage(mains["report"], argv)
    err = capsys.readouterr().err
    assert rc == 5, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: MLflow tracking server"), err
    assert "error: error" not in lines[0] and uri in lines[0]
    assert not out.exists()
    assert digest_tree(work) == before


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real `mlflow server` on 127.0.0.1 (sqlite backend, proxied artifacts), one worker."""
    root = tmp_path_factory.mktemp("server")
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", f"sqlite:///{root / 's.db'}",
         "--artifacts-destination", str(root / "artifacts"), "--workers", "1"],
        cwd=root, env=tool_env(), stdout=(root / "server.log").open("w"),
        stderr=subprocess.STDOUT, start_new_session=True,
    )
    uri = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start:\n"
                                     f"{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield uri, root
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def served(server, tmp_path_factory):
    """A tiny project reproduced once with `dvc repro`, every stage logging to the server, and
    secrets in its environment that must never be recorded."""
    uri, _ = server
    proj = make_project(tmp_path_factory.mktemp("served") / "proj", tiny)
    run(["dvc", "repro"], proj, MLFLOW_TRACKING_URI=uri, AWS_SECRET_ACCESS_KEY=SECRET,
        DLBASICS_DB_PASSWORD=SECRET)
    return proj


@pytest.mark.slow
def test_the_whole_pipeline_logs_to_a_real_server(server, served):
    uri, _ = server
    got = runs(uri)
    by_variant = {}
    for r in got:
        by_variant.setdefault(r.data.tags.get("variant"), []).append(r)
    assert {"linreg", "base", "select@tiny"} <= set(by_variant)
    for v in ("linreg", "base"):
        (r,) = by_variant[v]
        assert r.info.status == "FINISHED"
        assert "val_loss" in r.data.metrics and "test_loss" in r.data.metrics  # training, evaluation
        assert r.data.tags["dvc_stage"] == "train"
    assert all(r.info.status == "FINISHED" for r in by_variant["select@tiny"])
    assert not (served / "mlflow.db").exists(), "a stage logged to the local store instead"
    assert not (served / "mlartifacts").exists()


# ============================================================================ 7. safety

@pytest.mark.slow
def test_no_credentials_in_params_tags_artifacts_or_outputs(server, served):
    uri, root = server
    words = ("password", "token", "secret", "credential", "api_key")
    for r in runs(uri):
        for key, value in [*r.data.tags.items(), *r.data.params.items()]:
            assert not any(w in key.lower() for w in words), f"run {r.info.run_name}: {key}"
            assert SECRET not in value, f"run {r.info.run_name}: {key} holds a secret"
    files = [p for p in (root / "artifacts").rglob("*") if p.is_file()]
    assert files, "no artifacts reached the server"
    files += [p for d in ("data", "reports") for p in (served / d).rglob("*") if p.is_file()]
    for f in files:
        assert SECRET.encode() not in f.read_bytes(), f"{f} holds a secret"
    flat = tracking.flatten(BASE)
    assert not [k for k in flat if any(w in k.lower() for w in words)]


def _calls(text: str, name: str) -> list[str]:
    """The argument text of every call `name(...)` in `text` (balanced parentheses)."""
    out = []
    for m in re.finditer(re.escape(name) + r"\s*\(", text):
        depth, i = 1, m.end()
        while depth and i < len(text):
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        out.append(text[m.end():i - 1])
    return out


def test_safe_loading_and_local_binding_everywhere():
    """Across the repository: YAML is loaded safely, checkpoints with weights_only=True, no
    pickles, and every server or UI a command starts binds to 127.0.0.1."""
    me = Path(__file__).resolve()
    problems = []
    for rel in tracked_files():
        path = REPO / rel
        if path.resolve() == me or path.suffix not in ("", ".py", ".md", ".yaml", ".yml",
                                                       ".toml", ".sh", ".cfg", ".mk"):
            continue
        text = path.read_text(errors="replace")
        for fn in ("yaml.load", "yaml.load_all", "yaml.full_load", "yaml.unsafe_load"):
            for args in _calls(text, fn):
                if "SafeLoader" not in args:
                    problems.append(f"{rel}: {fn}({args})")
        for loader in ("yaml.Loader", "yaml.FullLoader", "yaml.UnsafeLoader"):
            if re.search(re.escape(loader) + r"\b", text):
                problems.append(f"{rel}: {loader}")
        for args in _calls(text, "torch.load"):
            if not re.search(r"weights_only\s*=\s*True", args):
                problems.append(f"{rel}: torch.load({args}) without weights_only=True")
        for fn in ("pickle.load", "pickle.loads", "joblib.load", "cloudpickle.load"):
            if _calls(text, fn):
                problems.append(f"{rel}: {fn}")
        if re.search(r"allow_pickle\s*=\s*True", text):
            problems.append(f"{rel}: allow_pickle=True")
        for line in text.splitlines():
            if re.search(r"\bmlflow\s+(ui|server)\b.*--", line) or re.search(
                    r"\b(uvicorn|gunicorn|http\.server|streamlit|tensorboard)\b.*--", line):
                if not re.search(r"(--host|-h|--bind|--address)[ =]127\.0\.0\.1\b", line):
                    problems.append(f"{rel}: a server not bound to 127.0.0.1: {line.strip()}")
            if "0.0.0.0" in line and not rel.startswith("tests/"):
                problems.append(f"{rel}: binds every interface: {line.strip()}")
    assert not problems, "\n".join(problems)
    ui = re.search(r"^ui:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert ui and "--host 127.0.0.1" in ui.group(1)


# ============================================================================ 4. concurrency

def _queue_table(proj: Path) -> str:
    return run(["dvc", "queue", "status"], proj).stdout


@pytest.mark.slow
def test_four_queued_experiments_two_at_a_time_all_reach_mlflow(served):
    """dvc exp run --queue x4, dvc queue start -j 2: every experiment's params and metrics
    land in the local sqlite store, and no worker hits 'database is locked'."""
    proj = served
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "reproduced"], proj)
    lrs = ["0.01", "0.02", "0.04", "0.05"]
    for lr in lrs:
        # (no model logging: it saves minutes)
        run(["dvc", "exp", "run", "--queue", "-S", f"train.linreg.optimizer.lr={lr}",
             "-S", "tracking.log_models=false"], proj)
    run(["dvc", "queue", "start", "-j", "2"], proj)
    deadline = time.monotonic() + 480
    try:
        while True:
            table = _queue_table(proj)
            done = len(re.findall(r"\b(Success|Failed)\b", table))
            if done >= len(lrs) or time.monotonic() > deadline:
                break
            time.sleep(3)
    finally:
        run(["dvc", "queue", "stop"], proj, check=False)
    names = re.findall(r"^\S+\s+(\S+)\s+.*\b(?:Success|Failed)\b", table, re.M)
    logs = "\n".join(run(["dvc", "queue", "logs", n], proj, check=False).stdout for n in names)
    assert "database is locked" not in logs
    assert len(re.findall(r"\bSuccess\b", table)) == len(lrs), f"{table}\n{logs[-4000:]}"
    store = f"sqlite:///{proj / 'mlflow.db'}"
    queued = [r for r in runs(store, variant="linreg") if r.data.tags.get("dvc_exp_name")]
    assert sorted(r.data.params["optimizer.lr"] for r in queued) == lrs
    for r in queued:
        assert r.info.status == "FINISHED"
        assert "val_loss" in r.data.metrics, "train logged no metrics"
        assert "test_loss" in r.data.metrics, "evaluation did not reach the experiment's run"
    assert len({r.data.tags["dvc_exp_name"] for r in queued}) == len(lrs)
    assert len({r.data.metrics["val_loss"] for r in queued}) == len(lrs)


FIRST_USE = """
import sys
from dlbasics.tracking import runs as tracking
with tracking.run("dlbasics", "parallel", {"variant": "parallel"}) as r:
    import mlflow
    mlflow.log_params({"worker": sys.argv[1]})
    buffer = tracking.MetricBuffer(r.info.run_id)
    for step in range(50):
        buffer.add({"val_loss": 1.0 / (step + 1)}, step)
    buffer.flush()
"""


def test_processes_opening_a_new_store_at_once_all_log(tmp_path):
    """Four processes start on a store that does not exist yet (the first dvc queue start -j 2
    of a project): mlflow creates its tables in each; none may fail or break the store."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = tool_env(MLFLOW_TRACKING_URI=uri, PYTHONPATH=str(REPO / "src"))
    procs = [subprocess.Popen([sys.executable, "-c", FIRST_USE, str(i)], cwd=tmp_path, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(4)]
    results = [(p.wait(timeout=300), p.communicate()[1]) for p in procs]
    for rc, err in results:
        assert rc == 0, err[-3000:]
        assert "database is locked" not in err
    got = runs(uri, variant="parallel")
    assert sorted(r.data.params["worker"] for r in got) == ["0", "1", "2", "3"]
    client = mlflow.MlflowClient(tracking_uri=uri)
    for r in got:
        assert r.info.status == "FINISHED"
        assert len(client.get_metric_history(r.info.run_id, "val_loss")) == 50


# ============================================================================ 3. kill -9 under DVC

@pytest.mark.slow
def test_kill_9_during_training_leaves_no_half_output_and_next_repro_completes(served):
    proj = served
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["linreg"]["epochs"] = 300
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    before = digest_tree(proj, skip=(".git", ".dvc", "mlflow.db", "mlartifacts", "params.yaml",
                                     "dvc.lock"))
    # DLBASICS_VERBOSE: the stage prints its epochs, so the test sees that training runs.
    proc = subprocess.Popen(["dvc", "repro"], cwd=proj, env=tool_env(DLBASICS_VERBOSE="1"),
                            text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        _wait_for_line(proc, r"train linreg epoch \d+/300", timeout=240)
        os.killpg(proc.pid, signal.SIGKILL)  # dvc and the stage it runs
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    time.sleep(1)
    after = digest_tree(proj, skip=(".git", ".dvc", "mlflow.db", "mlartifacts", "params.yaml",
                                    "dvc.lock"))
    assert after == before, "the killed stage changed or added files: " + str(
        sorted(set(after.items()) ^ set(before.items())))
    store = f"sqlite:///{proj / 'mlflow.db'}"
    (orphan,) = [r for r in runs(store, variant="linreg") if r.info.status == "RUNNING"]

    again = run(["dvc", "repro"], proj, check=False)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "Running stage 'train'" in again.stdout
    assert run(["dvc", "status"], proj).stdout.strip().endswith("up to date.")
    orphan = mlflow.MlflowClient(tracking_uri=store).get_run(orphan.info.run_id)
    assert orphan.info.status == "KILLED"
    assert orphan.data.tags["failure"] == f"process {orphan.data.tags['pid']} died"
    finished = [r for r in runs(store, variant="linreg") if r.info.status == "FINISHED"
                and not r.data.tags.get("dvc_exp_name")]
    assert finished and finished[0].data.params["epochs"] == "300"
    history = json.loads((proj / "reports/history/linreg.json").read_text())
    assert [r["epoch"] for r in history] == list(range(1, 301))
