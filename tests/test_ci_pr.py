"""scripts/ci_pr.sh end to end, as the pull-request workflow runs it: the base branch is
reproduced and pushed to a DVC remote; a branch edits one variant's hyper-parameter; a fresh
clone of the branch (no data, no DVC cache) runs the script against the base and the remote.
Only the edited variant may be trained, the new outputs must reach the remote, and the
comparison must name that variant as changed.

The assertions read the train stage's own lines (`train NAME: up to date ...`, `train: N trained,
M up to date`), not the stage layout of dvc.yaml, which may change.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, make_project, run

pytestmark = pytest.mark.slow

SCRIPT = REPO / "scripts" / "ci_pr.sh"
EDITED = "linreg"
TRAIN_SUMMARY = re.compile(r"^train: (\d+) trained, (\d+) up to date\b", re.M)
UP_TO_DATE = re.compile(r"^train (\S+): up to date\b", re.M)
CHANGED = re.compile(r"^Changed variants: (.*)\.$", re.M)


def remote_files(remote: Path) -> set[str]:
    return {str(p.relative_to(remote)) for p in remote.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """main reproduced and pushed; branch `edit-lr` changes train.<EDITED>.optimizer.lr; a fresh
    clone of the branch runs scripts/ci_pr.sh main <remote>."""
    tmp = tmp_path_factory.mktemp("ci_pr")
    remote = tmp / "remote"
    proj = make_project(tmp / "proj")
    base_store = f"sqlite:///{tmp / 'mlflow-base.db'}"
    run(["dvc", "repro"], proj, MLFLOW_TRACKING_URI=base_store)
    run(["git", "add", "-A"], proj)
    run(["git", "commit", "-qm", "reproduced"], proj)
    run(["dvc", "remote", "add", "--local", "-d", "ci", str(remote)], proj)
    run(["dvc", "push"], proj)
    pushed_base = remote_files(remote)

    run(["git", "checkout", "-qb", "edit-lr"], proj)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    variants = list(params["train"])
    old_lr = params["train"][EDITED]["optimizer"]["lr"]
    params["train"][EDITED]["optimizer"]["lr"] = old_lr / 2
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", f"{EDITED}: half the learning rate"], proj)

    clone = tmp / "clone"
    run(["git", "clone", "-q", str(proj), str(clone)], tmp)  # the branch, checked out
    run(["git", "branch", "main", "origin/main"], clone)       # as CI fetches the base
    assert not (clone / "data").exists() and not (clone / ".dvc" / "cache").exists()
    proc = run(["bash", str(clone / "scripts" / "ci_pr.sh"), "main", str(remote), "compare.md"],
               clone, check=False, MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow-ci.db'}")
    assert proc.returncode == 0, f"stdout:\n{proc.stdout[-6000:]}\nstderr:\n{proc.stderr[-4000:]}"
    return {"proc": proc, "clone": clone, "remote": remote, "variants": variants,
            "pushed_base": pushed_base, "old_lr": old_lr, "proj": proj}


def test_only_the_edited_variant_is_trained(ci_run):
    out = ci_run["proc"].stdout
    summaries = TRAIN_SUMMARY.findall(out)
    assert len(summaries) == 1, out[-4000:]  # the train stage ran once
    trained, up_to_date = map(int, summaries[0])
    assert trained == 1, out[-4000:]
    assert up_to_date == len(ci_run["variants"]) - 1
    skipped = UP_TO_DATE.findall(out)
    assert sorted(skipped) == sorted(v for v in ci_run["variants"] if v != EDITED)
    assert EDITED not in skipped


def test_the_base_outputs_were_pulled_and_the_new_ones_pushed(ci_run):
    clone, remote = ci_run["clone"], ci_run["remote"]
    # The pull fetched the base's outputs from the remote (the clone had no data, no cache),
    # its trained models among them (which the train stage then reused).
    fetched = re.search(r"^(\d+) files? fetched", ci_run["proc"].stdout, re.M)
    assert fetched and int(fetched.group(1)) > 0, ci_run["proc"].stdout[:3000]
    assert (clone / "data" / "models" / ".trained.json").is_file()
    # Pushed: the remote gained the retrained variant's files, and holds all the clone has.
    assert remote_files(remote) > ci_run["pushed_base"]
    status = run(["dvc", "status", "--cloud"], clone)
    assert "in sync" in status.stdout, status.stdout
    # The remote went to the untracked local config, the branch's dvc.lock is its own again
    # (updated by the repro for the new parameter), the tracked config untouched.
    assert "ci" in (clone / ".dvc" / "config.local").read_text()
    assert run(["git", "status", "--porcelain", "--", ".dvc/config"], clone).stdout == ""
    # The workspace matches the branch's dvc.lock, rewritten by the repro for the new lr.
    status = run(["dvc", "status"], clone)
    assert "up to date" in status.stdout, status.stdout
    assert str(ci_run["old_lr"] / 2) in (clone / "dvc.lock").read_text()


def test_the_comparison_names_the_edited_variant_alone(ci_run):
    clone = ci_run["clone"]
    text = (clone / "compare.md").read_text()
    params = text.split("## Parameters", 1)[1].split("## Metrics", 1)[0]
    assert f"train.{EDITED}.optimizer.lr" in params
    changed = CHANGED.findall(text)
    assert changed == [f"`{EDITED}`"], text[:3000]  # the others are restored, byte-identical
    assert (clone / "compare" / f"{EDITED}.png").is_file()
    assert sorted(p.name for p in (clone / "compare").iterdir()) == [f"{EDITED}.png"]


def test_a_run_based_on_a_commit_ci_ran_restores_what_ci_made_for_it(ci_run, tmp_path):
    """The branch `edit-lr` committed no reproduction: its dvc.lock is still main's, and a pull
    by it would bring back the old linreg. The CI run left its own dvc.lock for the branch's
    commit in the remote; a pull request based on `edit-lr` restores by that one, so it trains
    only its own edit (whatever machine made the committed reports)."""
    proj, remote = ci_run["proj"], ci_run["remote"]
    base = run(["git", "rev-parse", "edit-lr"], proj).stdout.strip()
    assert (remote / "locks" / f"{base}.lock").is_file()
    run(["git", "checkout", "-qb", "edit-mlp", "edit-lr"], proj)
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["train"]["mlp"]["optimizer"]["lr"] *= 2
    (proj / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "commit", "-qam", "mlp: double the learning rate"], proj)
    clone = tmp_path / "clone2"
    run(["git", "clone", "-q", str(proj), str(clone)], tmp_path)
    run(["git", "branch", "edit-lr", "origin/edit-lr"], clone)
    proc = run(["bash", str(clone / "scripts" / "ci_pr.sh"), "edit-lr", str(remote)], clone,
               MLFLOW_TRACKING_URI=f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert "the outputs CI made for edit-lr" in proc.stdout
    summaries = TRAIN_SUMMARY.findall(proc.stdout)
    assert [tuple(map(int, s)) for s in summaries] == [(1, len(ci_run["variants"]) - 1)]
    assert "mlp" not in UP_TO_DATE.findall(proc.stdout)
