"""DVC artifacts: dvc.yaml declares the selected models and the report, each a cached output of a
stage; `dvc artifacts get` fetches a tagged version of each from a repository's DVC remote, byte
for byte (the real `git` and `dvc`, a local remote, an empty cache)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from conftest import REPO, run, tool_env

ARTIFACTS = yaml.safe_load((REPO / "dvc.yaml").read_text())["artifacts"]


def test_each_artifact_is_a_cached_output_of_a_stage_with_a_type_and_a_description():
    from dvc.repo import Repo
    from dvc.repo.artifacts import check_name_format

    with Repo(str(REPO)) as repo:
        outs = {str(o.def_path): o for o in repo.index.outs}
    assert {"select-tuned", "select-book", "report"} <= set(ARTIFACTS)
    for name, art in ARTIFACTS.items():
        check_name_format(name)  # what `dvc artifacts get` accepts
        assert art["type"] in ("model", "report") and art["desc"].strip(), name
        assert art["path"] in outs, f"{name}: {art['path']} is not an output of dvc.yaml"
        # Cached: pushed to the remote, so `dvc artifacts get` can fetch it from there.
        assert outs[art["path"]].use_cache, name


MAKE = """import os, sys
version, paths = sys.argv[1], sys.argv[2:]
for path in paths:
    if os.path.splitext(path)[1]:  # a file
        os.makedirs(os.path.dirname(path), exist_ok=True)
        open(path, "w").write(f"<p>{path} {version}</p>")
    else:  # a model directory, as select writes it
        os.makedirs(path, exist_ok=True)
        open(os.path.join(path, "model.pt"), "wb").write(os.urandom(256) + version.encode())
        open(os.path.join(path, "model.json"), "w").write('{"version": "%s"}' % version)
"""


def _files(path: Path) -> dict[str, bytes]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(f.relative_to(path)): f.read_bytes() for f in sorted(path.rglob("*"))
            if f.is_file()}


def test_artifacts_get_fetches_each_tagged_version_from_the_remote(tmp_path):
    src, remote = tmp_path / "src", tmp_path / "remote"
    src.mkdir()
    paths = [a["path"] for a in ARTIFACTS.values()]
    env = {"DVC_NO_ANALYTICS": "1"}
    run(["git", "init", "-q", "-b", "main"], src)
    run(["dvc", "init", "-q"], src, **env)
    run(["dvc", "remote", "add", "-d", "local", str(remote)], src, **env)
    (src / "make.py").write_text(MAKE)
    (src / "dvc.yaml").write_text(yaml.safe_dump({
        "stages": {"make": {"cmd": "python make.py ${v} " + " ".join(paths),
                            "deps": ["make.py"], "params": ["v"], "outs": paths}},
        "artifacts": ARTIFACTS,  # the project's section, as it is
    }, sort_keys=False))
    made: dict[str, dict[str, dict[str, bytes]]] = {}
    for version in ("v1.0.0", "v2.0.0"):
        (src / "params.yaml").write_text(f"v: {version}\n")
        run(["dvc", "repro", "-q"], src, **env)
        run(["git", "add", "-A"], src)
        run(["git", "commit", "-qm", version], src)
        for name in ARTIFACTS:  # annotated: DVC (gto) ignores lightweight tags
            run(["git", "tag", "-a", f"{name}@{version}", "-m", f"{name} {version}"], src)
        run(["dvc", "push", "-q"], src, **env)
        made[version] = {name: _files(src / a["path"]) for name, a in ARTIFACTS.items()}
    assert made["v1.0.0"]["select-tuned"] != made["v2.0.0"]["select-tuned"]
    shutil.rmtree(src / ".dvc" / "cache")  # what comes back comes from the remote
    # Every artifact at v1.0.0, and the latest version (no --rev) of the model. One at a time:
    # concurrent `dvc artifacts get` calls on one local repository race on DVC's clone of it
    # (seen: "Failed to download artifact ... via DVC remote"), which is DVC's, not ours.
    gets = {(name, "v1.0.0"): ["--rev", "v1.0.0"] for name in ARTIFACTS}
    gets[("select-tuned", "v2.0.0")] = []
    for (name, version), rev in gets.items():
        dest = tmp_path / "got" / version / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run(
            ["dvc", "artifacts", "get", str(src), name, *rev, "-o", str(dest)],
            cwd=tmp_path, env=tool_env(**env), capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, f"{name} {version}: {proc.stderr[-2000:]}"
        assert _files(dest) == made[version][name], (name, version)


def test_a_version_that_was_never_tagged_is_an_error_naming_it(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    run(["git", "init", "-q", "-b", "main"], src)
    run(["dvc", "init", "-q"], src, DVC_NO_ANALYTICS="1")
    (src / "dvc.yaml").write_text(yaml.safe_dump({"artifacts": ARTIFACTS}))
    run(["git", "add", "-A"], src)
    run(["git", "commit", "-qm", "init"], src)
    proc = run(["dvc", "artifacts", "get", str(src), "select-tuned", "--rev", "v9.9.9"],
               tmp_path, check=False, DVC_NO_ANALYTICS="1")
    assert proc.returncode != 0 and "Unable to find artifact 'select-tuned @ v9.9.9'" in proc.stderr
