"""The MLflow Model Registry with the real `dvc` CLI and real stores: the train stage registers
the variants tracking.registry lists, each select stage its refitted winner; the tags say where
a version came from; an unchanged re-run registers nothing; the champion alias follows the test
score; the docs' three lines load the champion; a tracking server works the same way."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import yaml
from conftest import BIN, make_project, ran, run, shrink, tool_env

from dlbasics.config.loading import load_params, parse_params
from dlbasics.errors import ConfigError
from dlbasics.tracking import registry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
NAME = yaml.safe_load((REPO / "params.yaml").read_text())["tracking"]["registry"]["model"]


def registry_params(params: dict) -> dict:
    """shrink's project with one trained variant (mlp, the search's base) on the digits; the
    repository's registry, with mlp listed."""
    params = shrink(params)
    params["train"] = {"mlp": params["train"]["mlp"]}
    params["train"]["mlp"].pop("seeds", None)
    params["data"] = {"images": params["data"]["images"]}
    params["prepare"] = {"images": params["prepare"]["images"]}
    params["report"] = {"notes": {}, "compare": []}
    params["tracking"]["registry"]["variants"] = ["mlp"]
    return params


def versions(proj: Path) -> list:
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    return sorted(client.search_model_versions(f"name = '{NAME}'"), key=lambda v: int(v.version))


def champion_of(proj: Path):
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    return client.get_model_version_by_alias(NAME, registry.ALIAS)


def model_dir(proj: Path, variant: str) -> Path:
    return proj / ("data/select" if variant.startswith("select@") else "data/models") / \
        variant.removeprefix("select@")


def score_of(proj: Path, variant: str) -> float:
    return json.loads((model_dir(proj, variant) / "eval/metrics.json").read_text())[
        "test_accuracy"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    proj = make_project(tmp_path_factory.mktemp("registry") / "proj", registry_params)
    t0 = time.perf_counter()
    first = run(["dvc", "repro", "train", "select@tiny"], proj)
    print(f"\nfirst repro (generate, prepare, train, select@tiny): "
          f"{time.perf_counter() - t0:.1f} s")
    return proj, first


def test_the_winner_and_the_listed_variant_are_versions_with_their_tags(pipeline):
    proj, first = pipeline
    assert ran(first) == {"generate", "prepare", "train", "select@tiny"}
    got = versions(proj)
    assert sorted(v.tags["variant"] for v in got) == ["mlp", "select@tiny"]
    head = run(["git", "rev-parse", "HEAD"], proj).stdout.strip()
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{proj / 'mlflow.db'}")
    for v in got:
        variant = v.tags["variant"]
        info = json.loads((model_dir(proj, variant) / "model.json").read_text())
        assert v.tags["model_sha256"] == info["model_sha256"]
        assert v.tags["dataset_sha256"] == info["dataset_sha256"]
        assert v.tags["git_commit"] == head
        assert v.tags["metric"] == "accuracy"
        assert float(v.tags["test_accuracy"]) == score_of(proj, variant)
        assert "dvc_exp_name" not in v.tags  # a plain `dvc repro`
        # The version is the served model logged to the run that made those weights.
        run_ = client.get_run(v.run_id)
        assert run_.data.tags["model_sha256"] == info["model_sha256"]
        assert run_.data.tags["variant"] == variant
        assert f"registry {NAME}: {variant} registered as version {v.version}" in first.stdout
    # The alias is on the best test score; the first of equals keeps it.
    best = max(got, key=lambda v: (float(v.tags["test_accuracy"]), -int(v.version)))
    assert champion_of(proj).version == best.version


def test_the_readme_lines_load_the_champion_and_predict(pipeline):
    proj, _ = pipeline
    block = re.search(r"<!-- load-champion -->\n```python\n(.*?)```",
                      (REPO / "docs" / "registry.md").read_text(), re.S)
    assert block, "docs/registry.md: no ```python block after <!-- load-champion -->"
    lines = block.group(1)
    assert len(lines.strip().splitlines()) == 3 and f"models:/{NAME}@champion" in lines
    # Exactly those lines, from the project's root (the default store), then the answer shown.
    code = lines + "print(answer.to_json(orient='records'))\n"
    env = tool_env()
    env.pop("PYTHONPATH", None)  # as a user runs them: dlbasics comes with the model
    proc = subprocess.run([sys.executable, "-c", code], cwd=proj, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    answer = json.loads(proc.stdout.strip().splitlines()[-1])
    variant = champion_of(proj).tags["variant"]
    predicted = json.loads((model_dir(proj, variant) / "eval/predictions.json").read_text())
    n = len(answer)
    assert n == 5 and [a["label"] for a in answer] == [p["predicted"] for p in predicted[:n]]
    assert all(abs(sum(a["probabilities"]) - 1) < 1e-9 for a in answer)


def test_an_unchanged_rerun_registers_nothing(pipeline):
    proj, _ = pipeline
    before = [(v.version, v.tags["model_sha256"]) for v in versions(proj)]
    assert ran(run(["dvc", "repro", "train", "select@tiny"], proj)) == set()
    # The same weights from another run (a forced re-run, another experiment): found by their
    # digest, not registered again.
    params = load_params(proj / "params.yaml")
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("dlbasics").experiment_id
                          ) as again:
        out = registry.register(params, "select@tiny", again.info.run_id,
                                proj / "data/select/tiny", proj / "data/prepared")
    assert out["new"] is False and out["moved"] is False
    assert [(v.version, v.tags["model_sha256"]) for v in versions(proj)] == before


def test_an_experiment_registers_a_new_version_and_the_alias_follows_the_score(pipeline):
    proj, _ = pipeline
    old = versions(proj)
    held = champion_of(proj)
    t0 = time.perf_counter()
    proc = run(["dvc", "exp", "run", "-S", "select.searches.tiny.overrides.epochs=4",
                "select@tiny"], proj)
    print(f"\n`dvc exp run` of select@tiny: {time.perf_counter() - t0:.1f} s")
    exp = re.search(r"Ran experiment\(s\): (\S+)", proc.stdout).group(1)
    new = versions(proj)
    assert len(new) == len(old) + 1
    added = new[-1]
    assert added.tags["variant"] == "select@tiny" and added.tags["dvc_exp_name"] == exp
    info = json.loads((proj / "data/select/tiny/model.json").read_text())
    assert added.tags["model_sha256"] == info["model_sha256"]
    score, theirs = float(added.tags["test_accuracy"]), float(held.tags["test_accuracy"])
    want = added.version if score >= theirs else held.version
    assert champion_of(proj).version == want
    print(f"versions {[(v.version, v.tags['variant'], v.tags['test_accuracy']) for v in new]}; "
          f"{registry.ALIAS}: version {want}")


def _candidate(proj: Path, dest: Path, score: float) -> Path:
    """A copy of select@tiny's model directory with other weights (one bias nudged) and the
    given test accuracy: what a later run with another result writes."""
    import torch

    shutil.copytree(proj / "data/select/tiny", dest)
    state = torch.load(dest / "model.pt", weights_only=True)
    last = [k for k in state if k.endswith("bias")][-1]
    state[last] = state[last] + score  # a different digest per score
    torch.save(state, dest / "model.pt")
    from dlbasics.io import sha256_bytes

    info = json.loads((dest / "model.json").read_text())
    info["model_sha256"] = sha256_bytes((dest / "model.pt").read_bytes())
    (dest / "model.json").write_text(json.dumps(info))
    metrics = json.loads((dest / "eval/metrics.json").read_text())
    metrics["test_accuracy"] = score
    (dest / "eval/metrics.json").write_text(json.dumps(metrics))
    return dest


def test_the_alias_moves_only_to_a_score_at_least_as_good(pipeline, tmp_path):
    proj, _ = pipeline
    params = load_params(proj / "params.yaml")
    mlflow.set_tracking_uri(f"sqlite:///{proj / 'mlflow.db'}")
    held = champion_of(proj)
    score = float(held.tags["test_accuracy"])
    exp_id = mlflow.get_experiment_by_name("dlbasics").experiment_id
    with mlflow.start_run(experiment_id=exp_id) as r:
        worse = registry.register(params, "select@tiny", r.info.run_id,
                                  _candidate(proj, tmp_path / "worse", score - 0.01),
                                  proj / "data/prepared")
    assert worse["new"] and not worse["moved"] and champion_of(proj).version == held.version
    with mlflow.start_run(experiment_id=exp_id) as r:
        equal = registry.register(params, "select@tiny", r.info.run_id,
                                  _candidate(proj, tmp_path / "equal", score),
                                  proj / "data/prepared")
    assert equal["new"] and equal["moved"]
    assert int(champion_of(proj).version) == equal["version"] > int(held.version)


def test_rmse_is_better_lower_and_accuracy_higher():
    assert registry.at_least_as_good("rmse", 0.5, 0.6) and not registry.at_least_as_good(
        "rmse", 0.7, 0.6)
    assert registry.at_least_as_good("accuracy", 0.9, 0.9)
    assert not registry.at_least_as_good("accuracy", 0.8, 0.9)
    assert not registry.at_least_as_good("exact_match", 0.8, 0.9)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_tracking_server_registers_the_same_way(pipeline, tmp_path, monkeypatch):
    """`mlflow server` on 127.0.0.1 with a sqlite backend and proxied artifacts: register,
    find again, alias, load the champion through the server."""
    proj, _ = pipeline
    before = mlflow.get_tracking_uri()
    port = _free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
         "--artifacts-destination", str(tmp_path / "artifacts")],
        # No job runner: mlflow 3.17's server otherwise starts seven huey consumer processes.
        cwd=tmp_path, env=tool_env(MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false"), stdout=log,
        stderr=subprocess.STDOUT, start_new_session=True)
    try:
        uri = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            assert server.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow server did not start in 90 s"
                time.sleep(0.3)
        print(f"\nmlflow server up in {time.monotonic() - deadline + 90:.1f} s")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        params = load_params(proj / "params.yaml")
        exp_id = mlflow.create_experiment("served")
        with mlflow.start_run(experiment_id=exp_id) as r:
            first = registry.register(params, "select@tiny", r.info.run_id,
                                      proj / "data/select/tiny", proj / "data/prepared")
        print(f"registered through the server at {time.monotonic() - deadline + 90:.1f} s")
        with mlflow.start_run(experiment_id=exp_id) as r:
            again = registry.register(params, "select@tiny", r.info.run_id,
                                      proj / "data/select/tiny", proj / "data/prepared")
        assert first == {"name": NAME, "version": 1, "new": True, "champion": 1, "moved": True}
        assert again == {**first, "new": False, "moved": False}
        import numpy as np

        model = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
        X = np.load(proj / "data/prepared/images/X_test.npy")[:6]
        predicted = json.loads((proj / "data/select/tiny/eval/predictions.json").read_text())
        assert list(model.predict(X)["label"]) == [p["predicted"] for p in predicted[:6]]
    finally:
        mlflow.set_tracking_uri(before)
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


# ----------------------------------------------------------------------------- settings


@pytest.fixture(scope="module")
def base() -> dict:
    return json.loads(json.dumps(yaml.safe_load((REPO / "params.yaml").read_text())))


@pytest.mark.parametrize("edit, key", [
    (lambda r: r.update(nmae="x"), "tracking.registry.nmae"),
    (lambda r: r.update(model="a/b"), "tracking.registry.model"),
    (lambda r: r.pop("model"), "tracking.registry.model"),
    (lambda r: r.update(variants=["nope"]), "tracking.registry.variants.0"),
    (lambda r: r.update(searches=["book", "zzz"]), "tracking.registry.searches.1"),
    (lambda r: r.update(variants=["linreg"]), "tracking.registry"),  # another dataset
])
def test_a_bad_registry_setting_is_one_line_naming_its_key(base, edit, key):
    raw = copy.deepcopy(base)
    edit(raw["tracking"]["registry"])
    with pytest.raises(ConfigError) as info:
        parse_params(raw, source="p.yaml")
    msg = str(info.value)
    assert msg.split(": ", 2)[1] == key and "\n" not in msg


def test_make_serve_gets_the_name_or_one_line(tmp_path, base, capsys):
    assert registry.main(["--params", str(REPO / "params.yaml"), "--name"]) == 0
    assert capsys.readouterr().out == f"{NAME}\n"
    raw = copy.deepcopy(base)
    raw["tracking"].pop("registry")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(raw))
    assert registry.main(["--params", str(tmp_path / "p.yaml"), "--name"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "tracking.registry" in err and err.count("\n") == 1
